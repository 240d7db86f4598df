"""Planner endpoints: a fixed address, one claimed from a list, or a planner process per worker.

``PlannerProcess`` starts ``command`` without a shell (``{port}`` replaced by a free port: a gRPC
planner; ``{socket}`` by a fresh Unix socket path: a frames planner, ``harness.remote.frames``),
waits until it accepts connections, writes its stdout/stderr to a log file, restarts it on
demand and stops it (SIGTERM, then SIGKILL) when closed, when its owner is collected, and, on
Linux, when the worker process that started it dies (``PR_SET_PDEATHSIG``: a killed Ray actor
leaves no planner behind).

A ``{socket}`` is ``planner-<n>.sock`` in a private directory ``drivetwin-sock-<pid>-*`` of the
temp dir (of ``/tmp`` when the temp dir's path leaves no room: a socket path has at most 107
bytes). The directory goes when the process is stopped (a killed planner's socket file with it)
and at the twin's exit; one that a killed twin left is removed by the next twin that makes one.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import shlex
import signal
import socket
import stat
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
#: Where a planner's Unix socket directory goes when the temp dir's path is too long for one.
SHORT_SOCKET_ROOT = "/tmp"
#: A socket directory's name: this prefix, the pid of the twin that made it, mkdtemp's part.
SOCKET_DIR_PREFIX = "drivetwin-sock-"
_SOCKET_DIR = re.compile(re.escape(SOCKET_DIR_PREFIX) + r"(\d+)-\w{8}")


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clear_stale_socket_dirs(roots: Sequence[str] = ()) -> list[str]:
    """Remove the socket directories that twins which are gone (killed: no ``finally`` ran) left in
    ``roots`` (default: the temp dir and ``SHORT_SOCKET_ROOT``): only this user's, only their
    unserved socket files, only when nothing else is in them. The directories removed."""
    removed = []
    uid = os.getuid()
    for root in roots or dict.fromkeys((tempfile.gettempdir(), SHORT_SOCKET_ROOT)):
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            owner = _SOCKET_DIR.fullmatch(name)
            if owner is None or _pid_alive(int(owner.group(1))):
                continue
            path = os.path.join(root, name)
            try:
                if os.lstat(path).st_uid != uid or not stat.S_ISDIR(os.lstat(path).st_mode):
                    continue
                for entry in os.listdir(path):
                    sock = os.path.join(path, entry)
                    if stat.S_ISSOCK(os.lstat(sock).st_mode):
                        frames.clear_stale_socket(sock)  # OSError (and the directory kept) when it is served
                os.rmdir(path)
            except OSError:
                continue
            removed.append(path)
    return removed


def socket_dir() -> str:
    """A new private directory (mode 0700) for a planner's Unix sockets: in the temp dir, or in
    ``SHORT_SOCKET_ROOT`` when the temp dir's path is too long for a socket path in it (at most
    ``frames.MAX_UNIX_PATH`` bytes). Stale ones of twins that are gone are removed first."""
    clear_stale_socket_dirs()
    prefix = f"{SOCKET_DIR_PREFIX}{os.getpid()}-"
    for root in (tempfile.gettempdir(), SHORT_SOCKET_ROOT):
        longest = os.path.join(os.path.abspath(root), prefix + "x" * 8, _socket_name(999_999))  # mkdtemp adds 8 characters
        if len(os.fsencode(longest)) <= frames.MAX_UNIX_PATH:
            return tempfile.mkdtemp(prefix=prefix, dir=os.path.abspath(root))
    raise OSError(f"no directory for a planner's socket: {SHORT_SOCKET_ROOT}/{prefix}... is over {frames.MAX_UNIX_PATH} bytes")


def _socket_name(start: int) -> str:
    return f"planner-{start}.sock"


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
        self._dir_finalizer: Any = None
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
                try:
                    self._socket_dir = socket_dir()
                except OSError as exc:
                    raise PlannerLost(f"cannot start planner {self.command!r}: {exc}") from None
                self._dir_finalizer = weakref.finalize(self, _remove_dir, self._socket_dir)  # atexit too
            path = os.path.join(self._socket_dir, _socket_name(self.starts))
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
        """Stop the process (if running) and remove its socket directory (a killed planner's socket
        is left in it)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._popen = None
        if self._dir_finalizer is not None:
            self._dir_finalizer()
            self._dir_finalizer, self._socket_dir = None, ""


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
