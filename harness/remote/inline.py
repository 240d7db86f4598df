"""A gRPC server whose handler threads drive their own calls (the server side of ``stream``).

In grpcio's public server one polling thread receives every event of every call and hands each
message to a handler thread (and each reply back): for a lock-step ``Session`` call that is about
four thread hand-offs per step on top of gRPC core's own. ``InlineServer`` binds each call to a
completion queue of its own when it accepts it (``grpc_server_request_call``'s
``cq_bound_to_call``; only the queue that announces new calls is registered with the server) and
gives the call to one handler thread that polls that queue itself: the thread that is woken by a
message is the thread that computes the reply, and a stream's reply goes out in the same batch
as the receive of the next message (one completion per step, as ``stream.SessionCall`` does on
the client).

It serves the handlers that the generated ``add_*Servicer_to_server`` gives it (unary-unary and
stream-stream; others are answered UNIMPLEMENTED) with a small ``grpc.ServicerContext``
(``is_active``, ``time_remaining``, ``abort``, ``set_code``, ``set_details``, ``peer``,
``invocation_metadata``). There is no limit on concurrent calls: a thread per open call, idle
threads kept for the next ones. It needs grpcio's Cython layer (``grpc._cython.cygrpc``); where it
is missing or changed ``AVAILABLE`` is False and ``harness.remote.server`` uses the public server.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

try:
    from grpc import _common as _grpc_common
    from grpc._cython import cygrpc as _cygrpc

    _CODES = _grpc_common.STATUS_CODE_TO_CYGRPC_STATUS_CODE
    AVAILABLE = all(hasattr(_cygrpc, name) for name in (
        "Server", "CompletionQueue", "SendInitialMetadataOperation", "SendMessageOperation", "ReceiveMessageOperation",
        "ReceiveCloseOnServerOperation", "SendStatusFromServerOperation",
    )) and all(hasattr(_cygrpc.Server, name) for name in ("request_call", "register_completion_queue", "add_http2_port", "shutdown"))
except (ImportError, AttributeError):  # pragma: no cover - another grpcio
    AVAILABLE = False

#: Idle handler threads kept for the next calls (more are started on demand, never queued).
KEEP_IDLE_THREADS = 8
#: How long ``stop`` waits for handlers to return after cancelling their calls [s].
STOP_WAIT_S = 2.0
_ACCEPT, _SHUTDOWN, _CLOSED, _BATCH = "accept", "shutdown", "closed", "batch"


class _Aborted(Exception):
    """Raised by ``_Context.abort``: ends the handler, the call ends with the set status."""


class _Context(grpc.ServicerContext):
    """The ``grpc.ServicerContext`` of one call served by ``InlineServer``."""

    def __init__(self, event: Any) -> None:
        self._event = event
        self._deadline = float(event.call_details.deadline)
        self.cancelled = False
        self.code_: grpc.StatusCode | None = None
        self.details_: str = ""
        self._callbacks: list[Callable[[], None]] = []

    def is_active(self) -> bool:
        return not self.cancelled and time.time() < self._deadline

    def time_remaining(self) -> float:
        return max(self._deadline - time.time(), 0.0)

    def cancel(self) -> None:
        self.cancelled = True
        self._event.call.cancel(_cygrpc.StatusCode.cancelled, b"cancelled by the planner")

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self._callbacks.append(callback)
        return True

    def invocation_metadata(self) -> Any:
        return self._event.invocation_metadata

    def peer(self) -> str:
        return _grpc_common.decode(self._event.call.peer())

    def peer_identities(self) -> Any:
        return None

    def peer_identity_key(self) -> Any:
        return None

    def auth_context(self) -> Any:
        return {}

    def set_compression(self, compression: Any) -> None:
        pass

    def send_initial_metadata(self, initial_metadata: Any) -> None:
        pass

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        pass

    def disable_next_message_compression(self) -> None:
        pass

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        if code == grpc.StatusCode.OK:
            code = grpc.StatusCode.UNKNOWN
        self.code_, self.details_ = code, details
        raise _Aborted(details)

    def abort_with_status(self, status: Any) -> None:
        self.abort(status.code, status.details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code_ = code

    def set_details(self, details: str) -> None:
        self.details_ = details

    def code(self) -> Any:
        return self.code_

    def details(self) -> str:
        return self.details_

    def run_callbacks(self) -> None:
        for callback in self._callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - as grpcio: a failing callback does not fail the server
                pass


class _CallDriver:
    """One accepted call and its completion queue, driven by the thread that polls the queue."""

    def __init__(self, event: Any, cq: Any) -> None:
        self.event, self.call, self.cq = event, event.call, cq
        self.context = _Context(event)
        self.metadata_sent = False
        self.pending: bytes | None = None  # a stream reply not sent yet (goes with the next receive)
        self.closed = False

    def wait(self, tag: str) -> Any:
        """Poll the call's queue until the batch ``tag`` completes (noting the call's close)."""
        while True:
            event = self.cq.poll()
            if event.tag == tag:
                return event
            if event.tag == _CLOSED:
                self.closed = True
                if event.batch_operations[0].cancelled():
                    self.context.cancelled = True

    def _send_ops(self, message: bytes) -> list:
        ops = []
        if not self.metadata_sent:
            ops.append(_cygrpc.SendInitialMetadataOperation(None, 0))
            self.metadata_sent = True
        ops.append(_cygrpc.SendMessageOperation(message, 0))
        return ops

    def receive(self) -> bytes | None:
        """The next request message (the pending reply sent in the same batch); None at the end."""
        ops = self._send_ops(self.pending) if self.pending is not None else []
        self.pending = None
        ops.append(_cygrpc.ReceiveMessageOperation(0))
        event = self.wait_batch(ops)
        if not event.success:
            self.context.cancelled = True
            return None
        return event.batch_operations[-1].message()

    def wait_batch(self, ops: Sequence[Any]) -> Any:
        self.call.start_server_batch(tuple(ops), _BATCH)
        return self.wait(_BATCH)

    def finish(self, code: grpc.StatusCode, details: str, message: bytes | None = None) -> None:
        """Send the last reply (``message``, else a pending stream reply) and the status; wait
        for the call's end."""
        message = message if message is not None else self.pending
        self.pending = None
        if not self.context.cancelled:
            ops = self._send_ops(message) if message is not None else []
            if not self.metadata_sent:
                ops.append(_cygrpc.SendInitialMetadataOperation(None, 0))
            ops.append(_cygrpc.SendStatusFromServerOperation(None, _CODES[code], details.encode(), 0))
            self.wait_batch(ops)
        while not self.closed:
            self.wait(_CLOSED)
            self.closed = True
        self.context.run_callbacks()

    def _requests(self, deserialize: Callable[[bytes], Any] | None) -> Iterator[Any]:
        while True:
            data = self.receive()
            if data is None:
                return
            yield deserialize(data) if deserialize is not None else data

    def serve(self, handler: Any) -> None:
        """Run ``handler`` (a ``grpc.RpcMethodHandler``, or None: UNIMPLEMENTED) on this call."""
        self.call.start_server_batch((_cygrpc.ReceiveCloseOnServerOperation(0),), _CLOSED)
        context = self.context
        if handler is None or handler.request_streaming != handler.response_streaming:
            self.finish(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
            return
        serialize = handler.response_serializer or (lambda reply: reply)
        replies = None
        try:
            if handler.request_streaming:
                replies = handler.stream_stream(self._requests(handler.request_deserializer), context)
                for reply in replies:
                    if self.pending is not None:  # two replies in a row: the first goes alone
                        self.wait_batch(self._send_ops(self.pending))
                    self.pending = serialize(reply)
                    if context.cancelled:
                        break
                reply_data = None
            else:
                data = self.receive()
                if data is None:
                    self.finish(grpc.StatusCode.INTERNAL, "no request message")
                    return
                request = handler.request_deserializer(data) if handler.request_deserializer else data
                reply_data = serialize(handler.unary_unary(request, context))
        except _Aborted:
            self.pending = None
            self.finish(context.code_ or grpc.StatusCode.UNKNOWN, context.details_)
            return
        except Exception as exc:  # noqa: BLE001 - as grpcio: the handler's error ends its call only
            self.pending = None
            self.finish(grpc.StatusCode.UNKNOWN, f"Exception calling application: {exc}")
            return
        finally:
            if replies is not None and hasattr(replies, "close"):
                replies.close()  # a handler's ``finally`` runs now, not when collected
        code = context.code_ or grpc.StatusCode.OK
        if code != grpc.StatusCode.OK:
            self.pending = None
            self.finish(code, context.details_)
        else:
            self.finish(code, context.details_, reply_data)


class _Threads:
    """Handler threads: an idle one takes the next call, else a new one starts (no queueing)."""

    def __init__(self) -> None:
        self._idle: list[queue.SimpleQueue] = []
        self._lock = threading.Lock()
        self._stopping = False  # once set, a thread that finishes its call ends instead of idling

    def run(self, job: Callable[[], None]) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._loop, args=(inbox,), name="drivetwin-planner-call", daemon=True).start()
        inbox.put(job)

    def _loop(self, inbox: queue.SimpleQueue) -> None:
        while True:
            job = inbox.get()
            if job is None:
                return
            job()
            job = None
            with self._lock:
                if self._stopping or len(self._idle) >= KEEP_IDLE_THREADS:
                    return
                self._idle.append(inbox)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            idle, self._idle = self._idle, []
        for inbox in idle:
            inbox.put(None)


