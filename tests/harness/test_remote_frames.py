"""The frames transport's own machinery: the server's listener and accept loop, the Unix socket
paths and directories drivetwin picks, the client's socket options (``harness.remote.frames``,
``harness.remote.process``)."""

from __future__ import annotations

import errno
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

grpc = pytest.importorskip("grpc")

from harness.remote import frames  # noqa: E402
from harness.remote import server as harness_server  # noqa: E402
from harness.remote._proto import planner_pb2 as pb  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _describe(address: str) -> str:
    """The served policy's name, asked on a fresh frames connection."""
    client = frames.FramesClient(address, 5.0)
    try:
        return client.ask(pb.SessionRequest(describe=pb.DescribeRequest(protocol_version=1)), 5.0).describe.name
    finally:
        client.close()


def _wait_for(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_a_stopped_server_stops_listening_and_its_accept_thread_ends(kind, tmp_path):
    address = "tcp+frames://127.0.0.1:0" if kind == "tcp" else f"unix+frames://{tmp_path}/s.sock"
    server = harness_server.make_frames_server(harness_server.PolicyServicer("expert"), address)
    assert _describe(server.address) == "expert"
    acceptor = server._acceptor
    assert acceptor is not None and acceptor.is_alive()
    started = time.perf_counter()
    assert server.stop(0).wait(5)
    assert not acceptor.is_alive()  # stop() joined it
    assert time.perf_counter() - started < 2.0
    assert "drivetwin-frames-accept" not in [t.name for t in threading.enumerate()]
    family, target = frames.parse_address(server.address)
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        with pytest.raises((ConnectionRefusedError, FileNotFoundError)):
            probe.connect(target)


def test_a_failed_accept_does_not_end_accepting(tmp_path, monkeypatch, caplog):
    """An ``accept`` that fails (here EMFILE, once) loses that attempt only: the server goes on
    accepting after a short back-off, and says what happened."""
    server = frames.FramesServer(harness_server.PolicyServicer("expert"), f"unix+frames://{tmp_path}/a.sock")
    real_accept = server._listener.accept
    failures = []

    class Listener:  # socket.socket's accept cannot be patched on the instance: wrap it
        def __init__(self, sock: socket.socket) -> None:
            self._sock = sock

        def accept(self):
            if not failures:
                failures.append(time.perf_counter())
                raise OSError(errno.EMFILE, "Too many open files")
            return real_accept()

        def __getattr__(self, name):
            return getattr(self._sock, name)

    monkeypatch.setattr(server, "_listener", Listener(server._listener))
    with caplog.at_level("WARNING", logger="harness.remote.frames"):
        server.start()
        try:
            assert _wait_for(lambda: bool(failures))
            assert _describe(server.address) == "expert"
            assert server._acceptor.is_alive()
        finally:
            assert server.stop(0).wait(5)
    assert len(failures) == 1
    assert any("accept failed: [Errno 24] Too many open files; accepting again in 0.02 s" in r.getMessage() for r in caplog.records)


@pytest.fixture()
def unix_listener(tmp_path):
    """A Unix socket that accepts (the kernel's backlog) and never answers; its address."""
    path = tmp_path / "l.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)
    yield f"unix+frames://{path}"
    listener.close()


@pytest.mark.skipif(not frames.KERNEL_TIMEOUTS, reason="the kernel timeouts are used on Linux's 64-bit ABIs only")
def test_the_client_sets_the_kernel_timeouts_it_means(unix_listener):
    """SO_RCVTIMEO and SO_SNDTIMEO read back as the timeout set (the kernel rounds up to its tick),
    and a reply that does not come ends the wait at that timeout."""
    client = frames.FramesClient(unix_listener, 5.0)
    try:
        assert client._kernel_timeout and client._frames.sock.gettimeout() is None  # blocking: no poll() per read
        client._set_timeout(0.25)
        for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
            sec, usec = frames.TIMEVAL.unpack(client._frames.sock.getsockopt(socket.SOL_SOCKET, option, frames.TIMEVAL.size))
            assert sec == 0 and 250_000 <= usec <= 260_000
        client._set_timeout(2.5)
        sec, usec = frames.TIMEVAL.unpack(client._frames.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, frames.TIMEVAL.size))
        assert sec == 2 and 500_000 <= usec <= 510_000
        started = time.perf_counter()
        with pytest.raises(TimeoutError, match="no reply in time"):
            client.ask(pb.SessionRequest(), timeout_s=0.3)
        assert 0.25 <= time.perf_counter() - started < 1.0
    finally:
        client.close()


