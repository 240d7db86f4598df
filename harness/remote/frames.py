"""The lock-step frames transport: the planner protocol's messages on one socket, without gRPC.

A lock-step step is one small message each way; over gRPC most of its cost is gRPC core's
threads waking each other on both sides. This transport is a co-simulation wire in the manner of
SUMO's TraCI: the same protobuf messages, each length-prefixed, on one stream socket, written and
read by a blocking call on the twin's thread and on the planner's connection thread (no thread
between the socket and the code that computes the reply).

Framing (language-neutral; a planner needs a stream socket and the generated protobuf code):

- A frame is a 4-byte unsigned length ``N``, big-endian (network order), then ``N`` bytes: one
  serialised ``SessionRequest`` (twin to planner) or ``SessionReply`` (planner to twin) of
  ``proto/drivetwin/planner/v1/planner.proto``. ``N`` is at most ``MAX_FRAME_BYTES``.
- The twin connects, writes one request frame, and reads its reply frame before it writes the
  next. The planner answers every request with one reply of the same kind (``describe``,
  ``reset``, ``step``, ``close``), in order; a reply carries its time and status as on gRPC.
- One connection is one session stream (one drivetwin worker), kept across its episodes; the
  twin closing it ends the session (the planner may free it). A planner that closes it, or
  cannot read a frame, ends the session (the twin counts the planner as lost). A planner that
  ends it with a status, as a gRPC server ends a ``Session`` call (a servicer's
  ``context.abort``), answers the request with a ``SessionReply.end`` (the gRPC code and its
  details) and closes: the twin raises what gRPC's path raises for that status.
- Real-time mode: the twin may stop waiting for a reply at its deadline (a deadline miss). It
  then sends no request until that late reply has come, and drops it.

Addresses: ``unix+frames:///abs/path.sock`` (a Unix-domain stream socket, same host) and
``tcp+frames://host:port`` (TCP with ``TCP_NODELAY``).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.remote._proto import planner_pb2 as pb

#: The address schemes of this transport.
UNIX_SCHEME, TCP_SCHEME = "unix+frames://", "tcp+frames://"
#: A frame's length prefix: unsigned 32-bit, big-endian.
HEADER = struct.Struct(">I")
#: The largest frame either side accepts [bytes] (a camera observation fits).
MAX_FRAME_BYTES = 64 << 20
#: The longest a Unix socket path may be on Linux [bytes] (``sun_path`` less its terminator).
MAX_UNIX_PATH = 107
#: How long ``FramesServer.stop`` waits for the connection threads (all of them) after closing
#: their sockets [s].
STOP_WAIT_S = 2.0
#: ``struct timeval`` as SO_RCVTIMEO/SO_SNDTIMEO take it on Linux's 64-bit ABIs (``time_t`` and
#: ``suseconds_t`` both 64-bit, native order); where that is not the layout (``KERNEL_TIMEOUTS``
#: False) or the kernel does not read back what was set, the client uses ``socket.settimeout``.
TIMEVAL = struct.Struct("=qq")
KERNEL_TIMEOUTS = sys.platform.startswith("linux") and struct.calcsize("P") == 8
#: The longest a ``SessionEnd``'s details are sent or read [bytes of UTF-8]; longer ones are cut
#: there and say how long they were (``cap_details``).
MAX_DETAILS_BYTES = 4 << 10
#: How long a server waits to see whether an existing socket file is still served [s].
STALE_PROBE_S = 0.5
#: How long the accept thread waits after a failed ``accept`` (EMFILE, ECONNABORTED, ...) [s].
ACCEPT_BACKOFF_S = 0.02

_log = logging.getLogger(__name__)


class FrameError(ValueError):
    """The peer broke the framing: a frame's length over ``MAX_FRAME_BYTES``."""


def is_frames_address(address: str) -> bool:
    """Whether ``address`` names this transport (``unix+frames://`` or ``tcp+frames://``)."""
    return address.startswith((UNIX_SCHEME, TCP_SCHEME))


