"""Waymo Open Motion in its native release format: TFRecord files of ``Scenario`` protos.

Read without TensorFlow or generated code: ``tfrecord`` checks the framing and CRCs,
``protowire`` splits the messages, and this module is the project's own schema for the fields
it reads (field numbers from the dataset's public ``scenario.proto`` and ``map.proto``). A
shard of hundreds of scenarios streams: ``iter_womd`` decodes one record at a time.

What each scenario holds, mapped as ``waymo_json`` maps the same dataset: 10 Hz tracks in
Waymo's metric world frame [m] (box centre, heading [rad], velocity [m/s], validity; one box size
per track, its last valid state's), the SDC as the ego, every map feature (lanes with type,
speed limit [m/s], entry/exit lanes, neighbours and boundaries; road lines and edges with their
types; stop signs with their lanes; crosswalks, speed bumps, driveways) and the traffic-signal
state of each controlled lane at each step. ``tracks_to_predict``, ``objects_of_interest`` and
``current_time_index`` become tags (``TAG_*``) a suite can select on.

The other official layout, ``tf.Example`` records of flattened features (``state/x``,
``roadgraph_samples/xyz``, ...), is recognised and refused with an error that says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from scenarios.errors import ScenarioError
from scenarios.importers import protowire as pw
from scenarios.importers.base import register
from scenarios.importers.tfrecord import iter_records, looks_like_tfrecord
from scenarios.importers.waymo_json import LANE_TYPES, signal_state
from scenarios.model import (
    AgentType,
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
    check_times,
    make_scenario_id,
)

DATASET = "waymo"
MPH_TO_MPS = 0.44704
#: Tags: ``tracks_to_predict:<agent id>``, ``objects_of_interest:<agent id>`` (and the bare
#: ``objects_of_interest`` on a scenario that has any), ``current_time_index:<step>``.
TAG_PREDICT = "tracks_to_predict"
TAG_INTEREST = "objects_of_interest"
TAG_CURRENT = "current_time_index"

#: ``Track.ObjectType`` -> ``AgentType`` (TYPE_UNSET, "an invalid state", is read as OTHER).
OBJECT_TYPES = {0: AgentType.OTHER, 1: AgentType.VEHICLE, 2: AgentType.PEDESTRIAN, 3: AgentType.CYCLIST, 4: AgentType.OTHER}
#: ``RoadLine.RoadLineType`` -> subtype (the names ``waymo_json`` uses).
ROAD_LINE_TYPES = (
    "unknown",
    "broken_single_white",
    "solid_single_white",
    "solid_double_white",
    "broken_single_yellow",
    "broken_double_yellow",
    "solid_single_yellow",
    "solid_double_yellow",
    "passing_double_yellow",
)
#: ``RoadEdge.RoadEdgeType`` -> subtype.
ROAD_EDGE_TYPES = ("unknown", "boundary", "median")
#: Feature keys the tf.Example layout uses; a record whose feature names start so is one.
TF_EXAMPLE_PREFIXES = ("state/", "roadgraph_samples/", "traffic_light_state/", "scenario/")

# Field numbers (scenario.proto, map.proto).
SC_TIMESTAMPS, SC_TRACKS, SC_INTEREST, SC_ID, SC_SDC, SC_DYNAMIC, SC_MAP, SC_CURRENT, SC_PREDICT = 1, 2, 4, 5, 6, 7, 8, 10, 11
MF_ID, MF_LANE, MF_ROAD_LINE, MF_ROAD_EDGE, MF_STOP_SIGN, MF_CROSSWALK, MF_SPEED_BUMP, MF_DRIVEWAY = 1, 3, 4, 5, 7, 8, 9, 10
FEATURE_FIELDS = (MF_LANE, MF_ROAD_LINE, MF_ROAD_EDGE, MF_STOP_SIGN, MF_CROSSWALK, MF_SPEED_BUMP, MF_DRIVEWAY)
POLYGON_FEATURES = {MF_CROSSWALK: ("crosswalk", FeatureKind.CROSSWALK), MF_SPEED_BUMP: ("speed_bump", FeatureKind.SPEED_BUMP),
                    MF_DRIVEWAY: ("driveway", FeatureKind.DRIVEWAY)}

#: ``ObjectState`` as Waymo writes it: every field present, in field order (59 bytes).
_STATE_LAYOUT = bytes(
    [0x11, *[0] * 8, 0x19, *[0] * 8, 0x21, *[0] * 8]
    + [b for tag in (0x2D, 0x35, 0x3D, 0x45, 0x4D, 0x55) for b in (tag, 0, 0, 0, 0)]
    + [0x58, 0]
)
_STATE_DTYPE = np.dtype(
    [("t2", "u1"), ("x", "<f8"), ("t3", "u1"), ("y", "<f8"), ("t4", "u1"), ("z", "<f8"),
     ("t5", "u1"), ("length", "<f4"), ("t6", "u1"), ("width", "<f4"), ("t7", "u1"), ("height", "<f4"),
     ("t8", "u1"), ("heading", "<f4"), ("t9", "u1"), ("vx", "<f4"), ("t10", "u1"), ("vy", "<f4"),
     ("t11", "u1"), ("valid", "u1")]
)  # fmt: skip
#: An invalid ``ObjectState`` as Waymo writes it: ``center_z`` and ``valid = false`` only (11 bytes).
_INVALID_LAYOUT = bytes([0x21, *[0] * 8, 0x58, 0])
_INVALID_DTYPE = np.dtype([("t4", "u1"), ("z", "<f8"), ("t11", "u1"), ("valid", "u1")])
#: How far [m] from a lane's points its boundary's segments are searched.
_NEAR_M = 15.0
_STATE_FIELDS = (("x", 2, 64), ("y", 3, 64), ("z", 4, 64), ("length", 5, 32), ("width", 6, 32), ("height", 7, 32),
                 ("heading", 8, 32), ("vx", 9, 32), ("vy", 10, 32))  # fmt: skip


def _sniff(path: Path, head: bytes) -> bool:
    """A TFRecord file: its first length's CRC checks (or, damaged, it is named ``*.tfrecord*``)."""
    if path.is_dir():
        return False
    return looks_like_tfrecord(head) or (".tfrecord" in path.name and len(head) > 0)


