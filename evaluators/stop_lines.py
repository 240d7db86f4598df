"""Stop lines: where a road user must stop for a traffic signal or a stop sign, and when it crosses one.

A control is a stop point on a vehicle lane with the lane's direction there; its stop line is the
line through the point across that direction. A point of a road user crosses the line when it
goes from behind it to on or beyond it between two valid steps, moving along the lane's
direction, within ``lateral_m`` of the stop point (CARLA's red-light test).
``evaluators.red_light`` counts the ego's tail crossing red lines, ``evaluators.avoidability``
holds a road user to the lines its front crossed; both, of lines sharing a stop point, to those
of the lanes it went on along (``held_to``, ``followed``).

Signals come from ``scenario.signals`` (their stop points); a stop sign controls the lanes the map
names for it (``MapFeature.lane_ids``; Waymo's protos name them, GPUDrive's JSON does not), its
stop point on each being the lane's centreline point nearest the sign. Lanes not in the map, or not
vehicle lanes, cannot be oriented and are skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import shapely

from scenarios.common import LRU, wrap_angle
from scenarios.model import Scenario

if TYPE_CHECKING:
    from evaluators.context import MapGeometry

#: Stop lines whose stop points are this close [m] share one (lanes that part at the line: a
#: through lane and a turn lane); a road user is held to those of the lanes it went on along.
SHARED_STOP_M = 1.0
#: ``followed``'s heading test picks a lane only when its turn matches the road user's closer than
#: every other lane's by more than this [rad] (6 deg: a heading label's noise, a lane's kink).
HEADING_MARGIN_RAD = 0.1


@dataclass(frozen=True, slots=True, eq=False)
class Control:
    """One stop line a road user must obey.

    Attributes:
        name: what it is, for messages ("signal on lane 455", "stop sign 594 on lane 211").
        lane: the controlled lane's index in the map geometry.
        stop: (2,) the stop point [m].
        direction: (2,) unit direction of the lane at the stop point.
        area: the controlled lane's polygon: a road user that crossed the line is in the junction
            behind it while its box overlaps this.
        states: (S,) ``SignalState`` at each rollout step; None for a stop sign (stop, then go).
        signal_row: the signal's row in ``scenario.signals``; -1 for a stop sign.
        onward: the controlled lane's polygon with its successors' (where a road user that
            follows this lane goes on to); None: ``area`` alone (``controls_of`` builds it only for
            a line sharing its stop point with another, where ``followed`` needs it).
        centreline: (M, 2, 2) the controlled lane's centreline segments [m], for ``followed``'s
            heading test; None: unknown.
    """

    name: str
    lane: int
    stop: np.ndarray
    direction: np.ndarray
    area: shapely.Geometry
    states: np.ndarray | None
    signal_row: int = -1
    onward: shapely.Geometry | None = None
    centreline: np.ndarray | None = None


def stop_line_offsets(point: np.ndarray, stop: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, S) signed distances [m] of ``point`` (S, 2) past each stop line along its lane's
    direction (``stop`` (K, 2), ``direction`` (K, 2) unit) and (K, S) to its left of the stop point."""
    rel = point[None, :, :] - stop[:, None, :]  # (K, S, 2)
    lon = rel[..., 0] * direction[:, None, 0] + rel[..., 1] * direction[:, None, 1]
    lat = -rel[..., 0] * direction[:, None, 1] + rel[..., 1] * direction[:, None, 0]
    return lon, lat


