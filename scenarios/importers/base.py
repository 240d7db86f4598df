"""The importer registry and what every importer shares.

An importer is a function ``read(path) -> list[Scenario]`` registered under a format name with a
``sniff(path, head)`` that recognises the format from the file's first bytes. Importers return
the log as recorded (one scenario per log in the file, the whole log, the logged ego); cutting
into windows and choosing other egos is done once, for every format, in ``scenarios.load``.
"""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scenarios.common import Registry
from scenarios.errors import ScenarioError
from scenarios.model import AgentType, Tracks, check_points

#: Bytes read from the start of a file to recognise its format.
SNIFF_BYTES = 4096

Sniffer = Callable[[Path, bytes], bool]
Reader = Callable[[Path], "list"]


@dataclass(frozen=True, slots=True)
class Importer:
    """A registered format.

    Attributes:
        name: the format's name, e.g. ``"av2"``.
        read: ``read(path) -> list[Scenario]``.
        sniff: ``sniff(path, head) -> bool``, true when the file is in this format.
        has_logged_ego: False for drone and roadside logs (NGSIM, INTERACTION), whose ego is
            chosen by ``pick_ego`` until ``egos="vehicles"`` is asked for.
        companion: ``companion(path) -> bool``, true for a file that is read as part of another
            one beside it (INTERACTION pedestrian tracks with their vehicle tracks): a folder
            import passes over it instead of failing on it.
    """

    name: str
    read: Reader
    sniff: Sniffer
    has_logged_ego: bool = True
    companion: Callable[[Path], bool] | None = None

    def is_companion(self, path: Path) -> bool:
        return self.companion is not None and bool(self.companion(path))


_REGISTRY: Registry[Importer] = Registry("importer", unknown=lambda name, message: ScenarioError("importers", "format", message))


def register(
    name: str, *, sniff: Sniffer, has_logged_ego: bool = True, companion: Callable[[Path], bool] | None = None
) -> Callable[[Reader], Reader]:
    """Decorator: register ``read`` as the importer of format ``name``; duplicates are an error."""

    def decorate(read: Reader) -> Reader:
        _REGISTRY.add(name, Importer(name, read, sniff, has_logged_ego, companion))
        return read

    return decorate


def importers() -> dict[str, Importer]:
    """Every registered importer by name."""
    return _REGISTRY.as_dict()


def read_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise ScenarioError(path, "", f"cannot read the file: {exc.strerror or exc}") from None


def detect(path: str | Path) -> Importer:
    """The importer whose ``sniff`` recognises ``path``; ``ScenarioError`` when none does."""
    path = Path(path)
    if not path.exists():
        raise ScenarioError(path, "", "no such file or directory")
    head = b"" if path.is_dir() else read_head(path)
    for _, importer in _REGISTRY.items():
        try:
            if importer.sniff(path, head):
                return importer
        except Exception:  # noqa: BLE001 - a sniffer that cannot make sense of the bytes: not its format
            continue
    if path.is_file() and path.stat().st_size == 0:
        raise ScenarioError(path, "", "the file is empty")
    raise ScenarioError(
        path, "", f"unknown format: not one of {_REGISTRY.names()} (recognised from the file's content, not its name)"
    )


AGENT_TYPE_WORDS: dict[str, AgentType] = {
    "vehicle": AgentType.VEHICLE,
    "car": AgentType.VEHICLE,
    "truck": AgentType.VEHICLE,
    "bus": AgentType.VEHICLE,
    "motorcycle": AgentType.VEHICLE,
    "motorcyclist": AgentType.VEHICLE,
    "priorityvehicle": AgentType.VEHICLE,
    "taxi": AgentType.VEHICLE,
    "pedestrian": AgentType.PEDESTRIAN,
    "ped": AgentType.PEDESTRIAN,
    "cyclist": AgentType.CYCLIST,
    "bicycle": AgentType.CYCLIST,
    "bicyclist": AgentType.CYCLIST,
    "bike": AgentType.CYCLIST,
    "pedestrian/bicycle": AgentType.CYCLIST,
}


def agent_type(word: str) -> AgentType:
    """Map a dataset's type word ("car", "TYPE_VEHICLE", "bicycle", ...) to ``AgentType``."""
    key = str(word).strip().lower().removeprefix("type_").replace(" ", "").replace("_", "")
    return AGENT_TYPE_WORDS.get(key, AgentType.OTHER)


