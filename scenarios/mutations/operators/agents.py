"""Operators that move, retime, remove or add agents along their logged paths."""

from __future__ import annotations

import numpy as np

from scenarios.model import AgentType, Scenario, Tracks
from scenarios.mutations.base import NotApplicable, Param, register, tag
from scenarios.mutations.edit import TrackEditor
from scenarios.mutations.geometry import (
    boxes_overlap,
    nearest_step,
    resolve_agent,
    times_s,
    warp,
)

AGENT_DOC = "agent id, or a rule: lead (nearest vehicle ahead of the ego), nearest, random, ego"
#: Tries to place each clone of ``traffic_density`` before giving up.
CLONE_TRIES = 30
#: A clone's source must have travelled at least this far in the log [m].
CLONE_MIN_TRAVEL_M = 5.0


def _agent(scenario: Scenario, rule: str, step: int, rng: np.random.Generator) -> int:
    row = resolve_agent(scenario, rule, step, rng)
    if row is None:
        raise NotApplicable(scenario.source, "no_agent", f"no agent matches {rule!r} at step {step}")
    return row


def _smoothstep_integral(u: np.ndarray) -> np.ndarray:
    """Integral from 0 to ``u`` of the cubic smoothstep 3u^2 - 2u^3 (1 beyond u = 1)."""
    w = np.clip(u, 0.0, 1.0)
    return w**3 - 0.5 * w**4 + np.maximum(u - 1.0, 0.0)


@register(
    "retime",
    Param("agent", "", "lead", kind="str", doc=AGENT_DOC),
    Param("scale", "-", 1.0, low=0.1, high=5.0, doc="speed factor along the agent's own path"),
    Param("from_s", "s", 0.0, low=0.0, doc="when the retiming starts; the log is kept before"),
    Param("ramp_s", "s", 1.0, low=0.0, high=10.0, doc="time over which the speed factor goes from 1 to scale"),
)
def retime(scenario: Scenario, rng: np.random.Generator, *, agent: str, scale: float, from_s: float, ramp_s: float) -> Scenario:
    """Drive an agent along its own logged path at ``scale`` times its logged speed.

    The agent's clock runs ``scale`` times as fast from ``from_s`` on (reaching that rate over
    ``ramp_s`` with a smoothstep, so the speed does not jump; from step 0 there is no ramp): its
    positions are its logged ones,
    interpolated between samples, so they stay on its logged polyline. An agent sped up reaches
    the end of its log early and is not valid after it, as an agent leaving the recorded area.
    """
    step = nearest_step(scenario, from_s)
    row = _agent(scenario, agent, step, rng)
    t = times_s(scenario)
    ta = t[step]
    if step == 0:
        ramp_s = 0.0  # nothing earlier to stay continuous with: start at the scaled speed
    if ramp_s > 0:
        u = (t - ta) / ramp_s
        tau = t + (scale - 1.0) * ramp_s * _smoothstep_integral(np.maximum(u, 0.0))
        w = np.clip(u, 0.0, 1.0)
        rate = 1.0 + (scale - 1.0) * (3 * w**2 - 2 * w**3)
    else:
        tau = np.where(t >= ta, ta + scale * (t - ta), t)
        rate = np.where(t >= ta, scale, 1.0)
    state = warp(scenario.tracks, row, t, tau, 1.0)
    state["vx"] = state["vx"] * rate
    state["vy"] = state["vy"] * rate
    edit = TrackEditor(scenario)
    after = t >= ta
    edit.set_state(row, after, {name: value[after] for name, value in state.items()})
    return edit.scenario(tags=(tag("retime", str(scenario.tracks.agent_ids[row])),))


@register(
    "time_shift",
    Param("agent", "", "lead", kind="str", doc=AGENT_DOC),
    Param("shift_s", "s", 1.0, low=-20.0, high=20.0, doc="delay of the agent's whole log (negative: earlier)"),
)
def time_shift(scenario: Scenario, rng: np.random.Generator, *, agent: str, shift_s: float) -> Scenario:
    """Delay an agent's whole logged track by ``shift_s`` [s] (interpolated between samples).

    It is where it was ``shift_s`` earlier; steps that map outside its log are not valid.
    """
    row = _agent(scenario, agent, 0, rng)
    t = times_s(scenario)
    edit = TrackEditor(scenario)
    edit.set_state(row, slice(None), warp(scenario.tracks, row, t, t - shift_s, 1.0))
    if not edit.arrays["valid"][row].any():
        raise NotApplicable(scenario.source, "no_agent", f"shifting {str(scenario.tracks.agent_ids[row])!r} by {shift_s} s leaves nothing")
    return edit.scenario(tags=(tag("time_shift", str(scenario.tracks.agent_ids[row])),))


