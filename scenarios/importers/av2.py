"""Argoverse 2 motion forecasting: a scenario Parquet and its ``log_map_archive`` JSON map.

One scenario per file: 11 s at 10 Hz in the city frame [m], the ego is track ``AV``. The
Parquet holds one row per (track, timestep) where the track was observed; the map beside it
holds lane segments (both boundaries with their paint marks, a centerline), pedestrian
crossings and drivable areas. AV2 gives no box sizes and no z for tracks: see ``DEFAULT_SIZES``
and ``_ground_z``. There are no traffic signals in AV2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scenarios.errors import ScenarioError
from scenarios.importers.base import (
    points_xyz,
    read_json_object,
    register,
    require_object,
    resample_polyline,
)
from scenarios.model import (
    AgentType,
    FeatureKind,
    Lane,
    MapFeature,
    Provenance,
    RoadMap,
    Scenario,
    Tracks,
    MAX_COORDINATE_M,
    MAX_ID_LENGTH,
    check_grid,
    check_text,
    check_times,
    make_scenario_id,
)

DATASET = "av2"
EGO_TRACK_ID = "AV"
#: AV2 samples every track at 10 Hz.
STEP_US = 100_000
#: Slack allowed between ``end_timestamp`` and start + (num_timestamps - 1) steps [ns]; the
#: file stores nanosecond timestamps as float64, exact to 64 ns at today's epoch values.
TIMESTAMP_TOLERANCE_NS = 1_000_000

COL_TRACK_ID = "track_id"
COL_OBJECT_TYPE = "object_type"
COL_TIMESTEP = "timestep"
COL_X = "position_x"
COL_Y = "position_y"
COL_HEADING = "heading"
COL_VX = "velocity_x"
COL_VY = "velocity_y"
COL_SCENARIO_ID = "scenario_id"
COL_START = "start_timestamp"
COL_END = "end_timestamp"
COL_NUM_TIMESTAMPS = "num_timestamps"
COL_CITY = "city"

#: Columns the importer reads; ``city`` is optional (it only goes into the provenance).
REQUIRED_COLUMNS = (
    COL_TRACK_ID,
    COL_OBJECT_TYPE,
    COL_TIMESTEP,
    COL_X,
    COL_Y,
    COL_HEADING,
    COL_VX,
    COL_VY,
    COL_SCENARIO_ID,
    COL_START,
    COL_END,
    COL_NUM_TIMESTAMPS,
)
STATE_COLUMNS = (COL_X, COL_Y, COL_HEADING, COL_VX, COL_VY)
#: Columns that recognise an AV2 scenario file.
SNIFF_COLUMNS = frozenset({COL_TRACK_ID, COL_OBJECT_TYPE, COL_TIMESTEP, COL_X, COL_Y, COL_START, "focal_track_id"})

#: AV2 object type -> ``AgentType``. Static objects and riderless bicycles occupy space: OTHER.
AGENT_TYPES: dict[str, AgentType] = {
    "vehicle": AgentType.VEHICLE,
    "bus": AgentType.VEHICLE,
    "motorcyclist": AgentType.VEHICLE,
    "pedestrian": AgentType.PEDESTRIAN,
    "cyclist": AgentType.CYCLIST,
    "riderless_bicycle": AgentType.OTHER,
    "static": AgentType.OTHER,
    "construction": AgentType.OTHER,
}
#: AV2 object types that are not road users and are dropped.
DROPPED_TYPES = frozenset({"background", "unknown"})

#: Box size (length, width, height) [m] per AV2 object type: AV2 gives none. Typical sizes:
#: a mid-size car, a 12 m city bus, a motorcycle or bicycle with its rider, a standing adult,
#: a parked bicycle, a 1 m static object and a traffic cone or barrel.
DEFAULT_SIZES: dict[str, tuple[float, float, float]] = {
    "vehicle": (4.7, 2.0, 1.6),
    "bus": (12.0, 2.6, 3.2),
    "motorcyclist": (2.2, 0.9, 1.6),
    "cyclist": (1.9, 0.7, 1.7),
    "pedestrian": (0.6, 0.6, 1.75),
    "riderless_bicycle": (1.8, 0.6, 1.1),
    "static": (1.0, 1.0, 1.0),
    "construction": (0.5, 0.5, 1.0),
}

MAP_LANES = "lane_segments"
MAP_CROSSWALKS = "pedestrian_crossings"
MAP_DRIVABLE = "drivable_areas"
#: Lane mark type meaning "no paint": such boundaries give no road line.
NO_MARK = "NONE"
#: Boundaries whose vertices agree to this many decimals [m] are the same painted line.
DEDUP_DECIMALS = 2
#: Positions per chunk x map points when searching the nearest ground point (bounds memory).
_NEAREST_CHUNK_ELEMENTS = 2_000_000


def _sniff(path: Path, head: bytes) -> bool:
    """An AV2 scenario directory, or a Parquet file with the AV2 track columns.

    A Parquet file whose footer is missing (truncated) is claimed too, so that reading it
    reports the damage rather than an unknown format.
    """
    if path.is_dir():
        return any(path.glob("scenario_*.parquet"))
    if not head.startswith(b"PAR1"):
        return False
    try:
        names = set(pq.read_schema(path).names)
    except (pa.ArrowException, ValueError):
        return not _has_footer(path)
    return SNIFF_COLUMNS <= names


def _has_footer(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        if fh.tell() < 8:
            return False
        fh.seek(-4, 2)
        return fh.read(4) == b"PAR1"


@register("av2", sniff=_sniff)
def read_av2(path: str | Path, map_path: str | Path | None = None) -> list[Scenario]:
    """Read one Argoverse 2 motion-forecasting scenario.

    Args:
        path: the ``scenario_<id>.parquet`` file, or the directory holding it.
        map_path: its ``log_map_archive_<id>.json``; by default the one beside the Parquet file
            (named after the file's ``scenario_id``, or the only map archive there).

    Returns:
        One scenario: 10 Hz tracks in the city frame [m], the ``AV`` track as the ego.

    Raises:
        ScenarioError: naming the file, the field and the problem.
    """
    parquet_path = _scenario_file(Path(path))
    table = _read_table(parquet_path)
    log_id = check_text(_single_value(table, COL_SCENARIO_ID, parquet_path), parquet_path, COL_SCENARIO_ID)
    map_file = Path(map_path) if map_path is not None else _map_beside(parquet_path, str(log_id))
    track = _read_tracks(table, parquet_path)
    lanes, features, map_notes, ground = _read_map(map_file)
    z_ground = _ground_z(track.x, track.y, track.valid, ground)
    tracks = Tracks(
        agent_ids=track.ids,
        agent_types=track.types,
        length=track.size[:, 0],
        width=track.size[:, 1],
        height=track.size[:, 2],
        x=track.x,
        y=track.y,
        z=z_ground + track.size[:, 2:3] / 2,
        yaw=track.yaw,
        vx=track.vx,
        vy=track.vy,
        valid=track.valid,
    )
    city = _single_value(table, COL_CITY, parquet_path) if COL_CITY in table.column_names else "unknown city"
    city = check_text(city, parquet_path, COL_CITY)
    notes = [
        "AV2 gives no box sizes: per-type defaults [m] (length x width x height) "
        + ", ".join(f"{k} {l:g}x{w:g}x{h:g}" for k, (l, w, h) in DEFAULT_SIZES.items()),
        track.dropped_note,
        "AV2 tracks are 2-D: z = z of the nearest lane point (centerline or boundary vertex) + half the box height"
        if ground.size
        else "AV2 tracks are 2-D and the map has no elevation: z = half the box height",
        f"map from {map_file.name}",
        *map_notes,
        "'observed' (the first 5 s, AV2's forecasting history) is not kept; no traffic signals in AV2",
    ]
    scenario_id = make_scenario_id(DATASET, str(log_id))
    provenance = Provenance(
        dataset=DATASET,
        source_file=str(parquet_path),
        source_log_id=str(log_id),
        frame=f"AV2 city frame of {city} [m], as recorded",
        notes="; ".join(n for n in notes if n),
    )
    road_map = RoadMap.from_parts(lanes, features)
    return [
        Scenario(
            id=scenario_id,
            provenance=provenance,
            t_us=track.t_us,
            tracks=tracks,
            ego_index=track.ego_index,
            road_map=road_map,
        )
    ]


# --------------------------------------------------------------------------------------------
# files


def _scenario_file(path: Path) -> Path:
    if not path.exists():
        raise ScenarioError(path, "", "no such file or directory")
    if not path.is_dir():
        return path
    found = sorted(path.glob("scenario_*.parquet"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise ScenarioError(path, "", f"{what} scenario_*.parquet files in the directory (AV2 keeps one per directory)")
    return found[0]


def _map_beside(parquet_path: Path, log_id: str) -> Path:
    folder = parquet_path.parent
    named = folder / f"log_map_archive_{log_id}.json"
    if named.is_file():
        return named
    archives = sorted(folder.glob("log_map_archive_*.json"))
    if len(archives) == 1:
        return archives[0]
    raise ScenarioError(
        parquet_path, "map", f"no log_map_archive_{log_id}.json beside the scenario file; pass map_path= to read_av2"
    )


def _read_table(path: Path) -> pa.Table:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ScenarioError(path, "", f"not a readable Parquet file (truncated or corrupt?): {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise ScenarioError(path, missing[0], f"missing column (an AV2 scenario file has {', '.join(REQUIRED_COLUMNS)})")
    columns = list(REQUIRED_COLUMNS) + ([COL_CITY] if COL_CITY in schema.names else [])
    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ScenarioError(path, "", f"cannot read the Parquet data (truncated or corrupt?): {exc}") from None
    if table.num_rows == 0:
        raise ScenarioError(path, COL_TRACK_ID, "no rows: the scenario has no tracks")
    return table


def _column(table: pa.Table, name: str, dtype: Any, path: Path) -> np.ndarray:
    column = table.column(name)
    if dtype is np.str_ and (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)) and len(column):
        # numpy stores every string at the longest one's length: check it before converting
        longest = pc.max(pc.utf8_length(column)).as_py() or 0
        if longest > MAX_ID_LENGTH:
            raise ScenarioError(path, name, f"a value of {longest} characters, more than {MAX_ID_LENGTH}")
    try:
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ScenarioError(path, name, f"cannot be read as {np.dtype(dtype).name}: {exc}") from None


def _single_value(table: pa.Table, name: str, path: Path) -> Any:
    values = table.column(name).unique()
    if values.null_count:
        raise ScenarioError(path, name, "has missing (null) values")
    if len(values) != 1:
        raise ScenarioError(path, name, f"must be the same on every row (one scenario per file), found {len(values)} values")
    return values[0].as_py()


def _nanoseconds(value: Any, name: str, path: Path) -> int:
    """A timestamp column's value [ns] as an exact int (the files store it as float64)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ScenarioError(path, name, f"not a finite timestamp in ns: {value!r}")
    check_times(value, path, name, us_per_unit=1e-3)
    return int(value)


# --------------------------------------------------------------------------------------------
# tracks


@dataclass(frozen=True, slots=True)
class _TrackArrays:
    """The tracks as read: (N, T) states [m, rad, m/s], (N, 3) sizes [m], (T,) times [us]."""

    ids: np.ndarray
    types: np.ndarray
    size: np.ndarray
    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    valid: np.ndarray
    t_us: np.ndarray
    ego_index: int
    dropped_note: str


def _read_tracks(table: pa.Table, path: Path) -> _TrackArrays:
    num_steps = _single_value(table, COL_NUM_TIMESTAMPS, path)
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ScenarioError(path, COL_NUM_TIMESTAMPS, f"must be a positive integer, got {num_steps!r}")
    if num_steps > table.num_rows:  # the AV track has a row at every timestep
        problem = f"{num_steps} timestamps, more than the file's {table.num_rows} rows (AV2 logs the AV at every step)"
        raise ScenarioError(path, COL_NUM_TIMESTAMPS, problem)
    start_ns = _nanoseconds(_single_value(table, COL_START, path), COL_START, path)
    end_ns = _nanoseconds(_single_value(table, COL_END, path), COL_END, path)
    expected_ns = (num_steps - 1) * STEP_US * 1000
    if abs(end_ns - start_ns - expected_ns) > TIMESTAMP_TOLERANCE_NS:
        raise ScenarioError(
            path,
            COL_END,
            f"{end_ns} ns is not start {start_ns} ns + ({num_steps} - 1) x 0.1 s: "
            f"the timestamps are not increasing in 10 Hz steps",
        )

    track_ids = _column(table, COL_TRACK_ID, np.str_, path)
    words = np.char.lower(_column(table, COL_OBJECT_TYPE, np.str_, path))
    steps = _column(table, COL_TIMESTEP, np.float64, path)
    if not (np.isfinite(steps) & (steps == np.round(steps))).all():
        raise ScenarioError(path, COL_TIMESTEP, "timesteps must be integers")
    bad = (steps < 0) | (steps >= num_steps)  # checked as floats: 1e300 would not survive the cast
    if bad.any():
        raise ScenarioError(path, COL_TIMESTEP, f"timestep {steps[bad][0]:.6g} outside [0, {num_steps}) (num_timestamps)")
    steps = steps.astype(np.int64)
    states = {name: _column(table, name, np.float64, path) for name in STATE_COLUMNS}
    for name, values in states.items():
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argmax(bad))
            raise ScenarioError(
                path, name, f"NaN or infinite value for track {str(track_ids[row])!r} at timestep {steps[row]} (observed)"
            )
    for name in (COL_X, COL_Y):  # before the nearest-ground search squares them
        far = np.abs(states[name]) > MAX_COORDINATE_M
        if far.any():
            row = int(np.argmax(far))
            problem = f"{states[name][row]:.6g} m for track {str(track_ids[row])!r} at timestep {steps[row]} is beyond +-{MAX_COORDINATE_M:g} m"
            raise ScenarioError(path, name, problem)

    unknown = sorted(set(np.unique(words).tolist()) - set(AGENT_TYPES) - DROPPED_TYPES)
    if unknown:
        known = sorted(AGENT_TYPES) + sorted(DROPPED_TYPES)
        raise ScenarioError(path, COL_OBJECT_TYPE, f"unknown AV2 object types {unknown}; known: {known}")

    unique_ids, first_row, row_track = np.unique(track_ids, return_index=True, return_inverse=True)
    order = np.argsort(first_row, kind="stable")  # agents in the file's order
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    row_agent = rank[row_track]
    ids = unique_ids[order]
    agent_words = words[first_row[order]]
    changed = words != agent_words[row_agent]
    if changed.any():
        row = int(np.argmax(changed))
        change = f"{agent_words[row_agent[row]]!r} -> {words[row]!r}"
        raise ScenarioError(path, COL_OBJECT_TYPE, f"track {str(track_ids[row])!r} changes type ({change})")
    if EGO_TRACK_ID not in set(ids.tolist()):
        raise ScenarioError(path, COL_TRACK_ID, f"no {EGO_TRACK_ID!r} track (AV2's ego vehicle)")

    keep = ~np.isin(agent_words, list(DROPPED_TYPES))
    dropped_words, dropped_counts = np.unique(agent_words[~keep], return_counts=True)
    dropped_note = (
        "dropped tracks that are not road users: " + ", ".join(f"{c} {w}" for w, c in zip(dropped_words, dropped_counts))
        if dropped_counts.size
        else "no background or unknown tracks to drop"
    )
    new_index = np.full(ids.size, -1)
    new_index[keep] = np.arange(int(keep.sum()))
    n = int(keep.sum())
    check_grid(path, COL_NUM_TIMESTAMPS, n, num_steps)
    valid = np.zeros((n, num_steps), bool)
    kept_rows = keep[row_agent]
    agent_of_row = new_index[row_agent[kept_rows]]
    step_of_row = steps[kept_rows]
    seen = np.zeros((n, num_steps), np.int64)
    np.add.at(seen, (agent_of_row, step_of_row), 1)
    if (seen > 1).any():
        agent, step = np.argwhere(seen > 1)[0]
        problem = f"track {ids[keep][agent]!r} has {seen[agent, step]} rows at timestep {step}: time does not increase"
        raise ScenarioError(path, COL_TIMESTEP, problem)
    valid[agent_of_row, step_of_row] = True
    grids = {}
    for name, values in states.items():
        grid = np.zeros((n, num_steps))
        grid[agent_of_row, step_of_row] = values[kept_rows]
        grids[name] = grid
    kept_words = agent_words[keep]
    return _TrackArrays(
        ids=ids[keep],
        types=np.array([AGENT_TYPES[w] for w in kept_words], np.int8),
        size=np.array([DEFAULT_SIZES[w] for w in kept_words], np.float64).reshape(n, 3),
        x=grids[COL_X],
        y=grids[COL_Y],
        yaw=grids[COL_HEADING],
        vx=grids[COL_VX],
        vy=grids[COL_VY],
        valid=valid,
        t_us=start_ns // 1000 + np.arange(num_steps, dtype=np.int64) * STEP_US,
        ego_index=int(np.flatnonzero(ids[keep] == EGO_TRACK_ID)[0]),
        dropped_note=dropped_note,
    )


