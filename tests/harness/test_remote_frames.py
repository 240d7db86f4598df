"""The frames transport's own machinery: the server's listener and accept loop, the Unix socket
paths and directories drivetwin picks, the client's socket options (``harness.remote.frames``,
``harness.remote.process``)."""

from __future__ import annotations

import errno
import socket
import sys
import threading
import time

import pytest

pytest.importorskip("grpc")

from harness.remote import frames  # noqa: E402
from harness.remote import server as harness_server  # noqa: E402
from harness.remote._proto import planner_pb2 as pb  # noqa: E402


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
