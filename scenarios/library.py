"""The scenario library: scenarios stored as a Parquet dataset of four tables.

A library is a directory::

    <root>/
      _drivetwin_library.json        marker: format name and schema version
      _append.lock                   held (flock) while an append runs
      scenarios/part-<n>-<uid>.parquet     one row per scenario (the index)
      tracks/part-<n>-<uid>.parquet        one row per (tracks key, agent, step) where valid
      map_features/part-<n>-<uid>.parquet  one row per lane or map feature of a map key
      signals/part-<n>-<uid>.parquet       one row per traffic signal of a signals key

Each table directory is a plain Parquet dataset (``pyarrow.dataset.dataset(<root>/tracks)``,
``ray.data.read_parquet(<root>/tracks)``). Tracks, maps and signals are content-addressed: a key
is a hash of the content, and scenario rows reference a key plus the part file and row group that
hold it. Ego variants and windows of one log therefore share one copy of what they share.
In the data tables every key is exactly one row group, so loading a scenario reads one row
group per table and nothing else.

An append is all or nothing. It writes data parts (one per table per ``scenarios_per_part``
scenarios) as the scenarios stream in, then one scenarios part that references them; every file
is written under a hidden temporary name, fsynced and renamed into place, and the scenarios part
is renamed last: that rename is the commit. A data part no index row references is uncommitted:
readers never look at it and the next append deletes it. So an interrupted append leaves the
library as it was (plus, after a hard kill, such leftovers); re-running it is safe because ids
already stored are skipped. Many small appends make many small index parts; ``compact_index``
rewrites them as one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scenarios.errors import ScenarioError
from scenarios.model import (
    AgentType,
    Conditions,
    FeatureKind,
    Lane,
    MapFeature,
    Provenance,
    RoadMap,
    Scenario,
    Signals,
    Tracks,
)

#: Version of the on-disk layout and table schemas; stored in the marker and every part file.
SCHEMA_VERSION = 1
#: ``format`` in the marker file.
FORMAT_NAME = "drivetwin-scenario-library"
MARKER_FILE = "_drivetwin_library.json"
LOCK_FILE = "_append.lock"
PART_SUFFIX = ".parquet"
TMP_SUFFIX = ".tmp"

# Schema-level metadata keys (bytes, as Parquet stores them).
META_SCHEMA_VERSION = b"drivetwin.schema_version"
META_TABLE = b"drivetwin.table"
META_UNITS = b"drivetwin.units"
#: In a compacted scenarios part: JSON list of the part names whose rows it holds.
META_SUPERSEDES = b"drivetwin.supersedes"
#: Field-metadata key holding a column's unit ("1" for dimensionless, "" for none).
FIELD_UNIT = b"unit"
FIELD_DESCRIPTION = b"description"

# Table names (also the directory names).
SCENARIOS_TABLE = "scenarios"
TRACKS_TABLE = "tracks"
MAP_TABLE = "map_features"
SIGNALS_TABLE = "signals"
DATA_TABLES = (TRACKS_TABLE, MAP_TABLE, SIGNALS_TABLE)
TABLES = (SCENARIOS_TABLE, *DATA_TABLES)

# --- scenarios table ------------------------------------------------------------------------
SCENARIO_ID = "scenario_id"
DATASET = "dataset"
SOURCE_FILE = "source_file"
SOURCE_LOG_ID = "source_log_id"
FRAME = "frame"
NOTES = "notes"
TAGS = "tags"
EGO_ID = "ego_id"
EGO_INDEX = "ego_index"
NUM_AGENTS = "num_agents"
NUM_VEHICLES = "num_vehicles"
NUM_PEDESTRIANS = "num_pedestrians"
NUM_CYCLISTS = "num_cyclists"
NUM_OTHERS = "num_others"
NUM_STEPS = "num_steps"
T0_US = "t0_us"
DT_US = "dt_us"
DURATION_S = "duration_s"
T_US_IRREGULAR = "t_us_irregular"
NUM_LANES = "num_lanes"
NUM_MAP_FEATURES = "num_map_features"
NUM_SIGNALS = "num_signals"
SIGNALS_NUM_STEPS = "signals_num_steps"
ROAD_FRICTION = "road_friction"
EGO_LATENCY_S = "ego_latency_s"
POSITION_NOISE_M = "position_noise_m"
HEADING_NOISE_RAD = "heading_noise_rad"
DETECTION_DROPOUT = "detection_dropout"
AGENTS_MODE = "agents_mode"
REACTIVE_AGENTS = "reactive_agents"
REPLAY_AGENTS = "replay_agents"
TRACKS_KEY = "tracks_key"
TRACKS_FILE = "tracks_file"
TRACKS_ROW_GROUP = "tracks_row_group"
MAP_KEY = "map_key"
MAP_FILE = "map_file"
MAP_ROW_GROUP = "map_row_group"
SIGNALS_KEY = "signals_key"
SIGNALS_FILE = "signals_file"
SIGNALS_ROW_GROUP = "signals_row_group"

# --- tracks table ---------------------------------------------------------------------------
AGENT_INDEX = "agent_index"
AGENT_ID = "agent_id"
AGENT_TYPE = "agent_type"
LENGTH_M = "length_m"
WIDTH_M = "width_m"
HEIGHT_M = "height_m"
STEP = "step"
T_US = "t_us"
X_M = "x_m"
Y_M = "y_m"
Z_M = "z_m"
YAW_RAD = "yaw_rad"
VX_MPS = "vx_mps"
VY_MPS = "vy_mps"

# --- map_features table ---------------------------------------------------------------------
ELEMENT_INDEX = "element_index"
KIND = "kind"
ELEMENT_ID = "element_id"
LEFT_X_M = "left_x_m"
LEFT_Y_M = "left_y_m"
LEFT_Z_M = "left_z_m"
RIGHT_X_M = "right_x_m"
RIGHT_Y_M = "right_y_m"
RIGHT_Z_M = "right_z_m"
SPEED_LIMIT_MPS = "speed_limit_mps"
LANE_TYPE = "lane_type"
PREDECESSORS = "predecessors"
SUCCESSORS = "successors"
LEFT_NEIGHBORS = "left_neighbors"
RIGHT_NEIGHBORS = "right_neighbors"
SUBTYPE = "subtype"
LANE_IDS = "lane_ids"
#: ``kind`` of a lane row; other rows hold a ``FeatureKind`` name in lower case.
LANE_KIND = "lane"

# --- signals table --------------------------------------------------------------------------
SIGNAL_INDEX = "signal_index"
LANE_ID = "lane_id"
STOP_X_M = "stop_x_m"
STOP_Y_M = "stop_y_m"
STOP_Z_M = "stop_z_m"
STATES = "states"

#: Default most scenarios per part file (one scenarios part, at most one part per data table).
#: Opening a part parses its footer, whose size and parse time grow with its row groups (one per
#: key): 64 keeps a first read of a part at a few ms and an open part at ~1 MiB of memory.
DEFAULT_SCENARIOS_PER_PART = 64
#: Default most tracks rows per part file; a part is closed early when it would hold more.
DEFAULT_TRACK_ROWS_PER_PART = 4_000_000
#: Parquet files kept open per library instance.
DEFAULT_OPEN_FILES = 128
#: Decoded tracks / maps kept per instance (ego variants and windows share them).
DEFAULT_DECODED_CACHE = 16

_STR = pa.string()
_STR_LIST = pa.list_(pa.string())
_F64_LIST = pa.list_(pa.float64())


def _field(name: str, type_: pa.DataType, unit: str = "", description: str = "", nullable: bool = True) -> pa.Field:
    meta = {FIELD_UNIT: unit.encode()}
    if description:
        meta[FIELD_DESCRIPTION] = description.encode()
    return pa.field(name, type_, nullable=nullable, metadata=meta)


def _schema(table: str, fields: Sequence[pa.Field]) -> pa.Schema:
    units = {f.name: f.metadata[FIELD_UNIT].decode() for f in fields}
    return pa.schema(
        fields,
        metadata={
            META_SCHEMA_VERSION: str(SCHEMA_VERSION).encode(),
            META_TABLE: table.encode(),
            META_UNITS: json.dumps(units).encode(),
        },
    )


_TYPE_DOC = "AgentType code: " + ", ".join(f"{t.value} {t.name.lower()}" for t in AgentType)

SCENARIOS_SCHEMA = _schema(
    SCENARIOS_TABLE,
    [
        _field(SCENARIO_ID, _STR, description="stable scenario id", nullable=False),
        _field(DATASET, _STR, description="provenance.dataset"),
        _field(SOURCE_FILE, _STR, description="provenance.source_file"),
        _field(SOURCE_LOG_ID, _STR, description="provenance.source_log_id"),
        _field(FRAME, _STR, description="provenance.frame"),
        _field(NOTES, _STR, description="provenance.notes"),
        _field(TAGS, _STR_LIST),
        _field(EGO_ID, _STR),
        _field(EGO_INDEX, pa.int32(), description="row of the ego in the tracks (agent_index)"),
        _field(NUM_AGENTS, pa.int32()),
        _field(NUM_VEHICLES, pa.int32()),
        _field(NUM_PEDESTRIANS, pa.int32()),
        _field(NUM_CYCLISTS, pa.int32()),
        _field(NUM_OTHERS, pa.int32()),
        _field(NUM_STEPS, pa.int32()),
        _field(T0_US, pa.int64(), "us", "first timestamp"),
        _field(DT_US, pa.int64(), "us", "median step"),
        _field(DURATION_S, pa.float64(), "s"),
        _field(T_US_IRREGULAR, pa.list_(pa.int64()), "us", "every timestamp; null when t_us = t0_us + step * dt_us"),
        _field(NUM_LANES, pa.int32()),
        _field(NUM_MAP_FEATURES, pa.int32()),
        _field(NUM_SIGNALS, pa.int32()),
        _field(SIGNALS_NUM_STEPS, pa.int32(), description="columns of the signal state array"),
        _field(ROAD_FRICTION, pa.float64(), "1", "tyre-road friction coefficient"),
        _field(EGO_LATENCY_S, pa.float64(), "s"),
        _field(POSITION_NOISE_M, pa.float64(), "m"),
        _field(HEADING_NOISE_RAD, pa.float64(), "rad"),
        _field(DETECTION_DROPOUT, pa.float64(), "1", "probability"),
        _field(AGENTS_MODE, _STR),
        _field(REACTIVE_AGENTS, _STR_LIST),
        _field(REPLAY_AGENTS, _STR_LIST),
        _field(TRACKS_KEY, _STR, description="content hash of t_us and the tracks"),
        _field(TRACKS_FILE, _STR, description="part file in tracks/ holding the key"),
        _field(TRACKS_ROW_GROUP, pa.int32(), description="row group of the key in tracks_file"),
        _field(MAP_KEY, _STR, description="content hash of the road map"),
        _field(MAP_FILE, _STR, description="part file in map_features/ holding the key"),
        _field(MAP_ROW_GROUP, pa.int32()),
        _field(SIGNALS_KEY, _STR, description="content hash of the signals; null when there are none"),
        _field(SIGNALS_FILE, _STR),
        _field(SIGNALS_ROW_GROUP, pa.int32()),
    ],
)

TRACKS_SCHEMA = _schema(
    TRACKS_TABLE,
    [
        _field(TRACKS_KEY, _STR, nullable=False),
        _field(AGENT_INDEX, pa.int32(), description="row of the agent in the scenario's tracks"),
        _field(AGENT_ID, _STR),
        _field(AGENT_TYPE, pa.int8(), description=_TYPE_DOC),
        _field(LENGTH_M, pa.float64(), "m"),
        _field(WIDTH_M, pa.float64(), "m"),
        _field(HEIGHT_M, pa.float64(), "m"),
        _field(STEP, pa.int32(), description="time step index"),
        _field(T_US, pa.int64(), "us"),
        _field(X_M, pa.float64(), "m", "box centre, world frame"),
        _field(Y_M, pa.float64(), "m"),
        _field(Z_M, pa.float64(), "m"),
        _field(YAW_RAD, pa.float64(), "rad", "heading, counter-clockwise from +x"),
        _field(VX_MPS, pa.float64(), "m/s", "velocity, world frame"),
        _field(VY_MPS, pa.float64(), "m/s"),
    ],
)

MAP_SCHEMA = _schema(
    MAP_TABLE,
    [
        _field(MAP_KEY, _STR, nullable=False),
        _field(ELEMENT_INDEX, pa.int32(), description="position among the map's lanes, or among its features"),
        _field(KIND, _STR, description="'lane' or a FeatureKind name in lower case"),
        _field(ELEMENT_ID, _STR),
        _field(X_M, _F64_LIST, "m", "lane centerline or feature points"),
        _field(Y_M, _F64_LIST, "m"),
        _field(Z_M, _F64_LIST, "m"),
        _field(LEFT_X_M, _F64_LIST, "m", "lane left boundary; null when unknown"),
        _field(LEFT_Y_M, _F64_LIST, "m"),
        _field(LEFT_Z_M, _F64_LIST, "m"),
        _field(RIGHT_X_M, _F64_LIST, "m", "lane right boundary; null when unknown"),
        _field(RIGHT_Y_M, _F64_LIST, "m"),
        _field(RIGHT_Z_M, _F64_LIST, "m"),
        _field(SPEED_LIMIT_MPS, pa.float64(), "m/s", "NaN when unknown; null for features"),
        _field(LANE_TYPE, _STR),
        _field(PREDECESSORS, _STR_LIST),
        _field(SUCCESSORS, _STR_LIST),
        _field(LEFT_NEIGHBORS, _STR_LIST),
        _field(RIGHT_NEIGHBORS, _STR_LIST),
        _field(SUBTYPE, _STR, description="feature subtype; null for lanes"),
        _field(LANE_IDS, _STR_LIST, description="lanes a feature refers to; null for lanes"),
    ],
)

SIGNALS_SCHEMA = _schema(
    SIGNALS_TABLE,
    [
        _field(SIGNALS_KEY, _STR, nullable=False),
        _field(SIGNAL_INDEX, pa.int32()),
        _field(LANE_ID, _STR, description="the lane the signal controls"),
        _field(STOP_X_M, pa.float64(), "m"),
        _field(STOP_Y_M, pa.float64(), "m"),
        _field(STOP_Z_M, pa.float64(), "m"),
        _field(STATES, pa.list_(pa.int8()), description="SignalState code per time step"),
    ],
)

SCHEMAS: dict[str, pa.Schema] = {
    SCENARIOS_TABLE: SCENARIOS_SCHEMA,
    TRACKS_TABLE: TRACKS_SCHEMA,
    MAP_TABLE: MAP_SCHEMA,
    SIGNALS_TABLE: SIGNALS_SCHEMA,
}
def _write_options(schema: pa.Schema, key: str | None) -> dict[str, Any]:
    """zstd; float columns byte-stream-split and never dictionary-encoded; statistics on the key only."""
    floats = [f.name for f in schema if pa.types.is_floating(f.type.value_type if pa.types.is_list(f.type) else f.type)]
    options: dict[str, Any] = {
        "compression": "zstd",
        "use_byte_stream_split": floats,
        "use_dictionary": [n for n in schema.names if n not in floats],
    }
    if key is not None:
        options["write_statistics"] = [key]
    return options



_KEY_COLUMN = {TRACKS_TABLE: TRACKS_KEY, MAP_TABLE: MAP_KEY, SIGNALS_TABLE: SIGNALS_KEY}
_LOCATION_COLUMNS = {
    TRACKS_TABLE: (TRACKS_KEY, TRACKS_FILE, TRACKS_ROW_GROUP),
    MAP_TABLE: (MAP_KEY, MAP_FILE, MAP_ROW_GROUP),
    SIGNALS_TABLE: (SIGNALS_KEY, SIGNALS_FILE, SIGNALS_ROW_GROUP),
}

_WRITE_OPTIONS = {
    SCENARIOS_TABLE: _write_options(SCENARIOS_SCHEMA, None),
    **{table: _write_options(SCHEMAS[table], key) for table, key in _KEY_COLUMN.items()},
}


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What one ``append`` did.

    Attributes:
        added: ids written, in input order.
        skipped: ids already in the library (or repeated in the input), not written again.
        files: part files written (committed).
        tracks_written, maps_written, signals_written: content keys written.
        tracks_reused, maps_reused, signals_reused: references to content already stored.
        bytes_written: total size of the files written [bytes].
    """

    added: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()
    tracks_written: int = 0
    tracks_reused: int = 0
    maps_written: int = 0
    maps_reused: int = 0
    signals_written: int = 0
    signals_reused: int = 0
    bytes_written: int = 0


