"""The example C++ planner (examples/cpp_planner), built with Debian's gRPC packages, drives the sample
over gRPC and over the frames transport (``harness.remote.frames``).

It is built once per test module into a temporary directory with cmake. The tests skip, naming
what is missing, only when the compiler packages are not installed (.ci/run installs them).
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("grpc")

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "examples" / "cpp_planner"
SAMPLE = ROOT / "scenarios" / "sample" / "ngsim_us101"
TOOLS = ("cmake", "c++", "pkg-config", "protoc", "grpc_cpp_plugin")
APT = "apt-get install -y g++ cmake pkg-config libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc"


def _missing() -> list[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if shutil.which("pkg-config") and subprocess.run(["pkg-config", "--exists", "grpc++", "protobuf"]).returncode != 0:
        missing.append("libgrpc++-dev/libprotobuf-dev (pkg-config grpc++ protobuf)")
    return missing


@pytest.fixture(scope="module")
def cpp_planner(tmp_path_factory) -> Path:
    missing = _missing()
    if missing:
        pytest.skip(f"the C++ planner needs {', '.join(missing)}: {APT}")
    build = tmp_path_factory.mktemp("cpp_planner")
    for argv in (
        ["cmake", "-S", str(SOURCE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
        ["cmake", "--build", str(build), "-j2"],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    binary = build / "cpp_planner"
    assert binary.is_file()
    return binary


#: The grpc flags each action is driven with: trajectory on the Session call, continuous on unary calls.
GRPC_FLAGS = {"trajectory": "", "continuous": " --unary-only"}


@pytest.fixture(scope="module")
def drive(cpp_planner, tmp_path_factory) -> Callable[[str, str], tuple[pd.Series, str]]:
    """``drive(action, tail)``: the summary row and the planner's log of the sample scenario driven
    by ``cpp_planner{tail}``; each (action, tail) is run once per module."""
    from harness.config import parse_suite
    from harness.runner import run_suite

    done: dict[tuple[str, str], tuple[pd.Series, str]] = {}

    def run(action: str, tail: str) -> tuple[pd.Series, str]:
        if (action, tail) not in done:
            suite = parse_suite({
                "suite": {"name": f"cpp-{action}"},
                "scenarios": {"sources": [str(SAMPLE)], "ids": ["commonroad-USA_US101-4_1_T-1.ego-383"]},
                "policy": {"command": f"{cpp_planner}{tail}"},
                "env": {"observation": ["state"], "action": action},
                "run": {"seed": 0},
            })
            out = tmp_path_factory.mktemp("cpp-run") / "run"
            row = run_suite(suite, out=out, executor="sequential", progress=False).summary.iloc[0]
            logs = list((out / "planners").glob("planner-*.log"))
            done[action, tail] = row, logs[0].read_text() if len(logs) == 1 else ""
        return done[action, tail]

    return run


def _driven_to_the_end(row: pd.Series) -> None:
    assert row["status"] == "ok", row["error"]
    assert row["policy"] == "cpp_route_follower"  # the name its Describe reply gives
    assert row["termination"] in ("goal", "log_end")  # driven to the end: no collision, not off the road
    assert row["collisions"] == 0 and row["progress_ratio"] > 0.95
    assert row["num_steps"] >= 20 and row["planner_latency_p50_ms"] > 0


@pytest.mark.parametrize(("action", "flags"), list(GRPC_FLAGS.items()))
def test_cpp_planner_drives_a_sample_scenario_to_the_end(drive, action, flags):
    """On the Session call, and (``--unary-only``: Session UNIMPLEMENTED) on unary calls."""
    row, log = drive(action, f" --port {{port}}{flags}")
    _driven_to_the_end(row)
    assert "cpp_planner: serving on 127.0.0.1:" in log
    assert ("cpp_planner: Session call opened" in log) == (not flags)


#: Columns that time the run (they differ between any two runs).
TIMING = re.compile(r"planner_latency_.*|worker_s")


@pytest.mark.parametrize("action", list(GRPC_FLAGS))
def test_cpp_planner_over_frames_drives_as_over_grpc(drive, action):
    """``--socket {socket}``: the same planner on the frames transport (a Unix socket) gives the
    gRPC run's rows, latency aside."""
    row, log = drive(action, " --socket {socket}")
    _driven_to_the_end(row)
    assert re.search(r"cpp_planner: serving frames on unix\+frames:///\S+/planner-1\.sock\n", log), log
    assert "cpp_planner: frames connection opened" in log and "Session call opened" not in log
    grpc_row, _ = drive(action, f" --port {{port}}{GRPC_FLAGS[action]}")
    keep = [c for c in row.index if not TIMING.fullmatch(c)]
    assert len(keep) == len(row.index) - 4  # three latency columns and worker_s
    pd.testing.assert_series_equal(row[keep], grpc_row[keep], check_names=False)