@register("womd", sniff=_sniff)
def read_womd(path: str | Path) -> list[Scenario]:
    """Every scenario of a Waymo Open Motion TFRecord file (a list; ``iter_womd`` streams).

    Raises:
        ScenarioError: naming the file, the record (index and byte offset), the field and the problem.
    """
    return list(iter_womd(path))


def iter_womd(path: str | Path) -> Iterator[Scenario]:
    """The scenarios of a TFRecord file one at a time: memory bounded by one record and its scenario."""
    path = Path(path)
    count = 0
    for index, offset, data in iter_records(path):
        where = f"record {index} (byte {offset})"
        try:
            yield _scenario(data, path, where)
        except pw.WireError as exc:
            raise ScenarioError(path, f"{where}: {exc.field}", exc.problem) from None
        count += 1
    if count == 0:
        raise ScenarioError(path, "", "no records: the file is empty")


# --------------------------------------------------------------------------------------------
# Scenario


def _scenario(buf: bytes, path: Path, where: str) -> Scenario:
    top = pw.parse(buf, 0, len(buf), "Scenario")
    if _is_tf_example(buf, top):
        raise ScenarioError(
            path,
            where,
            "a tf.Example record (flattened state/..., roadgraph_samples/... features): that is the other WOMD "
            "layout, which drivetwin does not read; use the scenario/ release (TFRecords of Scenario protos)",
        )
    if SC_TRACKS not in top or SC_TIMESTAMPS not in top:
        raise ScenarioError(path, where, "not a Waymo Open Motion Scenario (no tracks or timestamps_seconds)")
    log_id = pw.string(buf, top, SC_ID, "Scenario", "scenario_id")
    if not log_id:
        raise ScenarioError(path, f"{where}: scenario_id", "missing or empty")
    source = f"{where}, scenario {log_id}"
    seconds = pw.repeated_doubles(buf, top, SC_TIMESTAMPS, "Scenario", "timestamps_seconds")
    check_times(seconds, path, f"{source}: timestamps_seconds", us_per_unit=1e6)  # finite, within int64 microseconds
    t_us = np.round(seconds * 1e6).astype(np.int64)
    num_steps = len(t_us)
    track_ranges = pw.messages(top, SC_TRACKS, "Scenario", "tracks")
    sdc = pw.int_(top, SC_SDC, "Scenario", "sdc_track_index", -1, 32)
    if not 0 <= sdc < len(track_ranges):
        raise ScenarioError(path, f"{source}: sdc_track_index", f"{sdc} is not a track index (0..{len(track_ranges) - 1})")
    current = pw.int_(top, SC_CURRENT, "Scenario", "current_time_index", 0, 32)
    if not 0 <= current < num_steps:
        raise ScenarioError(path, f"{source}: current_time_index", f"{current} is not a step in [0, {num_steps})")

    ids, types, states, valid = _tracks(buf, track_ranges, num_steps, path, source)
    if not valid[sdc].any():
        raise ScenarioError(path, f"{source}: sdc_track_index", f"the ego (tracks[{sdc}]) is never valid")
    if len(set(ids.tolist())) != len(ids):
        raise ScenarioError(path, f"{source}: tracks.id", "duplicate track ids")
    predict = []
    for i, (a, b) in enumerate(pw.messages(top, SC_PREDICT, "Scenario", "tracks_to_predict")):
        at = f"Scenario.tracks_to_predict[{i}]"
        f = pw.parse(buf, a, b, at)
        predict.append((pw.int_(f, 1, at, "track_index", -1, 32), pw.int_(f, 2, at, "difficulty", 0, 32)))
    interest = pw.repeated_ints(buf, top, SC_INTEREST, "Scenario", "objects_of_interest", 32)
    for row, _ in predict:
        if not 0 <= row < len(ids):
            raise ScenarioError(path, f"{source}: tracks_to_predict", f"track_index {row} is not a track (0..{len(ids) - 1})")
    known_ids = set(ids.tolist())
    for agent in interest:
        if str(agent) not in known_ids:
            raise ScenarioError(path, f"{source}: objects_of_interest", f"{agent} is not a track id")

    keep = np.flatnonzero(valid.any(axis=1))
    tracks = _tracks_model(ids[keep], types[keep], {k: v[keep] for k, v in states.items()}, valid[keep])
    lanes, features, map_notes = _map(buf, pw.messages(top, SC_MAP, "Scenario", "map_features"), path, source)
    signals = _signals(buf, pw.messages(top, SC_DYNAMIC, "Scenario", "dynamic_map_states"), num_steps, path, source)

    tags = [f"{TAG_CURRENT}:{current}"]
    tags += [f"{TAG_PREDICT}:{ids[row]}" for row, _ in predict]
    if interest:
        tags += [TAG_INTEREST] + [f"{TAG_INTEREST}:{agent}" for agent in interest]
    difficulty = ", ".join(f"{ids[row]} level {level}" for row, level in predict)
    notes = [
        f"{len(ids) - keep.size} tracks never valid dropped" if keep.size < len(ids) else "",
        "box size per track: its last valid state's",
        f"current_time_index {current} (steps before it are the prediction history)",
        f"tracks_to_predict (difficulty): {difficulty}" if predict else "no tracks_to_predict",
        *map_notes,
        f"{signals.num_signals} signal-controlled lanes from dynamic_map_states (arrow states as their plain colour)",
    ]
    provenance = Provenance(
        dataset=DATASET,
        source_file=str(path),
        source_log_id=log_id,
        frame="Waymo Open Motion world frame [m], as recorded (Scenario proto)",
        notes="; ".join(n for n in notes if n),
    )
    scenario_id = make_scenario_id(DATASET, log_id)
    try:
        return Scenario(
            id=scenario_id,
            provenance=provenance,
            t_us=t_us,
            tracks=tracks,
            ego_index=int(np.searchsorted(keep, sdc)),
            road_map=RoadMap.from_parts(lanes, features),
            signals=signals if signals.num_signals else None,
            tags=tuple(dict.fromkeys(tags)),
        )
    except ScenarioError as exc:
        raise ScenarioError(path, f"{where}: {exc.field}", exc.problem) from None