def parse_address(address: str) -> tuple[int, Any]:
    """``(socket family, socket address)`` of a frames address; ``ValueError`` saying what is wrong."""
    if address.startswith(UNIX_SCHEME):
        path = address[len(UNIX_SCHEME):]
        if not path.startswith("/"):
            raise ValueError(f"{address!r}: a unix+frames address needs an absolute path (unix+frames:///run/planner.sock)")
        if len(os.fsencode(path)) > MAX_UNIX_PATH:
            raise ValueError(
                f"{address!r}: the socket path is longer than {MAX_UNIX_PATH} bytes ({len(os.fsencode(path))}; "
                "the limit of a Unix socket's path): give a shorter one"
            )
        return socket.AF_UNIX, path
    if address.startswith(TCP_SCHEME):
        host, _, port = address[len(TCP_SCHEME):].rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"{address!r}: a tcp+frames address is tcp+frames://host:port")
        return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, int(port))
    raise ValueError(f"{address!r} is not a frames address ({UNIX_SCHEME}/path or {TCP_SCHEME}host:port)")


def _tune(sock: socket.socket) -> None:
    """Set a connected socket's options (TCP: Nagle off); on failure the socket is closed."""
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a small frame goes now, not after an ACK
    except BaseException:
        sock.close()
        raise


