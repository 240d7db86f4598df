"""Importers of real driving-log formats, and ``load``, which detects the format by content.

Formats: Argoverse 2 motion forecasting (``av2``) and sensor logs (``av2_sensor``), CommonRoad
XML (``commonroad``), ScenarioNet pickles (``scenarionet``), Waymo Open Motion as GPUDrive JSON
(``waymo_json``) and as its native TFRecords of ``Scenario`` protos (``womd``), and INTERACTION
CSV + Lanelet2 OSM (``interaction``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from scenarios.errors import ScenarioError
from scenarios.importers import av2, av2_sensor, commonroad, interaction, scenarionet, waymo_json, womd  # noqa: F401  (registration)
from scenarios.importers.base import Importer, detect, importers, pick_ego, register
from scenarios.model import AgentType, Scenario, Tracks, ego_suffix, window_suffix

Egos = Literal["logged", "vehicles"]

#: Shortest time [s] a vehicle must be observed to become an ego with ``egos="vehicles"``.
DEFAULT_MIN_EGO_DURATION_S = 2.0
#: With ``egos="vehicles"``, the least a vehicle must get from where it is first seen to be an
#: ego [m] (``MIN_GOAL_PATH_M`` of the twin): a parked car has no drive to test a planner on, and
#: the route the twin would give it is the twin's invention, not the log's.
DEFAULT_MIN_EGO_TRAVEL_M = 5.0

__all__ = [
    "Importer",
    "ImportOutcome",
    "detect",
    "importers",
    "iter_load",
    "load",
    "load_many",
    "pick_ego",
    "register",
]


def load(
    path: str | Path,
    *,
    egos: Egos = "logged",
    window_s: float | None = None,
    min_ego_duration_s: float = DEFAULT_MIN_EGO_DURATION_S,
    min_ego_travel_m: float = DEFAULT_MIN_EGO_TRAVEL_M,
    format: str | None = None,
) -> list[Scenario]:
    """Read a real log file into scenarios.

    Args:
        path: a log file (or an Argoverse 2 scenario or sensor-log directory); the format is
            detected from the content unless ``format`` names it.
        egos: ``"logged"``: the recording vehicle is the ego (drone and roadside logs, which have
            none, take the vehicle observed longest; see ``pick_ego``). ``"vehicles"``: every
            vehicle observed for at least ``min_ego_duration_s`` that gets at least
            ``min_ego_travel_m`` from where it is first seen is the ego of its own scenario,
            whose id ends in ``.ego-<agent id>``.
        window_s: cut logs longer than this [s] into consecutive windows of this length, each a
            scenario whose id ends in ``.w<first step>``; a shorter tail is dropped.
        min_ego_duration_s: see ``egos`` [s]; also the least an ego must be seen in a window.
        min_ego_travel_m: see ``egos`` [m] (0 keeps parked vehicles as egos).
        format: an importer's name, to skip detection.

    Raises:
        ScenarioError: naming the file, the field and the problem. Whatever else goes wrong while
            the file is read (a bug an input found) is a ScenarioError too, naming the file and the
            original exception's type, chained to it (``__cause__``).
    """
    return list(iter_load(
        path, egos=egos, window_s=window_s, min_ego_duration_s=min_ego_duration_s, min_ego_travel_m=min_ego_travel_m,
        format=format,
    ))


#: Formats whose files hold many logs, with a reader that yields them one at a time.
STREAMING_READERS: dict[str, Callable[[Path], Iterable[Scenario]]] = {"womd": womd.iter_womd}


def iter_load(
    path: str | Path,
    *,
    egos: Egos = "logged",
    window_s: float | None = None,
    min_ego_duration_s: float = DEFAULT_MIN_EGO_DURATION_S,
    min_ego_travel_m: float = DEFAULT_MIN_EGO_TRAVEL_M,
    format: str | None = None,
) -> Iterator[Scenario]:
    """``load``, one scenario at a time: a Waymo shard of hundreds of scenarios is decoded as it is
    consumed, so memory stays bounded by one log. Options and errors as ``load``'s (an error
    may come after some scenarios have been yielded)."""
    try:
        yield from _iter_load(path, egos, window_s, min_ego_duration_s, min_ego_travel_m, format)
    except ScenarioError as exc:
        if str(path) in exc.source or _is_file(exc.source):  # names this file, or the map beside it
            raise
        # raised on a part of the file (a track, a lane) that does not know the file's name
        raise ScenarioError(path, exc.field, f"{exc.source}: {exc.problem}") from None
    except Exception as exc:  # noqa: BLE001 - one file's failure, whatever it is, is that file's error
        raise unexpected_error(path, exc) from exc


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte
        return False


def unexpected_error(path: str | Path, exc: BaseException) -> ScenarioError:
    """The ``ScenarioError`` for an exception no importer anticipated, naming the file and its type."""
    error = ScenarioError(path, "", f"unexpected {type(exc).__name__} while reading the file: {str(exc)[:300]}")
    error.unexpected = type(exc).__name__  # type: ignore[attr-defined]
    return error


def _iter_load(
    path: str | Path, egos: Egos, window_s: float | None, min_ego_duration_s: float, min_ego_travel_m: float,
    format: str | None,
) -> Iterator[Scenario]:
    if egos not in ("logged", "vehicles"):
        raise ScenarioError(path, "egos", f"must be 'logged' or 'vehicles', got {egos!r}")
    if window_s is not None and not window_s > 0:
        raise ScenarioError(path, "window_s", f"must be positive, got {window_s}")
    if not (isinstance(min_ego_travel_m, (int, float)) and 0 <= min_ego_travel_m < 1e6):
        raise ScenarioError(path, "min_ego_travel_m", f"must be a distance in [0, 1e6) m, got {min_ego_travel_m!r}")
    path = Path(path)
    if format is None:
        importer = detect(path)
    elif format in importers():
        importer = importers()[format]
    else:
        raise ScenarioError(path, "format", f"unknown format {format!r}; known: {sorted(importers())}")
    stream = STREAMING_READERS.get(importer.name)
    logs = stream(path) if stream is not None else importer.read(path)
    for log in logs:
        scenes = _windows(log, window_s, min_ego_duration_s, importer.has_logged_ego) if window_s else [log]
        for scene in scenes:
            yield from (_vehicle_egos(scene, min_ego_duration_s, min_ego_travel_m) if egos == "vehicles" else [scene])


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    """One file of a batch: its scenarios, or the error that made it fail."""

    path: Path
    scenarios: list[Scenario]
    error: ScenarioError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def load_many(paths: Iterable[str | Path], **options: object) -> Iterator[ImportOutcome]:
    """``load`` each path in turn; a bad file yields an outcome with its error, never stops the batch
    (whatever the exception: see ``load``)."""
    for path in paths:
        try:
            yield ImportOutcome(Path(path), load(path, **options))  # type: ignore[arg-type]
        except ScenarioError as exc:
            yield ImportOutcome(Path(path), [], exc)
        except Exception as exc:  # noqa: BLE001 - e.g. a bad option; still this file's error
            yield ImportOutcome(Path(path), [], unexpected_error(path, exc))


def _steps_for(scene: Scenario, seconds: float) -> int:
    dt_us = scene.dt_us or 1
    return max(1, int(round(seconds * 1e6 / dt_us)))


def _windows(log: Scenario, window_s: float, min_ego_s: float, has_logged_ego: bool) -> list[Scenario]:
    length = _steps_for(log, window_s)
    if log.num_steps <= length:
        return [log]
    min_steps = _steps_for(log, min_ego_s)
    scenes = []
    for start in range(0, log.num_steps - length + 1, length):
        stop = start + length
        window_id = log.id + window_suffix(start)
        tracks = log.tracks
        if has_logged_ego:
            if tracks.valid[log.ego_index, start:stop].sum() < min_steps:
                continue
            scenes.append(log.window(start, stop, window_id))
        else:
            present = tracks.valid[:, start:stop].any(axis=1)
            if not (present & (tracks.agent_types == AgentType.VEHICLE)).any():
                continue
            window = log.replace(ego_index=int(np.flatnonzero(present)[0])) if not present[log.ego_index] else log
            window = window.window(start, stop, window_id)
            scenes.append(window.replace(ego_index=pick_ego(window.tracks)))
    return scenes


#: How far [m] two logged boxes may interpenetrate (length and width, each side) before the log
#: counts as showing them overlapping: adjacent cars in a jam touch, duplicate tracks overlap.
OVERLAP_TOLERANCE_M = 0.2


def overlapping_rows(tracks: Tracks, rows: np.ndarray) -> np.ndarray:
    """Those of ``rows`` whose logged box overlaps another road user's at some step where both are
    valid (boxes shrunk by ``OVERLAP_TOLERANCE_M``): duplicate tracks after an id switch, a
    pedestrian getting into a car, tracks born inside another. Such a track cannot be driven
    without a collision, whoever drives it."""
    from scenarios.geometry import boxes_overlap

    shrink = 2 * OVERLAP_TOLERANCE_M
    length = np.maximum(tracks.length - shrink, 0.1)
    width = np.maximum(tracks.width - shrink, 0.1)
    bad = []
    for row in rows:
        both = tracks.valid & tracks.valid[row]
        both[row] = False
        others, steps = np.nonzero(both)
        if others.size and boxes_overlap(
            tracks.x[row, steps], tracks.y[row, steps], tracks.yaw[row, steps], length[row], width[row],
            tracks.x[others, steps], tracks.y[others, steps], tracks.yaw[others, steps], length[others], width[others],
        ).any():
            bad.append(row)
    return np.asarray(bad, dtype=np.int64)


#: A track's path and its logged speeds integrated over time may differ by this much [m], or by
#: ``SPEED_PATH_RATIO`` of the path, before its velocities count as contradicting its positions.
SPEED_PATH_TOLERANCE_M = 2.0
SPEED_PATH_RATIO = 0.5


def inconsistent_rows(tracks: Tracks, t_us: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Those of ``rows`` whose logged velocities contradict their positions: the distance the
    boxes travel and the logged speed integrated over the same steps differ by more than
    ``SPEED_PATH_TOLERANCE_M`` and ``SPEED_PATH_RATIO`` of it (a tracker that reports 0 m/s for a
    box that drives 9 m forth and back, as some Argoverse 2 tracks do). A planner given such a
    log as its ego is told to stand still where the log moves: no verdict on it would be fair."""
    dt_s = np.diff(t_us.astype(np.float64)) / 1e6
    valid = tracks.valid[rows]
    both = valid[:, 1:] & valid[:, :-1]
    moved = np.hypot(np.diff(tracks.x[rows], axis=1), np.diff(tracks.y[rows], axis=1))
    speed = np.hypot(tracks.vx[rows], tracks.vy[rows])
    logged = 0.5 * (speed[:, 1:] + speed[:, :-1]) * dt_s
    path = np.where(both, moved, 0.0).sum(axis=1)
    integral = np.where(both, logged, 0.0).sum(axis=1)
    bad = np.abs(path - integral) > np.maximum(SPEED_PATH_TOLERANCE_M, SPEED_PATH_RATIO * path)
    return np.asarray(rows[bad], dtype=np.int64)