def test_timevals_are_never_zero():
    assert frames._timeval(0.0) == frames.TIMEVAL.pack(0, 1)  # a zero timeval would never time out
    assert frames._timeval(1.5) == frames.TIMEVAL.pack(1, 500_000)
    assert frames._timeval(0.9999999) == frames.TIMEVAL.pack(1, 0)
    assert frames.TIMEVAL.size == 16


def test_without_kernel_timeouts_the_client_uses_the_socket_timeout(unix_listener, monkeypatch):
    monkeypatch.setattr(frames, "KERNEL_TIMEOUTS", False)
    client = frames.FramesClient(unix_listener, 5.0)
    try:
        assert not client._kernel_timeout and client._frames.sock.gettimeout() == 5.0
        client._set_timeout(0.3)
        assert client._frames.sock.gettimeout() == 0.3
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            client.ask(pb.SessionRequest(), timeout_s=0.3)
        assert 0.25 <= time.perf_counter() - started < 1.0
    finally:
        client.close()


def test_tune_closes_the_socket_it_fails_on():
    class Refuses(socket.socket):
        def setsockopt(self, *args):
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")

    sock = Refuses(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(OSError, match="Protocol not available"):
        frames._tune(sock)
    assert sock.fileno() == -1  # closed, not leaked


def _socket_file(path) -> None:
    """A socket file nobody listens on (a planner that died)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()


def test_a_stale_socket_is_replaced_and_a_live_one_is_not(tmp_path):
    path = tmp_path / "p.sock"
    _socket_file(path)
    server = harness_server.make_frames_server(harness_server.PolicyServicer("expert"), f"unix+frames://{path}")
    try:
        assert _describe(server.address) == "expert"
        with pytest.raises(OSError, match="a planner already listens on"):
            frames.FramesServer(harness_server.PolicyServicer("expert"), server.address)
        assert _describe(server.address) == "expert"  # still served
    finally:
        assert server.stop(0).wait(5)


@pytest.mark.parametrize(("errno_", "name"), [(errno.EACCES, "Permission denied"), (errno.EAGAIN, "Resource temporarily unavailable")])
def test_a_socket_that_cannot_be_probed_is_not_removed(tmp_path, monkeypatch, errno_, name):
    """Only "refused" (nobody listens) or "gone" lets a server remove an existing socket file: a
    socket it may not connect to (EACCES) or whose backlog is full may be another's live one."""
    path = tmp_path / "p.sock"
    _socket_file(path)

    class Probe(socket.socket):
        def connect(self, address):
            raise OSError(errno_, name)

    monkeypatch.setattr(frames.socket, "socket", Probe)
    with pytest.raises(OSError, match=rf"{path} exists and cannot be probed \(\[Errno {errno_}\] {name}\); not removing it"):
        frames.clear_stale_socket(str(path))
    assert path.is_socket()


def test_the_stale_socket_probe_is_bounded(tmp_path, monkeypatch):
    timeouts = []

    class Probe(socket.socket):
        def connect(self, address):
            timeouts.append(self.gettimeout())
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    path = tmp_path / "p.sock"
    _socket_file(path)
    monkeypatch.setattr(frames.socket, "socket", Probe)
    frames.clear_stale_socket(str(path))
    assert timeouts == [frames.STALE_PROBE_S] and not path.exists()


#: A planner that only listens on its socket (all PlannerProcess needs to see it ready), fast to start.
LISTENER = (
    f"{sys.executable} -c \"import socket, sys, time; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); "
    "s.listen(); time.sleep(120)\" {socket}"
)


@pytest.fixture()
def own_tmp(monkeypatch):
    """A short directory ROOT (pytest's tmp_path is too long for socket paths): the temp dir
    (``tempfile.gettempdir``) is ``ROOT/t``, the short fallback root ``ROOT/s``."""
    import shutil
    import tempfile
    from pathlib import Path

    from harness.remote import process

    root = Path(tempfile.mkdtemp(prefix="dtt-", dir="/tmp"))
    try:
        (root / "t").mkdir()
        (root / "s").mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(root / "t"))
        monkeypatch.setattr(process, "SHORT_SOCKET_ROOT", str(root / "s"), raising=False)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_long_temp_dir_puts_the_socket_in_a_short_one(tmp_path, monkeypatch):
    import tempfile

    from harness.remote import process

    long_tmp = tmp_path / ("d" * 100)
    long_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    planner = process.PlannerProcess(LISTENER, log_dir=str(tmp_path / "logs"))
    try:
        address = planner.start()
        path = address[len(frames.UNIX_SCHEME):]
        assert path.startswith(f"/tmp/drivetwin-sock-{os.getpid()}-") and path.endswith("/planner-1.sock")
        assert len(path.encode()) <= frames.MAX_UNIX_PATH
        assert (tmp_path / "logs" / planner.log_path.name).exists()
        directory = os.path.dirname(path)
    finally:
        planner.stop()
    assert not os.path.exists(directory)


