"""Operators that stage an interaction with the ego: a lead vehicle braking hard, a cut-in."""

from __future__ import annotations

import numpy as np

from scenarios.model import AgentType, Scenario
from scenarios.mutations.base import MutationError, NotApplicable, Param, register, tag
from scenarios.mutations.edit import TrackEditor, mark_replayed
from scenarios.mutations.geometry import (
    LEAD_MAX_HEADING_RAD,
    LEAD_MAX_LATERAL_M,
    Path,
    adjacent_lane_offsets,
    moving_along,
    near_path,
    nearest_step,
    resolve_agent,
    times_s,
    wrap_angle,
)
from scenarios.mutations.operators.agents import AGENT_DOC

#: Below this speed [m/s] a lead is standing and a brake mutation does nothing.
MIN_BRAKE_SPEED = 0.5
#: How long before the lateral move [s] a neighbour starts adjusting its speed for a cut-in.
CUT_IN_ADJUST_S = 3.0
#: A neighbour is used by ``source="auto"`` when reaching its slot needs at most this [m/s2].
CUT_IN_COMFORT_ACCEL = 3.0
#: A neighbour must be within this [m] of the adjacent lane's centre, laterally.
NEIGHBOUR_MAX_LATERAL_M = 1.2


@register(
    "lead_brake",
    Param("decel", "m/s2", 6.0, low=0.5, high=10.0, doc="constant deceleration until the lead stops"),
    Param("onset_s", "s", 2.0, low=0.0, doc="when braking starts, from the scenario's start (snapped to a step)"),
    Param("agent", "", "lead", kind="str", doc=AGENT_DOC),
)
def lead_brake(scenario: Scenario, rng: np.random.Generator, *, decel: float, onset_s: float, agent: str) -> Scenario:
    """The lead vehicle brakes at ``decel`` [m/s2] from ``onset_s`` [s] to a stop, along its own path.

    The lead is the nearest vehicle ahead of the ego in its path at the onset step (see
    ``geometry.lead_of``). From that step on its track is rewritten: speed ``v0 - decel * t``
    until 0, positions along its logged path (extended straight past its end), and it stays
    valid, standing, to the end of the scenario, and replays (``conditions.replay_agents``).
    """
    step = nearest_step(scenario, onset_s)
    row = resolve_agent(scenario, agent, step, rng)
    tracks = scenario.tracks
    if row is None or row == scenario.ego_index:
        raise NotApplicable(scenario.source, "no_lead", f"no lead vehicle ({agent!r}) ahead of the ego at step {step}")
    if not tracks.valid[row, step]:
        raise NotApplicable(scenario.source, "no_lead", f"agent {tracks.agent_ids[row]!r} is not valid at step {step}")
    v0 = float(np.hypot(tracks.vx[row, step], tracks.vy[row, step]))
    if v0 < MIN_BRAKE_SPEED:
        raise NotApplicable(scenario.source, "lead_stopped", f"the lead {tracks.agent_ids[row]!r} is standing at step {step}")
    path = Path.of_agent(tracks, row, step)
    tau = times_s(scenario)[step:] - times_s(scenario)[step]
    tc = np.minimum(tau, v0 / decel)
    s = v0 * tc - 0.5 * decel * tc**2
    v = np.maximum(v0 - decel * tau, 0.0)
    state = moving_along(path, s, v)
    state["valid"] = np.ones_like(tau, bool)
    edit = TrackEditor(scenario)
    edit.set_state(row, slice(step, None), state)
    return mark_replayed(edit.scenario(tags=(tag("lead_brake", str(tracks.agent_ids[row])),)), str(tracks.agent_ids[row]))


def _hermite(ds: float, v0: float, v1: float, dur: float) -> tuple[float, float, float, float]:
    """Cubic s(t) = v0 t + a2 t^2 + a3 t^3 from (0, v0) to (ds, v1) in ``dur``: (a2, a3, peak |accel|, min speed)."""
    a2 = (3 * ds - (2 * v0 + v1) * dur) / dur**2
    a3 = ((v0 + v1) * dur - 2 * ds) / dur**3
    peak = max(abs(2 * a2), abs(2 * a2 + 6 * a3 * dur))
    speeds = [v0, v1]
    if a3 != 0:
        tv = -a2 / (3 * a3)
        if 0 < tv < dur:
            speeds.append(v0 + 2 * a2 * tv + 3 * a3 * tv**2)
    return a2, a3, peak, min(speeds)