# --- content keys ---------------------------------------------------------------------------


def _feed_array(h: Any, array: np.ndarray, dtype: str) -> None:
    a = np.ascontiguousarray(array, dtype=dtype)
    h.update(np.asarray(a.shape, "<i8").tobytes())
    h.update(a.tobytes())


def _feed_strings(h: Any, items: Iterable[object]) -> None:
    items = [str(i).encode() for i in items]
    h.update(len(items).to_bytes(8, "little"))
    for b in items:
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)


def _new_hash(kind: str, salt: str) -> Any:
    h = hashlib.blake2b(digest_size=16)
    _feed_strings(h, (kind, SCHEMA_VERSION, salt))
    return h


def tracks_key(t_us: np.ndarray, tracks: Tracks, salt: str = "") -> str:
    """Content hash of the timestamps and the tracks (hex, 32 characters)."""
    h = _new_hash(TRACKS_TABLE, salt)
    _feed_array(h, t_us, "<i8")
    _feed_strings(h, tracks.agent_ids)
    _feed_array(h, tracks.agent_types, "i1")
    for name in (*Tracks.SIZE_FIELDS, *Tracks.STATE_FIELDS):
        _feed_array(h, getattr(tracks, name), "<f8")
    _feed_array(h, tracks.valid, "?")
    return h.hexdigest()