def test_a_short_temp_dir_keeps_the_socket_there(own_tmp):
    from harness.remote import process

    planner = process.PlannerProcess(LISTENER, log_dir=str(own_tmp / "logs"))
    try:
        path = planner.start()[len(frames.UNIX_SCHEME):]
        assert path.startswith(str(own_tmp / "t" / "drivetwin-sock-"))
    finally:
        planner.stop()


def test_a_user_given_socket_path_too_long_is_refused_naming_it():
    from harness.remote import RemotePolicy

    address = "unix+frames:///" + "p" * 120 + ".sock"
    message = rf"{re.escape(repr(address))}: the socket path is longer than 107 bytes \(126; the limit of a Unix socket's path\)"
    with pytest.raises(ValueError, match=message):
        RemotePolicy(address)
    with pytest.raises(ValueError, match=message):
        RemotePolicy(addresses=["unix+frames:///ok.sock", address])
    with pytest.raises(ValueError, match=message):
        harness_server.make_frames_server(harness_server.PolicyServicer("expert"), address)


def test_a_killed_planners_socket_dir_is_removed(own_tmp):
    """A planner SIGKILLed mid-run leaves its socket file: the restart (the retry) starts it in a
    fresh directory and the old one is gone; stopping removes the last."""
    import signal

    from harness.remote import process

    planner = process.PlannerProcess(LISTENER, log_dir=str(own_tmp / "logs"))
    first = planner.start()[len(frames.UNIX_SCHEME):]
    os.kill(planner._popen.pid, signal.SIGKILL)
    planner.wait_exit(5.0)
    assert planner.exit_status() == "killed by signal 9" and os.path.exists(first)  # nobody removed it
    second = planner.start()[len(frames.UNIX_SCHEME):]
    assert not os.path.exists(os.path.dirname(first))
    assert os.path.exists(second)
    planner.stop()
    assert not os.path.exists(os.path.dirname(second))
    assert os.listdir(own_tmp / "t") == []


def test_a_killed_twins_socket_dir_is_removed_by_the_next_twin(own_tmp):
    """A twin SIGKILLed runs no ``finally``: its planner dies with it (PR_SET_PDEATHSIG) and leaves
    the directory; the next twin to make one removes it (its owner's pid is gone, its socket unserved).
    A live twin's directory and another kind of directory stay."""
    import signal
    import subprocess

    twin = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, tempfile, time\n"
         f"tempfile.tempdir = {str(own_tmp / 't')!r}\n"
         "from harness.remote.process import PlannerProcess\n"
         f"p = PlannerProcess({LISTENER!r}, log_dir={str(own_tmp / 'logs')!r})\n"
         "print(p.start(), flush=True)\n"
         "time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    left = twin.stdout.readline().strip()[len(frames.UNIX_SCHEME):]
    assert left, "the twin printed no address"
    os.kill(twin.pid, signal.SIGKILL)
    twin.wait(10)
    assert os.path.exists(left)
    live = own_tmp / "t" / f"drivetwin-sock-{os.getpid()}-abcdefgh"  # this process's: alive
    live.mkdir()
    other = own_tmp / "t" / "drivetwin-bench-abcdefgh"
    other.mkdir()
    from harness.remote import process

    # the twin's planner may take a moment to die of its parent's death: its socket is unserved then
    assert _wait_for(lambda: bool(process.clear_stale_socket_dirs()), 10.0)
    assert not os.path.exists(os.path.dirname(left))
    assert live.exists() and other.exists()


def test_a_session_request_without_a_kind_ends_the_frames_session_with_invalid_argument(tmp_path):
    """As on gRPC (test_remote.py: the call ends INVALID_ARGUMENT): a ``SessionReply.end`` with
    code 3 and the servicer's details, then the planner closes the connection."""
    server = harness_server.make_frames_server(harness_server.PolicyServicer("expert"), f"unix+frames://{tmp_path}/k.sock")
    try:
        client = frames.FramesClient(server.address, 5.0)
        reply = client.ask(pb.SessionRequest(), 5.0)
        assert reply.WhichOneof("reply") == "end"
        assert reply.end.code == 3 and reply.end.details == "a SessionRequest carries none of reset, step, close, describe"
        with pytest.raises(OSError):  # closed: the request cannot go (EPIPE) or gets no reply
            client.ask(pb.SessionRequest(describe=pb.DescribeRequest()), 5.0)
        client.close()
    finally:
        assert server.stop(0).wait(5)