def travel_m(tracks: Tracks, rows: np.ndarray) -> np.ndarray:
    """(len(rows),) how far each of ``rows`` gets from where it is first seen [m] (0 if never seen)."""
    valid = tracks.valid[rows]
    first = np.argmax(valid, axis=1)
    x0 = tracks.x[rows, first][:, None]
    y0 = tracks.y[rows, first][:, None]
    far = np.where(valid, np.hypot(tracks.x[rows] - x0, tracks.y[rows] - y0), 0.0)
    return far.max(axis=1, initial=0.0)


def _vehicle_egos(scene: Scenario, min_ego_s: float, min_travel_m: float = DEFAULT_MIN_EGO_TRAVEL_M) -> list[Scenario]:
    """One scenario per vehicle observed long enough that gets ``min_travel_m`` from where it is
    first seen, except those whose logged box overlaps another road user's and those whose logged
    speeds contradict their positions (each named in every scenario's provenance notes)."""
    min_steps = _steps_for(scene, min_ego_s)
    tracks = scene.tracks
    rows = np.flatnonzero((tracks.agent_types == AgentType.VEHICLE) & (tracks.valid.sum(axis=1) >= min_steps))
    rows = rows[travel_m(tracks, rows) >= min_travel_m]
    overlapping = overlapping_rows(tracks, rows)
    inconsistent = inconsistent_rows(tracks, scene.t_us, np.setdiff1d(rows, overlapping))
    keep = np.setdiff1d(rows, np.union1d(overlapping, inconsistent))
    provenance = scene.provenance
    notes = [provenance.notes] if provenance.notes else []
    if overlapping.size:
        notes.append(
            f"not used as egos: vehicles {tracks.agent_ids[overlapping].tolist()}, whose logged boxes overlap another "
            "road user's (duplicate tracks or label noise)"
        )
    if inconsistent.size:
        notes.append(
            f"not used as egos: vehicles {tracks.agent_ids[inconsistent].tolist()}, whose logged speeds contradict "
            "their positions (the boxes move where the log says they stand, or the reverse)"
        )
    if overlapping.size or inconsistent.size:
        provenance = dataclasses.replace(provenance, notes="\n".join(notes))
    return [
        scene.replace(ego_index=int(row), id=scene.id + ego_suffix(tracks.agent_ids[row]), provenance=provenance) for row in keep
    ]
