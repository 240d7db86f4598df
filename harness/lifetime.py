"""Tie a local Ray's lifetime to the driver that started it.

``ray.init`` starts the GCS server, the raylet, the dashboard agent and the runtime-env agent as
processes of their own; a driver killed outright (``kill -9``, OOM killer) leaves some of them
running. ``watch(session)`` starts a small watchdog process, in a session of its own, that waits
for the driver to die and then ends every process of that Ray session (whose command line names
the session, and their descendants): SIGTERM, then SIGKILL after ``GRACE_S``. A driver that ends
normally shuts Ray down itself; the watchdog then finds nothing left and exits.

Run as ``python -m harness.lifetime DRIVER_PID SESSION_NAME``. Linux only (it reads ``/proc``);
elsewhere ``watch`` does nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: How often [s] the watchdog checks that the driver is alive.
POLL_S = 0.2
#: How long [s] the session's processes get between SIGTERM and SIGKILL.
GRACE_S = 2.0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat[stat.rindex(")") + 2 :].split()[1])  # the field after the state


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def session_processes(session: str) -> list[int]:
    """Pids of the processes whose command line names ``session``, and all their descendants."""
    me = os.getpid()
    pids = _pids()
    found = {pid for pid in pids if pid != me and session in _cmdline(pid)}
    children: dict[int, list[int]] = {}
    for pid in pids:
        children.setdefault(_parent(pid), []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found and child != me:
                found.add(child)
                todo.append(child)
    return sorted(found)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def end_session(session: str, grace_s: float = GRACE_S) -> list[int]:
    """SIGTERM every process of ``session``, SIGKILL those still alive after ``grace_s``; their pids."""
    pids = session_processes(session)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        end = time.monotonic() + grace_s
        while sig == signal.SIGTERM and time.monotonic() < end and any(_alive(p) for p in pids):
            time.sleep(0.05)
        pids = [p for p in pids if _alive(p)] + [p for p in session_processes(session) if p not in pids]
        if not pids:
            break
    return pids


def watch(session: str, driver_pid: int | None = None) -> subprocess.Popen | None:
    """Start the watchdog of ``session`` for ``driver_pid`` (default: this process); None off Linux."""
    if not sys.platform.startswith("linux") or not session:
        return None
    pid = os.getpid() if driver_pid is None else driver_pid
    return subprocess.Popen(
        [sys.executable, "-m", "harness.lifetime", str(pid), session],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))},
    )


def main(argv: list[str]) -> int:
    driver, session = int(argv[0]), argv[1]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the driver's to handle
    while _alive(driver):
        time.sleep(POLL_S)
    end_session(session)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
