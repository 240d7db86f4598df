"""Waymo Open Motion scenarios as converted to JSON by GPUDrive (``process_waymo_files.py``).

One scenario per file: 91 steps at 10 Hz in Waymo's metric world frame [m]. ``objects`` hold
per-step ``position`` {x, y, z} (the box centre), ``heading`` [rad], ``velocity`` {x, y} [m/s]
and ``valid``, with one box size per object (its last valid state's). Steps where an object is
not valid carry the converter's sentinel (-10000); they are masked by ``valid`` and never read.
``roads`` are typed polylines and polygons; ``tl_states`` holds traffic-signal states per lane;
``metadata.sdc_track_index`` is the ego's row.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from scenarios.errors import ScenarioError
from scenarios.importers.base import agent_type, points_xyz, read_json_object, register, require_object
from scenarios.model import (
    FeatureKind,
    Lane,
    MapFeature,
    Provenance,
    RoadMap,
    Scenario,
    Signals,
    SignalState,
    Tracks,
    check_grid,
    check_text,
    make_scenario_id,
)

DATASET = "waymo"
#: Waymo Open Motion samples at 10 Hz.
STEP_US = 100_000
#: What GPUDrive writes for position, heading and velocity at invalid steps.
INVALID_SENTINEL = -10_000.0

KEY_OBJECTS = "objects"
KEY_ROADS = "roads"
KEY_TL_STATES = "tl_states"
KEY_METADATA = "metadata"
KEY_SDC = "sdc_track_index"
KEY_SCENARIO_ID = "scenario_id"
OBJECT_KEYS = ("position", "heading", "velocity", "valid", "width", "length", "height", "type", "id")
ROAD_KEYS = ("geometry", "type", "id")
SIGNAL_KEYS = ("state", "x", "y", "z", "time_index")

#: Waymo lane types (GPUDrive ``map_element_id``, Waymax ``MapElementIds``) -> ``Lane.lane_type``.
LANE_TYPES = {0: "undefined", 1: "freeway", 2: "surface_street", 3: "bike"}
#: Road line ``map_element_id`` -> subtype.
ROAD_LINE_TYPES = {
    5: "unknown",
    6: "broken_single_white",
    7: "solid_single_white",
    8: "solid_double_white",
    9: "broken_single_yellow",
    10: "broken_double_yellow",
    11: "solid_single_yellow",
    12: "solid_double_yellow",
    13: "passing_double_yellow",
}
#: Road edge ``map_element_id`` -> subtype.
ROAD_EDGE_TYPES = {14: "unknown", 15: "boundary", 16: "median"}
#: Road ``type`` -> feature kind, for everything but lanes.
FEATURE_KINDS = {
    "road_line": FeatureKind.ROAD_LINE,
    "road_edge": FeatureKind.ROAD_EDGE,
    "crosswalk": FeatureKind.CROSSWALK,
    "speed_bump": FeatureKind.SPEED_BUMP,
    "driveway": FeatureKind.DRIVEWAY,
    "stop_sign": FeatureKind.STOP_SIGN,
}
POLYGON_TYPES = frozenset({"crosswalk", "speed_bump", "driveway"})

#: Waymo ``TrafficSignalLaneState`` (map.proto) -> ``SignalState``. Arrows become their plain
#: colour: a signal here controls one lane, so an arrow for that lane is that lane's light.
SIGNAL_STATES: dict[str, SignalState] = {
    "unknown": SignalState.UNKNOWN,
    "arrow_stop": SignalState.STOP,
    "arrow_caution": SignalState.CAUTION,
    "arrow_go": SignalState.GO,
    "stop": SignalState.STOP,
    "caution": SignalState.CAUTION,
    "go": SignalState.GO,
    "flashing_stop": SignalState.FLASHING_STOP,
    "flashing_caution": SignalState.FLASHING_CAUTION,
}
#: The proto's enum numbers, for files that store the state as an int.
SIGNAL_STATE_NUMBERS = (
    "unknown",
    "arrow_stop",
    "arrow_caution",
    "arrow_go",
    "stop",
    "caution",
    "go",
    "flashing_stop",
    "flashing_caution",
)


def signal_state(value: object) -> SignalState:
    """A Waymo lane state ("go", "LANE_STATE_ARROW_STOP", 6, ...) as ``SignalState``; KeyError if unknown."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < len(SIGNAL_STATE_NUMBERS):
            raise KeyError(value)
        return SIGNAL_STATES[SIGNAL_STATE_NUMBERS[value]]
    return SIGNAL_STATES[str(value).strip().lower().removeprefix("lane_state_")]


