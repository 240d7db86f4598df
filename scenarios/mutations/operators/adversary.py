"""The adversary: a logged road user retimed along its own path to meet the ego at a conflict point.

The conflict points come from the two logged paths' geometry (``geometry.conflicts``: a
crossing, a merge, an oncoming lane, a pedestrian crossing the ego's path). The chosen road user
keeps its path; only its speed profile changes (a smooth speed change at a peak acceleration
set by ``aggressiveness``, then a constant speed), so that its centre reaches the conflict point
when the logged ego's does, plus ``offset_s``. It replays that track whatever the agents mode
(``conditions.replay_agents``), so the conflict is staged whatever the planner does.
"""

from __future__ import annotations

import numpy as np

from scenarios.model import AgentType, Scenario
from scenarios.mutations.base import NotApplicable, Param, register, tag
from scenarios.mutations.edit import TrackEditor, mark_replayed
from scenarios.mutations.geometry import (
    CONFLICT_KINDS,
    Conflict,
    Path,
    conflicts,
    curvature,
    lane_half_width,
    moving_along,
    times_s,
)
from scenarios.mutations.operators.interactions import _follow, _offset_state

#: Largest acceleration [m/s2] (longitudinal and lateral together) per road user type at
#: aggressiveness 1; the friction of the scenario's road caps a vehicle's and a cyclist's.
PEAK_ACCEL = {int(AgentType.VEHICLE): 6.0, int(AgentType.CYCLIST): 3.0, int(AgentType.PEDESTRIAN): 1.5}
#: Peak acceleration [m/s2] at aggressiveness 0, as a fraction of ``PEAK_ACCEL``.
GENTLE_FRACTION = 0.2
#: Highest speed [m/s] a retimed road user may need, per type.
MAX_SPEED = {int(AgentType.VEHICLE): 25.0, int(AgentType.CYCLIST): 10.0, int(AgentType.PEDESTRIAN): 3.0}
#: The speed change starts at most this long [s] before the conflict (at the agent's first valid step if later).
LEAD_S = 6.0
#: ... and at least this long before it [s].
MIN_LEAD_S = 1.0
#: A lateral perturbation grows over this long [s] before the conflict, and shrinks over it after.
LATERAL_RAMP_S = 2.0
#: Largest lateral perturbation of a pedestrian [m] (a crosswalk is about 3 m wide).
PEDESTRIAN_MAX_LATERAL_M = 1.0
#: Tag prefix naming the conflict a variant staged: ``"adversary_conflict:<kind>"``.
CONFLICT_TAG = "adversary_conflict"


def peak_accel(agent_type: int, aggressiveness: float, road_friction: float) -> float:
    """The peak acceleration [m/s2] a road user of ``agent_type`` may use at ``aggressiveness`` (0..1)."""
    top = PEAK_ACCEL.get(agent_type, PEAK_ACCEL[int(AgentType.VEHICLE)])
    if agent_type != AgentType.PEDESTRIAN:
        top = min(top, 0.9 * road_friction * 9.81)
    return top * (GENTLE_FRACTION + (1.0 - GENTLE_FRACTION) * aggressiveness)


def speed_change(distance: float, v0: float, duration: float, accel: float) -> tuple[float, float] | None:
    """(target speed v1 [m/s], ramp time [s]) to cover ``distance`` [m] in ``duration`` [s] from ``v0``.

    The speed goes from v0 to v1 along a cubic smoothstep over the ramp (peak acceleration
    ``accel`` [m/s2] at its middle, none at its ends), then stays at v1. None when no such
    profile exists (the ramp would outlast ``duration``, or v1 < 0).
    """
    excess = distance - v0 * duration
    if abs(excess) < 1e-9:
        return v0, 0.0
    sign = 1.0 if excess > 0 else -1.0
    # v1 = v0 + sign u, ramp 1.5 u / accel: distance = v0 T + sign (u T - 0.75 u^2 / accel)
    disc = duration**2 - 3.0 * abs(excess) / accel
    if disc < 0:
        return None
    u = (duration - np.sqrt(disc)) * accel / 1.5
    ramp = 1.5 * u / accel
    v1 = v0 + sign * u
    if v1 < 0 or ramp > duration + 1e-9:
        return None
    return float(v1), float(ramp)


def profile(tau: np.ndarray, v0: float, v1: float, ramp: float) -> tuple[np.ndarray, np.ndarray]:
    """(distance [m], speed [m/s]) at times ``tau`` [s] from the start of ``speed_change``'s profile."""
    if ramp <= 0:
        return v0 * tau, np.full(tau.shape, v0)
    w = np.clip(tau / ramp, 0.0, 1.0)
    dv = v1 - v0
    s_ramp = v0 * np.minimum(tau, ramp) + dv * ramp * (w**3 - 0.5 * w**4)
    s = s_ramp + v1 * np.maximum(tau - ramp, 0.0)
    v = v0 + dv * (3 * w**2 - 2 * w**3)
    return s, v