@register(
    "lateral_offset",
    Param("agent", "", "lead", kind="str", doc=AGENT_DOC),
    Param("offset_m", "m", 0.5, low=-5.0, high=5.0, doc="offset to the agent's left (negative: right)"),
    Param("from_s", "s", 0.0, low=0.0, doc="when the agent starts moving sideways; 0 offsets the whole track"),
    Param("ramp_s", "s", 0.0, low=0.0, high=10.0, doc="time the sideways move takes (smoothstep); 0 jumps"),
)
def lateral_offset(
    scenario: Scenario, rng: np.random.Generator, *, agent: str, offset_m: float, from_s: float, ramp_s: float
) -> Scenario:
    """Move an agent sideways by ``offset_m`` [m], perpendicular to its logged yaw.

    With ``from_s = 0`` and ``ramp_s = 0`` the whole track is offset. Otherwise the offset
    grows from 0 to ``offset_m`` over ``[from_s, from_s + ramp_s]`` (a smoothstep); velocity and
    yaw then include the sideways motion.
    """
    step = nearest_step(scenario, from_s)
    row = _agent(scenario, agent, step, rng)
    tracks = scenario.tracks
    t = times_s(scenario)
    valid = tracks.valid[row]
    ta = t[step] if from_s > 0 else -np.inf
    if ramp_s > 0 and np.isfinite(ta):
        w = np.clip((t - ta) / ramp_s, 0.0, 1.0)
        d = offset_m * (3 * w**2 - 2 * w**3)
        dd = offset_m * 6 * w * (1 - w) / ramp_s
    else:
        d = np.where(t >= ta, offset_m, 0.0)
        dd = np.zeros_like(t)
    yaw = tracks.yaw[row]
    idx = np.flatnonzero(valid)
    omega = np.zeros_like(t)
    if idx.size > 1:
        omega[idx] = np.gradient(np.unwrap(yaw[idx]), t[idx])
    nx, ny = -np.sin(yaw), np.cos(yaw)
    # d/dt of (d n) = dd n + d dn/dt, with dn/dt = -omega (cos yaw, sin yaw)
    vx = tracks.vx[row] + dd * nx - d * omega * np.cos(yaw)
    vy = tracks.vy[row] + dd * ny - d * omega * np.sin(yaw)
    speed = np.hypot(tracks.vx[row], tracks.vy[row])
    new_yaw = np.where((dd != 0) & (speed > 0.5), yaw + np.arctan2(dd, speed), yaw)
    edit = TrackEditor(scenario)
    state = {"x": tracks.x[row] + d * nx, "y": tracks.y[row] + d * ny, "vx": vx, "vy": vy, "yaw": new_yaw}
    edit.set_state(row, valid, {name: value[valid] for name, value in state.items()})
    return edit.scenario(tags=(tag("lateral_offset", str(scenario.tracks.agent_ids[row])),))


_TYPES = {"any": None, "vehicle": AgentType.VEHICLE, "pedestrian": AgentType.PEDESTRIAN, "cyclist": AgentType.CYCLIST, "other": AgentType.OTHER}


@register(
    "remove_agents",
    Param("agents", "", (), kind="strs", doc="agent ids, or rules: lead, nearest, random"),
    Param("fraction", "-", 0.0, low=0.0, high=1.0, doc="share of the other agents of agent_type removed at random"),
    Param("agent_type", "", "any", kind="str", choices=tuple(_TYPES), doc="which agents fraction draws from"),
)
def remove_agents(scenario: Scenario, rng: np.random.Generator, *, agents: tuple[str, ...], fraction: float, agent_type: str) -> Scenario:
    """Remove the named agents and a random ``fraction`` of the others of a type (never the ego)."""
    tracks = scenario.tracks
    drop: set[int] = set()
    for rule in agents:
        row = _agent(scenario, rule, 0, rng)
        if row == scenario.ego_index:
            raise NotApplicable(scenario.source, "no_agent", f"{rule!r} is the ego, which cannot be removed")
        drop.add(row)
    if fraction > 0:
        kind = _TYPES[agent_type]
        pool = np.flatnonzero(np.ones(tracks.num_agents, bool) if kind is None else tracks.agent_types == kind)
        pool = np.array([r for r in pool if r != scenario.ego_index and r not in drop], int)
        count = int(round(fraction * pool.size))
        drop.update(int(r) for r in rng.choice(pool, size=count, replace=False))
    if not drop:
        return scenario
    edit = TrackEditor(scenario)
    edit.drop(sorted(drop))
    return edit.scenario()


