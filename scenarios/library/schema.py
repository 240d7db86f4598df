"""The library's on-disk layout: table and column names, Arrow schemas, the schema version.

Column names are constants (``X_M``, ``TRACKS_KEY``, ...); units live in each field's metadata
(``unit``) and in the schema's ``drivetwin.units``. The scenarios table's conditions columns are
derived from ``Conditions``' dataclass fields.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from scenarios.errors import ScenarioError
from scenarios.model import AgentType, Conditions


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
# (then one column per ``Conditions`` field, named as the field: see ``CONDITION_COLUMNS``)
TRACKS_KEY = "tracks_key"
TRACKS_FILE = "tracks_file"
TRACKS_ROW_GROUP = "tracks_row_group"
MAP_KEY = "map_key"
MAP_FILE = "map_file"
MAP_ROW_GROUP = "map_row_group"
SIGNALS_KEY = "signals_key"
SIGNALS_FILE = "signals_file"
SIGNALS_ROW_GROUP = "signals_row_group"
# The conditions columns by name, for callers that name one (each is its field's name).
ROAD_FRICTION = "road_friction"
EGO_LATENCY_S = "ego_latency_s"
POSITION_NOISE_M = "position_noise_m"
HEADING_NOISE_RAD = "heading_noise_rad"
DETECTION_DROPOUT = "detection_dropout"
AGENTS_MODE = "agents_mode"
REACTIVE_AGENTS = "reactive_agents"
REPLAY_AGENTS = "replay_agents"

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


#: Arrow types of the ``Conditions`` field types a column can hold.
_CONDITION_TYPES: dict[object, pa.DataType] = {
    float: pa.float64(),
    int: pa.int64(),
    bool: pa.bool_(),
    str: _STR,
    tuple[str, ...]: _STR_LIST,
}
#: Units read off a field name's suffix (``ego_latency_s`` is [s]); a float without one is "1".
_UNIT_SUFFIXES = (("_s", "s"), ("_m", "m"), ("_rad", "rad"), ("_mps", "m/s"), ("_us", "us"))


def condition_fields(cls: type = Conditions) -> list[pa.Field]:
    """One scenarios-table column per field of ``cls`` (``Conditions``), named as the field.

    The Arrow type follows the field's annotation (float, int, bool, str, ``tuple[str, ...]``);
    the unit is ``metadata["unit"]`` when the field gives one, else read off the name's suffix
    (``_s``, ``_m``, ``_rad``, ``_mps``, ``_us``), else "1" for numbers and "" for names. So a new
    condition is one new field of ``Conditions`` and nothing here.
    """
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        type_ = _CONDITION_TYPES.get(hints[f.name])
        if type_ is None:
            raise TypeError(f"{cls.__name__}.{f.name}: a {hints[f.name]} cannot be a library column")
        unit = f.metadata.get("unit")
        if unit is None:
            unit = next((u for suffix, u in _UNIT_SUFFIXES if f.name.endswith(suffix)), "")
            if not unit and (pa.types.is_floating(type_) or pa.types.is_integer(type_)):
                unit = "1"
        out.append(_field(f.name, type_, unit, f.metadata.get("description", "")))
    return out


#: The conditions columns of the scenarios table, in ``Conditions`` field order.
CONDITION_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Conditions))


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
        *condition_fields(),
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
    """zstd; float columns byte-stream-split and never dictionary-encoded; statistics on the key only;
    a CRC-32 per page, which readers verify (a flipped bit is an error naming the file, not changed data)."""
    floats = [f.name for f in schema if pa.types.is_floating(f.type.value_type if pa.types.is_list(f.type) else f.type)]
    options: dict[str, Any] = {
        "compression": "zstd",
        "write_page_checksum": True,
        "use_byte_stream_split": floats,
        "use_dictionary": [n for n in schema.names if n not in floats],
    }
    if key is not None:
        options["write_statistics"] = [key]
    return options


#: The content-key column of each data table.
KEY_COLUMN = {TRACKS_TABLE: TRACKS_KEY, MAP_TABLE: MAP_KEY, SIGNALS_TABLE: SIGNALS_KEY}
#: The scenarios-table columns that locate a data table's key: (key, part file, row group).
LOCATION_COLUMNS = {
    TRACKS_TABLE: (TRACKS_KEY, TRACKS_FILE, TRACKS_ROW_GROUP),
    MAP_TABLE: (MAP_KEY, MAP_FILE, MAP_ROW_GROUP),
    SIGNALS_TABLE: (SIGNALS_KEY, SIGNALS_FILE, SIGNALS_ROW_GROUP),
}

#: ``pq.ParquetWriter`` options per table.
WRITE_OPTIONS = {
    SCENARIOS_TABLE: _write_options(SCENARIOS_SCHEMA, None),
    **{table: _write_options(SCHEMAS[table], key) for table, key in KEY_COLUMN.items()},
}


#: Columns a part may lack: those added after schema version 1 was first written. Every
#: conditions column is one (a condition added later reads as its field's default from older parts).
OPTIONAL_COLUMNS = frozenset(CONDITION_COLUMNS)


def check_schema(schema: pa.Schema, table: str, path: Path) -> None:
    """Refuse a part file whose schema is not (an older version of) the library's ``table``."""
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


#: The column and table names, schemas and layout constants (what ``scenarios.library`` re-exports).
__all__ = [name for name in list(globals()) if name.isupper() and not name.startswith("_")] + ["check_schema", "condition_fields"]