def map_key(road_map: RoadMap, salt: str = "") -> str:
    """Content hash of a road map (hex, 32 characters)."""
    h = _new_hash(MAP_TABLE, salt)
    lanes, features = road_map.lanes, road_map.features
    # Every string and id list in one unambiguous JSON document; every point in one array.
    text = [
        [[l.id, l.lane_type, l.predecessors, l.successors, l.left_neighbors, l.right_neighbors] for l in lanes],
        [[f.id, int(f.kind), f.subtype, f.lane_ids] for f in features],
    ]
    h.update(json.dumps(text, ensure_ascii=False).encode())
    polylines = [p for l in lanes for p in (l.centerline, l.left_boundary, l.right_boundary)]
    polylines += [f.points for f in features]
    lengths = np.array([-1 if p is None else len(p) for p in polylines], "<i8")
    h.update(lengths.tobytes())
    present = [p for p in polylines if p is not None]
    if present:
        h.update(np.ascontiguousarray(np.concatenate(present), "<f8").tobytes())
    h.update(np.array([l.speed_limit for l in lanes], "<f8").tobytes())
    return h.hexdigest()


def signals_key(signals: Signals, salt: str = "") -> str:
    """Content hash of traffic signals (hex, 32 characters)."""
    h = _new_hash(SIGNALS_TABLE, salt)
    _feed_strings(h, signals.lane_ids)
    _feed_array(h, signals.states, "i1")
    _feed_array(h, signals.stop_points, "<f8")
    return h.hexdigest()


# --- encoding -------------------------------------------------------------------------------


def _xyz_lists(polylines: Sequence[np.ndarray | None]) -> list[pa.Array]:
    """Three list<double> columns (x, y, z) from (P, 3) polylines; None gives null entries."""
    lengths = np.array([0 if p is None else len(p) for p in polylines], np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int32)]).astype(np.int32))
    present = [p for p in polylines if p is not None]
    values = np.concatenate(present) if present else np.zeros((0, 3))
    nulls = np.array([p is None for p in polylines], bool)
    mask = pa.array(nulls) if nulls.any() else None
    return [
        pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(values[:, k])), type=_F64_LIST, mask=mask)
        for k in range(3)
    ]


def _encode_tracks(key: str, t_us: np.ndarray, tracks: Tracks) -> pa.Table:
    rows, steps = np.nonzero(tracks.valid)
    n = len(rows)
    ids = pa.DictionaryArray.from_arrays(pa.array(rows.astype(np.int32)), pa.array(tracks.agent_ids.tolist(), _STR))
    columns = {
        TRACKS_KEY: pa.repeat(pa.scalar(key, _STR), n),
        AGENT_INDEX: pa.array(rows.astype(np.int32)),
        AGENT_ID: ids.cast(_STR),
        AGENT_TYPE: pa.array(tracks.agent_types[rows]),
        LENGTH_M: pa.array(tracks.length[rows]),
        WIDTH_M: pa.array(tracks.width[rows]),
        HEIGHT_M: pa.array(tracks.height[rows]),
        STEP: pa.array(steps.astype(np.int32)),
        T_US: pa.array(np.asarray(t_us, np.int64)[steps]),
        X_M: pa.array(tracks.x[rows, steps]),
        Y_M: pa.array(tracks.y[rows, steps]),
        Z_M: pa.array(tracks.z[rows, steps]),
        YAW_RAD: pa.array(tracks.yaw[rows, steps]),
        VX_MPS: pa.array(tracks.vx[rows, steps]),
        VY_MPS: pa.array(tracks.vy[rows, steps]),
    }
    return pa.Table.from_pydict(columns, schema=TRACKS_SCHEMA)


