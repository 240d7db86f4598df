"""Stop lines: where a road user must stop for a traffic signal or a stop sign, and when it crosses one.

A control is a stop point on a vehicle lane with the lane's direction there; its stop line is the
line through the point across that direction. A point of a road user crosses the line when it
goes from behind it to on or beyond it between two valid steps, moving along the lane's
direction, within ``lateral_m`` of the stop point (CARLA's red-light test).
``evaluators.red_light`` counts the ego's tail crossing red lines; ``evaluators.avoidability``
holds a road user to the lines its front crossed (of lines sharing a stop point, those of the
lanes it went on along: ``followed``).

Signals come from ``scenario.signals`` (their stop points); a stop sign controls the lanes the map
names for it (``MapFeature.lane_ids``; Waymo's protos name them, GPUDrive's JSON does not), its
stop point on each being the lane's centreline point nearest the sign. Lanes not in the map, or not
vehicle lanes, cannot be oriented and are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import shapely

from scenarios.model import Scenario

if TYPE_CHECKING:
    from evaluators.context import MapGeometry


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
            follows this lane goes on to); None: ``area`` alone.
    """

    name: str
    lane: int
    stop: np.ndarray
    direction: np.ndarray
    area: shapely.Geometry
    states: np.ndarray | None
    signal_row: int = -1
    onward: shapely.Geometry | None = None


def stop_line_offsets(point: np.ndarray, stop: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, S) signed distances [m] of ``point`` (S, 2) past each stop line along its lane's
    direction (``stop`` (K, 2), ``direction`` (K, 2) unit) and (K, S) to its left of the stop point."""
    rel = point[None, :, :] - stop[:, None, :]  # (K, S, 2)
    lon = rel[..., 0] * direction[:, None, 0] + rel[..., 1] * direction[:, None, 1]
    lat = -rel[..., 0] * direction[:, None, 1] + rel[..., 1] * direction[:, None, 0]
    return lon, lat


def stop_line_crossings(
    point: np.ndarray, heading: np.ndarray, valid: np.ndarray, stop: np.ndarray, direction: np.ndarray, lateral_m: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where a point of a road user crosses stop lines.

    Args:
        point: (S, 2) the point over time [m] (the ego's tail, a front bumper).
        heading: (S, 2) the road user's unit heading.
        valid: (S,) where it is seen.
        stop: (K, 2) stop points [m]; direction: (K, 2) their lanes' unit directions.
        lateral_m: the crossing counts within this distance of the stop point [m].

    Returns:
        (C,) control indices and (C,) steps of each crossing (the first step on or beyond the
        line), and (K, S) the point's signed distance along each direction past its line [m].
    """
    lon, lat = stop_line_offsets(point, stop, direction)
    along = (heading @ direction.T).T > 0  # (K, S)
    both = valid[:-1] & valid[1:]
    cross = (lon[:, :-1] < 0) & (lon[:, 1:] >= 0) & both & along[:, 1:] & (np.abs(lat[:, 1:]) <= lateral_m)
    k, t = np.nonzero(cross)
    return k, t + 1, lon


def followed(controls: Sequence[Control], centre: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(K,) which of ``controls`` (stop lines a road user crossed, sharing a stop point) the road
    user went on along: all but those it left for another's, its centre (S, 2) [m] at a valid
    step out of one's ``onward`` lanes and in another's; all when it left every one (or none
    tells, as where their lanes overlap and it went no further)."""
    k = len(controls)
    steps = np.flatnonzero(valid)
    if k < 2 or steps.size == 0:
        return np.ones(k, dtype=bool)
    x, y = centre[steps, 0], centre[steps, 1]
    inside = np.array([shapely.contains_xy(c.area if c.onward is None else c.onward, x, y) for c in controls])  # (K, S)
    left = np.array([np.any(~inside[i] & np.delete(inside, i, axis=0).any(axis=0)) for i in range(k)])
    return ~left if not left.all() else np.ones(k, dtype=bool)


def controls_of(scenario: Scenario, g: MapGeometry, log_step_of: np.ndarray) -> tuple[Control, ...]:
    """The scenario's signal and stop-sign stop lines on vehicle lanes of ``g`` (see the module's
    docstring); signal states are read at ``log_step_of`` (S,), the log step of each rollout step."""
    if g.num_lanes == 0:
        return ()
    lane_of = {lane_id: i for i, lane_id in enumerate(g.lane_ids.tolist())}
    found: list[tuple[str, int, np.ndarray, np.ndarray | None, int]] = []
    signals = scenario.signals
    if signals is not None:
        for row, lane_id in enumerate(signals.lane_ids.tolist()):
            if lane_id in lane_of:
                states = np.asarray(signals.states[row, log_step_of], dtype=np.int8)
                found.append((f"signal on lane {lane_id}", lane_of[lane_id], signals.stop_points[row, :2], states, row))
    for sign in scenario.road_map.stop_signs:
        p = np.asarray(sign.points, dtype=np.float64)[0, :2]
        for lane_id in sign.lane_ids:
            if lane_id not in lane_of:
                continue
            i = lane_of[lane_id]
            seg = g.lane_segments[g.lane_segment_start[i] : g.lane_segment_start[i + 1]]
            a, d = seg[:, 0], seg[:, 1] - seg[:, 0]
            u = np.clip(np.sum((p - a) * d, axis=1) / np.maximum(np.sum(d * d, axis=1), 1e-12), 0.0, 1.0)
            near = a + u[:, None] * d
            stop = near[int(np.argmin(np.hypot(*(near - p).T)))]
            found.append((f"stop sign {sign.id} on lane {lane_id}", i, stop, None, -1))
    if not found:
        return ()
    lanes = np.array([f[1] for f in found], dtype=np.int64)
    stops = np.array([f[2] for f in found], dtype=np.float64)
    directions = g.lane_tangents(lanes, stops)
    successors = {lane.id: lane.successors for lane in scenario.road_map.lanes}
    onward: dict[int, shapely.Geometry] = {}
    for lane in set(lanes.tolist()):
        rows = [lane] + [lane_of[n] for n in successors.get(str(g.lane_ids[lane]), ()) if n in lane_of]
        onward[lane] = shapely.union_all(g.lane_polygons[rows])
        shapely.prepare(onward[lane])
    return tuple(
        Control(name, lane, stops[i], directions[i], g.lane_polygons[lane], states, row, onward[lane])
        for i, (name, lane, _, states, row) in enumerate(found)
    )


__all__ = ["Control", "controls_of", "followed", "stop_line_crossings", "stop_line_offsets"]