class FrameSocket:
    """Frames on a connected stream socket: ``send`` one, ``recv`` one (buffered: one ``recv``
    syscall per frame when the frame arrives whole)."""

    def __init__(self, sock: socket.socket) -> None:
        _tune(sock)
        self.sock = sock
        self._buf = bytearray()
        self._chunk = bytearray(1 << 16)
        self._view = memoryview(self._chunk)

    def send(self, payload: bytes) -> None:
        """Write one frame (its length prefix and ``payload`` in one call); ``ValueError`` when
        ``payload`` is over ``MAX_FRAME_BYTES`` (this side's message, not the peer's fault)."""
        if len(payload) > MAX_FRAME_BYTES:
            raise ValueError(f"a message of {len(payload)} bytes is over the frames limit of {MAX_FRAME_BYTES}")
        self.sock.sendall(HEADER.pack(len(payload)) + payload)

    def _fill(self) -> bool:
        n = self.sock.recv_into(self._chunk)
        if n == 0:
            return False
        self._buf += self._view[:n]
        return True

    def _more(self, deadline: float | None, first: bool) -> bool:
        """``_fill`` once more, unless ``deadline`` (``time.perf_counter``) has passed: the socket's
        timeout bounds each read, this the whole frame (a peer trickling bytes is timed out)."""
        if not first and deadline is not None and time.perf_counter() >= deadline:
            raise TimeoutError("the reply did not arrive whole in time")
        return self._fill()

    def recv(self, deadline: float | None = None) -> bytes | None:
        """The next frame's payload; None when the peer ended the stream between frames.

        Raises ``FrameError`` (a length over the limit), ``TimeoutError`` past the socket's
        timeout or, between reads, past ``deadline`` (``time.perf_counter``), ``OSError`` when
        the connection fails (``ConnectionResetError`` when the stream ends inside a frame).
        What was read of a frame cut off by a timeout stays buffered for the next call."""
        buf = self._buf
        if not buf:  # the usual case: the whole frame in one read, parsed from the chunk (no buffer copy)
            n = self.sock.recv_into(self._chunk)
            if n == 0:
                return None
            if n >= HEADER.size:
                (size,) = HEADER.unpack_from(self._chunk)
                if size <= MAX_FRAME_BYTES and n == HEADER.size + size:
                    return bytes(self._view[HEADER.size:n])
            buf += self._view[:n]
        first = True
        while len(buf) < HEADER.size:
            more, first = self._more(deadline, first), False
            if not more:
                if buf:
                    raise ConnectionResetError(errno.ECONNRESET, f"the stream ended inside a frame's length ({len(buf)} of 4 bytes)")
                return None
        (n,) = HEADER.unpack_from(buf)
        if n > MAX_FRAME_BYTES:
            raise FrameError(f"a frame of {n} bytes is announced, over the limit of {MAX_FRAME_BYTES}")
        end = HEADER.size + n
        while len(buf) < end:
            more, first = self._more(deadline, first), False
            if not more:
                raise ConnectionResetError(errno.ECONNRESET, f"the stream ended inside a frame ({len(buf) - HEADER.size} of {n} bytes)")
        with memoryview(buf) as view:  # one copy of the payload, not two
            payload = bytes(view[HEADER.size:end])
        del buf[:end]
        return payload

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def connect(address: str, timeout_s: float) -> socket.socket:
    """A stream socket connected to the frames planner at ``address`` (``OSError`` when it is not there)."""
    family, target = parse_address(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(target)
    except BaseException:
        sock.close()
        raise
    return sock


def _timeval(timeout_s: float) -> bytes:
    """``timeout_s`` [s] as a ``TIMEVAL``, at least 1 us (a zero timeval means "never time out")."""
    usec_total = max(round(timeout_s * 1e6), 1)
    return TIMEVAL.pack(*divmod(usec_total, 1_000_000))


def _timeval_s(data: bytes) -> float:
    """A ``TIMEVAL`` read back from the kernel, in seconds."""
    sec, usec = TIMEVAL.unpack(data)
    return sec + usec * 1e-6


class FramesClient:
    """The twin's end of one frames connection.

    ``ask`` is one lock-step exchange. In real time, ``ask_by`` gives up at a deadline; the
    reply it did not wait for is dropped when it comes, and nothing is sent before it has come.

    Args:
        address: a frames address (``parse_address``).
        connect_timeout_s: the longest wait to connect [s].
    """

    def __init__(self, address: str, connect_timeout_s: float) -> None:
        self.address = address
        sock = connect(address, connect_timeout_s)
        self._frames = FrameSocket(sock)
        self._timeout: float | None = None
        self._kernel_timeout = KERNEL_TIMEOUTS  # SO_RCVTIMEO: a blocking recv, no poll() before each
        if self._kernel_timeout:
            try:
                sock.settimeout(None)
                self._set_timeout(connect_timeout_s)
                got = _timeval_s(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, TIMEVAL.size))
                self._kernel_timeout = abs(got - connect_timeout_s) < 0.05  # the kernel rounds up to its tick
            except OSError:
                self._kernel_timeout = False
        if not self._kernel_timeout:
            sock.settimeout(connect_timeout_s)
            self._timeout = connect_timeout_s
        self.late = 0  # replies still due to requests the twin stopped waiting for
        self.broken = False
        self.ended: pb.SessionReply | None = None  # a SessionReply.end that came as a late reply

    def _set_timeout(self, timeout_s: float) -> None:
        if timeout_s == self._timeout:
            return
        if self._kernel_timeout:  # the kernel's timeout on the blocking socket (EAGAIN past it)
            timeval = _timeval(timeout_s)
            self._frames.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            self._frames.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        else:
            self._frames.sock.settimeout(timeout_s)
        self._timeout = timeout_s

    def _send(self, request: pb.SessionRequest) -> None:
        try:
            self._frames.send(request.SerializeToString())
        except BlockingIOError:  # SO_SNDTIMEO: the planner reads nothing
            self.broken = True
            raise TimeoutError("the planner does not read its requests") from None
        except BaseException:
            self.broken = True
            raise

    def _receive(self, deadline: float) -> bytes:
        try:
            reply = self._frames.recv(deadline)
        except BlockingIOError:  # SO_RCVTIMEO
            self.broken = True
            raise TimeoutError("no reply in time") from None
        except BaseException:
            self.broken = True
            raise
        if reply is None:
            self.broken = True
            raise ConnectionResetError(errno.ECONNRESET, "the planner closed the connection")
        return reply

    def _drain(self, deadline: float) -> bool:
        """Read and drop the late replies until ``deadline`` (``time.perf_counter``); whether all came.
        A late ``SessionReply.end`` (the planner ended the session) is kept in ``ended``, not
        dropped: nothing more comes after it. ``DecodeError`` when a late frame is no SessionReply."""
        while self.late:
            left = deadline - time.perf_counter()
            if left <= 0:
                return False
            self._set_timeout(left)
            try:
                frame = self._receive(deadline)
            except TimeoutError:
                self.broken = False  # a late reply is still late: the connection is fine
                return False
            self.late -= 1
            reply = pb.SessionReply.FromString(frame)
            if reply.WhichOneof("reply") == "end":
                self.ended, self.late, self.broken = reply, 0, True
        return True

    def ask(self, request: pb.SessionRequest, timeout_s: float) -> pb.SessionReply:
        """Send ``request``, return its reply. ``TimeoutError`` when it is not there within
        ``timeout_s`` [s] (the connection is then broken: a reply may still come), ``OSError``
        when the connection fails or the planner ends it, ``FrameError`` on a bad frame length.
        A ``SessionReply.end`` that came as a late reply is returned and ``request`` is not sent."""
        if self.late and not self._drain(time.perf_counter() + timeout_s):
            self.broken = True
            raise TimeoutError("a late reply did not come")
        if self.ended is not None:  # the planner ended the session: nothing more to send
            return self.ended
        self._set_timeout(timeout_s)
        deadline = time.perf_counter() + timeout_s
        self._send(request)
        return pb.SessionReply.FromString(self._receive(deadline))

    def ask_by(self, request: pb.SessionRequest, deadline: float) -> pb.SessionReply | None:
        """Send ``request`` and return its reply if it comes by ``deadline`` (``time.perf_counter``);
        None when it does not (a deadline miss; also when an earlier late reply has not come, and
        then ``request`` is not sent). A ``SessionReply.end`` that came as a late reply is
        returned in place of the reply, and ``request`` is not sent."""
        if not self._drain(deadline):
            return None
        if self.ended is not None:  # the planner ended the session: nothing more to send
            return self.ended
        self._set_timeout(max(deadline - time.perf_counter(), 1e-4))
        self._send(request)
        try:
            return pb.SessionReply.FromString(self._receive(deadline))
        except TimeoutError:
            self.broken = False
            self.late += 1
            return None

    def close(self) -> None:
        """Close the connection (the planner sees the end of the stream and ends the session)."""
        self.broken = True
        self._frames.close()