@register(
    "cut_in",
    Param("gap_m", "m", 10.0, low=0.0, high=200.0, doc="bumper-to-bumper gap ahead of the ego at insertion"),
    Param("ttc_s", "s", None, low=0.1, high=60.0, doc="if given: the gap is ttc_s times the closing speed (gap_m unused)"),
    Param("rel_speed", "m/s", -2.0, low=-30.0, high=30.0, doc="cutter's speed along the path minus the ego's, at insertion"),
    Param("onset_s", "s", 2.0, low=0.0, doc="when the lateral move starts, from the scenario's start"),
    Param("duration_s", "s", 3.0, low=0.5, high=10.0, doc="time the lateral move takes"),
    Param("side", "", "auto", kind="str", choices=("auto", "left", "right"), doc="which adjacent lane it comes from"),
    Param("source", "", "auto", kind="str", choices=("auto", "neighbour", "clone"), doc="an existing vehicle or a new one"),
    Param("lead_in_s", "s", 2.0, low=0.0, high=1000.0, doc="how long before the lateral move a clone appears"),
)
def cut_in(
    scenario: Scenario,
    rng: np.random.Generator,
    *,
    gap_m: float,
    ttc_s: float | None,
    rel_speed: float,
    onset_s: float,
    duration_s: float,
    side: str,
    source: str,
    lead_in_s: float,
) -> Scenario:
    """A vehicle from an adjacent lane moves in front of the ego, leaving ``gap_m`` (or ``ttc_s``).

    Everything is laid out along the ego's logged path (extended straight). The lateral move is
    a quintic from the adjacent lane's centre (found on the map abeam of the cutter) to the
    ego's path over ``duration_s``; the insertion, when the cutter crosses into the ego's lane
    halfway through, is at the step nearest ``onset_s + duration_s / 2``. At that step the gap
    between the ego's front and the cutter's rear, along the path, is the asked gap, and the
    cutter drives at the ego's speed + ``rel_speed``. After it, the cutter follows the ego's lane
    with the intelligent driver model (desired speed: its insertion speed), so that it does not
    drive through the logged traffic ahead.

    ``source="neighbour"`` uses the vehicle in the adjacent lane that reaches its slot with the
    least acceleration, rewriting it from ``CUT_IN_ADJUST_S`` before the lateral move (a cubic in
    speed); ``"clone"`` adds a new vehicle ("cut_in", a copy of a random car's size) at constant
    speed in the adjacent lane from ``lead_in_s`` before the lateral move (it appears then);
    ``"auto"`` takes a neighbour when it needs at most ``CUT_IN_COMFORT_ACCEL`` and clones
    otherwise.
    """
    tracks = scenario.tracks
    ego = scenario.ego_index
    t = times_s(scenario)
    k_ins = nearest_step(scenario, onset_s + duration_s / 2)
    t_ins = t[k_ins]
    t_on = t_ins - duration_s / 2
    if not tracks.valid[ego, k_ins]:
        raise NotApplicable(scenario.source, "ego_not_valid", f"the ego is not valid at the insertion step {k_ins}")
    if ttc_s is not None:
        if rel_speed >= 0:
            raise MutationError(f"mutation 'cut_in' on {scenario.id}", "params.ttc_s", "a TTC needs rel_speed < 0 (a cutter slower than the ego)")
        gap = ttc_s * -rel_speed
    else:
        gap = gap_m
    path = Path.of_agent(tracks, ego, 0)
    s_e = float(path.project(tracks.x[ego, k_ins], tracks.y[ego, k_ins])[0][0])
    v_c = float(np.hypot(tracks.vx[ego, k_ins], tracks.vy[ego, k_ins])) + rel_speed
    if v_c < 0:
        raise NotApplicable(scenario.source, "cutter_speed", f"the cutter would drive backwards ({v_c:.2f} m/s)")
    half_ego = tracks.length[ego] / 2
    # the adjacent lane is looked up where the cutter is, roughly, when the lateral move starts
    qx, qy, _, qh, _ = path.at(s_e + half_ego + gap + 2.5 - v_c * (t_ins - t_on))
    lanes = adjacent_lane_offsets(scenario, float(qx), float(qy), float(qh))
    sides = [k for k in {"left": [1], "right": [-1], "auto": [1, -1]}[side] if k in lanes]
    if not sides:
        raise NotApplicable(scenario.source, "no_adjacent_lane", f"no adjacent lane on the {side} of the ego's path at step {k_ins}")
    d0 = lanes[sides[int(rng.integers(len(sides)))]]

    edit = TrackEditor(scenario)
    plan = None if source == "clone" else _neighbour_plan(scenario, path, d0, gap, v_c, t, t_on, t_ins, s_e)
    if source == "neighbour" and plan is None:
        raise NotApplicable(scenario.source, "no_neighbour", "no vehicle in the adjacent lane to cut in")
    if plan is not None and (source == "neighbour" or plan[4] <= CUT_IN_COMFORT_ACCEL):
        row, first, d_start, (s0, v0, a2, a3), _ = plan
        cutter_len = float(tracks.length[row])
        tau = t[first : k_ins + 1] - t[first]
        s_before = s0 + v0 * tau + a2 * tau**2 + a3 * tau**3
        v_before = v0 + 2 * a2 * tau + 3 * a3 * tau**2
    else:
        cars = np.flatnonzero((tracks.agent_types == AgentType.VEHICLE) & (tracks.length >= 3.5) & (tracks.length <= 6.0))
        cars = cars[cars != ego]
        like = int(cars[rng.integers(cars.size)]) if cars.size else ego
        row = edit.add_agent(
            edit.unique_id("cut_in"), int(AgentType.VEHICLE), float(tracks.length[like]), float(tracks.width[like]), float(tracks.height[like])
        )
        cutter_len = float(tracks.length[like])
        first = min(int(np.searchsorted(t, t_on - lead_in_s - 1e-9)), k_ins)
        d_start = d0
        s1 = s_e + half_ego + gap + cutter_len / 2
        s_before = s1 + v_c * (t[first : k_ins + 1] - t_ins)
        v_before = np.full(len(s_before), v_c)
    s_after, v_after = _follow(scenario, path, row, cutter_len, float(s_before[-1]), v_c, k_ins)
    s = np.concatenate([s_before, s_after])
    sd = np.concatenate([v_before, v_after])
    tt = t[first:]
    w = np.clip((tt - t_on) / duration_s, 0.0, 1.0)
    d = d_start * (1.0 - (10 * w**3 - 15 * w**4 + 6 * w**5))
    dd = -d_start * 30 * w**2 * (1 - w) ** 2 / duration_s
    state = _offset_state(path, s, sd, d, dd)
    state["valid"] = np.ones_like(tt, bool)
    edit.set_state(row, slice(first, None), state)
    cutter = str(edit.arrays["agent_ids"][row])
    return mark_replayed(edit.scenario(tags=(tag("cut_in", cutter),)), cutter)


