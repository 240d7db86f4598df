"""Planner endpoints: a fixed address, one claimed from a list, or a planner process per worker.

``PlannerProcess`` starts ``command`` without a shell (``{port}`` replaced by a free port: a gRPC
planner; ``{socket}`` by a fresh Unix socket path: a frames planner, ``harness.remote.frames``),
waits until it accepts connections, writes its stdout/stderr to a log file, restarts it on
demand and stops it (SIGTERM, then SIGKILL) when closed, when its owner is collected, and, on
Linux, when the worker process that started it dies (``PR_SET_PDEATHSIG``: a killed Ray actor
leaves no planner behind).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from harness.remote import frames
from harness.remote.protocol import PlannerLost

#: How long a started planner has to accept connections [s].
READY_TIMEOUT_S = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_ready(address: str, timeout_s: float, alive: Any = None) -> None:
    """Block until a gRPC channel to ``address`` is ready; ``PlannerLost`` on timeout or when ``alive()`` turns False."""
    channel = grpc.insecure_channel(address)
    ready = grpc.channel_ready_future(channel)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                ready.result(timeout=0.2)
                return
            except grpc.FutureTimeoutError:
                pass
            if alive is not None and not alive():
                raise PlannerLost(f"planner at {address} exited before it was ready")
            if time.monotonic() > deadline:
                raise PlannerLost(f"planner at {address} not ready after {timeout_s:g} s")
    finally:
        ready.cancel()
        channel.close()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _remove_dir(path: str) -> None:
    """Remove a planner's socket directory (its socket files, left by a planner that was killed)."""
    for name in os.listdir(path) if os.path.isdir(path) else ():
        try:
            os.unlink(os.path.join(path, name))
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def _stop(popen: subprocess.Popen, log: Any) -> None:
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    log.close()


class PlannerProcess:
    """One planner process made from ``command`` (a ``{port}`` or a ``{socket}`` placeholder is required).

    Args:
        command: ``"./my_planner --port {port}"`` (gRPC on ``host``) or ``"./my_planner --socket
            {socket}"`` (frames on a Unix socket in a private temporary directory); split like a
            shell would, run without one.
        log_dir: where ``planner-<pid>-<n>.log`` (its stdout and stderr) goes ("" : a temp dir).
        cwd: the process's working directory (a relative command resolves against it).
        host: the address it listens on.
    """

    def __init__(self, command: str, log_dir: str = "", cwd: str = "", host: str = "127.0.0.1") -> None:
        if ("{port}" in command) == ("{socket}" in command):
            raise ValueError(f"planner command {command!r} needs one placeholder: {{port}} (gRPC) or {{socket}} (frames)")
        self.command, self.host, self.cwd = command, host, cwd or None
        self.frames = "{socket}" in command
        self._socket_dir = ""
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.gettempdir()) / "drivetwin-planners"
        self.address = ""
        self.starts = 0
        self._popen: subprocess.Popen | None = None
        self._finalizer: Any = None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"planner-{os.getpid()}-{self.starts}.log"

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def wait_exit(self, timeout_s: float) -> None:
        """Give a process that is going down up to ``timeout_s`` [s] to be gone (so its exit status is known)."""
        if self._popen is not None:
            try:
                self._popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass

    def exit_status(self) -> str:
        """How the process ended ("running", "exit code 3", "killed by signal 9")."""
        code = None if self._popen is None else self._popen.poll()
        if code is None:
            return "running"
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"

    def start(self) -> str:
        """Start (or restart) the process and wait until it is ready; its address."""
        self.stop()
        self.starts += 1
        if self.frames:  # a short path: a Unix socket's path has at most 107 bytes
            if not self._socket_dir or not os.path.isdir(self._socket_dir):
                self._socket_dir = tempfile.mkdtemp(prefix="drivetwin-")
                weakref.finalize(self, _remove_dir, self._socket_dir)
            path = os.path.join(self._socket_dir, f"planner-{self.starts}.sock")
            argv = shlex.split(self.command.replace("{socket}", path))
            address = frames.UNIX_SCHEME + path
        else:
            port = free_port(self.host)
            argv = shlex.split(self.command.replace("{port}", str(port)))
            address = f"{self.host}:{port}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            popen = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.cwd,
                preexec_fn=_die_with_parent, start_new_session=True,
            )
        except OSError as exc:
            log.close()
            raise PlannerLost(f"cannot start planner {argv[0]!r}: {exc}") from None
        self._popen = popen
        self._finalizer = weakref.finalize(self, _stop, popen, log)
        self.address = address
        try:
            if self.frames:
                try:
                    frames.wait_ready(address, READY_TIMEOUT_S, self.alive)
                except (TimeoutError, ChildProcessError) as exc:
                    raise PlannerLost(str(exc)) from None
            else:
                wait_ready(self.address, READY_TIMEOUT_S, self.alive)
        except PlannerLost as exc:
            raise PlannerLost(f"{exc} ({self.exit_status()}; log {self.log_path})") from None
        return self.address

    def stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._popen = None


class AddressClaim:
    """One address of a list, held by this process through a lock file until released.

    Each worker takes the first address no other live worker holds; the lock goes with the
    process, so a dead worker's replacement takes its address.
    """

    def __init__(self, addresses: Sequence[str], lock_dir: str = "") -> None:
        self.addresses = list(addresses)
        self.lock_dir = Path(lock_dir) if lock_dir else Path(tempfile.gettempdir()) / "drivetwin-planners"
        self._fh: Any = None
        self.address = ""

    def claim(self) -> str:
        if self._fh is not None:
            return self.address
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        for address in self.addresses:
            fh = open(self.lock_dir / f"claim-{address.replace(':', '_').replace('/', '_')}.lock", "w")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            self._fh, self.address = fh, address
            return address
        raise PlannerLost(
            f"every planner address is held by another worker ({', '.join(self.addresses)}): give one address per worker"
        )

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh, self.address = None, ""