# --- server side -------------------------------------------------------------------------------


#: gRPC's UNKNOWN status code: a servicer that raised, or aborted with OK.
GRPC_UNKNOWN = 2


class _Aborted(Exception):
    """Raised by ``_Context.abort``: the servicer gave up on the session; the twin gets a
    ``SessionReply.end`` with its code and details, then the connection is closed."""


class _Context:
    """What a servicer's handlers get as their ``grpc.ServicerContext`` on a frames connection:
    active while the connection is open; no deadline (the twin keeps its own)."""

    def __init__(self, peer: str) -> None:
        self._peer = peer
        self.closed = False
        self.code_: Any = None
        self.details_ = ""
        self._callbacks: list[Any] = []

    def is_active(self) -> bool:
        return not self.closed

    def time_remaining(self) -> float | None:
        return None

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> tuple:
        return ()

    def add_callback(self, callback: Any) -> bool:
        self._callbacks.append(callback)
        return True

    def abort(self, code: Any, details: str) -> None:
        self.code_, self.details_ = code, details
        raise _Aborted(f"{getattr(code, 'name', code)}: {details}")

    def abort_with_status(self, status: Any) -> None:
        self.abort(status.code, status.details)

    def set_code(self, code: Any) -> None:
        self.code_ = code

    def set_details(self, details: str) -> None:
        self.details_ = details

    def code(self) -> Any:
        return self.code_

    def details(self) -> str:
        return self.details_

    # what gRPC carries besides the messages has no place on the frames wire
    def send_initial_metadata(self, initial_metadata: Any) -> None:
        pass

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        pass

    def set_compression(self, compression: Any) -> None:
        pass

    def disable_next_message_compression(self) -> None:
        pass

    def peer_identities(self) -> None:
        return None

    def peer_identity_key(self) -> None:
        return None

    def auth_context(self) -> dict:
        return {}

    def run_callbacks(self) -> None:
        for callback in self._callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - a failing callback does not fail the server
                pass