def _is_tf_example(buf: bytes, top: pw.Fields) -> bool:
    """Whether a record is a ``tf.Example`` (``Features features = 1`` of ``map<string, Feature>``)."""
    if set(top) != {1} or len(top[1]) != 1 or top[1][0][0] != pw.LEN:
        return False
    try:
        _, a, b = top[1][0]
        features = pw.parse(buf, a, b, "Example.features")
        entries = pw.messages(features, 1, "Example.features", "feature")
        if not entries:
            return False
        entry = pw.parse(buf, *entries[0], "Example.features.feature")
        key = pw.string(buf, entry, 1, "Example.features.feature", "key")
    except pw.WireError:
        return False
    return key.startswith(TF_EXAMPLE_PREFIXES)


def _tracks(
    buf: bytes, ranges: list[tuple[int, int]], num_steps: int, path: Path, source: str
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Track ids (N,), types (N,), state arrays (N, T) by name, valid (N, T)."""
    n = len(ranges)
    if n == 0:
        raise ScenarioError(path, f"{source}: tracks", "no tracks (the scenario has no road users)")
    check_grid(path, f"{source}: tracks", n, num_steps)  # before allocating (N, T) arrays
    ids = np.empty(n, dtype=object)
    types = np.zeros(n, np.int8)
    names = [name for name, _, _ in _STATE_FIELDS]
    states = {name: np.zeros((n, num_steps)) for name in names}
    valid = np.zeros((n, num_steps), bool)
    for i, (a, b) in enumerate(ranges):
        at = f"Scenario.tracks[{i}]"
        f = pw.parse(buf, a, b, at)
        if 1 not in f:
            raise ScenarioError(path, f"{source}: tracks[{i}].id", "missing")
        ids[i] = str(pw.int_(f, 1, at, "id", 0, 32))
        code = pw.int_(f, 2, at, "object_type", 0, 32)
        if code not in OBJECT_TYPES:
            raise ScenarioError(path, f"{source}: tracks[{i}].object_type", f"unknown object type {code} (known 0..4)")
        types[i] = OBJECT_TYPES[code]
        state_ranges = pw.messages(f, 3, at, "states")
        if len(state_ranges) != num_steps:
            problem = f"{len(state_ranges)} states, but the scenario has {num_steps} timestamps"
            raise ScenarioError(path, f"{source}: tracks[{i}].states", problem)
        if _fast_states(buf, state_ranges, i, states, valid):
            continue
        for t, (sa, sb) in enumerate(state_ranges):
            st = f"{at}.states[{t}]"
            sf = pw.parse(buf, sa, sb, st)
            for name, number, bits in _STATE_FIELDS:
                read = pw.double if bits == 64 else pw.float32
                states[name][i, t] = read(buf, sf, number, st, name)
            valid[i, t] = bool(pw.int_(sf, 11, st, "valid", 0))
    for name in names:
        bad = ~np.isfinite(states[name]) & valid
        if bad.any():
            row, step = np.argwhere(bad)[0]
            raise ScenarioError(path, f"{source}: tracks[{row}].states[{step}].{name}", "NaN or infinite where valid")
    return ids.astype(np.str_), types, states, valid


def _fast_states(buf: bytes, ranges: list[tuple[int, int]], row: int, states: dict[str, np.ndarray], valid: np.ndarray) -> bool:
    """Decode one track's states in numpy when each is in Waymo's full or invalid layout; False when not."""
    lengths = np.fromiter((b - a for a, b in ranges), np.int64, len(ranges))
    full = lengths == len(_STATE_LAYOUT)
    short = lengths == len(_INVALID_LAYOUT)
    if not (full | short).all():
        return False
    steps = np.flatnonzero(full)
    decoded = pw.fixed_layout(buf, [ranges[t] for t in steps], _STATE_LAYOUT, _STATE_DTYPE)
    invalid = pw.fixed_layout(buf, [ranges[t] for t in np.flatnonzero(short)], _INVALID_LAYOUT, _INVALID_DTYPE)
    if decoded is None or invalid is None or (invalid["valid"] != 0).any() or (decoded["valid"] > 1).any():
        return False
    for name, _, _ in _STATE_FIELDS:
        states[name][row, steps] = decoded[name]
    valid[row, steps] = decoded["valid"] == 1
    return True


def _tracks_model(ids: np.ndarray, types: np.ndarray, states: dict[str, np.ndarray], valid: np.ndarray) -> Tracks:
    last = valid.shape[1] - 1 - np.argmax(valid[:, ::-1], axis=1)  # each track's last valid step
    rows = np.arange(len(ids))
    return Tracks(
        agent_ids=ids,
        agent_types=types,
        length=np.maximum(states["length"][rows, last], 0.0),
        width=np.maximum(states["width"][rows, last], 0.0),
        height=np.maximum(states["height"][rows, last], 0.0),
        x=states["x"],
        y=states["y"],
        z=states["z"],
        yaw=states["heading"],
        vx=states["vx"],
        vy=states["vy"],
        valid=valid,
    )


# --------------------------------------------------------------------------------------------
# map


def _map(buf: bytes, ranges: list[tuple[int, int]], path: Path, source: str) -> tuple[list[Lane], list[MapFeature], list[str]]:
    lanes: list[_LaneParts] = []
    polylines: dict[str, np.ndarray] = {}  # road lines and edges by id, for lane boundaries
    features: list[MapFeature] = []
    empty = degenerate = no_limit = 0
    for i, (a, b) in enumerate(ranges):
        at = f"Scenario.map_features[{i}]"
        f = pw.parse(buf, a, b, at)
        if 1 not in f:
            raise ScenarioError(path, f"{source}: map_features[{i}].id", "missing")
        feature_id = str(pw.int_(f, MF_ID, at, "id"))
        kinds = [k for k in FEATURE_FIELDS if k in f]
        if not kinds:
            empty += 1
            continue
        kind = kinds[-1]  # a oneof: the last one set wins
        span = pw.message(f, kind, at, "feature_data")
        assert span is not None
        body = pw.parse(buf, *span, at)
        if kind == MF_LANE:
            lane = _lane(buf, body, f"{at}.lane", feature_id, path, source)
            no_limit += np.isnan(lane[2])
            lanes.append(lane)
        elif kind in (MF_ROAD_LINE, MF_ROAD_EDGE):
            name, types, feature_kind = (
                ("road_line", ROAD_LINE_TYPES, FeatureKind.ROAD_LINE)
                if kind == MF_ROAD_LINE
                else ("road_edge", ROAD_EDGE_TYPES, FeatureKind.ROAD_EDGE)
            )
            code = pw.int_(body, 1, f"{at}.{name}", "type", 0, 32)
            points = _points(buf, body, 2, f"{at}.{name}", "polyline", path, source)
            subtype = types[code] if 0 <= code < len(types) else "unknown"
            polylines[feature_id] = points
            features.append(MapFeature(feature_id, feature_kind, points, subtype=subtype))
        elif kind == MF_STOP_SIGN:
            st = f"{at}.stop_sign"
            position = pw.message(body, 2, st, "position")
            if position is None:
                raise ScenarioError(path, f"{source}: map_features[{i}].stop_sign.position", "missing")
            point = pw.points(buf, [position], f"{st}.position")
            lane_ids = tuple(str(v) for v in pw.repeated_ints(buf, body, 1, st, "lane"))
            features.append(MapFeature(feature_id, FeatureKind.STOP_SIGN, point, lane_ids=lane_ids))
        else:
            name, feature_kind = POLYGON_FEATURES[kind]
            points = _points(buf, body, 1, f"{at}.{name}", "polygon", path, source, allow_empty=True)
            if len(points) > 3 and np.array_equal(points[0], points[-1]):
                points = points[:-1]
            if len(points) < 3:
                degenerate += 1
                continue
            features.append(MapFeature(feature_id, feature_kind, points))
    lane_ids = {lane[0] for lane in lanes}
    built, with_bounds, dangling = [], 0, 0
    for lane_id, center, limit, lane_type, links, bounds in lanes:
        kept = [tuple(v for v in group if v in lane_ids) for group in links]
        dangling += sum(len(group) - len(k) for group, k in zip(links, kept))
        left = _boundary(center, bounds["left"], polylines)
        right = _boundary(center, bounds["right"], polylines)
        with_bounds += left is not None and right is not None
        built.append(
            Lane(
                id=lane_id,
                centerline=center,
                left_boundary=left,
                right_boundary=right,
                speed_limit=limit,
                lane_type=lane_type,
                predecessors=kept[0],
                successors=kept[1],
                left_neighbors=kept[2],
                right_neighbors=kept[3],
            )
        )
    ids = [feature.id for feature in features]
    if len(set(ids)) != len(ids) or len(lane_ids) != len(lanes):
        raise ScenarioError(path, f"{source}: map_features.id", "duplicate map feature ids")
    notes = [
        f"speed_limit_mph x {MPH_TO_MPS} -> m/s ({no_limit} lanes without a limit: NaN)",
        f"{with_bounds} of {len(built)} lanes with both boundaries (nearest points on the road lines and edges their "
        "boundary segments name, where those cover the whole lane); the others as centerlines, drivable area derived",
    ]
    if dangling:
        notes.append(f"{dangling} lane references to lanes outside the map dropped")
    if empty:
        notes.append(f"{empty} map features with no feature data dropped")
    if degenerate:
        notes.append(f"{degenerate} polygons with fewer than 3 points dropped")
    return built, features, notes


def _points(buf: bytes, fields: pw.Fields, number: int, where: str, name: str, path: Path, source: str,
            allow_empty: bool = False) -> np.ndarray:  # fmt: skip
    ranges = pw.messages(fields, number, where, name)
    points = pw.points(buf, ranges, f"{where}.{name}")
    if not allow_empty and len(points) == 0:
        raise ScenarioError(path, f"{source}: {where.removeprefix('Scenario.')}.{name}", "no points")
    if not np.isfinite(points).all():
        raise ScenarioError(path, f"{source}: {where.removeprefix('Scenario.')}.{name}", "NaN or infinite points")
    return points


_LaneParts = tuple[str, np.ndarray, float, str, list[tuple[str, ...]], dict[str, list[tuple[int, int, str]]]]


def _lane(buf: bytes, body: pw.Fields, at: str, lane_id: str, path: Path, source: str) -> _LaneParts:
    """(id, centerline [m], speed limit [m/s], type, [entry, exit, left, right] lane ids, boundary segments by side)."""
    mph = pw.double(buf, body, 1, at, "speed_limit_mph", float("nan"))
    limit = mph * MPH_TO_MPS if np.isfinite(mph) and mph > 0 else float("nan")
    lane_type = LANE_TYPES.get(pw.int_(body, 2, at, "type", 0, 32), "undefined")
    center = _points(buf, body, 8, at, "polyline", path, source)
    entry = tuple(str(v) for v in pw.repeated_ints(buf, body, 9, at, "entry_lanes"))
    exit_ = tuple(str(v) for v in pw.repeated_ints(buf, body, 10, at, "exit_lanes"))
    neighbours = []
    for number, name in ((11, "left_neighbors"), (12, "right_neighbors")):
        found = []
        for j, span in enumerate(pw.messages(body, number, at, name)):
            nf = pw.parse(buf, *span, f"{at}.{name}[{j}]")
            found.append(str(pw.int_(nf, 1, f"{at}.{name}[{j}]", "feature_id")))
        neighbours.append(tuple(found))
    bounds: dict[str, list[tuple[int, int, str]]] = {}
    for number, side in ((13, "left"), (14, "right")):
        segments = []
        for j, span in enumerate(pw.messages(body, number, at, f"{side}_boundaries")):
            st = f"{at}.{side}_boundaries[{j}]"
            sf = pw.parse(buf, *span, st)
            start = pw.int_(sf, 1, st, "lane_start_index", 0, 32)
            end = pw.int_(sf, 2, st, "lane_end_index", 0, 32)
            if not 0 <= start <= end < len(center):
                problem = f"index range [{start}, {end}] outside the lane's {len(center)} points"
                raise ScenarioError(path, f"{source}: {st.removeprefix('Scenario.')}", problem)
            segments.append((start, end, str(pw.int_(sf, 3, st, "boundary_feature_id"))))
        bounds[side] = segments
    return lane_id, center, float(limit), lane_type, [entry, exit_, *neighbours], bounds


def _boundary(center: np.ndarray, segments: list[tuple[int, int, str]], polylines: dict[str, np.ndarray]) -> np.ndarray | None:
    """A lane side's boundary (P, 3) [m]: for each centerline point, the nearest point of the road line or
    edge its boundary segment names; None unless the segments cover every point."""
    covered = np.zeros(len(center), bool)
    for start, end, feature_id in segments:
        if feature_id not in polylines:
            return None
        covered[start : end + 1] = True
    if not covered.all():
        return None
    out = np.empty(center.shape)
    for start, end, feature_id in segments:
        out[start : end + 1] = _nearest_on(center[start : end + 1], polylines[feature_id])
    return out


def _nearest_on(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """(M, 3) nearest points (in x-y) on polyline ``line`` (L, 3) to each of ``points`` (M, 3).

    Only segments within ``_NEAR_M`` of the points' bounding box are searched (all of them when
    none is): a lane's boundary is a few metres from its centerline.
    """
    if len(line) == 1:
        return np.repeat(line, len(points), axis=0)
    a, b = line[:-1], line[1:]
    lo = points[:, :2].min(axis=0) - _NEAR_M
    hi = points[:, :2].max(axis=0) + _NEAR_M
    near = (np.maximum(a[:, :2], b[:, :2]) >= lo).all(axis=1) & (np.minimum(a[:, :2], b[:, :2]) <= hi).all(axis=1)
    if near.any():
        a, b = a[near], b[near]
    d = b - a
    dd = np.maximum(d[:, 0] ** 2 + d[:, 1] ** 2, 1e-12)
    rx = points[:, None, 0] - a[None, :, 0]
    ry = points[:, None, 1] - a[None, :, 1]
    s = np.clip((rx * d[None, :, 0] + ry * d[None, :, 1]) / dd, 0.0, 1.0)  # (M, L-1)
    ex = rx - s * d[None, :, 0]
    ey = ry - s * d[None, :, 1]
    best = np.argmin(ex * ex + ey * ey, axis=1)
    rows = np.arange(len(points))
    return a[best] + s[rows, best][:, None] * d[best]


# --------------------------------------------------------------------------------------------
# signals


def _signals(buf: bytes, ranges: list[tuple[int, int]], num_steps: int, path: Path, source: str) -> Signals:
    """Per controlled lane (first seen first) its state at each step (UNKNOWN where unlisted) and stop point."""
    if len(ranges) > num_steps:
        problem = f"{len(ranges)} steps of signal states, but the scenario has {num_steps} timestamps"
        raise ScenarioError(path, f"{source}: dynamic_map_states", problem)
    rows: dict[str, int] = {}
    stops: list[np.ndarray] = []
    entries: list[tuple[int, int, SignalState]] = []
    for t, span in enumerate(ranges):
        at = f"Scenario.dynamic_map_states[{t}]"
        f = pw.parse(buf, *span, at)
        for j, lspan in enumerate(pw.messages(f, 1, at, "lane_states")):
            lt = f"{at}.lane_states[{j}]"
            lf = pw.parse(buf, *lspan, lt)
            lane = str(pw.int_(lf, 1, lt, "lane"))
            code = pw.int_(lf, 2, lt, "state", 0, 32)
            try:
                state = signal_state(code)
            except KeyError:
                field = f"{source}: {lt.removeprefix('Scenario.')}.state"
                raise ScenarioError(path, field, f"unknown lane state {code} (known 0..8)") from None
            if lane not in rows:
                stop = pw.message(lf, 3, lt, "stop_point")
                point = pw.points(buf, [stop], f"{lt}.stop_point")[0] if stop is not None else np.zeros(3)
                if not np.isfinite(point).all():
                    raise ScenarioError(path, f"{source}: {lt.removeprefix('Scenario.')}.stop_point", "NaN or infinite")
                rows[lane] = len(rows)
                stops.append(point)
            entries.append((rows[lane], t, state))
    states = np.full((len(rows), num_steps), SignalState.UNKNOWN, np.int8)
    for row, t, state in entries:
        states[row, t] = state
    return Signals(np.array(list(rows), np.str_), states, np.array(stops).reshape(-1, 3))