def _sniff(path: Path, head: bytes) -> bool:
    """A JSON object with GPUDrive's ``objects`` (per-step positions) or ``roads`` (geometry)."""
    text = head.lstrip()
    if not text.startswith(b"{"):
        return False
    return (b'"objects"' in text and b'"position"' in text) or (b'"roads"' in text and b'"geometry"' in text)


@register("waymo_json", sniff=_sniff)
def read_waymo_json(path: str | Path) -> list[Scenario]:
    """Read one Waymo Open Motion scenario from GPUDrive's JSON.

    Returns:
        One scenario: 10 Hz tracks (``t_us = step * 100_000``), the SDC as the ego, lanes as
        centerlines (drivable area derived from them), other features, traffic signals.

    Raises:
        ScenarioError: naming the file, the field and the problem.
    """
    path = Path(path)
    data = _load_json(path)
    for key in (KEY_SCENARIO_ID, KEY_OBJECTS, KEY_ROADS, KEY_TL_STATES, KEY_METADATA):
        if key not in data:
            raise ScenarioError(path, key, "missing key (GPUDrive JSON has scenario_id, objects, roads, tl_states, metadata)")
    objects = data[KEY_OBJECTS]
    if not isinstance(objects, list) or not objects:
        raise ScenarioError(path, KEY_OBJECTS, "no objects (the scenario has no road users)")
    metadata = data[KEY_METADATA]
    if not isinstance(metadata, dict) or KEY_SDC not in metadata:
        raise ScenarioError(path, f"{KEY_METADATA}.{KEY_SDC}", "missing key: which object is the ego")
    sdc = metadata[KEY_SDC]
    if isinstance(sdc, bool) or not isinstance(sdc, int) or not 0 <= sdc < len(objects):
        raise ScenarioError(path, f"{KEY_METADATA}.{KEY_SDC}", f"{sdc!r} is not an object index (0..{len(objects) - 1})")

    tracks, ego_index, track_notes = _read_objects(objects, sdc, path)
    num_steps = tracks.num_steps
    lanes, features, map_notes = _read_roads(data[KEY_ROADS], path)
    signals = _read_signals(data[KEY_TL_STATES], num_steps, path)
    log_id = _identifier(data[KEY_SCENARIO_ID], path, KEY_SCENARIO_ID)
    notes = [
        *track_notes,
        "invalid steps (the file's -10000 sentinel) are masked by 'valid'",
        "lanes are centerlines without boundaries or topology; drivable area derived from them",
        *map_notes,
        f"{signals.num_signals} traffic signals" + (" (arrow states as their plain colour)" if signals.num_signals else ""),
    ]
    provenance = Provenance(
        dataset=DATASET,
        source_file=str(path),
        source_log_id=log_id,
        frame="Waymo Open Motion world frame [m], as recorded (GPUDrive JSON)",
        notes="; ".join(notes),
    )
    return [
        Scenario(
            id=make_scenario_id(DATASET, log_id),
            provenance=provenance,
            t_us=np.arange(num_steps, dtype=np.int64) * STEP_US,
            tracks=tracks,
            ego_index=ego_index,
            road_map=RoadMap.from_parts(lanes, features),
            signals=signals if signals.num_signals else None,
        )
    ]


def _load_json(path: Path) -> dict[str, Any]:
    return read_json_object(path, "GPUDrive JSON file")


# --------------------------------------------------------------------------------------------
# objects


def _read_objects(objects: list[Any], sdc: int, path: Path) -> tuple[Tracks, int, list[str]]:
    """Tracks of every object ever valid, the ego's row and notes."""
    num_steps = None
    rows: list[dict[str, Any]] = []
    for i, obj in enumerate(objects):
        where = f"{KEY_OBJECTS}[{i}]"
        require_object(obj, OBJECT_KEYS, path, where)
        valid = obj["valid"]
        if not isinstance(valid, list) or not all(isinstance(v, (bool, int)) for v in valid):
            raise ScenarioError(path, f"{where}.valid", "must be a list of booleans")
        if num_steps is None:
            num_steps = len(valid)
            if num_steps == 0:
                raise ScenarioError(path, f"{where}.valid", "no time steps")
            check_grid(path, f"{where}.valid", len(objects), num_steps)
        for key in ("valid", "position", "heading", "velocity"):
            if not isinstance(obj[key], list) or len(obj[key]) != num_steps:
                got = len(obj[key]) if isinstance(obj[key], list) else type(obj[key]).__name__
                problem = f"must be a list of {num_steps} steps (as objects[0].valid), got {got}"
                raise ScenarioError(path, f"{where}.{key}", problem)
        rows.append(_read_object(obj, np.array(valid, bool), where, path))

    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        if row["id"] in seen:
            problem = f"duplicate id {row['id']!r} (also objects[{seen[row['id']]}])"
            raise ScenarioError(path, f"{KEY_OBJECTS}[{i}].id", problem)
        seen[row["id"]] = i
    if not rows[sdc]["valid"].any():
        raise ScenarioError(path, f"{KEY_METADATA}.{KEY_SDC}", f"the ego (objects[{sdc}]) is never valid")
    keep = [i for i, row in enumerate(rows) if row["valid"].any()]
    notes = [f"{len(rows) - len(keep)} objects never valid dropped"] if len(keep) < len(rows) else []
    kept = [rows[i] for i in keep]
    stack = {name: np.array([row[name] for row in kept]) for name in kept[0]}
    tracks = Tracks(
        agent_ids=stack["id"],
        agent_types=stack["type"],
        length=stack["length"],
        width=stack["width"],
        height=stack["height"],
        x=stack["x"],
        y=stack["y"],
        z=stack["z"],
        yaw=stack["yaw"],
        vx=stack["vx"],
        vy=stack["vy"],
        valid=stack["valid"],
    )
    return tracks, keep.index(sdc), notes