#: Intelligent driver model of a cutter after insertion: max accel, comfortable decel [m/s2],
#: time headway [s], standstill gap [m], and the hardest braking it may use [m/s2].
IDM_ACCEL, IDM_DECEL, IDM_HEADWAY_S, IDM_MIN_GAP_M, IDM_MAX_BRAKE = 1.5, 2.0, 1.2, 2.0, 8.0


def _follow(
    scenario: Scenario, path: Path, row: int, length: float, s0: float, v0: float, k0: int
) -> tuple[np.ndarray, np.ndarray]:
    """(s, v) along ``path`` for the steps after ``k0``: the IDM behind the logged agents in the path's lane.

    Agents ahead count as in the lane within ``LEAD_MAX_LATERAL_M`` of the path. Braking is
    capped at ``IDM_MAX_BRAKE`` and at 0.9 mu g of the scenario's road.
    """
    tracks = scenario.tracks
    t = times_s(scenario)
    steps = np.arange(k0, scenario.num_steps)
    if steps.size <= 1:
        return np.zeros(0), np.zeros(0)
    # the stretch of path the cutter can reach, and the agent positions near it
    horizon = t[-1] - t[k0]
    reach = (s0 - 10.0, s0 + v0 * horizon + 0.5 * IDM_ACCEL * horizon**2 + 60.0)
    xs, ys = tracks.x[:, steps], tracks.y[:, steps]
    near = tracks.valid[:, steps]
    near[[scenario.ego_index, *([row] if row < tracks.num_agents else [])]] = False
    ai, si = np.nonzero(near)
    near[ai, si] = near_path(path, xs[ai, si], ys[ai, si], LEAD_MAX_LATERAL_M, reach)
    lead_s = np.full(xs.shape, np.inf)
    lead_v = np.zeros(xs.shape)
    ai, si = np.nonzero(near)
    if ai.size:
        ps, pd = path.project(xs[ai, si], ys[ai, si], reach)
        heading = np.interp(ps, path.s, path.heading)
        yaw = tracks.yaw[ai, steps[si]]
        in_lane = (np.abs(pd) <= LEAD_MAX_LATERAL_M) & (np.abs(wrap_angle(yaw - heading)) <= LEAD_MAX_HEADING_RAD)
        lead_s[ai, si] = np.where(in_lane, ps - tracks.length[ai] / 2, np.inf)
        lead_v[ai, si] = np.hypot(tracks.vx[ai, steps[si]], tracks.vy[ai, steps[si]]) * np.cos(yaw - heading)
    brake = min(IDM_MAX_BRAKE, 0.9 * scenario.conditions.road_friction * 9.81)
    v_des = max(v0, 0.1)
    s_out, v_out = np.zeros(steps.size), np.zeros(steps.size)
    s_out[0], v_out[0] = s0, v0
    for j in range(steps.size - 1):
        s, v = s_out[j], v_out[j]
        front = s + length / 2
        ahead = lead_s[:, j] > front
        accel = IDM_ACCEL * (1 - (v / v_des) ** 4)
        if ahead.any():
            i = int(np.argmin(np.where(ahead, lead_s[:, j], np.inf)))
            gap = max(lead_s[i, j] - front, 0.1)
            want = IDM_MIN_GAP_M + v * IDM_HEADWAY_S + v * (v - lead_v[i, j]) / (2 * np.sqrt(IDM_ACCEL * IDM_DECEL))
            accel -= IDM_ACCEL * (max(want, 0.0) / gap) ** 2
        accel = min(max(accel, -brake), IDM_ACCEL)
        dt = t[steps[j + 1]] - t[steps[j]]
        v_next = v + accel * dt
        if v_next < 0:  # stops within the step
            s_out[j + 1], v_out[j + 1] = s + v * v / (2 * -accel) if accel < 0 else s, 0.0
        else:
            s_out[j + 1], v_out[j + 1] = s + 0.5 * (v + v_next) * dt, v_next
    return s_out[1:], v_out[1:]