def pick_conflict(scenario: Scenario, conflict: int, kind: str, agent: str) -> Conflict:
    """The ``conflict``-th conflict point (nearest first) of ``kind`` ("any" for all) with ``agent`` ("auto": any)."""
    found = conflicts(scenario)
    if not found:
        tracks = scenario.tracks
        idx = np.flatnonzero(tracks.valid[scenario.ego_index])
        travel = float(np.hypot(np.diff(tracks.x[scenario.ego_index, idx]), np.diff(tracks.y[scenario.ego_index, idx])).sum())
        problem = f"the logged ego travels {travel:.1f} m" if travel < 2.0 else "no road user's path comes near the ego's"
        raise NotApplicable(scenario.source, "no_conflict", f"no conflict point: {problem}")
    chosen = [c for c in found if (kind == "any" or c.kind == kind) and (agent == "auto" or c.agent_id == agent)]
    if not chosen:
        have = sorted({f"{c.kind}:{c.agent_id}" for c in found})
        raise NotApplicable(scenario.source, "no_conflict", f"no {kind} conflict with agent {agent!r}; the scene has {have}")
    if conflict >= len(chosen):
        raise NotApplicable(scenario.source, "conflict_index", f"conflict {conflict} asked, the scene has {len(chosen)} ({kind})")
    return chosen[conflict]


