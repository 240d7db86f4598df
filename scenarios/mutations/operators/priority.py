"""A crossing vehicle with the right of way, where the logged ego stops for a red light or a stop sign.

The failure it stages is the planner's own: a planner that stops where the log did meets nobody;
one that drives on through its red (or its stop sign) at the speed it came with meets a car that
had every right to be there. The ego's stop lines are the map's signals (``scenario.signals``)
and stop signs (the lanes a ``STOP_SIGN`` feature names); crossing lanes are vehicle lanes of
the map whose own centreline crosses the ego's route beyond the stop line, inside the junction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The stop constants of ``evaluators.avoidability``, read conservatively: a logged stop counts only
# before the line, its gap measured along the lane's route and within FACING_LATERAL_M of it (the
# rule also counts a standstill up to CREEP_M past the line, within lateral_m of its stop point).
from scenarios.common import STOP_SPEED_MPS, STOP_ZONE_M
from scenarios.model import AgentType, Scenario, SignalState
from scenarios.mutations.base import NotApplicable, Param, register
from scenarios.mutations.geometry import (
    CONFLICT_SPACING_M,
    MIN_CONFLICT_TIME_S,
    NON_CAR_LANES,
    Path,
    moving_along,
    nearest_step,
    times_s,
    wrap_angle,
)
from scenarios.mutations.operators.insert import CROSSING_MAX_GAP_M, RED, _insert, _lane_path, typical_box
from scenarios.mutations.operators.interactions import _follow

#: The ego faces a stop line when its centre is within this of the line's route [m] at the start...
FACING_LATERAL_M = 2.0
#: ... heading within this of it [rad] ...
FACING_HEADING_RAD = np.pi / 4
#: ... and at most this far before the line [m].
FACING_MAX_DISTANCE_M = 80.0
#: A crossing is in the junction when it is at most this far beyond the ego's stop line [m].
JUNCTION_M = 40.0
#: Signal states a crossing vehicle may pass with the priority: green, or a state the log does not know.
PRIORITY_STATES = (int(SignalState.GO), int(SignalState.UNKNOWN))
#: Speed [m/s] the would-be ego accelerates to when its lane has no speed limit.
DEFAULT_LIMIT_MPS = 13.9


@dataclass(frozen=True, slots=True)
class _StopLine:
    """A stop line the logged ego faces: its lane, its route (the lane chained), where the line is on it [m]."""

    name: str
    lane_id: str
    route: Path
    s_stop: float
    signal_row: int  # -1: a stop sign


def _stop_lines(scenario: Scenario) -> list[tuple[str, str, np.ndarray, int]]:
    """(name, lane id, stop point (2,), signal row or -1) of every signal and stop sign on a lane of the map."""
    known = {lane.id: lane for lane in scenario.road_map.lanes}
    out = []
    signals = scenario.signals
    if signals is not None:
        for row, lane_id in enumerate(signals.lane_ids.tolist()):
            if lane_id in known:
                out.append((f"signal on lane {lane_id}", lane_id, signals.stop_points[row, :2], row))
    for sign in scenario.road_map.stop_signs:
        p = np.asarray(sign.points, float)[0, :2]
        for lane_id in sign.lane_ids:
            if lane_id in known:
                c = known[lane_id].centerline[:, :2]
                lane = Path.from_points(c[:, 0], c[:, 1], extend_m=0.0)
                x, y, _, _, _ = lane.at(lane.project(p[:1], p[1:], (0.0, lane.length))[0])
                out.append((f"stop sign {sign.id} on lane {lane_id}", lane_id, np.array([x[0], y[0]]), -1))
    return out


def _would_be_arrival(s: float, s0: float, v0: float, accel: float, v_cap: float) -> float:
    """When [s from the start] the would-be ego's centre reaches arc ``s`` [m]: from ``s0`` at ``v0``
    [m/s], accelerating at ``accel`` [m/s2] up to ``v_cap``; inf when it never does."""
    d = s - s0
    if d <= 0:
        return 0.0
    if accel <= 0 or v0 >= v_cap:
        return d / v0 if v0 > 0 else float("inf")
    t1 = (v_cap - v0) / accel
    d1 = v0 * t1 + 0.5 * accel * t1 * t1
    if d <= d1:
        return float((-v0 + np.sqrt(v0 * v0 + 2 * accel * d)) / accel)
    return t1 + (d - d1) / v_cap


@register(
    "insert_priority_crossing",
    Param("conflict", "", 0, kind="int", low=0, high=100, doc="index into the (stop line the ego faces, crossing lane) pairs, first reached first"),
    Param("offset_s", "s", 0.0, low=-3.0, high=3.0, doc="when it reaches the conflict point, after the would-be ego does"),
    Param("speed", "m/s", 10.0, low=3.0, high=25.0, doc="its constant speed through the junction"),
    Param("lead_in_s", "s", 4.0, low=1.0, high=20.0, doc="how long before reaching the conflict point it appears"),
    Param("accel", "m/s2", 0.0, low=0.0, high=4.0, doc="the would-be ego's acceleration from its starting speed to its lane's limit (0: keeps it)"),
)
def insert_priority_crossing(
    scenario: Scenario, rng: np.random.Generator, *, conflict: int, offset_s: float, speed: float, lead_in_s: float, accel: float
) -> Scenario:
    """A new vehicle on a crossing lane with the priority, timed to meet an ego that does not stop.

    The stop lines the logged ego faces: a signal's or a stop sign's on a lane whose route (its
    centreline chained with predecessors and successors, ``insert._lane_path``) the ego starts
    on (within ``FACING_LATERAL_M`` and ``FACING_HEADING_RAD``, at most ``FACING_MAX_DISTANCE_M``
    before the line), where the log has the ego stop: a signal red (or flashing red) when the
    would-be ego's front reaches the line and the logged ego's front still short of it then; a
    stop sign the logged ego stood still at (``STOP_SPEED_MPS``, front within ``STOP_ZONE_M``).
    The would-be ego is the logged one at the start driving on along that route at its speed
    then (``accel`` > 0: accelerating to its lane's speed limit). Crossing lanes: vehicle lanes
    whose own centreline crosses the route (within ``CROSSING_MAX_GAP_M``, 30 to 150 deg)
    at most ``JUNCTION_M`` beyond the line, that no stop sign controls and whose signal, if any,
    is green or unknown (``PRIORITY_STATES``) when the new vehicle passes its stop point. Pairs
    are sorted by when the would-be ego gets there. The vehicle (``typical_box``) drives its
    lane's route at ``speed`` [m/s], appears ``lead_in_s`` before the conflict point (at step 0
    when that is earlier), has its centre there at the would-be ego's time + ``offset_s``, and
    follows its lane with the intelligent driver model after. It may touch the logged ego at no
    step: a planner that stops as the log did meets nobody.

    Not applicable (the reason in brackets): no signal or stop sign on a lane of the map
    [no_stop_line]; the ego faces none or stops for none [not_facing, ego_went, not_red,
    no_stop]; the ego stands at the start and ``accel`` is 0 [ego_standing]; no crossing lane
    with the priority [no_crossing]; not that many pairs [conflict_index]; the conflict is after
    the scenario's end [timing]; an overlap [overlap_at_start, overlap_ego].
    """
    lines = _stop_lines(scenario)
    if not lines:
        raise NotApplicable(scenario.source, "no_stop_line", "no signal or stop sign controls a lane of the map")
    tracks = scenario.tracks
    e = scenario.ego_index
    valid = np.flatnonzero(tracks.valid[e])
    if valid.size < 2:
        raise NotApplicable(scenario.source, "ego_not_valid", "the ego is valid at fewer than two steps")
    t = times_s(scenario)
    k0 = int(valid[0])
    half = float(tracks.length[e]) / 2
    v0 = float(np.hypot(tracks.vx[e, k0], tracks.vy[e, k0]))
    lanes = {lane.id: lane for lane in scenario.road_map.lanes}
    controlled = {lane_id for _, lane_id, _, row in lines if row < 0}  # lanes a stop sign controls
    signal_of = {lane_id: row for _, lane_id, _, row in lines if row >= 0}
    refusals: list[tuple[str, str]] = []
    pairs = []
    for name, lane_id, stop, row in lines:
        route = _lane_path(scenario, lane_id)
        s_stop = float(route.project(stop[:1], stop[1:])[0][0])
        (s_e,), (d_e,) = route.project(tracks.x[e, k0 : k0 + 1], tracks.y[e, k0 : k0 + 1], (s_stop - FACING_MAX_DISTANCE_M, s_stop))
        heading = float(np.interp(s_e, route.s, route.heading))
        front = s_e + half
        if abs(d_e) > FACING_LATERAL_M or abs(wrap_angle(tracks.yaw[e, k0] - heading)) > FACING_HEADING_RAD or not front < s_stop:
            refusals.append(("not_facing", f"the ego does not start on lane {lane_id!r}'s approach"))
            continue
        limit = lanes[lane_id].speed_limit
        v_cap = max(v0, float(limit) if np.isfinite(limit) and limit > 0 else DEFAULT_LIMIT_MPS)
        if v0 < STOP_SPEED_MPS and accel <= 0:
            refusals.append(("ego_standing", f"the ego stands at the start ({v0:.2f} m/s) and accel is 0"))
            continue
        # the logged ego's fronts along this route, to see where it stopped
        ls, ld = route.project(tracks.x[e, valid], tracks.y[e, valid], (s_stop - FACING_MAX_DISTANCE_M - 10.0, s_stop + JUNCTION_M))
        on = np.abs(ld) <= FACING_LATERAL_M
        t_line = t[k0] + _would_be_arrival(s_stop - half, s_e, v0, accel, v_cap)
        if not np.isfinite(t_line) or t_line > t[-1]:
            refusals.append(("timing", f"the would-be ego does not reach {name}'s line before the end"))
            continue
        if row >= 0:
            k_line = nearest_step(scenario, t_line)
            if int(scenario.signals.states[row, k_line]) not in RED:
                refusals.append(("not_red", f"the {name} is not red when the would-be ego reaches it at {t_line:.2f} s"))
                continue
            logged_front = float(np.interp(t_line, t[valid], ls + half))
            if logged_front >= s_stop:
                refusals.append(("ego_went", f"the logged ego is over the {name}'s line at {t_line:.2f} s"))
                continue
        else:
            speed_e = np.hypot(tracks.vx[e, valid], tracks.vy[e, valid])
            gap = s_stop - (ls + half)
            if not np.any(on & (speed_e <= STOP_SPEED_MPS) & (gap >= 0) & (gap <= STOP_ZONE_M)):
                refusals.append(("no_stop", f"the logged ego does not stop at the {name}"))
                continue
        sr = np.arange(s_stop, s_stop + JUNCTION_M + 1e-9, CONFLICT_SPACING_M)
        rx, ry, _, rh, _ = route.at(sr)
        lo = np.array([rx.min(), ry.min()]) - CROSSING_MAX_GAP_M
        hi = np.array([rx.max(), ry.max()]) + CROSSING_MAX_GAP_M
        chain = set(_chain_ids(scenario, lane_id))
        for other in scenario.road_map.lanes:
            c = other.centerline[:, :2]
            if other.id in chain or other.id in controlled or other.lane_type.lower() in NON_CAR_LANES or len(c) < 2:
                continue
            if (c[:, 0].max() < lo[0] or c[:, 0].min() > hi[0] or c[:, 1].max() < lo[1] or c[:, 1].min() > hi[1]):
                continue  # nowhere near the route through the junction
            own = Path.from_points(c[:, 0], c[:, 1], extend_m=0.0)
            so = np.arange(0.0, own.length + 1e-9, CONFLICT_SPACING_M)
            ox, oy, _, oh, _ = own.at(so)
            dist = np.hypot(rx[:, None] - ox[None, :], ry[:, None] - oy[None, :])
            i, j = np.unravel_index(np.argmin(dist), dist.shape)
            across = abs(wrap_angle(oh[j] - rh[i]))
            if dist[i, j] > CROSSING_MAX_GAP_M or not np.pi / 6 <= across <= 5 * np.pi / 6:
                continue
            t_ego = t[k0] + _would_be_arrival(float(sr[i]), s_e, v0, accel, v_cap)
            if not np.isfinite(t_ego) or t_ego < MIN_CONFLICT_TIME_S:
                continue
            pairs.append((float(t_ego), lane_id, other.id, name, float(sr[i]), (float(ox[j]), float(oy[j]))))
    if not pairs:
        useful = [r for r in refusals if r[0] != "not_facing"]
        if useful:
            raise NotApplicable(scenario.source, *useful[0])
        if refusals and len(refusals) == len(lines):
            raise NotApplicable(scenario.source, "not_facing", f"the ego starts on the approach of none of the {len(lines)} stop lines")
        raise NotApplicable(scenario.source, "no_crossing", "no lane with the priority crosses the ego's route inside the junction")
    pairs.sort(key=lambda p: (p[0], p[1], p[2]))
    if conflict >= len(pairs):
        raise NotApplicable(scenario.source, "conflict_index", f"conflict {conflict} asked, the scene has {len(pairs)}")
    t_ego, lane_id, other_id, name, _, point = pairs[conflict]
    t_c = t_ego + offset_s
    if t_c > t[-1]:
        raise NotApplicable(scenario.source, "timing", f"the conflict at {t_c:.2f} s is after the scenario's end")
    lp = _lane_path(scenario, other_id)
    s_conf = float(lp.project(np.array(point[:1]), np.array(point[1:]))[0][0])
    first = nearest_step(scenario, max(t_c - lead_in_s, 0.0))
    k_c = min(int(np.searchsorted(t, t_c - 1e-9)), scenario.num_steps - 1)
    s_pre = s_conf - speed * (t_c - t[first : k_c + 1])
    if other_id in signal_of:
        row = signal_of[other_id]
        stop = scenario.signals.stop_points[row]
        s_stop = float(lp.project(stop[:1], stop[1:2])[0][0])
        t_stop = t_c - (s_conf - s_stop) / speed
        k_stop = int(np.clip(nearest_step(scenario, max(t_stop, 0.0)), 0, scenario.num_steps - 1))
        state = int(scenario.signals.states[row, k_stop])
        if t_stop >= 0 and state not in PRIORITY_STATES:
            shows = SignalState(state).name
            raise NotApplicable(scenario.source, "no_priority", f"lane {other_id!r}'s signal shows {shows} when it passes at {t_stop:.2f} s")
    box = typical_box(scenario, int(AgentType.VEHICLE))
    s_post, v_post = _follow(scenario, lp, tracks.num_agents, box[0], float(s_pre[-1]), speed, k_c)
    s = np.concatenate([s_pre, s_post])
    v = np.concatenate([np.full(s_pre.shape, speed), v_post])
    state = moving_along(lp, s, v)
    return _insert(scenario, "insert_priority_crossing", "priority_crossing", int(AgentType.VEHICLE), box, first, state, scenario.num_steps)


def _chain_ids(scenario: Scenario, lane_id: str) -> list[str]:
    """``lane_id`` and the lanes ``insert._lane_path`` chains to it (the ego's own route)."""
    lanes = {lane.id: lane for lane in scenario.road_map.lanes}
    out = [lane_id]
    for forward in (True, False):
        current, seen = lanes[lane_id], {lane_id}
        for _ in range(50):
            nxt = [n for n in (current.successors if forward else current.predecessors) if n in lanes and n not in seen]
            if not nxt:
                break
            current = lanes[sorted(nxt)[0]]
            seen.add(current.id)
            out.append(current.id)
    return out