def pick_ego(tracks: Tracks) -> int:
    """The ego of a log that has none (drone or roadside recordings): the documented rule.

    Among the vehicles that move (travel more than 1 m; all vehicles when none does), the one
    observed for the most steps; ties go to the one that travels furthest, then to the smallest
    agent id. Parked cars, valid throughout, would otherwise win. Raises ``ScenarioError`` when
    the log has no vehicle.
    """
    vehicles = np.flatnonzero(tracks.agent_types == AgentType.VEHICLE)
    if vehicles.size == 0:
        raise ScenarioError("tracks", "ego", "no vehicle to choose as the ego; use egos='vehicles' on a log with vehicles")
    steps = tracks.valid[vehicles].sum(axis=1)
    x = np.where(tracks.valid[vehicles], tracks.x[vehicles], np.nan)
    y = np.where(tracks.valid[vehicles], tracks.y[vehicles], np.nan)
    with np.errstate(over="ignore", invalid="ignore"):  # absurd positions are refused by the model later
        travel = np.nan_to_num(np.nansum(np.hypot(np.diff(x, axis=1), np.diff(y, axis=1)), axis=1))
    moving = travel > 1.0
    if moving.any():
        keep = np.flatnonzero(moving)
        vehicles, steps, travel = vehicles[keep], steps[keep], travel[keep]
    order = sorted(range(vehicles.size), key=lambda i: (-steps[i], -round(float(travel[i]), 6), str(tracks.agent_ids[vehicles[i]])))
    return int(vehicles[order[0]])


# --- helpers the importers share -------------------------------------------------------------


def resample_polyline(points: np.ndarray, count: int) -> np.ndarray:
    """``count`` points at equal fractions of a (P, D) polyline's x-y arc length (D >= 2)."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) == 1:
        return np.repeat(points, count, axis=0)
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points[:, :2], axis=0).T))])
    if s[-1] == 0.0:
        return np.repeat(points[:1], count, axis=0)
    targets = np.linspace(0.0, s[-1], count)
    return np.column_stack([np.interp(targets, s, points[:, k]) for k in range(points.shape[1])])


def centerline_from_bounds(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The midpoint of a lane's two bounds, (P, D) [m].

    Bounds with as many points as each other are averaged point by point (the points of a
    CommonRoad lanelet correspond); otherwise both are first resampled to the larger count at
    equal fractions of their arc length.
    """
    left = np.asarray(left, dtype=np.float64)
    right = np.asarray(right, dtype=np.float64)
    if len(left) != len(right):
        count = max(len(left), len(right), 2)
        left, right = resample_polyline(left, count), resample_polyline(right, count)
    return 0.5 * (left + right)


#: Lane links inferred from geometry: a lane's end this close to another's start [m] ...
LINK_TOLERANCE_M = 0.1
#: ... with their headings there this close [rad] (a U-turn's lanes do not join).
LINK_MAX_TURN_RAD = np.pi / 3


def _end_heading(line: np.ndarray, at_end: bool) -> float:
    """Heading [rad] of a polyline's first (or last) segment of non-zero length (NaN if none)."""
    steps = np.diff(line[:, :2], axis=0)
    steps = steps[np.hypot(steps[:, 0], steps[:, 1]) > 1e-9]
    if len(steps) == 0:
        return float("nan")
    dx, dy = steps[-1] if at_end else steps[0]
    return float(np.arctan2(dy, dx))