class InlineServer:
    """A ``grpc.Server``-like server (``add_insecure_port``, ``start``, ``stop``) of handler
    threads that poll their own calls (see the module docstring).

    Args:
        options: channel arguments, as for ``grpc.server``.
    """

    def __init__(self, options: Sequence[tuple[str, Any]] = ()) -> None:
        self._server = _cygrpc.Server(tuple(options), False)
        self._cq = _cygrpc.CompletionQueue()
        self._server.register_completion_queue(self._cq)
        self._handlers: dict[str, Any] = {}
        self._generic: list[Any] = []
        self._threads = _Threads()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._started = self._stopping = self._destroyed = False
        self._acceptor: threading.Thread | None = None

    # the generated add_*Servicer_to_server calls these two
    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        self._generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        for name, handler in handlers.items():
            self._handlers[f"/{service}/{name}"] = handler

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_http2_port(address.encode())

    def _handler(self, event: Any) -> Any:
        method = _grpc_common.decode(event.call_details.method)
        handler = self._handlers.get(method)
        if handler is None:
            details = _HandlerCallDetails(method, event.invocation_metadata)
            for generic in self._generic:
                handler = generic.service(details)
                if handler is not None:
                    break
        return handler

    def start(self) -> None:
        with self._lock:
            if self._started:
                raise ValueError("the server is already started")
            self._started = True
            self._server.start()
        self._acceptor = threading.Thread(target=self._accept, name="drivetwin-planner-accept", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        accepting = shut_down = False
        while True:
            with self._lock:
                if not accepting and not self._stopping:
                    call_cq = _cygrpc.CompletionQueue()
                    self._server.request_call(call_cq, self._cq, _ACCEPT)
                    accepting = True
            if shut_down and not accepting:
                break
            event = self._cq.poll()
            if event.completion_type == _cygrpc.CompletionType.queue_timeout:
                continue
            if event.tag == _SHUTDOWN:
                shut_down = True
            elif event.tag == _ACCEPT:
                accepting = False
                if event.success:
                    self._threads.run(functools.partial(_drive, _CallDriver(event, call_cq), self._handler(event)))
            event = None
        with self._lock:
            self._server.destroy()
            self._destroyed = True
        self._threads.stop()
        self._stopped.set()

    def _cancel_all_calls(self) -> None:
        with self._lock:
            if not self._destroyed:
                self._server.cancel_all_calls()

    def stop(self, grace: float | None) -> threading.Event:
        """Stop accepting calls; cancel the open ones after ``grace`` [s] (None or 0: now)."""
        with self._lock:
            if not self._started:
                self._stopped.set()
                return self._stopped
            if not self._stopping:
                self._stopping = True
                self._server.shutdown(self._cq, _SHUTDOWN)
        def cancel_later() -> None:
            if not self._stopped.wait(grace or 0.0):
                self._cancel_all_calls()
                if not self._stopped.wait(STOP_WAIT_S):  # a handler stuck in its policy holds its call
                    self._stopped.set()

        threading.Thread(target=cancel_later, daemon=True).start()
        return self._stopped

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)


class _HandlerCallDetails(grpc.HandlerCallDetails):
    def __init__(self, method: str, invocation_metadata: Any) -> None:
        self.method, self.invocation_metadata = method, invocation_metadata


def _drive(driver: _CallDriver, handler: Any) -> None:
    try:
        driver.serve(handler)
    finally:
        cq = driver.cq
        driver.call = driver.event = driver.context = driver.cq = None  # the call before its queue
        cq.shutdown()
        while cq.poll().completion_type != _cygrpc.CompletionType.queue_shutdown:
            pass