def test_cpp_planner_refuses_discrete_actions(cpp_planner, tmp_path):
    from harness.config import parse_suite
    from harness.runner import run_suite

    suite = parse_suite({
        "suite": {"name": "cpp-discrete"},
        "scenarios": {"sources": [str(SAMPLE)], "limit": 1},
        "policy": {"command": f"{cpp_planner} --port {{port}}"},
        "env": {"observation": ["state"], "action": "discrete"},
    })
    row = run_suite(suite, out=tmp_path / "run", executor="sequential", progress=False).summary.iloc[0]
    assert row["status"] == "error"
    assert "STATUS_ERROR: cpp_route_follower answers continuous or trajectory actions only" in row["error"]


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


class _Peer:
    """The twin's end of a frames connection, written by hand (to send broken frames)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5.0)
        self.sock.connect(path)
        self._buf = b""

    def reply(self) -> Any:
        """The next reply frame (a ``SessionReply``); None when the planner closed the connection."""
        from harness.remote._proto import planner_pb2 as pb

        while len(self._buf) < 4 or len(self._buf) < 4 + struct.unpack(">I", self._buf[:4])[0]:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                assert not self._buf, f"the stream ended inside a frame ({len(self._buf)} bytes)"
                return None
            self._buf += chunk
        end = 4 + struct.unpack(">I", self._buf[:4])[0]
        payload, self._buf = self._buf[4:end], self._buf[end:]
        return pb.SessionReply.FromString(payload)


@pytest.fixture()
def frames_planner(cpp_planner):
    """A ``cpp_planner --socket`` process (socket in a short temp dir) and its socket path."""
    from harness.remote import frames

    folder = tempfile.mkdtemp(prefix="cppframes-", dir="/tmp")
    path = f"{folder}/planner.sock"
    proc = subprocess.Popen([str(cpp_planner), "--socket", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        frames.wait_ready(frames.UNIX_SCHEME + path, 10.0, lambda: proc.poll() is None)
        yield proc, path
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def test_cpp_planner_frames_refuses_a_bad_frame_and_keeps_serving(frames_planner):
    """A frame over 64 MiB, or not a SessionRequest, or carrying no request, gets a SessionReply.end
    (INVALID_ARGUMENT, saying why) and a closed connection; other connections, open alongside or
    made after, are served; a request that arrives a byte at a time is answered."""
    from harness.remote._proto import planner_pb2 as pb

    proc, path = frames_planner
    describe = _frame(pb.SessionRequest(describe=pb.DescribeRequest(protocol_version=1)).SerializeToString())
    info = pb.SessionReply(describe=pb.PlannerInfo(
        status=pb.STATUS_OK, name="cpp_route_follower", protocol_version=1,
        action_types=[pb.ACTION_TYPE_CONTINUOUS, pb.ACTION_TYPE_TRAJECTORY],
    ))
    alongside = _Peer(path)
    alongside.sock.sendall(describe)
    assert alongside.reply() == info

    cases = [
        (struct.pack(">I", 0xFFFFFFFF) + b"x" * 100_000, "a frame of 4294967295 bytes is announced, over the limit of 67108864"),
        (struct.pack(">I", (64 << 20) + 1), "a frame of 67108865 bytes is announced, over the limit of 67108864"),
        (_frame(b"\xff" * 5), "a frame of 5 bytes is not a SessionRequest"),
        (_frame(b""), "a SessionRequest carries none of reset, step, close, describe"),
    ]
    for data, details in cases:
        peer = _Peer(path)
        peer.sock.sendall(data)
        assert peer.reply() == pb.SessionReply(end=pb.SessionEnd(code=3, details=details))
        assert peer.reply() is None  # closed after it
        peer.sock.close()
        assert proc.poll() is None

    alongside.sock.sendall(describe)  # the connection open all along is still served
    assert alongside.reply() == info
    alongside.sock.close()
    peer = _Peer(path)  # a new one too, a request arriving in pieces
    for i in range(len(describe)):
        peer.sock.sendall(describe[i:i + 1])
        time.sleep(0.002)
    assert peer.reply() == info
    peer.sock.sendall(describe + describe)  # two requests in one write: two replies in turn
    assert peer.reply() == info and peer.reply() == info
    peer.sock.close()
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    assert not Path(path).exists()  # SIGTERM removes the socket file
    out = proc.stdout.read()
    assert f"cpp_planner: serving frames on unix+frames://{path}\n" in out
    assert "cpp_planner: frames session ended (code 3): a frame of 5 bytes is not a SessionRequest\n" in out


def _vm_mib(pid: int, field: str) -> float:
    """``field`` (VmRSS, VmSize) of process ``pid`` from /proc/PID/status [MiB]."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"/proc/{pid}/status has no {field}")


