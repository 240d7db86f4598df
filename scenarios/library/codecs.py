"""Codecs: a scenario's parts as Arrow tables of the library's schemas, and back.

``encode_*`` give one table per content key (one row group when written); ``decode_*`` check
the rows against what the index row says (counts, ranges) and raise ``ScenarioError`` naming
the source when they disagree. ``scenario_row`` and ``decode_scenario`` are the scenarios-table
row of a scenario and its inverse.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from scenarios.errors import ScenarioError
from scenarios.library.schema import (
    AGENT_ID,
    AGENT_INDEX,
    AGENT_TYPE,
    DATASET,
    DT_US,
    DURATION_S,
    EGO_ID,
    EGO_INDEX,
    ELEMENT_ID,
    ELEMENT_INDEX,
    FRAME,
    HEIGHT_M,
    KIND,
    LANE_ID,
    LANE_IDS,
    LANE_KIND,
    LANE_TYPE,
    LEFT_NEIGHBORS,
    LEFT_X_M,
    LEFT_Y_M,
    LEFT_Z_M,
    LENGTH_M,
    MAP_KEY,
    MAP_SCHEMA,
    NOTES,
    NUM_AGENTS,
    NUM_CYCLISTS,
    NUM_LANES,
    NUM_MAP_FEATURES,
    NUM_OTHERS,
    NUM_PEDESTRIANS,
    NUM_SIGNALS,
    NUM_STEPS,
    NUM_VEHICLES,
    PREDECESSORS,
    RIGHT_NEIGHBORS,
    RIGHT_X_M,
    RIGHT_Y_M,
    RIGHT_Z_M,
    SCENARIO_ID,
    SIGNALS_KEY,
    SIGNALS_NUM_STEPS,
    SIGNALS_SCHEMA,
    SIGNAL_INDEX,
    SOURCE_FILE,
    SOURCE_LOG_ID,
    SPEED_LIMIT_MPS,
    STATES,
    STEP,
    STOP_X_M,
    STOP_Y_M,
    STOP_Z_M,
    SUBTYPE,
    SUCCESSORS,
    T0_US,
    TAGS,
    TRACKS_KEY,
    TRACKS_SCHEMA,
    T_US,
    T_US_IRREGULAR,
    VX_MPS,
    VY_MPS,
    WIDTH_M,
    X_M,
    YAW_RAD,
    Y_M,
    Z_M,
)
from scenarios.library.schema import _F64_LIST, _STR, _STR_LIST
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

C = TypeVar("C")


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


def encode_tracks(key: str, t_us: np.ndarray, tracks: Tracks) -> pa.Table:
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


def encode_map(key: str, road_map: RoadMap) -> pa.Table:
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


def encode_signals(key: str, signals: Signals) -> pa.Table:
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


def conditions_row(conditions: Any) -> dict[str, Any]:
    """The conditions columns of a scenarios row: one per dataclass field (tuples as lists)."""
    return {
        f.name: list(value) if isinstance(value := getattr(conditions, f.name), tuple) else value
        for f in dataclasses.fields(conditions)
    }


def conditions_from_row(row: Mapping[str, Any], cls: type[C] = Conditions) -> C:  # type: ignore[assignment]
    """``cls`` (``Conditions``) from a scenarios row; a column that is absent or null (a part
    written before the condition existed) gives the field's default."""
    tuples = _tuple_fields(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        value = row.get(f.name)
        if value is not None:
            values[f.name] = tuple(value) if f.name in tuples else value
    return cls(**values)


@functools.cache
def _tuple_fields(cls: type) -> frozenset[str]:
    """The fields of dataclass ``cls`` annotated ``tuple[str, ...]`` (stored as lists)."""
    hints = typing.get_type_hints(cls)
    return frozenset(f.name for f in dataclasses.fields(cls) if hints[f.name] == tuple[str, ...])


def scenario_row(s: Scenario) -> dict[str, Any]:
    """The scenarios-table fields that depend on the scenario alone (not where its data lives)."""
    p, t = s.provenance, s.t_us
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
        **conditions_row(s.conditions),
    }


def _np(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()


def decode_tracks(table: pa.Table, num_agents: int, num_steps: int, source: str) -> Tracks:
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


def decode_map(table: pa.Table, num_lanes: int, num_features: int, source: str) -> RoadMap:
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


def decode_signals(table: pa.Table, num_signals: int, num_steps: int, source: str) -> Signals:
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


def empty_signals(num_steps: int) -> Signals:
    """No traffic signals, with a (0, ``num_steps``) state array."""
    return Signals(np.zeros(0, np.str_), np.zeros((0, num_steps), np.int8), np.zeros((0, 3)))


def timestamps(row: Mapping[str, Any]) -> np.ndarray:
    """A scenarios row's timestamps [us]: the stored list, else ``t0_us + step * dt_us``."""
    if row[T_US_IRREGULAR] is not None:
        return np.asarray(row[T_US_IRREGULAR], np.int64)
    return row[T0_US] + np.arange(row[NUM_STEPS], dtype=np.int64) * row[DT_US]


def decode_scenario(row: Mapping[str, Any], tracks: Tracks, road_map: RoadMap, signals: Signals) -> Scenario:
    """The scenario of a scenarios row, given its decoded tracks, map and signals."""
    return Scenario(
        id=row[SCENARIO_ID],
        provenance=Provenance(row[DATASET], row[SOURCE_FILE], row[SOURCE_LOG_ID], row[FRAME], row[NOTES]),
        t_us=timestamps(row),
        tracks=tracks,
        ego_index=row[EGO_INDEX],
        road_map=road_map,
        signals=signals,
        tags=tuple(row[TAGS] or ()),
        conditions=conditions_from_row(row),
    )