def test_a_servicer_that_raises_ends_the_frames_session_with_unknown(tmp_path):
    class Raises(harness_server.PolicyServicer):
        def Describe(self, request, context):
            raise RuntimeError("describe broke")

    server = harness_server.make_frames_server(Raises("expert"), f"unix+frames://{tmp_path}/r.sock")
    try:
        client = frames.FramesClient(server.address, 5.0)
        reply = client.ask(pb.SessionRequest(describe=pb.DescribeRequest()), 5.0)
        assert (reply.end.code, reply.end.details) == (2, "Exception calling application: describe broke")
        client.close()
    finally:
        assert server.stop(0).wait(5)
    assert frames.status_code(None) == 2 and frames.status_code(grpc.StatusCode.OK) == 2
    assert frames.status_code(grpc.StatusCode.FAILED_PRECONDITION) == 9


def _one_shot_planner(path: Path, answer, requests: list) -> socket.socket:
    """A frames planner on ``path`` that, for each connection, calls ``answer(frame_socket)``
    (which reads and replies as it likes; each frame it reads goes to ``requests``); its listener."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)

    def run() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                try:
                    answer(frames.FrameSocket(conn), requests)
                except OSError:
                    pass

    threading.Thread(target=run, daemon=True).start()
    return listener


def test_a_late_session_end_is_answered_at_the_next_ask_by_and_the_request_is_not_sent(tmp_path):
    """A reviewer's lateend.py: the planner misses a deadline, then ends the session (code 9).
    The end was dropped as a late reply and the next send met a reset (OSError: a retried
    PlannerLost); it is now returned in place of the next reply, and nothing more is sent."""

    def answer(fs, requests):
        requests.append(fs.recv())
        time.sleep(0.2)
        fs.send(pb.SessionReply(end=pb.SessionEnd(code=9, details="planner lost its map")).SerializeToString())
        fs.sock.settimeout(0.5)
        try:
            got = fs.recv()
        except OSError:
            got = None
        if got is not None:
            requests.append(got)

    requests: list = []
    listener = _one_shot_planner(tmp_path / "late.sock", answer, requests)
    client = frames.FramesClient(f"unix+frames://{tmp_path}/late.sock", 5.0)
    try:
        step = pb.SessionRequest(step=pb.Observation(session="s", t_us=1))
        assert client.ask_by(step, time.perf_counter() + 0.05) is None and client.late == 1
        reply = client.ask_by(step, time.perf_counter() + 2.0)
        assert reply is not None and reply.WhichOneof("reply") == "end"
        assert (reply.end.code, reply.end.details) == (9, "planner lost its map")
        assert client.late == 0 and client.broken
        assert client.ask(step, 1.0).end.code == 9  # still the end: nothing is sent after it
        time.sleep(0.6)
        assert len(requests) == 1
    finally:
        client.close()
        listener.close()


def _ends_with(code: int, details: str):
    def answer(fs, requests):
        requests.append(fs.recv())
        fs.send(pb.SessionReply(end=pb.SessionEnd(code=code, details=details)).SerializeToString())
        time.sleep(0.1)

    return answer


@pytest.mark.parametrize(
    "code, details, error, message",
    [
        (0, "ok-coded end", "PlannerLost", "is unreachable: UNKNOWN (code 0): ok-coded end"),  # as an abort with OK on gRPC
        (99, "code 99", "PlannerLost", "is unreachable: UNKNOWN (code 99): code 99"),
        (3, "bad arg", "RemoteError", "failed the call: INVALID_ARGUMENT: bad arg"),
        (9, "no map", "RemoteError", "failed the call: FAILED_PRECONDITION: no map"),
        (14, "going away", "PlannerLost", "is unreachable: UNAVAILABLE: going away"),
    ],
)
def test_a_session_end_code_is_read_as_grpc_reads_it(tmp_path, code, details, error, message):
    """A reviewer's endcodes.py: code 0 was OK (a RemoteError '... OK: ...'), an unknown code
    lost its number."""
    from harness.remote.client import RemotePolicy

    listener = _one_shot_planner(tmp_path / "e.sock", _ends_with(code, details), [])
    address = f"unix+frames://{tmp_path}/e.sock"
    try:
        with pytest.raises(Exception) as caught:
            RemotePolicy(address).describe()
        assert type(caught.value).__name__ == error
        assert str(caught.value) == f"Describe: planner {address} {message}"
    finally:
        listener.close()


def test_long_session_end_details_are_capped_when_read(tmp_path):
    from harness.remote.client import RemotePolicy
    from harness.remote.protocol import RemoteError

    details = "x" * (20 << 20)
    listener = _one_shot_planner(tmp_path / "big.sock", _ends_with(3, details), [])
    try:
        with pytest.raises(RemoteError) as caught:
            RemotePolicy(f"unix+frames://{tmp_path}/big.sock").describe()
        text = str(caught.value)
        assert text.endswith(": INVALID_ARGUMENT: " + "x" * 4096 + f"... ({20 << 20} bytes)")
        assert len(text) < 4096 + 200
    finally:
        listener.close()


def test_cap_details_cuts_at_4_kib_of_utf8_and_says_how_long():
    assert frames.MAX_DETAILS_BYTES == 4096
    assert frames.cap_details("") == "" and frames.cap_details("a" * 4096) == "a" * 4096
    assert frames.cap_details("a" * 4097) == "a" * 4096 + "... (4097 bytes)"
    # 4095 ASCII bytes then a 2-byte character across the cut: the character is left out whole
    assert frames.cap_details("a" * 4095 + "é" + "b") == "a" * 4095 + "... (4098 bytes)"
    assert frames.cap_details("é" * 2048) == "é" * 2048  # exactly 4096 bytes


def test_a_servicer_that_raises_with_a_long_message_sends_capped_details(tmp_path):
    class Raises(harness_server.PolicyServicer):
        def Describe(self, request, context):
            raise RuntimeError("y" * 100_000)

    server = harness_server.make_frames_server(Raises("expert"), f"unix+frames://{tmp_path}/c.sock")
    try:
        client = frames.FramesClient(server.address, 5.0)
        reply = client.ask(pb.SessionRequest(describe=pb.DescribeRequest()), 5.0)
        prefix = "Exception calling application: "
        whole = len(prefix) + 100_000
        assert reply.end.code == 2
        assert reply.end.details == (prefix + "y" * 100_000)[:4096] + f"... ({whole} bytes)"
        client.close()
    finally:
        assert server.stop(0).wait(5)


def test_a_refused_socket_path_does_not_leak_the_listener(tmp_path):
    """``clear_stale_socket`` raising (a file that is no socket) left the listener open."""
    import gc
    import warnings

    path = tmp_path / "not-a-socket"
    path.write_text("")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frames.FramesServer(harness_server.PolicyServicer("expert"), f"unix+frames://{path}")
        except OSError as exc:
            assert "exists and is not a socket" in str(exc)
        else:
            raise AssertionError("the server was made on a file that is no socket")
        gc.collect()  # an unclosed socket is closed here with a ResourceWarning
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_stop_waits_once_for_all_connection_threads(tmp_path, monkeypatch):
    """Three handlers that never return: stop() waited STOP_WAIT_S for each (3x); now once."""
    monkeypatch.setattr(frames, "STOP_WAIT_S", 0.4)
    release = threading.Event()

    class Stuck:
        def Session(self, requests, context):
            release.wait(10)
            return iter(())

    server = frames.FramesServer(Stuck(), f"unix+frames://{tmp_path}/s.sock")
    server.start()
    clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
    try:
        for c in clients:
            c.connect(f"{tmp_path}/s.sock")
        assert _wait_for(lambda: len(server._threads) == 3)
        started = time.monotonic()
        assert server.stop(0).wait(5)
        assert time.monotonic() - started < 0.8  # 0.4 s once, not 1.2 s
    finally:
        release.set()
        for c in clients:
            c.close()


def test_the_connection_is_closed_when_the_handlers_cleanup_raises(tmp_path):
    class Replies:
        def __iter__(self):
            yield pb.SessionReply(describe=pb.PlannerInfo(name="one"))

        def close(self):
            raise RuntimeError("cleanup broke")

    class OneReply:
        def Session(self, requests, context):
            next(requests)
            return Replies()

    server = frames.FramesServer(OneReply(), f"unix+frames://{tmp_path}/c.sock")
    server.start()
    hooked: list = []
    old_hook = threading.excepthook
    threading.excepthook = lambda args: hooked.append(args.exc_value)
    try:
        client = frames.FramesClient(server.address, 5.0)
        assert client.ask(pb.SessionRequest(describe=pb.DescribeRequest()), 2.0).describe.name == "one"
        with pytest.raises((ConnectionResetError, BrokenPipeError)):  # closed (old: left open, a hang: TimeoutError)
            client.ask(pb.SessionRequest(describe=pb.DescribeRequest()), 2.0)
        client.close()
        assert _wait_for(lambda: not server._open)
        assert [str(e) for e in hooked] == ["cleanup broke"]
    finally:
        threading.excepthook = old_hook
        assert server.stop(0).wait(5)