def _encode_map(key: str, road_map: RoadMap) -> pa.Table:
    lanes, features = road_map.lanes, road_map.features
    n_l, n = len(lanes), len(lanes) + len(features)
    main = [lane.centerline for lane in lanes] + [f.points for f in features]
    left = [lane.left_boundary for lane in lanes] + [None] * len(features)
    right = [lane.right_boundary for lane in lanes] + [None] * len(features)

    lane_lists = {
        name: pa.array([list(getattr(lane, name)) for lane in lanes] + [None] * len(features), _STR_LIST)
        for name in (PREDECESSORS, SUCCESSORS, LEFT_NEIGHBORS, RIGHT_NEIGHBORS)
    }
    columns = {
        MAP_KEY: pa.repeat(pa.scalar(key, _STR), n),
        ELEMENT_INDEX: pa.array(np.r_[np.arange(n_l), np.arange(len(features))].astype(np.int32)),
        KIND: pa.array([LANE_KIND] * n_l + [f.kind.name.lower() for f in features], _STR),
        ELEMENT_ID: pa.array([lane.id for lane in lanes] + [f.id for f in features], _STR),
        **dict(zip((X_M, Y_M, Z_M), _xyz_lists(main))),
        **dict(zip((LEFT_X_M, LEFT_Y_M, LEFT_Z_M), _xyz_lists(left))),
        **dict(zip((RIGHT_X_M, RIGHT_Y_M, RIGHT_Z_M), _xyz_lists(right))),
        SPEED_LIMIT_MPS: pa.array([lane.speed_limit for lane in lanes] + [None] * len(features), pa.float64()),
        LANE_TYPE: pa.array([lane.lane_type for lane in lanes] + [None] * len(features), _STR),
        **lane_lists,
        SUBTYPE: pa.array([None] * n_l + [f.subtype for f in features], _STR),
        LANE_IDS: pa.array([None] * n_l + [list(f.lane_ids) for f in features], _STR_LIST),
    }
    return pa.Table.from_pydict(columns, schema=MAP_SCHEMA)


def _encode_signals(key: str, signals: Signals) -> pa.Table:
    s = signals.num_signals
    states = signals.states
    columns = {
        SIGNALS_KEY: pa.repeat(pa.scalar(key, _STR), s),
        SIGNAL_INDEX: pa.array(np.arange(s, dtype=np.int32)),
        LANE_ID: pa.array(signals.lane_ids.tolist(), _STR),
        STOP_X_M: pa.array(signals.stop_points[:, 0]),
        STOP_Y_M: pa.array(signals.stop_points[:, 1]),
        STOP_Z_M: pa.array(signals.stop_points[:, 2]),
        STATES: pa.ListArray.from_arrays(
            pa.array(np.arange(s + 1, dtype=np.int32) * states.shape[1]), pa.array(states.ravel(), pa.int8())
        ),
    }
    return pa.Table.from_pydict(columns, schema=SIGNALS_SCHEMA)


def _scenario_row(s: Scenario) -> dict[str, Any]:
    """The scenarios-table fields that depend on the scenario alone (not where its data lives)."""
    p, c, t = s.provenance, s.conditions, s.t_us
    types = np.bincount(s.tracks.agent_types.astype(np.int64), minlength=len(AgentType))
    t0, dt = int(t[0]), s.dt_us
    regular = bool(np.array_equal(t, t0 + np.arange(t.size, dtype=np.int64) * dt))
    return {
        SCENARIO_ID: s.id,
        DATASET: p.dataset,
        SOURCE_FILE: p.source_file,
        SOURCE_LOG_ID: p.source_log_id,
        FRAME: p.frame,
        NOTES: p.notes,
        TAGS: list(s.tags),
        EGO_ID: s.ego_id,
        EGO_INDEX: s.ego_index,
        NUM_AGENTS: s.num_agents,
        NUM_VEHICLES: int(types[AgentType.VEHICLE]),
        NUM_PEDESTRIANS: int(types[AgentType.PEDESTRIAN]),
        NUM_CYCLISTS: int(types[AgentType.CYCLIST]),
        NUM_OTHERS: int(types[AgentType.OTHER]),
        NUM_STEPS: s.num_steps,
        T0_US: t0,
        DT_US: dt,
        DURATION_S: s.duration_s,
        T_US_IRREGULAR: None if regular else t.tolist(),
        NUM_LANES: len(s.road_map.lanes),
        NUM_MAP_FEATURES: len(s.road_map.features),
        NUM_SIGNALS: s.signals.num_signals,
        SIGNALS_NUM_STEPS: int(s.signals.states.shape[1]) if s.signals.states.ndim == 2 else 0,
        ROAD_FRICTION: c.road_friction,
        EGO_LATENCY_S: c.ego_latency_s,
        POSITION_NOISE_M: c.position_noise_m,
        HEADING_NOISE_RAD: c.heading_noise_rad,
        DETECTION_DROPOUT: c.detection_dropout,
        AGENTS_MODE: c.agents_mode,
        REACTIVE_AGENTS: list(c.reactive_agents),
        REPLAY_AGENTS: list(c.replay_agents),
    }


# --- decoding -------------------------------------------------------------------------------


def _np(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()


def _decode_tracks(table: pa.Table, num_agents: int, num_steps: int, source: str) -> Tracks:
    rows = _np(table, AGENT_INDEX).astype(np.intp)
    steps = _np(table, STEP).astype(np.intp)
    if rows.size and (rows.min() < 0 or rows.max() >= num_agents or steps.min() < 0 or steps.max() >= num_steps):
        raise ScenarioError(source, AGENT_INDEX, f"rows out of range for ({num_agents}, {num_steps}) tracks")
    agents, first = np.unique(rows, return_index=True)
    if agents.size != num_agents:
        raise ScenarioError(source, AGENT_INDEX, f"{agents.size} agents stored, the index says {num_agents}")
    valid = np.zeros((num_agents, num_steps), bool)
    valid[rows, steps] = True
    fields: dict[str, Any] = {"valid": valid}
    for name, column in (("x", X_M), ("y", Y_M), ("z", Z_M), ("yaw", YAW_RAD), ("vx", VX_MPS), ("vy", VY_MPS)):
        array = np.zeros((num_agents, num_steps))
        array[rows, steps] = _np(table, column)
        fields[name] = array
    fields["agent_ids"] = np.array(table.column(AGENT_ID).take(pa.array(first)).to_pylist(), dtype=np.str_)
    fields["agent_types"] = _np(table, AGENT_TYPE)[first]
    for name, column in (("length", LENGTH_M), ("width", WIDTH_M), ("height", HEIGHT_M)):
        fields[name] = _np(table, column)[first]
    return Tracks(**fields)


def _points_from(table: pa.Table, names: tuple[str, str, str], source: str) -> list[np.ndarray | None]:
    """Per row, the (P, 3) points held by three list columns (None where null)."""
    cols = [table.column(n).combine_chunks() for n in names]
    offsets = [c.offsets.to_numpy() for c in cols]
    if any(not np.array_equal(offsets[0], o) for o in offsets[1:]):
        raise ScenarioError(source, names[0], "x, y and z lists differ in length")
    null = cols[0].is_null().to_numpy(zero_copy_only=False)
    xyz = np.column_stack([c.values.to_numpy(zero_copy_only=False) for c in cols])
    starts, stops = offsets[0][:-1], offsets[0][1:]
    return [None if null[i] else xyz[starts[i] : stops[i]] for i in range(len(null))]


def _decode_map(table: pa.Table, num_lanes: int, num_features: int, source: str) -> RoadMap:
    kinds = table.column(KIND).to_pylist()
    if len(kinds) != num_lanes + num_features or kinds.count(LANE_KIND) != num_lanes:
        raise ScenarioError(source, KIND, f"{len(kinds)} map rows do not match {num_lanes} lanes + {num_features} features")
    main = _points_from(table, (X_M, Y_M, Z_M), source)
    left = _points_from(table, (LEFT_X_M, LEFT_Y_M, LEFT_Z_M), source)
    right = _points_from(table, (RIGHT_X_M, RIGHT_Y_M, RIGHT_Z_M), source)
    ids = table.column(ELEMENT_ID).to_pylist()
    order = _np(table, ELEMENT_INDEX)
    speed = table.column(SPEED_LIMIT_MPS).to_numpy(zero_copy_only=False)
    cols = {n: table.column(n).to_pylist() for n in (LANE_TYPE, PREDECESSORS, SUCCESSORS, LEFT_NEIGHBORS, RIGHT_NEIGHBORS, SUBTYPE, LANE_IDS)}
    lanes: list[tuple[int, Lane]] = []
    features: list[tuple[int, MapFeature]] = []
    try:
        for i, kind in enumerate(kinds):
            if main[i] is None:
                raise ScenarioError(source, X_M, f"map element {ids[i]!r} has no points")
            if kind == LANE_KIND:
                lane = Lane(
                    ids[i],
                    main[i],
                    left[i],
                    right[i],
                    float(speed[i]),
                    cols[LANE_TYPE][i],
                    tuple(cols[PREDECESSORS][i] or ()),
                    tuple(cols[SUCCESSORS][i] or ()),
                    tuple(cols[LEFT_NEIGHBORS][i] or ()),
                    tuple(cols[RIGHT_NEIGHBORS][i] or ()),
                )
                lanes.append((int(order[i]), lane))
            else:
                feature = MapFeature(ids[i], FeatureKind[kind.upper()], main[i], cols[SUBTYPE][i] or "", tuple(cols[LANE_IDS][i] or ()))
                features.append((int(order[i]), feature))
    except KeyError as exc:
        raise ScenarioError(source, KIND, f"unknown map element kind {exc.args[0]!r}") from None
    lanes.sort(key=lambda item: item[0])
    features.sort(key=lambda item: item[0])
    return RoadMap(tuple(lane for _, lane in lanes), tuple(f for _, f in features))


def _decode_signals(table: pa.Table, num_signals: int, num_steps: int, source: str) -> Signals:
    if table.num_rows != num_signals:
        raise ScenarioError(source, SIGNAL_INDEX, f"{table.num_rows} signals stored, the index says {num_signals}")
    order = np.argsort(_np(table, SIGNAL_INDEX), kind="stable")
    states_col = table.column(STATES).combine_chunks()
    states = states_col.flatten().to_numpy(zero_copy_only=False).astype(np.int8)
    if states.size != num_signals * num_steps:
        raise ScenarioError(source, STATES, f"{states.size} states, expected {num_signals} x {num_steps}")
    stop = np.column_stack([_np(table, STOP_X_M), _np(table, STOP_Y_M), _np(table, STOP_Z_M)])
    lane_ids = np.array(table.column(LANE_ID).to_pylist(), dtype=np.str_)
    return Signals(lane_ids[order], states.reshape(num_signals, num_steps)[order], stop[order])


# --- the library ----------------------------------------------------------------------------


def _part_name() -> str:
    """A new part file name; names sort in the order they were made."""
    return f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}{PART_SUFFIX}"