def stop_line_crossings(
    point: np.ndarray,
    heading: np.ndarray,
    valid: np.ndarray,
    stop: np.ndarray,
    direction: np.ndarray,
    lateral_m: float,
    offsets: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where a point of a road user crosses stop lines.

    Args:
        point: (S, 2) the point over time [m] (the ego's tail, a front bumper).
        heading: (S, 2) the road user's unit heading.
        valid: (S,) where it is seen.
        stop: (K, 2) stop points [m]; direction: (K, 2) their lanes' unit directions.
        lateral_m: the crossing counts within this distance of the stop point [m].
        offsets: ``stop_line_offsets(point, stop, direction)`` when the caller has them.

    Returns:
        (C,) control indices and (C,) steps of each crossing (the first step on or beyond the
        line), and (K, S) the point's signed distance along each direction past its line [m].
    """
    lon, lat = stop_line_offsets(point, stop, direction) if offsets is None else offsets
    along = (heading @ direction.T).T > 0  # (K, S)
    both = valid[:-1] & valid[1:]
    cross = (lon[:, :-1] < 0) & (lon[:, 1:] >= 0) & both & along[:, 1:] & (np.abs(lat[:, 1:]) <= lateral_m)
    k, t = np.nonzero(cross)
    return k, t + 1, lon


def followed(controls: Sequence[Control], centre: np.ndarray, yaw: np.ndarray, valid: np.ndarray) -> np.ndarray | None:
    """(K,) which of ``controls`` (stop lines a road user crossed, sharing a stop point) the road
    user went on along, from its centre (S, 2) [m] and heading ``yaw`` (S,) [rad] at the valid
    steps from its crossing on; None when neither its path nor its heading tells.

    By its path, where the paths part (some of the lines' ``onward`` lanes hold its centre, some
    do not): those that held it at the last such step (a turner swinging wide out of its lane
    for a few steps and back is still a turner). Where they never part (it went no further than
    where their lanes overlap, as a rollout ended by a collision there does), by its heading: the
    one whose lane's tangent at the centre's projection has turned from the line's direction as
    far as its heading turned since the first valid step, closer than every other line's by more
    than ``HEADING_MARGIN_RAD``."""
    k = len(controls)
    steps = np.flatnonzero(valid)
    if k < 2:
        return np.ones(k, dtype=bool)
    if steps.size == 0:
        return None
    x, y = centre[steps, 0], centre[steps, 1]
    inside = np.array([shapely.contains_xy(c.area if c.onward is None else c.onward, x, y) for c in controls])  # (K, S)
    parted = np.flatnonzero(inside.any(axis=0) & ~inside.all(axis=0))
    if parted.size:
        return inside[:, parted[-1]]
    if any(c.centreline is None for c in controls):
        return None
    first, last = int(steps[0]), int(steps[-1])
    turned = wrap_angle(float(yaw[last]) - float(yaw[first]))
    error = np.empty(k)
    for i, c in enumerate(controls):
        j, _ = _nearest_on(c.centreline, centre[last])
        d = c.centreline[j, 1] - c.centreline[j, 0]
        lane_turned = wrap_angle(float(np.arctan2(d[1], d[0]) - np.arctan2(c.direction[1], c.direction[0])))
        error[i] = abs(wrap_angle(turned - lane_turned))
    best = error <= error.min() + HEADING_MARGIN_RAD
    return None if best.all() else best


def held_to(controls: Sequence[Control], which: np.ndarray, when: np.ndarray, centre: np.ndarray, yaw: np.ndarray,
            valid: np.ndarray) -> list[np.ndarray]:  # fmt: skip
    """The stop lines a road user that crossed lines ``which`` (C,) at steps ``when`` (C,) is held
    to, as groups of control indices, in the order it first crossed them: it violated a group
    when it violated every line of it. A line whose stop point it shares with none (within
    ``SHARED_STOP_M``) of the crossed is a group of its own; of lines sharing one, each that it
    ``followed`` (from its first crossing of them) is, and when neither its path nor its heading
    tells which, they are one group (held only to what they all agree on)."""
    order = np.argsort(when, kind="stable")
    crossed = list(dict.fromkeys(int(w) for w in np.asarray(which)[order]))
    if not crossed:
        return []
    stop = np.array([controls[i].stop for i in crossed])
    groups: list[np.ndarray] = []
    done: set[int] = set()
    steps = np.arange(valid.size)
    for n, ci in enumerate(crossed):
        if ci in done:
            continue
        members = np.array([j for j, near in zip(crossed, np.hypot(*(stop - stop[n]).T) <= SHARED_STOP_M) if near and j not in done])
        done.update(members.tolist())
        if members.size == 1:
            groups.append(members)
            continue
        after = valid & (steps >= int(np.asarray(when)[np.isin(which, members)].min()))
        kept = followed([controls[j] for j in members], centre, yaw, after)
        if kept is None:
            groups.append(members)
        else:
            groups.extend(np.array([j]) for j in members[kept])
    return groups


def _nearest_on(segments: np.ndarray, p: np.ndarray) -> tuple[int, np.ndarray]:
    """The segment of ``segments`` (M, 2, 2) [m] nearest to the point ``p`` (2,), and the nearest
    point on it."""
    a, d = segments[:, 0], segments[:, 1] - segments[:, 0]
    u = np.clip(np.sum((p - a) * d, axis=1) / np.maximum(np.sum(d * d, axis=1), 1e-12), 0.0, 1.0)
    near = a + u[:, None] * d
    j = int(np.argmin(np.hypot(*(near - p).T)))
    return j, near[j]


def controls_of(scenario: Scenario, g: MapGeometry, log_step_of: np.ndarray) -> tuple[Control, ...]:
    """The scenario's signal and stop-sign stop lines on vehicle lanes of ``g`` (see the module's
    docstring); signal states are read at ``log_step_of`` (S,), the log step of each rollout step.
    The lines themselves are built once per map and signal set (``_lines_of``)."""
    lines = _lines_of(scenario, g)
    signals = scenario.signals
    return tuple(
        replace(c, states=np.asarray(signals.states[c.signal_row, log_step_of], dtype=np.int8)) if c.signal_row >= 0 else c
        for c in lines
    )


def _lines_of(scenario: Scenario, g: MapGeometry) -> tuple[Control, ...]:
    """``controls_of`` without the signal states (None), cached per (road map, signals, geometry)
    objects (an LRU of 32), the objects held so that their ids are not reused."""
    key = (id(scenario.road_map), id(scenario.signals), id(g))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None and hit[0] is scenario.road_map and hit[1] is scenario.signals and hit[2] is g:
        return hit[3]
    lines = _build_lines(scenario, g)
    with _CACHE_LOCK:
        _CACHE.put(key, (scenario.road_map, scenario.signals, g, lines))
    return lines


_CACHE: LRU[tuple[int, int, int], tuple[object, object, object, tuple[Control, ...]]] = LRU(32)
_CACHE_LOCK = threading.Lock()


def _build_lines(scenario: Scenario, g: MapGeometry) -> tuple[Control, ...]:
    """The stop lines of ``controls_of``, their states None."""
    if g.num_lanes == 0:
        return ()
    lane_of = {lane_id: i for i, lane_id in enumerate(g.lane_ids.tolist())}
    found: list[tuple[str, int, np.ndarray, int]] = []
    signals = scenario.signals
    if signals is not None:
        for row, lane_id in enumerate(signals.lane_ids.tolist()):
            if lane_id in lane_of:
                found.append((f"signal on lane {lane_id}", lane_of[lane_id], signals.stop_points[row, :2], row))
    for sign in scenario.road_map.stop_signs:
        p = np.asarray(sign.points, dtype=np.float64)[0, :2]
        for lane_id in sign.lane_ids:
            if lane_id not in lane_of:
                continue
            i = lane_of[lane_id]
            _, stop = _nearest_on(g.lane_segments[g.lane_segment_start[i] : g.lane_segment_start[i + 1]], p)
            found.append((f"stop sign {sign.id} on lane {lane_id}", i, stop, -1))
    if not found:
        return ()
    lanes = np.array([f[1] for f in found], dtype=np.int64)
    stops = np.array([f[2] for f in found], dtype=np.float64)
    directions = g.lane_tangents(lanes, stops)
    near = np.hypot(*(stops[:, None, :] - stops[None, :, :]).transpose(2, 0, 1)) <= SHARED_STOP_M
    shared = (near & (lanes[:, None] != lanes[None, :])).any(axis=1)  # (F,) shares its stop point with another lane's line
    onward: dict[int, shapely.Geometry] = {}
    if shared.any():
        successors = {lane.id: lane.successors for lane in scenario.road_map.lanes}
        for lane in set(lanes[shared].tolist()):
            rows = [lane] + [lane_of[n] for n in successors.get(str(g.lane_ids[lane]), ()) if n in lane_of]
            onward[lane] = shapely.union_all(g.lane_polygons[rows])
            shapely.prepare(onward[lane])
    start = g.lane_segment_start
    return tuple(
        Control(name, lane, stops[i], directions[i], g.lane_polygons[lane], None, row, onward.get(lane),
                g.lane_segments[start[lane] : start[lane + 1]])  # fmt: skip
        for i, (name, lane, _, row) in enumerate(found)
    )


__all__ = [
    "HEADING_MARGIN_RAD", "SHARED_STOP_M", "Control", "controls_of", "followed", "held_to", "stop_line_crossings",
    "stop_line_offsets",
]  # fmt: skip