def _varint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7
    return out + bytes([n])


def _describe_frame() -> bytes:
    from harness.remote._proto import planner_pb2 as pb

    return _frame(pb.SessionRequest(describe=pb.DescribeRequest(protocol_version=1)).SerializeToString())


def _serves(path: str) -> bool:
    """Whether the planner on ``path`` answers a describe on a new connection."""
    peer = _Peer(path)
    try:
        peer.sock.sendall(_describe_frame())
        reply = peer.reply()
        return reply is not None and reply.describe.name == "cpp_route_follower"
    finally:
        peer.sock.close()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
def test_cpp_planner_frames_memory_follows_the_bytes_received_not_the_length_announced(frames_planner):
    """A reviewer's alloc.py: 8 connections each announcing 64 MiB and sending 1 byte took the
    planner from 11 to 524 MiB (the buffer was sized from the header). It now grows as bytes
    arrive."""
    proc, path = frames_planner
    before = _vm_mib(proc.pid, "VmRSS")
    peers = []
    for _ in range(8):
        peer = _Peer(path)
        peer.sock.sendall(struct.pack(">I", 64 << 20) + b"x")
        peers.append(peer)
    time.sleep(0.5)
    grown = _vm_mib(proc.pid, "VmRSS") - before
    assert grown < 32, f"the planner grew by {grown:.0f} MiB for 8 headers of 64 MiB (1 byte each)"
    assert proc.poll() is None and _serves(path)
    for peer in peers:
        peer.sock.close()


def test_cpp_planner_frames_answers_big_frames(frames_planner):
    """A frame over 256 KiB had its buffer freed before it was parsed (SIGSEGV: the planner died
    without a word). Big frames, then a small one, on one connection are each answered."""
    proc, path = frames_planner
    peer = _Peer(path)
    for padding in (1 << 20, 8 << 20, 0):  # a describe with an unknown field (number 1000) it skips
        request = _describe_frame()[4:]
        if padding:
            request += _varint((1000 << 3) | 2) + _varint(padding) + b"p" * padding
        peer.sock.sendall(_frame(request))
        reply = peer.reply()
        assert reply is not None and reply.describe.name == "cpp_route_follower", (padding, reply, proc.poll())
    peer.sock.close()
    assert proc.poll() is None