def _is_part(name: str) -> bool:
    return name.startswith("part-") and name.endswith(PART_SUFFIX)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: Columns added after schema version 1 was first written: older parts lack them (read as null).
OPTIONAL_COLUMNS = frozenset({REPLAY_AGENTS})


def _check_schema(schema: pa.Schema, table: str, path: Path) -> None:
    meta = schema.metadata or {}
    version = meta.get(META_SCHEMA_VERSION)
    if version is None:
        raise ScenarioError(path, "schema metadata", f"no {META_SCHEMA_VERSION.decode()} (not a library part file)")
    if int(version) > SCHEMA_VERSION:
        raise ScenarioError(path, "schema metadata", f"schema version {int(version)} is newer than this code's {SCHEMA_VERSION}")
    names = set(schema.names)
    for name in SCHEMAS[table].names:
        if name not in names and name not in OPTIONAL_COLUMNS:
            raise ScenarioError(path, name, f"missing column in the {table} table")


class _LRU(OrderedDict):
    """A small least-recently-used map; ``on_evict`` is called with each evicted value."""

    def __init__(self, size: int, on_evict: Any = None) -> None:
        super().__init__()
        self.size = size
        self.on_evict = on_evict

    def get_or(self, key: Any, make: Any) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        if self.size > 0:
            self[key] = value
            while len(self) > self.size:
                _, old = self.popitem(last=False)
                if self.on_evict is not None:
                    self.on_evict(old)
        return value