def _neighbour_plan(
    scenario: Scenario, path: Path, d0: float, gap: float, v_c: float, t: np.ndarray, t_on: float, t_ins: float, s_e: float
) -> tuple[int, int, float, tuple[float, float, float, float], float] | None:
    """The neighbour needing the least acceleration: (row, first rewritten step, lateral start, (s0, v0, a2, a3), peak accel)."""
    tracks = scenario.tracks
    ego = scenario.ego_index
    k_a = int(np.clip(np.searchsorted(t, t_on - CUT_IN_ADJUST_S - 1e-9), 0, len(t) - 1))
    if t[k_a] >= t_on:
        return None
    rows = np.flatnonzero(tracks.valid[:, k_a] & (tracks.agent_types == AgentType.VEHICLE))
    rows = rows[rows != ego]
    if rows.size == 0:
        return None
    s, d = path.project(tracks.x[rows, k_a], tracks.y[rows, k_a])
    heading = np.interp(s, path.s, path.heading)
    near = (np.abs(d - d0) <= NEIGHBOUR_MAX_LATERAL_M) & (np.abs(wrap_angle(tracks.yaw[rows, k_a] - heading)) <= np.radians(20))
    best = None
    dur = t_ins - t[k_a]
    for i in np.flatnonzero(near):
        row = int(rows[i])
        s1 = s_e + tracks.length[ego] / 2 + gap + tracks.length[row] / 2
        v0 = float(np.hypot(tracks.vx[row, k_a], tracks.vy[row, k_a]))
        a2, a3, peak, vmin = _hermite(float(s1 - s[i]), v0, v_c, dur)
        if vmin < 0:
            continue
        if best is None or peak < best[4]:
            best = (row, k_a, float(d[i]), (float(s[i]), v0, a2, a3), peak)
    return best


def _offset_state(path: Path, s: np.ndarray, sd: np.ndarray, d: np.ndarray, dd: np.ndarray) -> dict[str, np.ndarray]:
    """State at arc length ``s`` [m] and lateral offset ``d`` [m] (left positive) of ``path``, with their rates."""
    x, y, z, heading, _ = path.at(s)
    kappa = np.interp(s, path.s, np.gradient(path.heading, path.s))
    c, si = np.cos(heading), np.sin(heading)
    along = sd * (1.0 - kappa * d)
    vx = along * c - dd * si
    vy = along * si + dd * c
    moving = np.hypot(vx, vy) > 0.5
    yaw = np.where(moving, np.arctan2(vy, vx), wrap_angle(heading))
    return {"x": x - d * si, "y": y + d * c, "z": z, "yaw": yaw, "vx": vx, "vy": vy}
