"""Content keys: a hash of what a tracks, map or signals key holds.

Equal content gives the equal key whatever scenario it came from, so ego variants and windows
of one log share one stored copy. The schema version is hashed in, so a layout change never
reuses a key written under another one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from scenarios.library.schema import MAP_TABLE, SCHEMA_VERSION, SIGNALS_TABLE, TRACKS_TABLE
from scenarios.model import RoadMap, Signals, Tracks


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