class ScenarioLibrary:
    """A directory of scenarios stored as four Parquet tables (see the module docstring).

    Opening reads the scenarios table (the index) only; ``load`` then reads one row group per
    data table. The index, open Parquet files and a few decoded tracks and maps are cached in
    the instance. An instance sees other processes' appends after ``refresh()``. Appends from
    several processes are serialised by a lock file; one instance is not thread-safe.

    Args:
        root: the library directory (made by ``ScenarioLibrary.create``).
        open_files: Parquet files kept open.
        decoded_cache: decoded tracks and maps kept (each); 0 disables the cache.

    Raises:
        ScenarioError: the directory is not a library, or a part file is unreadable or corrupt.
    """

    def __init__(self, root: str | Path, *, open_files: int = DEFAULT_OPEN_FILES, decoded_cache: int = DEFAULT_DECODED_CACHE) -> None:
        self.root = Path(root)
        marker = self.root / MARKER_FILE
        try:
            info = json.loads(marker.read_text())
        except FileNotFoundError:
            raise ScenarioError(self.root, "", f"not a scenario library (no {MARKER_FILE}); make one with ScenarioLibrary.create") from None
        except (OSError, ValueError) as exc:
            raise ScenarioError(marker, "", f"unreadable library marker: {exc}") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT_NAME:
            raise ScenarioError(marker, "format", f"not a {FORMAT_NAME} marker")
        if int(info.get("schema_version", 0)) > SCHEMA_VERSION:
            raise ScenarioError(marker, "schema_version", f"{info.get('schema_version')} is newer than this code's {SCHEMA_VERSION}")
        self._files: _LRU = _LRU(max(1, open_files), on_evict=lambda f: f.close())
        self._tracks_cache: _LRU = _LRU(decoded_cache)
        self._map_cache: _LRU = _LRU(decoded_cache)
        self._parts: dict[str, tuple[pa.Table, frozenset[str]]] = {}  # name -> (rows, parts it supersedes)
        self._live: list[str] = []
        self._index: pa.Table = SCENARIOS_SCHEMA.empty_table()
        self._row_of: dict[str, int] = {}
        self._locations: dict[str, dict[str, tuple[str, int]]] | None = None  # built on the first append
        self.refresh()

    # -- creation and opening --

    @classmethod
    def create(cls, root: str | Path, *, exist_ok: bool = False, **options: Any) -> ScenarioLibrary:
        """Make an empty library at ``root`` (created with its parents) and open it.

        With ``exist_ok`` an existing library is opened instead. A non-empty directory that is
        not a library is refused.
        """
        root = Path(root)
        if (root / MARKER_FILE).exists():
            if not exist_ok:
                raise ScenarioError(root, "", "a scenario library already exists here")
            return cls(root, **options)
        if root.exists() and any(root.iterdir()):
            raise ScenarioError(root, "", "the directory is not empty and is not a scenario library")
        for table in TABLES:
            (root / table).mkdir(parents=True, exist_ok=True)
        info = {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "tables": list(TABLES),
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmp = root / f".{MARKER_FILE}{TMP_SUFFIX}"
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, root / MARKER_FILE)
        return cls(root, **options)

    def refresh(self) -> None:
        """Read index parts written since the last refresh (by this or another process)."""
        directory = self.root / SCENARIOS_TABLE
        try:
            names = sorted(n for n in os.listdir(directory) if _is_part(n))
        except OSError as exc:
            raise ScenarioError(directory, "", f"cannot list the scenarios table: {exc.strerror or exc}") from None
        new = [n for n in names if n not in self._parts]
        for name in new:
            self._parts[name] = self._read_index_part(directory / name)
        for name in set(self._parts) - set(names):  # removed by a compaction
            del self._parts[name]
        superseded = frozenset().union(*(sup for _, sup in self._parts.values()))
        live = [n for n in names if n not in superseded]
        if live == self._live:
            return
        if live[: len(self._live)] == self._live:
            added = [self._parts[n][0] for n in live[len(self._live) :]]
        else:  # a compaction replaced parts this instance had read: start again
            self._index, self._row_of, self._locations = SCENARIOS_SCHEMA.empty_table(), {}, None
            added = [self._parts[n][0] for n in live]
        if added:
            self._add_rows(pa.concat_tables(added))
        self._live = live
        self._index = self._index.combine_chunks()

    @staticmethod
    def _read_index_part(path: Path) -> tuple[pa.Table, frozenset[str]]:
        try:
            with pq.ParquetFile(path) as handle:
                schema = handle.schema_arrow
                _check_schema(schema, SCENARIOS_TABLE, path)
                present = set(schema.names)
                table = handle.read(columns=[n for n in SCENARIOS_SCHEMA.names if n in present], use_threads=False)
            for name in OPTIONAL_COLUMNS - present:  # a part written before the column existed
                f = SCENARIOS_SCHEMA.field(name)
                table = table.add_column(SCENARIOS_SCHEMA.get_field_index(name), f, pa.nulls(table.num_rows, f.type))
        except (OSError, pa.ArrowException) as exc:
            raise ScenarioError(path, "", f"unreadable Parquet file: {exc}") from None
        try:
            supersedes = frozenset(json.loads((schema.metadata or {}).get(META_SUPERSEDES, b"[]")))
            table = table.select(SCENARIOS_SCHEMA.names).cast(SCENARIOS_SCHEMA)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise ScenarioError(path, "", f"does not match the scenarios schema: {exc}") from None
        return table, supersedes

    def _add_rows(self, table: pa.Table) -> None:
        """Append index rows to the in-memory index (the first row of an id wins)."""
        start = self._index.num_rows
        ids = table.column(SCENARIO_ID).to_pylist()
        self._index = pa.concat_tables([self._index, table]) if start else table
        row_of = dict(zip(reversed(ids), range(start + len(ids) - 1, start - 1, -1)))
        for sid, row in row_of.items():
            self._row_of.setdefault(sid, row)
        if self._locations is not None:
            self._add_locations(table)

    def _add_locations(self, table: pa.Table) -> None:
        assert self._locations is not None
        for data_table, (key_col, file_col, rg_col) in _LOCATION_COLUMNS.items():
            locations = self._locations[data_table]
            keys = table.column(key_col).to_pylist()
            files = table.column(file_col).to_pylist()
            groups = table.column(rg_col).to_pylist()
            for key, file, group in zip(keys, files, groups):
                if key is not None:
                    locations.setdefault(key, (file, group))

    def _stored_locations(self) -> dict[str, dict[str, tuple[str, int]]]:
        """Where every stored content key lives, by data table (built from the index when first needed)."""
        if self._locations is None:
            self._locations = {t: {} for t in DATA_TABLES}
            self._add_locations(self._index)
        return self._locations

    def _referenced_parts(self) -> dict[str, set[str]]:
        """Data part files referenced by the index, by data table: the committed ones."""
        out = {}
        for data_table, (_, file_col, _) in _LOCATION_COLUMNS.items():
            out[data_table] = {n for n in pc.unique(self._index.column(file_col)).to_pylist() if n is not None}
        return out

    # -- queries --

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, scenario_id: object) -> bool:
        return scenario_id in self._row_of

    def __repr__(self) -> str:
        return f"ScenarioLibrary({str(self.root)!r}, {len(self)} scenarios)"

    def ids(self, *, dataset: str | None = None, tag: str | None = None) -> list[str]:
        """Scenario ids in the order they were added, optionally of one dataset and/or with a tag."""
        index = self._selected(dataset, tag)
        return index.column(SCENARIO_ID).to_pylist()

    def _selected(self, dataset: str | None, tag: str | None) -> pa.Table:
        index = self._index
        if dataset is not None:
            index = index.filter(pc.equal(index.column(DATASET), dataset))
        if tag is not None:
            tags = index.column(TAGS).combine_chunks()
            hits = np.zeros(index.num_rows, bool)
            flat = tags.flatten()
            if len(flat):
                parents = pc.list_parent_indices(tags).to_numpy()
                hits[parents[pc.equal(flat, tag).to_numpy(zero_copy_only=False)]] = True
            index = index.filter(pa.array(hits))
        return index

    def summaries(self, *, dataset: str | None = None, tag: str | None = None) -> pd.DataFrame:
        """One row per scenario with the columns of ``Scenario.summary()`` plus ``tags``, read from the index."""
        index = self._selected(dataset, tag)
        columns = {
            "id": SCENARIO_ID,
            "dataset": DATASET,
            "source_file": SOURCE_FILE,
            "log_id": SOURCE_LOG_ID,
            "ego_id": EGO_ID,
            "num_agents": NUM_AGENTS,
            "num_vehicles": NUM_VEHICLES,
            "num_pedestrians": NUM_PEDESTRIANS,
            "num_cyclists": NUM_CYCLISTS,
            "num_others": NUM_OTHERS,
            "num_steps": NUM_STEPS,
            "dt_s": DT_US,
            "duration_s": DURATION_S,
            "num_lanes": NUM_LANES,
            "num_map_features": NUM_MAP_FEATURES,
            "num_signals": NUM_SIGNALS,
            "tags": TAGS,
        }
        frame = pd.DataFrame({out: index.column(col).to_pandas() for out, col in columns.items()})
        frame["dt_s"] = frame["dt_s"].astype(np.float64) / 1e6
        frame["tags"] = [tuple(t) for t in index.column(TAGS).to_pylist()]
        return frame

    def index_table(self) -> pa.Table:
        """The whole scenarios table (one row per scenario), as read on open."""
        return self._index

    # -- loading --

    def _row(self, scenario_id: str) -> dict[str, Any]:
        try:
            row = self._row_of[scenario_id]
        except KeyError:
            raise KeyError(f"scenario {scenario_id!r} is not in the library at {self.root}") from None
        return self._index.slice(row, 1).to_pylist()[0]

    def _file(self, table: str, name: str) -> pq.ParquetFile:
        path = self.root / table / name

        def open_() -> pq.ParquetFile:
            try:
                handle = pq.ParquetFile(path)
            except FileNotFoundError:
                raise ScenarioError(path, "", "part file is missing") from None
            except (OSError, pa.ArrowException) as exc:
                raise ScenarioError(path, "", f"unreadable Parquet file: {exc}") from None
            try:
                _check_schema(handle.schema_arrow, table, path)
            except ScenarioError:
                handle.close()
                raise
            return handle

        return self._files.get_or((table, name), open_)

    def _read_group(self, table: str, name: str, group: int, key: str) -> tuple[pa.Table, str]:
        path = self.root / table / name
        handle = self._file(table, name)
        if not 0 <= group < handle.num_row_groups:
            raise ScenarioError(path, "", f"row group {group} does not exist ({handle.num_row_groups} row groups)")
        try:
            data = handle.read_row_group(group, columns=SCHEMAS[table].names, use_threads=False)
        except (OSError, pa.ArrowException) as exc:
            raise ScenarioError(path, "", f"unreadable row group {group}: {exc}") from None
        keys = data.column(_KEY_COLUMN[table])
        if data.num_rows == 0 or keys[0].as_py() != key or keys[-1].as_py() != key:
            raise ScenarioError(path, _KEY_COLUMN[table], f"row group {group} does not hold key {key}")
        return data, f"{path} (row group {group})"

    def load(self, scenario_id: str) -> Scenario:
        """The scenario ``scenario_id``, reading only its rows.

        Raises:
            KeyError: the id is not in the library (the message names the id and the library).
            ScenarioError: a part file is missing, unreadable or inconsistent (names the file).
        """
        r = self._row(scenario_id)
        n_agents, n_steps = r[NUM_AGENTS], r[NUM_STEPS]

        def tracks() -> Tracks:
            data, src = self._read_group(TRACKS_TABLE, r[TRACKS_FILE], r[TRACKS_ROW_GROUP], r[TRACKS_KEY])
            return _decode_tracks(data, n_agents, n_steps, src)

        def road_map() -> RoadMap:
            data, src = self._read_group(MAP_TABLE, r[MAP_FILE], r[MAP_ROW_GROUP], r[MAP_KEY])
            return _decode_map(data, r[NUM_LANES], r[NUM_MAP_FEATURES], src)

        try:
            track_data = self._tracks_cache.get_or(r[TRACKS_KEY], tracks)
            map_data = self._map_cache.get_or(r[MAP_KEY], road_map)
            if r[SIGNALS_KEY] is not None:
                data, src = self._read_group(SIGNALS_TABLE, r[SIGNALS_FILE], r[SIGNALS_ROW_GROUP], r[SIGNALS_KEY])
                signals = _decode_signals(data, r[NUM_SIGNALS], r[SIGNALS_NUM_STEPS], src)
            else:
                k = r[SIGNALS_NUM_STEPS]
                signals = Signals(np.zeros(0, np.str_), np.zeros((0, k), np.int8), np.zeros((0, 3)))
            if r[T_US_IRREGULAR] is not None:
                t_us = np.asarray(r[T_US_IRREGULAR], np.int64)
            else:
                t_us = r[T0_US] + np.arange(n_steps, dtype=np.int64) * r[DT_US]
            return Scenario(
                id=r[SCENARIO_ID],
                provenance=Provenance(r[DATASET], r[SOURCE_FILE], r[SOURCE_LOG_ID], r[FRAME], r[NOTES]),
                t_us=t_us,
                tracks=track_data,
                ego_index=r[EGO_INDEX],
                road_map=map_data,
                signals=signals,
                tags=tuple(r[TAGS] or ()),
                conditions=Conditions(
                    road_friction=r[ROAD_FRICTION],
                    ego_latency_s=r[EGO_LATENCY_S],
                    position_noise_m=r[POSITION_NOISE_M],
                    heading_noise_rad=r[HEADING_NOISE_RAD],
                    detection_dropout=r[DETECTION_DROPOUT],
                    agents_mode=r[AGENTS_MODE],
                    reactive_agents=tuple(r[REACTIVE_AGENTS] or ()),
                    replay_agents=tuple(r.get(REPLAY_AGENTS) or ()),
                ),
            )
        except ScenarioError as exc:
            if str(self.root) in exc.source:
                raise
            # The stored rows do not make a valid scenario: name the library and the scenario.
            raise ScenarioError(
                f"{self.root} (scenario {scenario_id})", exc.field, f"stored data is inconsistent: {exc.problem}"
            ) from None

    def __getitem__(self, scenario_id: str) -> Scenario:
        return self.load(scenario_id)

    def iter_scenarios(
        self, ids: Iterable[str] | None = None, *, dataset: str | None = None, tag: str | None = None
    ) -> Iterator[Scenario]:
        """Load scenarios one by one: ``ids`` in their order, else every (filtered) id in stored order."""
        for scenario_id in self.ids(dataset=dataset, tag=tag) if ids is None else ids:
            yield self.load(scenario_id)

    def close(self) -> None:
        """Close the open Parquet files (the instance stays usable; files reopen on demand)."""
        while self._files:
            _, handle = self._files.popitem()
            handle.close()

    def __enter__(self) -> ScenarioLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing --

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        path = self.root / LOCK_FILE
        with open(path, "a+b") as fh:
            try:
                import fcntl
            except ImportError:  # not POSIX: appends are not guarded across processes
                yield
                return
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _remove_uncommitted(self) -> None:
        """Delete temp files and data parts no index row references (left by a crash; under the lock)."""
        referenced = self._referenced_parts()
        for table in TABLES:
            directory = self.root / table
            for name in os.listdir(directory):
                stale_tmp = name.startswith(".") and name.endswith(TMP_SUFFIX)
                orphan = table != SCENARIOS_TABLE and _is_part(name) and name not in referenced[table]
                if stale_tmp or orphan:
                    with contextlib.suppress(FileNotFoundError):
                        (directory / name).unlink()

    def _commit_index(self, index: pa.Table, supersedes: Sequence[str] = ()) -> Path:
        """Write ``index`` as a new scenarios part: temp file, fsync, rename (the commit point)."""
        name = _part_name()
        if supersedes:
            meta = dict(SCENARIOS_SCHEMA.metadata) | {META_SUPERSEDES: json.dumps(sorted(supersedes)).encode()}
            index = index.replace_schema_metadata(meta)
        tmp = self.root / SCENARIOS_TABLE / f".{name}{TMP_SUFFIX}"
        try:
            pq.write_table(index, tmp, **_WRITE_OPTIONS[SCENARIOS_TABLE])
            _fsync(tmp)
            os.replace(tmp, self.root / SCENARIOS_TABLE / name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.root / SCENARIOS_TABLE, os.O_RDONLY)
            os.fsync(dir_fd)
            os.close(dir_fd)
        return self.root / SCENARIOS_TABLE / name

    def append(
        self,
        scenarios: Iterable[Scenario],
        *,
        dedup: bool = True,
        scenarios_per_part: int = DEFAULT_SCENARIOS_PER_PART,
        track_rows_per_part: int = DEFAULT_TRACK_ROWS_PER_PART,
    ) -> AppendResult:
        """Write the scenarios not yet in the library; all or nothing.

        Ids already stored (or repeated in ``scenarios``) are skipped and reported, so appending
        the same import twice changes nothing. ``scenarios`` may be any iterable (a generator
        keeps memory bounded). Data parts are written as the scenarios stream in; one scenarios
        part, renamed into place last, commits them all. If anything fails or the process dies
        before that, the library is unchanged (uncommitted data parts are deleted).

        Args:
            scenarios: the scenarios to add.
            dedup: store content shared with stored scenarios once (False stores a copy per
                scenario; useful only to measure what dedup saves).
            scenarios_per_part: most scenarios per data part file.
            track_rows_per_part: most tracks rows per part file (a single larger tracks key still
                gets its own part).
        """
        added: list[str] = []
        skipped: list[str] = []
        files: list[Path] = []
        counts = dict.fromkeys(("tracks_written", "tracks_reused", "maps_written", "maps_reused", "signals_written", "signals_reused"), 0)
        with self._write_lock():
            self.refresh()
            self._remove_uncommitted()
            stored = self._stored_locations()
            pending: dict[str, dict[str, tuple[str, int]]] = {t: {} for t in DATA_TABLES}
            index_parts: list[pa.Table] = []
            seen: set[str] = set()
            chunk: list[Scenario] = []
            rows = 0
            try:
                for scenario in scenarios:
                    if not isinstance(scenario, Scenario):
                        raise TypeError(f"append takes Scenario objects, got {type(scenario).__name__}")
                    if scenario.id in self._row_of or scenario.id in seen:
                        skipped.append(scenario.id)
                        continue
                    seen.add(scenario.id)
                    size = int(scenario.tracks.valid.sum())
                    if chunk and (len(chunk) >= scenarios_per_part or rows + size > track_rows_per_part):
                        index_parts.append(self._write_data_part(chunk, dedup, stored, pending, counts, files))
                        chunk, rows = [], 0
                    chunk.append(scenario)
                    rows += size
                    added.append(scenario.id)
                if chunk:
                    index_parts.append(self._write_data_part(chunk, dedup, stored, pending, counts, files))
                if index_parts:
                    index = pa.concat_tables(index_parts)
                    files.append(self._commit_index(index))
            except BaseException:
                for path in files:  # data parts of this append, not committed
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                raise
            if index_parts:
                self._parts[files[-1].name] = (index, frozenset())
                self._live.append(files[-1].name)
                self._add_rows(index)
        return AppendResult(
            added=tuple(added),
            skipped=tuple(skipped),
            files=tuple(files),
            bytes_written=sum(f.stat().st_size for f in files),
            **counts,
        )

    def _write_data_part(
        self,
        chunk: list[Scenario],
        dedup: bool,
        stored: dict[str, dict[str, tuple[str, int]]],
        pending: dict[str, dict[str, tuple[str, int]]],
        counts: dict[str, int],
        files: list[Path],
    ) -> pa.Table:
        """Write the new content of ``chunk`` as one part per data table; the chunk's index rows."""
        name = _part_name()
        part = _PartWriter(self.root, name)
        key_memo: dict[tuple[str, int, bytes], str] = {}  # by object identity: ego variants share objects
        keep_alive: list[object] = []  # so that the ids in key_memo stay unique
        labels = {TRACKS_TABLE: "tracks", MAP_TABLE: "maps", SIGNALS_TABLE: "signals"}

        def locate(table: str, obj: object, extra: bytes, make_key: Any, encode: Any, salt: str) -> tuple[str, str, int]:
            """The key of ``obj`` and where it is stored, writing it first when it is new."""
            memo = (table, id(obj), extra)
            key = key_memo.get(memo) if dedup else None
            if key is None:
                key = make_key(salt)
                if dedup:
                    key_memo[memo] = key
                    keep_alive.append(obj)
            where = stored[table].get(key) or pending[table].get(key)
            if where is None:
                where = pending[table][key] = (name, part.add(table, encode(key)))
                counts[f"{labels[table]}_written"] += 1
            else:
                counts[f"{labels[table]}_reused"] += 1
            return key, where[0], where[1]

        rows = []
        try:
            for s in chunk:
                salt = "" if dedup else s.id
                row = _scenario_row(s)
                tk, tf, tg = locate(
                    TRACKS_TABLE,
                    s.tracks,
                    s.t_us.tobytes(),
                    lambda salt, s=s: tracks_key(s.t_us, s.tracks, salt),
                    lambda key, s=s: _encode_tracks(key, s.t_us, s.tracks),
                    salt,
                )
                mk, mf, mg = locate(
                    MAP_TABLE, s.road_map, b"", lambda salt, s=s: map_key(s.road_map, salt), lambda key, s=s: _encode_map(key, s.road_map), salt
                )
                row |= {TRACKS_KEY: tk, TRACKS_FILE: tf, TRACKS_ROW_GROUP: tg, MAP_KEY: mk, MAP_FILE: mf, MAP_ROW_GROUP: mg}
                if s.signals.num_signals:
                    sk, sf, sg = locate(
                        SIGNALS_TABLE,
                        s.signals,
                        b"",
                        lambda salt, s=s: signals_key(s.signals, salt),
                        lambda key, s=s: _encode_signals(key, s.signals),
                        salt,
                    )
                    row |= {SIGNALS_KEY: sk, SIGNALS_FILE: sf, SIGNALS_ROW_GROUP: sg}
                else:
                    row |= {SIGNALS_KEY: None, SIGNALS_FILE: None, SIGNALS_ROW_GROUP: None}
                rows.append(row)
            files += part.finish_data()
        except BaseException:
            part.abort()
            for table in DATA_TABLES:  # keys of this part are not stored after all
                pending[table] = {k: v for k, v in pending[table].items() if v[0] != name}
            raise
        return pa.Table.from_pylist(rows, schema=SCENARIOS_SCHEMA)

    def compact_index(self) -> int:
        """Rewrite the scenarios table as one part (after many small appends); the parts replaced.

        The new part lists the parts it supersedes, so a crash before they are deleted leaves
        no duplicate rows for this library's readers; the next compaction or append removes them.
        """
        with self._write_lock():
            self.refresh()
            old = list(self._live)
            if len(old) <= 1:
                return 0
            self._commit_index(self._index, supersedes=old)
            for name in old:
                with contextlib.suppress(FileNotFoundError):
                    (self.root / SCENARIOS_TABLE / name).unlink()
            self.refresh()
        return len(old)