def test_cpp_planner_frames_survives_an_exception_in_a_connection(frames_planner):
    """Out of memory while a frame arrives (the address space capped by prlimit) throws
    std::bad_alloc in that connection's thread: it used to end the planner (std::terminate);
    now that connection gets a SessionReply.end (INTERNAL, 13) and the planner serves on."""
    import resource

    proc, path = frames_planner
    limit = int((_vm_mib(proc.pid, "VmSize") + 48) * (1 << 20))
    old = resource.prlimit(proc.pid, resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    try:
        peer = _Peer(path)
        peer.sock.settimeout(10.0)
        peer.sock.sendall(struct.pack(">I", 64 << 20))
        chunk = b"\0" * (1 << 20)
        try:
            for _ in range(64):
                peer.sock.sendall(chunk)
        except OSError:
            pass  # the planner stopped reading and closed the connection
        reply = peer.reply()
        assert reply is not None and reply.end.code == 13, reply
        assert reply.end.details == "the planner failed: std::bad_alloc"
        peer.sock.close()
    finally:
        if proc.poll() is None:
            resource.prlimit(proc.pid, resource.RLIMIT_AS, old)
    assert proc.poll() is None, f"the planner exited with {proc.returncode}"
    assert _serves(path)


def test_cpp_planner_frames_survives_a_thread_it_cannot_start(frames_planner):
    """With no address space for another thread's stack (prlimit), std::thread throws in the
    accept loop: it used to end the planner; now that connection is closed and accepting goes on."""
    import resource

    proc, path = frames_planner
    first = _Peer(path)  # a thread started before the limit (glibc may reuse an exited one's stack)
    first.sock.sendall(_describe_frame())
    assert first.reply().describe.name == "cpp_route_follower"
    limit = int((_vm_mib(proc.pid, "VmSize") + 1) * (1 << 20))  # less than a thread's 8 MiB stack
    old = resource.prlimit(proc.pid, resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    try:
        refused, peers = 0, []
        for _ in range(6):  # all open at once: each needs a stack (glibc's cached ones serve the first few)
            peer = _Peer(path)
            peers.append(peer)
            try:
                peer.sock.sendall(_describe_frame())
                refused += peer.reply() is None
            except OSError:  # closed before the request went (EPIPE) or while it did (ECONNRESET)
                refused += 1
        assert refused > 0
        for peer in peers:
            peer.sock.close()
    finally:
        if proc.poll() is None:
            resource.prlimit(proc.pid, resource.RLIMIT_AS, old)
    assert proc.poll() is None, f"the planner exited with {proc.returncode}"
    assert _serves(path)
    first.sock.close()
    assert "cpp_planner: cannot serve a frames connection: " in _drain_output(proc)


def _drain_output(proc) -> str:
    """What the planner wrote until it is stopped (SIGTERM)."""
    proc.terminate()
    proc.wait(timeout=10)
    return proc.stdout.read()


def test_cpp_planner_frames_connection_frees_its_episodes(frames_planner):
    """A Reset on one connection serves its steps there; once that connection is closed, the
    session is gone (a step of it on another connection is refused)."""
    from harness.remote import frames
    from harness.remote._proto import planner_pb2 as pb

    _, path = frames_planner
    init = pb.ScenarioInit(
        protocol_version=1, session="w0", t_us=100_000, dt_us=100_000, dt_s=0.1,
        action=pb.ActionSpec(type=pb.ACTION_TYPE_CONTINUOUS, shape=[2]),
        vehicle=pb.VehicleParams(length=4.6, width=1.9, wheelbase=2.8, max_accel=4.0, max_decel=8.0, max_steer=0.5),
        speed_limit=10.0, route=pb.Polyline(xy=[0.0, 0.0, 50.0, 0.0]),
    )
    step = pb.SessionRequest(step=pb.Observation(session="w0", t_us=200_000, step=1, ego=pb.EgoState(x=0.0, y=0.0, yaw=0.0, speed=0.0)))
    first = frames.FramesClient(frames.UNIX_SCHEME + path, 5.0)
    reply = first.ask(pb.SessionRequest(reset=init), 5.0)
    assert reply == pb.SessionReply(reset=pb.ResetReply(status=pb.STATUS_OK, t_us=100_000, planner_name="cpp_route_follower", protocol_version=1))
    # standing on a straight route, free road: IDM's full 2 m/s2 of max_accel 4, no steering
    ok = pb.SessionReply(step=pb.Command(status=pb.STATUS_OK, t_us=200_000, continuous=pb.ContinuousAction(accel=0.5, steer=0.0)))
    assert first.ask(step, 5.0) == ok
    second = frames.FramesClient(frames.UNIX_SCHEME + path, 5.0)
    assert second.ask(step, 5.0) == ok  # another connection may drive the session while it lives
    first.close()
    gone = pb.SessionReply(step=pb.Command(status=pb.STATUS_ERROR, t_us=200_000, message="no episode in this session: Reset first"))
    deadline = time.monotonic() + 5.0
    while (reply := second.ask(step, 5.0)) != gone and time.monotonic() < deadline:  # the planner sees the close soon
        assert reply == ok
        time.sleep(0.01)
    assert reply == gone
    second.close()


def test_cpp_planner_frames_on_tcp(cpp_planner):
    """``--frames-port 0``: frames on TCP loopback on a free port, which it prints."""
    from harness.remote import frames
    from harness.remote._proto import planner_pb2 as pb

    proc = subprocess.Popen([str(cpp_planner), "--frames-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        found = re.fullmatch(r"cpp_planner: serving frames on (tcp\+frames://127\.0\.0\.1:(\d+))\n", line)
        assert found, line
        client = frames.FramesClient(found.group(1), 5.0)
        reply = client.ask(pb.SessionRequest(describe=pb.DescribeRequest(protocol_version=1)), 5.0)
        assert reply.describe.name == "cpp_route_follower" and reply.describe.protocol_version == 1
        reply = client.ask(pb.SessionRequest(step=pb.Observation(session="s", t_us=7)), 5.0)
        assert reply == pb.SessionReply(step=pb.Command(status=pb.STATUS_ERROR, t_us=7, message="no episode in this session: Reset first"))
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cpp_planner_refuses_bad_arguments(cpp_planner):
    done = subprocess.run([str(cpp_planner), "--socket", "/tmp/x.sock", "--frames-port", "0"], capture_output=True, text=True, timeout=10)
    assert done.returncode == 2 and "cpp_planner: give --socket or --frames-port, not both" in done.stderr
    done = subprocess.run([str(cpp_planner), "--sockets", "/tmp/x.sock"], capture_output=True, text=True, timeout=10)
    assert done.returncode == 2 and "cpp_planner: unknown or incomplete argument '--sockets'" in done.stderr
    long_path = "/tmp/" + "x" * 120 + ".sock"
    done = subprocess.run([str(cpp_planner), "--socket", long_path], capture_output=True, text=True, timeout=10)
    assert done.returncode == 1 and f"the socket path '{long_path}' is empty or longer than 107 bytes" in done.stderr


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
