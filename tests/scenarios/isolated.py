"""Run ``scenarios.load`` on untrusted files in forked processes, each with a memory cap and a timeout.

The fuzz and bad-input tests use it: a file that makes a reader allocate without bound, hang or
crash the interpreter must fail its test, not the test run. Children are forked from a
``multiprocessing`` fork server that has imported ``scenarios`` once, so a load costs a fork
(milliseconds), not an interpreter start. Arrow's allocator is the system ``malloc`` in the children:
its default (mimalloc) reserves a gigabyte of address space up front, which an address-space cap
would count.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Address space [bytes] one load may add to what the forked child starts with.
MEMORY_HEADROOM = 1 << 30
#: Longest a load may take [s] before it counts as a hang (far beyond any real file's 1 s).
TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one isolated load did.

    Attributes:
        kind: "ok" (scenarios built), "implausible" (built, but a value is beyond the model's
            bounds, as ``implausible`` measures them apart from the model's own checks), "error"
            (a ScenarioError), "exception" (anything else raised), "memory" (MemoryError: it tried
            to allocate beyond the cap), "timeout", "crashed" (the child died without reporting,
            e.g. killed by a signal).
        field: the ScenarioError's field ("" otherwise).
        message: the error text, or the scenario ids for "ok".
        unexpected: the original exception type when ``load`` wrapped an unanticipated one.
        source: the ScenarioError's source.
    """

    kind: str
    field: str = ""
    message: str = ""
    unexpected: str | None = None
    source: str = ""

    @property
    def clean(self) -> bool:
        """A valid scenario, or a ScenarioError that an importer raised on purpose."""
        return self.kind == "ok" or (self.kind == "error" and self.unexpected is None)


def _address_space() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def implausible(scenario: Any) -> str:
    """What in ``scenario`` lies beyond the bounds of ``scenarios.model`` ("" when nothing does),
    measured here from the arrays, independently of ``Scenario.validate``."""
    import numpy as np

    from scenarios import model

    tracks, valid = scenario.tracks, scenario.tracks.valid
    for name in ("x", "y", "z"):
        if valid.any() and np.abs(getattr(tracks, name)[valid]).max() > model.MAX_COORDINATE_M:
            return f"track {name} beyond {model.MAX_COORDINATE_M:g} m"
    speed = np.hypot(tracks.vx, tracks.vy)[valid]
    if speed.size and speed.max() > model.MAX_SPEED_MPS:
        return f"a logged speed of {speed.max():g} m/s"
    for row in range(tracks.num_agents):
        steps = np.flatnonzero(valid[row])
        if steps.size > 1:
            jump = np.hypot(np.diff(tracks.x[row, steps]), np.diff(tracks.y[row, steps]))
            allowed = model.MAX_SPEED_MPS * np.diff(scenario.t_us[steps]) / 1e6 + model.POSITION_JITTER_M
            if (jump > allowed).any():
                return f"agent {tracks.agent_ids[row]} jumps {jump.max():g} m between samples"
    if (tracks.length > model.MAX_SIZE_M).any() or (tracks.width > model.MAX_SIZE_M).any():
        return "a box larger than any road user"
    road = scenario.road_map
    points = [p for lane in road.lanes for p in (lane.centerline, lane.left_boundary, lane.right_boundary) if p is not None]
    points += [f.points for f in road.features]
    if points and np.abs(np.concatenate(points)).max() > model.MAX_COORDINATE_M:
        return f"a map point beyond {model.MAX_COORDINATE_M:g} m"
    limits = np.array([lane.speed_limit for lane in road.lanes])
    if (~np.isnan(limits) & ~((limits > 0) & (limits <= model.MAX_SPEED_LIMIT_MPS))).any():
        return "a speed limit that is not positive and at most the bound"
    if np.abs(scenario.t_us).max() > model.MAX_ABS_TIME_US or scenario.num_steps > model.MAX_STEPS:
        return "timestamps or steps beyond the bounds"
    return ""


def _child(path: str, options: dict[str, Any], headroom: int, conn: Any) -> None:
    limit = _address_space() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from scenarios import ScenarioError, load

    try:
        found = load(path, **options)
        problems = [p for p in map(implausible, found) if p]
        if problems:
            conn.send(("implausible", "", problems[0][:2000], None, ""))
        else:
            conn.send(("ok", "", " ".join(s.id[:80] for s in found), None, ""))
    except ScenarioError as exc:
        conn.send(("error", exc.field, str(exc)[:2000], getattr(exc, "unexpected", None), exc.source[:500]))
    except MemoryError as exc:
        conn.send(("memory", "", f"MemoryError {str(exc)[:300]}", None, ""))
    except BaseException as exc:  # noqa: BLE001 - the point is to report it
        conn.send(("exception", "", f"{type(exc).__name__}: {str(exc)[:2000]}", None, ""))
    finally:
        conn.close()


class Isolation:
    """A fork server and the loads run through it; use as a context manager."""

    def __init__(self, headroom: int = MEMORY_HEADROOM, timeout_s: float = TIMEOUT_S) -> None:
        self.headroom = headroom
        self.timeout_s = timeout_s
        self._context = multiprocessing.get_context("forkserver")

    def __enter__(self) -> Isolation:
        from multiprocessing import forkserver

        previous = os.environ.get("ARROW_DEFAULT_MEMORY_POOL")
        os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"  # the server inherits it; importing pyarrow there reads it
        try:
            self._context.set_forkserver_preload(["scenarios", __name__])
            forkserver.ensure_running()
        finally:
            if previous is None:
                del os.environ["ARROW_DEFAULT_MEMORY_POOL"]
            else:
                os.environ["ARROW_DEFAULT_MEMORY_POOL"] = previous
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def load(self, path: Path, **options: Any) -> Outcome:
        """``scenarios.load(path, **options)`` in a forked child under the cap and the timeout."""
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(target=_child, args=(str(path), options, self.headroom, send), daemon=True)
        process.start()
        send.close()
        try:
            if not receive.poll(self.timeout_s):
                process.kill()
                process.join()
                return Outcome("timeout", message=f"no result after {self.timeout_s:g} s")
            try:
                kind, field, message, unexpected, source = receive.recv()
            except EOFError:
                process.join()
                return Outcome("crashed", message=f"the child exited with status {process.exitcode} without a result")
            process.join()
            return Outcome(kind, field, message, unexpected, source)
        finally:
            receive.close()