@register(
    "adversary",
    Param("conflict", "", 0, kind="int", low=0, high=100, doc="index into the conflict points, nearest in time first"),
    Param("kind", "", "any", kind="str", choices=("any", *CONFLICT_KINDS), doc="only conflicts of this kind"),
    Param("agent", "", "auto", kind="str", doc="only this road user's conflict (auto: any)"),
    Param("offset_s", "s", 0.0, low=-3.0, high=3.0, doc="when it reaches the point, after the logged ego does"),
    Param("aggressiveness", "-", 0.5, low=0.0, high=1.0, doc="scales its peak acceleration from gentle to its limit"),
    Param("lateral_m", "m", 0.0, low=-2.0, high=2.0, doc="sideways move towards the ego's path at the point, bounded by its lane"),
)
def adversary(
    scenario: Scenario,
    rng: np.random.Generator,
    *,
    conflict: int,
    kind: str,
    agent: str,
    offset_s: float,
    aggressiveness: float,
    lateral_m: float,
) -> Scenario:
    """Retime a road user along its own path so that it reaches a conflict point with the ego on time.

    Its centre is at the conflict point (on its own path) at ``t_ego + offset_s``. From
    ``LEAD_S`` before that (or its first valid step) its speed changes smoothly from the
    logged one to a constant one (peak ``peak_accel(type, aggressiveness)``); after the point a
    vehicle or cyclist follows its path with the intelligent driver model behind the logged
    traffic in it, a pedestrian walks on. ``lateral_m`` moves it sideways towards the ego's
    path over ``LATERAL_RAMP_S`` before the point and back after it, at most to its lane's
    edge (a pedestrian ``PEDESTRIAN_MAX_LATERAL_M``). It is valid from the first rewritten step
    to the end and replays its track (``conditions.replay_agents``).

    Not applicable (the reason in brackets): no conflict point, or not that many [no_conflict,
    conflict_index]; the point is after the scenario's end or too soon after the agent appears
    [timing]; the agent has passed it already [passed]; the speed profile needs more than the
    peak acceleration, reverses or is too fast [unreachable, too_fast]; its turn at that speed
    needs more than the acceleration limit [curvature].
    """
    c = pick_conflict(scenario, conflict, kind, agent)
    tracks = scenario.tracks
    row = c.row
    t = times_s(scenario)
    t_c = c.t_ego_s + offset_s
    if t_c > t[-1]:
        raise NotApplicable(scenario.source, "timing", f"the conflict at {t_c:.2f} s is after the scenario's end ({t[-1]:.2f} s)")
    valid = np.flatnonzero(tracks.valid[row])
    path = Path.of_agent(tracks, row)
    agent_type = int(tracks.agent_types[row])
    accel = peak_accel(agent_type, aggressiveness, scenario.conditions.road_friction)
    # the speed change starts LEAD_S before the point; where that is not enough time (or the
    # agent has passed the point by then), from the agent's first valid step
    late = valid[t[valid] >= t_c - LEAD_S - 1e-9]
    starts = [int(late[0])] if late.size else []
    if int(valid[0]) not in starts:
        starts.append(int(valid[0]))
    for k0 in starts:
        s0 = float(path.project(tracks.x[row, k0], tracks.y[row, k0], (-1.0, path.length + 1.0))[0][0])
        duration = t_c - t[k0]
        v0 = float(np.hypot(tracks.vx[row, k0], tracks.vy[row, k0]))
        plan = speed_change(c.s_agent - s0, v0, duration, accel) if s0 < c.s_agent and duration >= MIN_LEAD_S else None
        if plan is not None:
            break
    if s0 >= c.s_agent:
        raise NotApplicable(scenario.source, "passed", f"agent {c.agent_id!r} is past the conflict point when it appears")
    if duration < MIN_LEAD_S:
        raise NotApplicable(
            scenario.source, "timing", f"agent {c.agent_id!r} appears {duration:.2f} s before the conflict (< {MIN_LEAD_S} s)"
        )
    if plan is None:
        raise NotApplicable(
            scenario.source,
            "unreachable",
            f"agent {c.agent_id!r} cannot cover {c.s_agent - s0:.1f} m in {duration:.2f} s from {v0:.1f} m/s at {accel:.2f} m/s2",
        )
    v1, ramp = plan
    v_cap = MAX_SPEED.get(agent_type, MAX_SPEED[int(AgentType.VEHICLE)])
    if v1 > v_cap:
        raise NotApplicable(scenario.source, "too_fast", f"agent {c.agent_id!r} would need {v1:.1f} m/s (> {v_cap} m/s)")
    vmax = max(v0, v1)
    if agent_type != AgentType.PEDESTRIAN:
        probe = np.arange(s0, c.s_agent + vmax * LATERAL_RAMP_S + 1e-9, 0.5)
        lateral = float(np.max(curvature(path, probe))) * vmax**2
        if lateral > PEAK_ACCEL[int(AgentType.VEHICLE)] and lateral > accel:
            raise NotApplicable(
                scenario.source, "curvature", f"agent {c.agent_id!r} would turn at {lateral:.1f} m/s2 lateral at {vmax:.1f} m/s"
            )

    tau = t[k0:] - t[k0]
    before = t[k0:] <= t_c + 1e-9
    s, v = profile(tau[before], v0, v1, ramp)
    s = s0 + s
    k_last = k0 + int(before.sum()) - 1
    if agent_type == AgentType.PEDESTRIAN:
        rest = t[k_last + 1 :] - t[k_last]
        s_after, v_after = s[-1] + v1 * rest, np.full(rest.shape, v1)
    else:
        s_after, v_after = _follow(scenario, path, row, float(tracks.length[row]), float(s[-1]), float(v[-1]), k_last)
    s = np.concatenate([s, s_after])
    v = np.concatenate([v, v_after])
    if lateral_m != 0.0:
        state = _offset_state(path, s, v, *_lateral(scenario, c, path, lateral_m, t[k0:], t_c))
    else:
        state = moving_along(path, s, v)
    state["valid"] = np.ones(s.shape, bool)
    edit = TrackEditor(scenario)
    edit.set_state(row, slice(k0, None), state)
    out = edit.scenario(tags=(tag("adversary", c.agent_id), f"{CONFLICT_TAG}:{c.kind}"))
    return mark_replayed(out, c.agent_id)


def _lateral(scenario: Scenario, c: Conflict, path: Path, lateral_m: float, tt: np.ndarray, t_c: float) -> tuple[np.ndarray, np.ndarray]:
    """(offset [m], its rate [m/s]) to the path's left at times ``tt`` [s]: towards the ego's path, bounded by the lane."""
    px, py, _, ph, _ = path.at(c.s_agent)
    side = float(np.sign(-(c.x - px) * np.sin(ph) + (c.y - py) * np.cos(ph))) or 1.0
    tracks = scenario.tracks
    if tracks.agent_types[c.row] == AgentType.PEDESTRIAN:
        bound = PEDESTRIAN_MAX_LATERAL_M
    else:
        bound = lane_half_width(scenario, float(px), float(py), float(ph))
    d_max = side * float(np.clip(lateral_m, -bound, bound))
    w_in = np.clip((tt - (t_c - LATERAL_RAMP_S)) / LATERAL_RAMP_S, 0.0, 1.0)
    w_out = np.clip((tt - t_c) / LATERAL_RAMP_S, 0.0, 1.0)
    d = d_max * ((3 * w_in**2 - 2 * w_in**3) - (3 * w_out**2 - 2 * w_out**3))
    dd = d_max * (6 * w_in * (1 - w_in) - 6 * w_out * (1 - w_out)) / LATERAL_RAMP_S
    return d, dd
