"""Argoverse 2 *sensor* logs: annotated 3-D boxes, the ego's poses and the log's vector map.

A log directory holds ``annotations_with_ego.feather`` (a box per track and annotation
timestamp, about 10 Hz, in the *ego-vehicle* frame), ``city_SE3_egovehicle.feather`` (the ego's
pose in the city frame, about 200 Hz) and ``map/log_map_archive_*.json`` (the motion-forecasting
map format, with lane segments that carry no centerline). One log becomes one scenario.

- Frame: each box is composed with the ego pose of the same ``timestamp_ns`` (linearly
  interpolated between the two nearest poses when there is none at exactly that time) into the
  city frame [m]; yaw is the heading of the composed rotation's x axis [rad].
- Time: ``t_us`` = the annotation timestamps [ns] // 1000, as recorded (not snapped to 10 Hz).
- The ego (id ``AV``) is the pose stream sampled at the annotation timestamps; its box is the
  log's ``EGO_VEHICLE`` annotation's size (``DEFAULT_EGO_SIZE`` without one).
- Velocities: the annotations give none. They are derived from the city-frame positions by
  central differences over the actual timestamps within each run of consecutive annotated
  frames (one-sided at a run's ends; 0 for a track seen in a single frame of a run).
- Types: ``CATEGORIES``; static objects (bollards, cones, signs, ...) and animals are OTHER,
  not road users. An unknown category is an error.
- Size: each track's median annotated length, width and height.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

from scenarios.errors import ScenarioError
from scenarios.importers import av2
from scenarios.importers.base import register
from scenarios.model import MAX_ID_LENGTH, AgentType, Provenance, RoadMap, Scenario, Tracks, check_grid, make_scenario_id

DATASET = "av2_sensor"
EGO_TRACK_ID = "AV"
EGO_CATEGORY = "EGO_VEHICLE"
ANNOTATIONS = "annotations_with_ego.feather"
POSES = "city_SE3_egovehicle.feather"
MAP_GLOB = "map/log_map_archive_*.json"
#: The AV2 sensor vehicle (a Ford Fusion Hybrid) [m], for logs without an EGO_VEHICLE box.
DEFAULT_EGO_SIZE = (4.877, 2.0, 1.473)
#: Most (tracks x frames) cells a log may need: bounds what a damaged file can make us allocate.
#: A pose may be interpolated across at most this gap [ns]; the pose stream runs at ~200 Hz.
MAX_POSE_GAP_NS = 100_000_000

COL_T = "timestamp_ns"
COL_TRACK = "track_uuid"
COL_CATEGORY = "category"
BOX_COLUMNS = ("length_m", "width_m", "height_m", "qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")
POSE_COLUMNS = ("qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")

_V, _P, _C, _O = AgentType.VEHICLE, AgentType.PEDESTRIAN, AgentType.CYCLIST, AgentType.OTHER
#: AV2 sensor categories -> ``AgentType``.
CATEGORIES: dict[str, AgentType] = {
    **dict.fromkeys(
        ("REGULAR_VEHICLE", "LARGE_VEHICLE", "BUS", "SCHOOL_BUS", "ARTICULATED_BUS", "BOX_TRUCK", "TRUCK", "TRUCK_CAB",
         "VEHICULAR_TRAILER", "RAILED_VEHICLE", "MOTORCYCLE", "MOTORCYCLIST"), _V),
    **dict.fromkeys(("PEDESTRIAN", "OFFICIAL_SIGNALER", "WHEELCHAIR", "STROLLER"), _P),
    **dict.fromkeys(("BICYCLE", "BICYCLIST", "WHEELED_DEVICE", "WHEELED_RIDER"), _C),
    **dict.fromkeys(
        ("BOLLARD", "CONSTRUCTION_CONE", "CONSTRUCTION_BARREL", "SIGN", "STOP_SIGN", "MOBILE_PEDESTRIAN_CROSSING_SIGN",
         "MESSAGE_BOARD_TRAILER", "TRAFFIC_LIGHT_TRAILER", "DOG", "ANIMAL"), _O),
}  # fmt: skip


def _is_log_dir(path: Path) -> bool:
    return (path / ANNOTATIONS).is_file() and (path / POSES).is_file()


def _sniff(path: Path, head: bytes) -> bool:
    """A log directory, or one of its two feather files (read as the whole log)."""
    if path.is_dir():
        return _is_log_dir(path)
    return path.name in (ANNOTATIONS, POSES) and head.startswith(b"ARROW1") and _is_log_dir(path.parent)


def _companion(path: Path) -> bool:
    """The pose file is read with the annotations beside it."""
    return path.name == POSES


@register(DATASET, sniff=_sniff, companion=_companion)
def read_av2_sensor(path: str | Path) -> list[Scenario]:
    """Read one Argoverse 2 sensor log (its directory, or a file in it) into one scenario.

    Raises:
        ScenarioError: naming the file, the column and the problem.
    """
    path = Path(path)
    log_dir = path if path.is_dir() else path.parent
    if not _is_log_dir(log_dir):
        raise ScenarioError(log_dir, "", f"not an AV2 sensor log directory: it needs {ANNOTATIONS} and {POSES}")
    annotations_path, poses_path = log_dir / ANNOTATIONS, log_dir / POSES
    boxes = _read(annotations_path, (COL_T, COL_TRACK, COL_CATEGORY, *BOX_COLUMNS))
    poses = _read(poses_path, (COL_T, *POSE_COLUMNS))
    maps = sorted(log_dir.glob(MAP_GLOB))
    if len(maps) != 1:
        raise ScenarioError(log_dir, "map", f"{len(maps)} map/log_map_archive_*.json files, one expected")

    t_ns = _int_column(boxes, COL_T, annotations_path)
    tracks_col = _str_column(boxes, COL_TRACK, annotations_path)
    categories = _str_column(boxes, COL_CATEGORY, annotations_path)
    values = {name: _float_column(boxes, name, annotations_path) for name in BOX_COLUMNS}
    unknown = sorted(set(np.unique(categories).tolist()) - set(CATEGORIES) - {EGO_CATEGORY})
    if unknown:
        raise ScenarioError(annotations_path, COL_CATEGORY, f"unknown categories {unknown}; known: {sorted(CATEGORIES)}")

    frames, frame_of_row = np.unique(t_ns, return_inverse=True)
    ego_rows = categories == EGO_CATEGORY
    ego_size = (
        tuple(float(np.median(values[k][ego_rows])) for k in ("length_m", "width_m", "height_m"))
        if ego_rows.any()
        else DEFAULT_EGO_SIZE
    )
    keep = ~ego_rows
    ids, first, agent_of_row = np.unique(tracks_col[keep], return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # tracks in the file's order
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    agent_of_row = rank[agent_of_row]
    ids = ids[order]
    n, num_steps = len(ids) + 1, len(frames)
    check_grid(annotations_path, COL_TRACK, n, num_steps)  # the model's limits, before allocating
    row_category = categories[keep]
    track_category = row_category[first[order]]
    changed = row_category != track_category[agent_of_row]
    if changed.any():
        row = int(np.argmax(changed))
        agent = agent_of_row[row]
        problem = f"track {ids[agent]!r} changes category ({track_category[agent]} -> {row_category[row]})"
        raise ScenarioError(annotations_path, COL_CATEGORY, problem)
    step = frame_of_row[keep]
    seen = np.zeros((n - 1, num_steps), np.int64)
    np.add.at(seen, (agent_of_row, step), 1)
    if (seen > 1).any():
        agent, k = np.argwhere(seen > 1)[0]
        raise ScenarioError(annotations_path, COL_T, f"track {ids[agent]!r} has {seen[agent, k]} boxes at {frames[k]} ns")

    pose = _poses_at(frames, poses, poses_path)
    box = {k: v[keep] for k, v in values.items()}
    rot_box = _rotations(box["qw"], box["qx"], box["qy"], box["qz"], annotations_path)
    rot_pose = pose["R"][step]
    centre = np.einsum("nij,nj->ni", rot_pose, np.column_stack([box["tx_m"], box["ty_m"], box["tz_m"]])) + pose["t"][step]
    rot = np.einsum("nij,njk->nik", rot_pose, rot_box)

    grid = {name: np.zeros((n, num_steps)) for name in ("x", "y", "z", "yaw")}
    valid = np.zeros((n, num_steps), bool)
    valid[agent_of_row, step] = True
    grid["x"][agent_of_row, step] = centre[:, 0]
    grid["y"][agent_of_row, step] = centre[:, 1]
    grid["z"][agent_of_row, step] = centre[:, 2]
    grid["yaw"][agent_of_row, step] = np.arctan2(rot[:, 1, 0], rot[:, 0, 0])
    ego = n - 1
    valid[ego] = True
    grid["x"][ego], grid["y"][ego], grid["z"][ego] = pose["t"][:, 0], pose["t"][:, 1], pose["t"][:, 2]
    grid["yaw"][ego] = np.arctan2(pose["R"][:, 1, 0], pose["R"][:, 0, 0])
    seconds = (frames - frames[0]) / 1e9
    vx = _run_gradient(grid["x"], valid, seconds)
    vy = _run_gradient(grid["y"], valid, seconds)

    sizes = np.zeros((n, 3))
    by_agent = np.argsort(agent_of_row, kind="stable")
    cuts = np.flatnonzero(np.diff(agent_of_row[by_agent])) + 1
    for k, name in enumerate(("length_m", "width_m", "height_m")):
        sizes[: n - 1, k] = [np.median(part) for part in np.split(box[name][by_agent], cuts)]
    sizes[ego] = ego_size
    if not (np.isfinite(sizes) & (sizes >= 0)).all():
        raise ScenarioError(annotations_path, "length_m", "negative box sizes")
    types = np.array([CATEGORIES[c] for c in track_category] + [AgentType.VEHICLE], np.int8)

    lanes, features, map_notes, _ = av2._read_map(maps[0])
    log_id = log_dir.name
    counts = {c: int((track_category == c).sum()) for c in sorted(set(track_category.tolist()))}
    interpolated = int(pose["interpolated"])
    notes = [
        f"boxes composed with the ego pose at their timestamp into the city frame [m] ({interpolated} of "
        f"{num_steps} annotation times between two poses: pose interpolated linearly)",
        "velocities from the positions: central differences over the timestamps within each run of consecutive "
        "annotated frames, one-sided at a run's ends, 0 for a single frame",
        f"ego {EGO_TRACK_ID!r}: the pose stream sampled at the annotation timestamps, box "
        + ("from the EGO_VEHICLE annotation" if ego_rows.any() else "the default size"),
        "tracks by category: " + ", ".join(f"{c} {k}" for c, k in counts.items()),
        "static objects (bollards, cones, signs, trailers) and animals are OTHER; box size per track: its median",
        f"map from {maps[0].name}",
        *map_notes,
        "no traffic signals in AV2",
    ]
    provenance = Provenance(
        dataset=DATASET,
        source_file=str(annotations_path),
        source_log_id=log_id,
        frame="AV2 city frame [m] (boxes composed with city_SE3_egovehicle)",
        notes="; ".join(notes),
    )
    tracks = Tracks(
        agent_ids=np.array([*ids.tolist(), EGO_TRACK_ID], np.str_),
        agent_types=types,
        length=sizes[:, 0],
        width=sizes[:, 1],
        height=sizes[:, 2],
        x=grid["x"],
        y=grid["y"],
        z=grid["z"],
        yaw=grid["yaw"],
        vx=vx,
        vy=vy,
        valid=valid,
    )
    if EGO_TRACK_ID in set(ids.tolist()):
        raise ScenarioError(annotations_path, COL_TRACK, f"a track is named {EGO_TRACK_ID!r}, the ego's id")
    return [
        Scenario(
            id=make_scenario_id(DATASET, log_id),
            provenance=provenance,
            t_us=frames // 1000,
            tracks=tracks,
            ego_index=ego,
            road_map=RoadMap.from_parts(lanes, features),
        )
    ]


# --------------------------------------------------------------------------------------------
# reading


def _read(path: Path, columns: tuple[str, ...]) -> pa.Table:
    try:
        schema = _schema(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ScenarioError(path, "", f"not a readable feather file (truncated or corrupt?): {exc}") from None
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise ScenarioError(path, missing[0], f"missing column (the file has {', '.join(columns)})")
    try:
        table = feather.read_table(path, columns=list(columns))
        table.validate(full=True)  # feather has no checksums: damaged offsets or text show here
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ScenarioError(path, "", f"cannot read the feather data (truncated or corrupt?): {str(exc)[:300]}") from None
    if table.num_rows == 0:
        raise ScenarioError(path, columns[0], "no rows")
    for name in columns:
        if table.column(name).null_count:
            raise ScenarioError(path, name, "has missing (null) values")
    return table


def _schema(path: Path) -> pa.Schema:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).schema


def _float_column(table: pa.Table, name: str, path: Path) -> np.ndarray:
    try:
        values = np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ScenarioError(path, name, f"cannot be read as numbers: {exc}") from None
    if not np.isfinite(values).all():
        raise ScenarioError(path, name, f"NaN or infinite value at row {int(np.argmax(~np.isfinite(values)))}")
    return values


def _int_column(table: pa.Table, name: str, path: Path) -> np.ndarray:
    column = table.column(name)
    if not pa.types.is_integer(column.type):
        raise ScenarioError(path, name, f"must be integer nanoseconds, got {column.type}")
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)


def _str_column(table: pa.Table, name: str, path: Path) -> np.ndarray:
    column = table.column(name)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_dictionary(column.type)):
        raise ScenarioError(path, name, f"must be text, got {column.type}")
    text = column.cast(pa.string()) if pa.types.is_dictionary(column.type) else column
    longest = (pc.max(pc.utf8_length(text)).as_py() or 0) if len(text) else 0
    if longest > MAX_ID_LENGTH:  # numpy would store every value at the longest one's length
        raise ScenarioError(path, name, f"a value of {longest} characters, more than {MAX_ID_LENGTH}")
    return np.asarray(text.to_numpy(zero_copy_only=False), dtype=np.str_)


def _rotations(qw: np.ndarray, qx: np.ndarray, qy: np.ndarray, qz: np.ndarray, path: Path) -> np.ndarray:
    """(N, 3, 3) rotation matrices of unit quaternions (normalised; a zero quaternion is an error)."""
    norm = np.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    if (norm < 1e-6).any():
        raise ScenarioError(path, "qw", f"a zero quaternion at row {int(np.argmax(norm < 1e-6))}: no rotation")
    w, x, y, z = qw / norm, qx / norm, qy / norm, qz / norm
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=-2,
    )


def _poses_at(frames: np.ndarray, poses: pa.Table, path: Path) -> dict[str, np.ndarray]:
    """The ego pose (rotation (T, 3, 3), translation (T, 3)) at each annotation time."""
    t = _int_column(poses, COL_T, path)
    order = np.argsort(t, kind="stable")
    t = t[order]
    if (np.diff(t) <= 0).any():
        raise ScenarioError(path, COL_T, f"two poses at {t[int(np.argmax(np.diff(t) <= 0))]} ns")
    q = {name: _float_column(poses, name, path)[order] for name in POSE_COLUMNS}
    hi = np.searchsorted(t, frames)
    exact = (hi < len(t)) & (t[np.minimum(hi, len(t) - 1)] == frames)
    outside = ~exact & ((hi == 0) | (hi == len(t)))
    if outside.any():
        problem = f"no ego pose at or around annotation time {frames[int(np.argmax(outside))]} ns (poses {t[0]}..{t[-1]})"
        raise ScenarioError(path, COL_T, problem)
    lo = np.where(exact, hi, hi - 1)
    gap = t[hi] - t[lo]
    if (gap > MAX_POSE_GAP_NS).any():
        k = int(np.argmax(gap > MAX_POSE_GAP_NS))
        problem = f"annotation time {frames[k]} ns falls in a {gap[k] / 1e6:.0f} ms gap of the pose stream"
        raise ScenarioError(path, COL_T, problem)
    w = np.where(gap > 0, (frames - t[lo]) / np.maximum(gap, 1), 0.0)
    quat = np.column_stack([q["qw"], q["qx"], q["qy"], q["qz"]])
    q_lo, q_hi = quat[lo], quat[hi]
    q_hi = np.where(((q_lo * q_hi).sum(axis=1) < 0)[:, None], -q_hi, q_hi)  # the shorter way round
    blend = q_lo + w[:, None] * (q_hi - q_lo)  # normalised in _rotations: fine across 5 ms
    trans = np.column_stack([q["tx_m"], q["ty_m"], q["tz_m"]])
    return {
        "R": _rotations(blend[:, 0], blend[:, 1], blend[:, 2], blend[:, 3], path),
        "t": trans[lo] + w[:, None] * (trans[hi] - trans[lo]),
        "interpolated": np.asarray((~exact).sum()),
    }


def _run_gradient(values: np.ndarray, valid: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """(N, T) d values / dt [per s]: central differences within runs of valid steps, one-sided at their ends."""
    out = np.zeros(values.shape)
    for row in range(values.shape[0]):
        steps = np.flatnonzero(valid[row])
        if steps.size < 2:
            continue
        breaks = np.flatnonzero(np.diff(steps) > 1) + 1
        for run in np.split(steps, breaks):
            if run.size >= 2:
                out[row, run] = np.gradient(values[row, run], seconds[run])
    return out