def _ground_z(x: np.ndarray, y: np.ndarray, valid: np.ndarray, ground: np.ndarray) -> np.ndarray:
    """(N, T) z [m] of the ground point (G, 3) nearest in x-y to each valid position; 0 elsewhere."""
    z = np.zeros(valid.shape)
    if ground.size == 0:
        return z
    query = np.column_stack([x[valid], y[valid]])
    found = np.empty(len(query))
    chunk = max(1, _NEAREST_CHUNK_ELEMENTS // len(ground))
    for start in range(0, len(query), chunk):
        q = query[start : start + chunk]
        d2 = (q[:, None, 0] - ground[None, :, 0]) ** 2 + (q[:, None, 1] - ground[None, :, 1]) ** 2
        found[start : start + chunk] = ground[np.argmin(d2, axis=1), 2]
    z[valid] = found
    return z


# --------------------------------------------------------------------------------------------
# map


def _read_map(path: Path) -> tuple[list[Lane], list[MapFeature], list[str], np.ndarray]:
    """Lanes, features, notes for the provenance and the (G, 3) ground points [m] for track z."""
    data = read_json_object(path, "AV2 map file")
    for key in (MAP_LANES, MAP_CROSSWALKS, MAP_DRIVABLE):
        if key not in data:
            raise ScenarioError(path, key, f"missing key (an AV2 map has {MAP_LANES}, {MAP_CROSSWALKS}, {MAP_DRIVABLE})")
        if not isinstance(data[key], dict):
            raise ScenarioError(path, key, f"must be an object keyed by id, got {type(data[key]).__name__}")
    segments: Mapping[str, Any] = data[MAP_LANES]
    if not segments and not data[MAP_DRIVABLE]:
        raise ScenarioError(path, MAP_LANES, "the map is empty (no lane segments and no drivable areas)")

    lane_ids = {str(_get(seg, "id", path, f"{MAP_LANES}.{key}")) for key, seg in segments.items()}
    lanes: list[Lane] = []
    lines: list[MapFeature] = []
    line_keys: set[tuple[tuple[float, float], ...]] = set()
    ground: list[np.ndarray] = []
    dangling = 0
    z_filled = 0
    unpainted = 0
    derived = 0
    for key, seg in segments.items():
        where = f"{MAP_LANES}.{key}"
        lane_id = str(seg["id"])
        left = points_xyz(_get(seg, "left_lane_boundary", path, where), path, f"{where}.left_lane_boundary")
        right = points_xyz(_get(seg, "right_lane_boundary", path, where), path, f"{where}.right_lane_boundary")
        raw_center = seg.get("centerline")
        if raw_center:
            center = points_xyz(raw_center, path, f"{where}.centerline")
            if not center[:, 2].any() and (left[:, 2].any() or right[:, 2].any()):
                center[:, 2] = (resample_polyline(left, len(center))[:, 2] + resample_polyline(right, len(center))[:, 2]) / 2
                z_filled += 1
        else:  # the sensor dataset's maps carry no centerline
            n = max(len(left), len(right), 2)
            center = (resample_polyline(left, n) + resample_polyline(right, n)) / 2
            derived += 1
        links = {}
        for name in ("predecessors", "successors"):
            values = seg.get(name) or []
            if not isinstance(values, list):
                raise ScenarioError(path, f"{where}.{name}", f"must be a list of lane ids, got {type(values).__name__}")
            links[name] = tuple(str(v) for v in values if str(v) in lane_ids)
            dangling += sum(str(v) not in lane_ids for v in values)
        for name, side in (("left_neighbor_id", "left_neighbors"), ("right_neighbor_id", "right_neighbors")):
            value = seg.get(name)
            links[side] = (str(value),) if value is not None and str(value) in lane_ids else ()
            dangling += value is not None and str(value) not in lane_ids
        lanes.append(
            Lane(
                id=lane_id,
                centerline=center,
                left_boundary=left,
                right_boundary=right,
                lane_type=str(seg.get("lane_type", "unknown")).lower(),
                **links,
            )
        )
        ground += [center, left, right]
        for side, boundary in (("left", left), ("right", right)):
            mark = str(seg.get(f"{side}_lane_mark_type", NO_MARK)).upper()
            if mark == NO_MARK:
                unpainted += 1
                continue
            rounded = tuple(map(tuple, np.round(boundary[:, :2], DEDUP_DECIMALS).tolist()))
            line_key = min(rounded, rounded[::-1])
            if line_key in line_keys:  # the neighbouring lane's boundary: the same painted line
                continue
            line_keys.add(line_key)
            lines.append(MapFeature(f"mark-{lane_id}-{side}", FeatureKind.ROAD_LINE, boundary, subtype=mark.lower()))

    crosswalks = []
    for key, item in data[MAP_CROSSWALKS].items():
        where = f"{MAP_CROSSWALKS}.{key}"
        edge1 = points_xyz(_get(item, "edge1", path, where), path, f"{where}.edge1")
        edge2 = points_xyz(_get(item, "edge2", path, where), path, f"{where}.edge2")
        polygon = np.vstack([edge1, edge2[::-1]])
        crosswalks.append(MapFeature(f"crosswalk-{_get(item, 'id', path, where)}", FeatureKind.CROSSWALK, polygon))
    areas = []
    for key, item in data[MAP_DRIVABLE].items():
        where = f"{MAP_DRIVABLE}.{key}"
        outline = points_xyz(_get(item, "area_boundary", path, where), path, f"{where}.area_boundary")
        if len(outline) > 3 and np.array_equal(outline[0], outline[-1]):
            outline = outline[:-1]
        if len(outline) < 3:
            raise ScenarioError(path, f"{where}.area_boundary", f"a polygon needs at least 3 points, got {len(outline)}")
        areas.append(MapFeature(f"drivable-{_get(item, 'id', path, where)}", FeatureKind.DRIVABLE_AREA, outline))

    notes = [
        f"{len(lines)} road lines from the painted lane boundaries (shared boundaries once, "
        f"{unpainted} unpainted boundaries skipped)"
    ]
    if derived:
        notes.append(f"{derived} lane centerlines derived from their boundaries (midpoints at equal arc-length fractions)")
    if z_filled:
        notes.append(f"{z_filled} lane centerlines had z = 0 in the file: z taken from their boundaries")
    if dangling:
        notes.append(f"{dangling} lane references to lanes outside the map dropped")
    points = np.vstack(ground) if ground else np.zeros((0, 3))
    if not points[:, 2].any():
        points = np.zeros((0, 3))  # the map has no elevation
    return lanes, lines + crosswalks + areas, notes, points


def _get(item: Any, key: str, path: Path, where: str) -> Any:
    return require_object(item, (key,), path, where)[key]