@register(
    "traffic_density",
    Param("scale", "-", 1.5, low=0.0, high=4.0, doc="factor on the number of other vehicles"),
    Param("min_headway_s", "s", 1.5, low=0.5, high=10.0, doc="least time a clone trails its source by"),
    Param("max_headway_s", "s", 4.0, low=0.5, high=20.0, doc="most time a clone trails its source by"),
)
def traffic_density(
    scenario: Scenario, rng: np.random.Generator, *, scale: float, min_headway_s: float, max_headway_s: float
) -> Scenario:
    """Scale the number of other vehicles by ``scale``.

    Below 1, a random ``1 - scale`` of them are removed. Above 1, ``(scale - 1)`` times as many
    clones are added: a clone is a moving vehicle's logged track delayed by a random headway in
    ``[min_headway_s, max_headway_s]``, so it follows its source along the same lane; it is valid
    where the delayed log is. A clone is placed only where it overlaps no agent (the logged ego
    included) at any step; ``NotApplicable("no_room")`` when they do not all fit.
    """
    tracks = scenario.tracks
    vehicles = np.flatnonzero(tracks.agent_types == AgentType.VEHICLE)
    vehicles = vehicles[vehicles != scenario.ego_index]
    if scale < 1.0:
        count = int(round((1.0 - scale) * vehicles.size))
        if count == 0:
            return scenario
        edit = TrackEditor(scenario)
        edit.drop(sorted(int(r) for r in rng.choice(vehicles, size=count, replace=False)))
        return edit.scenario()
    count = int(round((scale - 1.0) * vehicles.size))
    if count == 0:
        return scenario
    if max_headway_s < min_headway_s:
        raise NotApplicable(scenario.source, "params", "max_headway_s is below min_headway_s")
    sources = vehicles[_travel(tracks, vehicles) >= CLONE_MIN_TRAVEL_M]
    if sources.size == 0:
        raise NotApplicable(scenario.source, "no_room", "no moving vehicle to clone")
    t = times_s(scenario)
    edit = TrackEditor(scenario)
    for _ in range(count):
        for _try in range(CLONE_TRIES):
            src = int(sources[rng.integers(sources.size)])
            headway = rng.uniform(min_headway_s, max_headway_s)
            state = warp(tracks, src, t, t - headway, 1.0)
            if state["valid"].sum() < 2 or _overlaps_any(edit, state, src):
                continue
            row = edit.add_agent(
                edit.unique_id(f"{tracks.agent_ids[src]}~clone"),
                int(tracks.agent_types[src]), float(tracks.length[src]), float(tracks.width[src]), float(tracks.height[src]),
            )
            edit.set_state(row, slice(None), state)
            break
        else:
            raise NotApplicable(scenario.source, "no_room", f"no free lane space for {count} clones")
    return edit.scenario()


def _travel(tracks: Tracks, rows: np.ndarray) -> np.ndarray:
    """(len(rows),) distance [m] each agent travels between its valid positions."""
    out = np.zeros(len(rows))
    for i, r in enumerate(rows):
        idx = np.flatnonzero(tracks.valid[r])
        out[i] = np.hypot(np.diff(tracks.x[r, idx]), np.diff(tracks.y[r, idx])).sum()
    return out


def _overlaps_any(edit: TrackEditor, state: dict[str, np.ndarray], src: int) -> bool:
    """Whether a clone of ``src`` with ``state`` overlaps any agent in ``edit`` at a step both are valid."""
    a = edit.arrays
    both = a["valid"] & state["valid"][None, :]
    if not both.any():
        return False
    hit = boxes_overlap(
        state["x"][None, :], state["y"][None, :], state["yaw"][None, :], a["length"][src], a["width"][src],
        a["x"], a["y"], a["yaw"], a["length"][:, None], a["width"][:, None],
    )
    return bool((hit & both).any())