def infer_lane_links(lanes: Sequence[Any], tol_m: float = LINK_TOLERANCE_M, max_turn_rad: float = LINK_MAX_TURN_RAD) -> tuple[list[Any], int]:
    """``lanes`` (``scenarios.model.Lane``) with predecessors and successors inferred from their
    geometry, for a map that gives none: lane B follows lane A when B's first centerline point
    is within ``tol_m`` of A's last and their headings there differ by at most ``max_turn_rad``.
    Returns the lanes and the number of links made. Sorting by x bounds the work by the matches,
    not by lanes squared."""
    if len(lanes) < 2:
        return list(lanes), 0
    starts = np.array([lane.centerline[0, :2] for lane in lanes])
    ends = np.array([lane.centerline[-1, :2] for lane in lanes])
    start_yaw = np.array([_end_heading(lane.centerline, False) for lane in lanes])
    end_yaw = np.array([_end_heading(lane.centerline, True) for lane in lanes])
    order = np.argsort(starts[:, 0], kind="stable")
    sorted_x = starts[order, 0]
    succ: list[list[int]] = [[] for _ in lanes]
    pred: list[list[int]] = [[] for _ in lanes]
    lo = np.searchsorted(sorted_x, ends[:, 0] - tol_m, side="left")
    hi = np.searchsorted(sorted_x, ends[:, 0] + tol_m, side="right")
    for a in range(len(lanes)):
        for b in order[lo[a] : hi[a]]:
            if b == a or np.hypot(*(starts[b] - ends[a])) > tol_m:
                continue
            turn = abs((start_yaw[b] - end_yaw[a] + np.pi) % (2 * np.pi) - np.pi)
            if turn <= max_turn_rad:  # NaN (a lane of one point) never joins
                succ[a].append(int(b))
                pred[int(b)].append(a)
    out = [
        dataclasses.replace(lane, successors=tuple(lanes[b].id for b in succ[i]), predecessors=tuple(lanes[a].id for a in pred[i]))
        for i, lane in enumerate(lanes)
    ]
    return out, sum(map(len, succ))


def points_xyz(points: Any, path: Path, field: str) -> np.ndarray:
    """(P, 3) float64 [m] from a JSON list of ``{"x", "y", "z"}`` objects (z optional)."""
    if not isinstance(points, Sequence) or isinstance(points, str) or len(points) == 0:
        raise ScenarioError(path, field, "must be a non-empty list of points")
    try:
        array = np.array([[p["x"], p["y"], p.get("z", 0.0)] for p in points], dtype=np.float64)
    except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
        raise ScenarioError(path, field, f"points must be objects with numeric x, y (and z): {exc!r}"[:300]) from None
    if not np.isfinite(array).all():
        raise ScenarioError(path, field, "points contain NaN or infinite values")
    check_points(array, path, field)
    return array


def parse_xml(path: Path, root_tag: str, what: str = "file") -> ET.Element:
    """Parse an XML file whose root must be ``root_tag``; ``ScenarioError`` on anything else.

    Files that declare entities are refused (CommonRoad and OSM never do; entity expansion is
    how XML bombs work); the standard library never fetches external entities.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(path, "", f"cannot read the {what}: {exc.strerror or exc}") from None
    if not data.strip():
        raise ScenarioError(path, "", f"the {what} is empty")
    if b"<!ENTITY" in data:
        raise ScenarioError(path, "xml", f"the {what} declares XML entities, which <{root_tag}> files never use; refused")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        line, column = exc.position
        raise ScenarioError(
            path, "xml", f"not well-formed XML at line {line}, column {column} (a truncated or damaged {what}?): {exc}"
        ) from None
    if root.tag != root_tag:
        raise ScenarioError(path, "xml", f"the root element is <{root.tag}>, not <{root_tag}>")
    return root


#: JSON integers with more digits than this are read as floats (int64 holds 18 full digits).
JSON_INT_DIGITS = 18


def _json_int(text: str) -> int | float:
    """A JSON integer: an int when int64 can hold it, else a float (``inf`` for thousands of digits),
    which every numeric check then refuses with its field (and no 5000-digit int is ever built)."""
    return int(text) if len(text.lstrip("-")) <= JSON_INT_DIGITS else float(text)


def require_object(item: Any, keys: Iterable[str], path: Path, where: str) -> dict[str, Any]:
    """``item`` as a JSON object holding every one of ``keys``; else a ScenarioError at ``where``."""
    if not isinstance(item, dict):
        raise ScenarioError(path, where, f"must be an object, got {type(item).__name__}")
    for key in keys:
        if key not in item:
            raise ScenarioError(path, f"{where}.{key}", "missing key")
    return item


def read_json_object(path: Path, what: str = "file") -> dict[str, Any]:
    """A JSON file whose top level must be an object; ``ScenarioError`` on anything else.

    Integers beyond int64 are read as floats (see ``_json_int``).
    """
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(), parse_int=_json_int)
    except OSError as exc:
        raise ScenarioError(path, "", f"cannot read the {what}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ScenarioError(path, "", f"not valid JSON (truncated?): {exc}") from None
    except RecursionError:
        raise ScenarioError(path, "", "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ScenarioError(path, "", f"a {what} is a JSON object, got {type(data).__name__}")
    return data