class _PartWriter:
    """The data part files of one commit: a Parquet writer per table, fed by its own thread.

    Compression runs in the background (pyarrow releases the GIL) while the caller hashes and
    encodes the next scenario. Row groups keep the order of ``add``.
    """

    #: Encoded tables queued before ``add`` waits for the writers.
    MAX_PENDING = 8

    def __init__(self, root: Path, name: str) -> None:
        self.root, self.name = root, name
        self._writers: dict[str, tuple[pq.ParquetWriter, Path, ThreadPoolExecutor]] = {}
        self._groups = dict.fromkeys(DATA_TABLES, 0)
        self._pending: deque[Future] = deque()
        self._final: list[Path] = []

    def add(self, table: str, data: pa.Table) -> int:
        """Queue ``data`` as the next row group of ``table``'s part file; its row-group index."""
        if table not in self._writers:
            tmp = self.root / table / f".{self.name}{TMP_SUFFIX}"
            writer = pq.ParquetWriter(tmp, SCHEMAS[table], **_WRITE_OPTIONS[table])
            self._writers[table] = (writer, tmp, ThreadPoolExecutor(1, thread_name_prefix=f"library-{table}"))
        writer, _, pool = self._writers[table]
        self._pending.append(pool.submit(writer.write_table, data, row_group_size=max(1, data.num_rows)))
        while len(self._pending) > self.MAX_PENDING:
            self._pending.popleft().result()
        group = self._groups[table]
        self._groups[table] += 1
        return group

    def _drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()
        for _, _, pool in self._writers.values():
            pool.shutdown(wait=True)

    def finish_data(self) -> list[Path]:
        """Write out, close, fsync and rename every data part into place; their final paths."""
        self._drain()
        for table, (writer, tmp, _) in self._writers.items():
            writer.close()
            _fsync(tmp)
            final = self.root / table / self.name
            os.replace(tmp, final)
            self._final.append(final)
        return list(self._final)

    def abort(self) -> None:
        """Remove whatever this part wrote (temporary or renamed data parts)."""
        with contextlib.suppress(BaseException):
            self._drain()
        for writer, tmp, _ in self._writers.values():
            with contextlib.suppress(Exception):
                writer.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        for path in self._final:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def open_library(root: str | Path, **options: Any) -> ScenarioLibrary:
    """Open the existing library at ``root`` (``ScenarioError`` when it is not one)."""
    return ScenarioLibrary(root, **options)


def write_library(root: str | Path, scenarios: Iterable[Scenario], **append_options: Any) -> AppendResult:
    """Append ``scenarios`` to the library at ``root``, creating it first when absent."""
    library = ScenarioLibrary.create(root, exist_ok=True)
    try:
        return library.append(scenarios, **append_options)
    finally:
        library.close()