class FramesServer:
    """Serves a planner servicer's ``Session`` handler (``harness.remote.server.PolicyServicer``,
    or any ``PlannerServicer`` whose ``Session`` answers every request) over frames: one thread
    accepts, one thread per connection reads a request, runs the handler and writes its reply.
    The interface is the gRPC server's that ``serve-policy`` uses (``start``, ``stop``,
    ``wait_for_termination``).

    Args:
        servicer: the planner servicer.
        address: where to listen (``unix+frames:///path`` or ``tcp+frames://host:port``; port 0:
            a free one; ``address`` then says which).
    """

    def __init__(self, servicer: Any, address: str) -> None:
        family, target = parse_address(address)
        self._servicer = servicer
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._path = ""
        try:  # the listener is closed when the socket file or the address is refused
            if family == socket.AF_UNIX:
                clear_stale_socket(target)
                self._path = target
            else:
                self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(target)
            self._listener.listen(64)
        except OSError:
            self._listener.close()
            raise
        if family == socket.AF_UNIX:
            self.address = UNIX_SCHEME + target
        else:
            host, port = self._listener.getsockname()[:2]
            self.address = f"{TCP_SCHEME}{'[' + host + ']' if ':' in host else host}:{port}"
        self._lock = threading.Lock()
        self._open: set[FrameSocket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = False
        self._stopped = threading.Event()
        self._acceptor: threading.Thread | None = None

    def start(self) -> None:
        if self._acceptor is not None:
            raise ValueError("the server is already started")
        self._acceptor = threading.Thread(target=self._accept, name="drivetwin-frames-accept", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, peer = self._listener.accept()
            except OSError as exc:
                if self._stopping:
                    break  # stop() shut the listener down
                # out of descriptors (EMFILE), a connection aborted before it was accepted, ...:
                # this connection is lost, not the server
                _log.warning("frames server on %s: accept failed: %s; accepting again in %g s", self.address, exc, ACCEPT_BACKOFF_S)
                time.sleep(ACCEPT_BACKOFF_S)
                continue
            try:
                frames = FrameSocket(sock)
            except OSError as exc:  # FrameSocket closed it
                _log.warning("frames connection from %s dropped: %s", peer, exc)
                continue
            thread = threading.Thread(target=self._serve, args=(frames, str(peer or "unix")), name="drivetwin-frames-call", daemon=True)
            with self._lock:
                if self._stopping:
                    frames.close()
                    break
                self._open.add(frames)
                self._threads.add(thread)
            thread.start()

    def _serve(self, frames: FrameSocket, peer: str) -> None:
        context = _Context(peer)

        def requests() -> Iterator[pb.SessionRequest]:
            while True:
                data = frames.recv()
                if data is None:
                    return
                yield pb.SessionRequest.FromString(data)

        replies = None
        try:
            replies = self._servicer.Session(requests(), context)
            for reply in replies:
                frames.send(reply.SerializeToString())
        except (OSError, FrameError) as exc:  # the twin went away or broke the framing
            if not self._stopping and not isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                _log.warning("frames connection from %s ended: %s", peer, exc)
        except _Aborted:  # the servicer ended the session with a status: the twin is told it
            _send_end(frames, context.code_, context.details_, peer)
        except Exception as exc:  # noqa: BLE001 - one connection's failure does not stop the server
            _log.exception("frames connection from %s failed", peer)
            _send_end(frames, GRPC_UNKNOWN, f"Exception calling application: {exc}", peer)  # as a gRPC server says it
        finally:
            context.closed = True
            try:
                if replies is not None and hasattr(replies, "close"):
                    replies.close()  # the handler's ``finally`` (freeing the session) runs now
                context.run_callbacks()
            finally:  # closed even when the handler's cleanup raises
                frames.close()
                with self._lock:
                    self._open.discard(frames)
                    self._threads.discard(threading.current_thread())

    def stop(self, grace: float | None = None) -> threading.Event:
        """Stop accepting; close the open connections after ``grace`` [s] (None or 0: now)."""
        with self._lock:
            if self._stopping:
                return self._stopped
            self._stopping = True
        try:  # wakes the accept thread (closing alone would not: the port would stay listening)
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        if self._acceptor is not None and self._acceptor is not threading.current_thread():
            self._acceptor.join(STOP_WAIT_S)
        if self._path:
            try:
                os.unlink(self._path)
            except OSError:
                pass

        def close_later() -> None:
            deadline = time.monotonic() + (grace or 0.0)
            while time.monotonic() < deadline and self._open:
                time.sleep(0.01)
            with self._lock:
                frames, threads = list(self._open), list(self._threads)
            for f in frames:
                f.close()
            until = time.monotonic() + STOP_WAIT_S  # one wait for them all, not STOP_WAIT_S each
            for t in threads:
                t.join(max(until - time.monotonic(), 0.0))
            self._stopped.set()

        threading.Thread(target=close_later, daemon=True).start()
        return self._stopped

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)


def status_code(code: Any) -> int:
    """A gRPC status code's number (``grpc.StatusCode`` or an int); OK and None become UNKNOWN (2),
    as an abort with OK ends a gRPC call."""
    value = getattr(code, "value", code)
    value = value[0] if isinstance(value, tuple) else value
    return int(value) if isinstance(value, int) and value != 0 else GRPC_UNKNOWN


def cap_details(details: str) -> str:
    """``details`` cut to ``MAX_DETAILS_BYTES`` of UTF-8 (at a character's start) followed by
    ``"... (N bytes)"`` (N: its whole length) when longer; else unchanged."""
    raw = details.encode("utf-8", "surrogatepass")
    if len(raw) <= MAX_DETAILS_BYTES:
        return details
    head = raw[:MAX_DETAILS_BYTES].decode("utf-8", "ignore")  # a character cut in two is left out
    return f"{head}... ({len(raw)} bytes)"


def _send_end(frames: FrameSocket, code: Any, details: str, peer: str) -> None:
    """Tell the twin the session ended with ``code`` (``SessionReply.end``; its details capped by
    ``cap_details``), if it still listens."""
    details = cap_details(details)
    end = pb.SessionReply(end=pb.SessionEnd(code=status_code(code), details=details))
    try:
        frames.send(end.SerializeToString())
    except (OSError, ValueError) as exc:
        _log.warning("frames connection from %s: the session's end (%s) not sent: %s", peer, details, exc)


def clear_stale_socket(path: str) -> None:
    """Remove a socket file nobody listens on (left by a planner that died); ``OSError`` when one does."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(STALE_PROBE_S)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        try:
            os.unlink(path)  # nobody listens: a stale socket
        except FileNotFoundError:
            pass
    except OSError as exc:  # EACCES, a full backlog (EAGAIN), a timeout: maybe somebody's live socket
        raise OSError(exc.errno or errno.EADDRINUSE, f"{path} exists and cannot be probed ({exc}); not removing it") from None
    else:
        raise OSError(errno.EADDRINUSE, f"a planner already listens on {path}")
    finally:
        probe.close()


def wait_ready(address: str, timeout_s: float, alive: Any = None) -> None:
    """Block until the frames planner at ``address`` accepts a connection; ``TimeoutError`` past
    ``timeout_s`` [s], ``ChildProcessError`` when ``alive()`` turns False."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            connect(address, 1.0).close()
            return
        except OSError:
            pass
        if alive is not None and not alive():
            raise ChildProcessError(f"planner at {address} exited before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"planner at {address} not ready after {timeout_s:g} s")
        time.sleep(0.02)