def _read_object(obj: dict[str, Any], valid: np.ndarray, where: str, path: Path) -> dict[str, Any]:
    """One object's arrays; values at invalid steps are not read (they hold the sentinel)."""
    steps = np.flatnonzero(valid)
    try:
        position = np.array([[obj["position"][t][k] for k in ("x", "y", "z")] for t in steps], np.float64).reshape(-1, 3)
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        problem = f"each step must be an object with numeric x, y, z: {exc!r}"
        raise ScenarioError(path, f"{where}.position", problem) from None
    try:
        velocity = np.array([[obj["velocity"][t][k] for k in ("x", "y")] for t in steps], np.float64).reshape(-1, 2)
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise ScenarioError(path, f"{where}.velocity", f"each step must be an object with numeric x, y: {exc!r}") from None
    try:
        heading = np.array([obj["heading"][t] for t in steps], np.float64)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(path, f"{where}.heading", f"must be numbers: {exc!r}") from None
    for key, values in (("position", position), ("velocity", velocity), ("heading", heading)):
        bad = ~np.isfinite(values) if values.ndim == 1 else ~np.isfinite(values).all(axis=1)
        if bad.any():
            problem = f"NaN or infinite value at step {steps[np.argmax(bad)]}, where valid"
            raise ScenarioError(path, f"{where}.{key}", problem)
        sentinel = values == INVALID_SENTINEL if values.ndim == 1 else (values[:, :2] == INVALID_SENTINEL).all(axis=1)
        if sentinel.any():
            problem = f"the invalid-step sentinel -10000 at step {steps[np.argmax(sentinel)]}, where valid"
            raise ScenarioError(path, f"{where}.{key}", problem)
    if np.abs(heading).max(initial=0.0) > 2 * math.pi + 1e-6:
        raise ScenarioError(path, f"{where}.heading", "values beyond 2 pi: degrees (older GPUDrive files)? radians expected")
    size = {}
    for key in ("length", "width", "height"):
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ScenarioError(path, f"{where}.{key}", f"must be a finite non-negative size [m], got {value!r}")
        size[key] = float(value)
    num_steps = valid.size
    grid = {name: np.zeros(num_steps) for name in ("x", "y", "z", "yaw", "vx", "vy")}
    for name, values in (
        ("x", position[:, 0]),
        ("y", position[:, 1]),
        ("z", position[:, 2]),
        ("yaw", heading),
        ("vx", velocity[:, 0]),
        ("vy", velocity[:, 1]),
    ):
        grid[name][steps] = values
    kind = agent_type(check_text(obj["type"], path, f"{where}.type"))
    return {"id": _identifier(obj["id"], path, f"{where}.id"), "type": int(kind), **size, **grid, "valid": valid}


