"""The client's ``Session`` call: one request written, its reply read, per ``ask``.

A lock-step step is one small message each way, so the cost of a step over gRPC is the cost of
moving a message, and in grpcio's public stream API most of that is threads handing the message
on: a thread that consumes the request iterator, a channel thread that polls for the reply, and
the caller woken by it (three wake-ups per step). ``SessionCall`` does the exchange on the
calling thread instead: it starts a step's send and receive as one batch itself and waits on the
call's own completion queue (one wake-up per step), as grpcio does for its
``SingleThreadedUnaryStream`` calls. That needs
grpcio's Cython layer (``grpc._cython.cygrpc``); where it is missing or changed, ``open_session``
gives the public-API ``ThreadedSessionCall`` instead (same behaviour, slower).

Both raise ``grpc.RpcError`` (with ``code()`` and ``details()``) when the call fails, and both
can be cancelled from another thread (the watchdog of ``SessionStream``).
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import grpc

#: The Session rpc's full method name.
SESSION_METHOD = "/drivetwin.planner.v1.Planner/Session"
#: How long closing waits for the planner to end the call before cancelling it [s].
CLOSE_TIMEOUT_S = 2.0

try:  # grpcio's Cython layer: the single-threaded call (grpc._channel does the same for its unary calls)
    from grpc import _common as _grpc_common
    from grpc._cython import cygrpc as _cygrpc

    _STATUS_CODES = _grpc_common.CYGRPC_STATUS_CODE_TO_STATUS_CODE
    _PROPAGATE = _cygrpc.PropagationConstants.GRPC_PROPAGATE_DEFAULTS
    _HAVE_CYGRPC = all(hasattr(_cygrpc, name) for name in (
        "SendInitialMetadataOperation", "ReceiveInitialMetadataOperation", "ReceiveStatusOnClientOperation",
        "SendMessageOperation", "ReceiveMessageOperation", "SendCloseFromClientOperation",
    ))
except (ImportError, AttributeError):  # pragma: no cover - another grpcio
    _HAVE_CYGRPC = False

_START, _STATUS, _EXCHANGE, _CLOSE = "start", "status", "exchange", "close"


class SessionCallError(grpc.RpcError):
    """The ``Session`` call ended with a status other than OK (or ended while a reply was due)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class SessionCall:
    """A ``Session`` call driven from the calling thread (grpcio's Cython call API).

    Args:
        channel: a ``grpc.Channel`` from ``grpc.insecure_channel``.
    """

    def __init__(self, channel: grpc.Channel) -> None:
        flags = 0
        operations = (
            ((_cygrpc.SendInitialMetadataOperation(None, flags),), _START),
            ((_cygrpc.ReceiveInitialMetadataOperation(flags),), _START),
            ((_cygrpc.ReceiveStatusOnClientOperation(flags),), _STATUS),
        )
        self._call = channel._channel.segregated_call(  # type: ignore[attr-defined]
            _PROPAGATE, SESSION_METHOD.encode(), None, None, None, None, operations, None, None
        )
        self._status: SessionCallError | None = None
        self._done = False

    def _take_status(self, event: Any) -> None:
        op = event.batch_operations[0]
        code = _STATUS_CODES.get(op.code(), grpc.StatusCode.UNKNOWN)
        self._done = True
        self._status = SessionCallError(code, op.details() or "")

    def _failed(self) -> SessionCallError:
        """The call's error: its status (waited for when the call is ending), else CANCELLED."""
        while not self._done:
            event = self._call.next_event()
            if event.tag == _STATUS:
                self._take_status(event)
        status = self._status
        if status is None or status.code() == grpc.StatusCode.OK:
            return SessionCallError(grpc.StatusCode.UNAVAILABLE, "the planner ended the session call")
        return status

    def exchange(self, payload: bytes) -> bytes:
        """Write one serialised ``SessionRequest``, return the serialised reply."""
        if self._done:
            raise self._failed()
        # the send and the receive in one batch: one completion (one wake-up) per step
        self._call.operate((_cygrpc.SendMessageOperation(payload, 0), _cygrpc.ReceiveMessageOperation(0)), _EXCHANGE)
        while True:
            event = self._call.next_event()
            if event.tag == _EXCHANGE:
                reply = event.batch_operations[1].message() if event.success else None
                if reply is None:
                    raise self._failed()
                return reply
            if event.tag == _STATUS:
                self._take_status(event)

    def cancel(self) -> None:
        """Cancel the call (any thread): a pending ``exchange`` raises CANCELLED."""
        self._call.cancel(_cygrpc.StatusCode.cancelled, "cancelled by the twin")

    def close(self) -> None:
        """End the requests (the planner's handler ends normally) and wait for the call's end,
        cancelling it when the planner does not end it within ``CLOSE_TIMEOUT_S``."""
        if self._done:
            return
        self._call.operate((_cygrpc.SendCloseFromClientOperation(0),), _CLOSE)
        timer = threading.Timer(CLOSE_TIMEOUT_S, self.cancel)
        timer.daemon = True
        timer.start()
        try:
            while not self._done:
                event = self._call.next_event()
                if event.tag == _STATUS:
                    self._take_status(event)
        finally:
            timer.cancel()


class ThreadedSessionCall:
    """A ``Session`` call through grpcio's public stream API (a request queue and a reply iterator).

    Args:
        channel: any ``grpc.Channel``.
    """

    def __init__(self, channel: grpc.Channel) -> None:
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        method = channel.stream_stream(SESSION_METHOD, request_serializer=None, response_deserializer=None)
        self._call = method(iter(self._requests.get, None))

    def exchange(self, payload: bytes) -> bytes:
        """Write one serialised ``SessionRequest``, return the serialised reply."""
        self._requests.put(payload)
        try:
            return next(self._call)
        except StopIteration:
            raise SessionCallError(grpc.StatusCode.UNAVAILABLE, "the planner ended the session call") from None

    def cancel(self) -> None:
        """Cancel the call (any thread): a pending ``exchange`` raises CANCELLED."""
        self._call.cancel()

    def close(self) -> None:
        """End the requests (the planner's handler ends normally; the call ends in the background)."""
        self._requests.put(None)


def open_session(channel: grpc.Channel, threaded: bool = False) -> SessionCall | ThreadedSessionCall:
    """A new ``Session`` call on ``channel``: single-threaded where grpcio allows it, unless ``threaded``."""
    if _HAVE_CYGRPC and not threaded and hasattr(channel, "_channel"):
        try:
            return SessionCall(channel)
        except (AttributeError, TypeError):  # pragma: no cover - grpcio changed its Cython API
            pass
    return ThreadedSessionCall(channel)