def _identifier(value: Any, path: Path, field: str) -> str:
    """An id as the file gives it: a string or an integer (never a float, a list or ``inf``)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ScenarioError(path, field, f"an id must be a string or an integer, got {type(value).__name__} {value!r}"[:300])
    return check_text(value, path, field)


# --------------------------------------------------------------------------------------------
# map


def _read_roads(roads: Any, path: Path) -> tuple[list[Lane], list[MapFeature], list[str]]:
    if not isinstance(roads, list):
        raise ScenarioError(path, KEY_ROADS, f"must be a list, got {type(roads).__name__}")
    if not roads:
        raise ScenarioError(path, KEY_ROADS, "the map is empty (no roads)")
    lanes: list[Lane] = []
    features: list[MapFeature] = []
    skipped: dict[str, int] = {}
    degenerate = 0
    for i, road in enumerate(roads):
        where = f"{KEY_ROADS}[{i}]"
        require_object(road, ROAD_KEYS, path, where)
        kind = check_text(road["type"], path, f"{where}.type").lower()
        road_id = _identifier(road["id"], path, f"{where}.id")
        element = road.get("map_element_id")
        element = element if isinstance(element, int) and not isinstance(element, bool) else None
        points = points_xyz(road["geometry"], path, f"{where}.geometry")
        if kind == "lane":
            lanes.append(Lane(id=road_id, centerline=points, lane_type=LANE_TYPES.get(element, "undefined")))
        elif kind in POLYGON_TYPES:
            if len(points) > 3 and np.array_equal(points[0], points[-1]):
                points = points[:-1]
            if len(points) < 3:
                degenerate += 1
                continue
            features.append(MapFeature(road_id, FEATURE_KINDS[kind], points))
        elif kind == "stop_sign":
            # GPUDrive keeps the sign's position, not the lanes it controls.
            features.append(MapFeature(road_id, FeatureKind.STOP_SIGN, points[:1]))
        elif kind == "road_line":
            subtype = ROAD_LINE_TYPES.get(element, "unknown")
            features.append(MapFeature(road_id, FeatureKind.ROAD_LINE, points, subtype=subtype))
        elif kind == "road_edge":
            subtype = ROAD_EDGE_TYPES.get(element, "unknown")
            features.append(MapFeature(road_id, FeatureKind.ROAD_EDGE, points, subtype=subtype))
        else:
            skipped[kind] = skipped.get(kind, 0) + 1
    ids = [lane.id for lane in lanes]
    if len(set(ids)) != len(ids):
        raise ScenarioError(path, KEY_ROADS, f"duplicate lane ids {sorted({i for i in ids if ids.count(i) > 1})[:5]}")
    ids = [feature.id for feature in features]
    if len(set(ids)) != len(ids):
        raise ScenarioError(path, KEY_ROADS, f"duplicate road ids {sorted({i for i in ids if ids.count(i) > 1})[:5]}")
    notes = ["stop signs without their controlled lanes (not in GPUDrive JSON)"] if any(
        f.kind == FeatureKind.STOP_SIGN for f in features
    ) else []
    if degenerate:
        notes.append(f"{degenerate} polygons with fewer than 3 points dropped")
    if skipped:
        notes.append("roads of unknown type dropped: " + ", ".join(f"{n} {k}" for k, n in sorted(skipped.items())))
    return lanes, features, notes



# --------------------------------------------------------------------------------------------
# signals


def _read_signals(tl_states: Any, num_steps: int, path: Path) -> Signals:
    """Signals from ``{lane id: {state: [...], x/y/z: [...], time_index: [...]}}``; UNKNOWN where unlisted."""
    if isinstance(tl_states, list) and not tl_states:
        tl_states = {}  # an empty defaultdict may be dumped as []
    if not isinstance(tl_states, dict):
        raise ScenarioError(path, KEY_TL_STATES, f"must be an object keyed by lane id, got {type(tl_states).__name__}")
    lane_ids: list[str] = []
    states = np.full((len(tl_states), num_steps), SignalState.UNKNOWN, np.int8)
    stop_points = np.zeros((len(tl_states), 3))
    for row, (lane_id, entry) in enumerate(tl_states.items()):
        lane_id = check_text(lane_id, path, KEY_TL_STATES)
        where = f"{KEY_TL_STATES}.{lane_id}"
        require_object(entry, SIGNAL_KEYS, path, where)
        for key in SIGNAL_KEYS:
            if not isinstance(entry[key], list):
                raise ScenarioError(path, f"{where}.{key}", f"must be a list, got {type(entry[key]).__name__}")
        count = len(entry["state"])
        if count == 0 or any(len(entry[k]) != count for k in ("x", "y", "z", "time_index")):
            raise ScenarioError(path, where, "state, x, y, z and time_index must be non-empty lists of one length")
        for value, step in zip(entry["state"], entry["time_index"]):
            if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < num_steps:
                raise ScenarioError(path, f"{where}.time_index", f"{step!r} is not a step in [0, {num_steps})")
            try:
                states[row, step] = signal_state(value)
            except KeyError:
                raise ScenarioError(
                    path, f"{where}.state", f"unknown lane state {value!r}; known: {list(SIGNAL_STATE_NUMBERS)}"
                ) from None
        try:
            point = np.array([entry[k][0] for k in ("x", "y", "z")], np.float64)
        except (TypeError, ValueError) as exc:
            raise ScenarioError(path, f"{where}.x", f"stop point must be numbers: {exc!r}") from None
        if not np.isfinite(point).all():
            raise ScenarioError(path, f"{where}.x", "stop point contains NaN or infinite values")
        lane_ids.append(lane_id)
        stop_points[row] = point
    return Signals(np.array(lane_ids, np.str_), states, stop_points)
