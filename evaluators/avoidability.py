"""Could the ego have avoided a collision nuPlan's rules put on it? A reaction-time + braking test.

nuPlan judges fault by the geometry at the first step of contact, so an actor that cuts in 0.3 s
before impact is the ego's fault. This is the second stage, after the rules of RSS
(Shalev-Shwartz, Shammah, Shashua 2017, "On a Formal Model of Safe and Scalable Self-driving
Cars"): the one responsible is who did not respond properly once the situation became dangerous,
the proper response of a car to a road user in its path being to brake within its response time.
For one at-fault collision with agent j at step c:

1. **The conflict's onset** t0 is the first step of the unbroken run of steps, ending just
   before c, at which j's box lies in the ego's swept corridor: it overlaps one of the ego's
   own boxes from that step to c (where the ego was going to be). A stopped car or a lead in the
   lane is in it from the first step both are seen; a cut-in or a pedestrian stepping out enters
   it when its box crosses into the ego's path.
2. **The proper response** keeps the ego's driven motion for ``reaction_s`` after t0, then brakes
   at ``brake_mps2`` along the path it drove (or slower, where the rollout itself was slower),
   while j moves as it did. The collision is **unavoidable** when that response still touches
   j: at a step up to c, or after c, where the rollout ends, when its remaining stopping
   distance exceeds the gap left to j along the path plus the way j itself travels along it
   while braking at ``agent_max_brake_mps2`` (RSS's assumption about the other car). For a
   stopped obstacle at gap d [m] ahead of a constant speed v [m/s] this is the closed form
   d < v * reaction_s + v^2 / (2 * brake_mps2); a response that stops exactly at it (within
   ``BOUNDARY_M``) avoided it: the boundary is at fault.
3. **The ego's own sideways move** stays the ego's, whatever the braking test says: from
   ``reaction_s`` before the onset to the contact, the ego left its lane (its corners not all
   in one lane or lanes connected to it, as nuPlan's lateral rule reads it) and closed more of
   the lateral gap than the agent, by more than ``LATERAL_NOISE_M``, across the direction of
   its lane step by step (of its heading where it is in no lane). A lane change into a car
   beside is the ego's; a cut-in, a car drifting into the ego's side or a pedestrian walking
   into it is the other's; following a curve behind a lead is no sideways move.

4. **The ego's own violation of the right of way** stays the ego's too: the contact happened
   after the ego's front crossed a stop line (``evaluators.stop_lines``: a signal's, a stop
   sign's) against it, while its box stayed in that line's lane (the junction behind it) at
   every step it was seen, and the agent did not itself enter against a stop line (a red-light
   runner that hits the ego broke the rule, not the ego). Of stop lines sharing a stop point
   (within ``SHARED_STOP_M``: a through lane and a turn lane parting there), a road user is held
   to those of the lanes it went on along (``stop_lines.followed``): where its path parts from
   some of their lanes and their successors, those its centre was in at the last step it did;
   where it went no further than where the lanes overlap (a rollout ended by the collision),
   the one whose tangent at its centre turned as its heading did since the crossing (closer than
   the others' by ``stop_lines.HEADING_MARGIN_RAD``); when neither tells, it broke that stop
   point's rule only if it broke every one of the lines (no blame for the ego, no excuse by the
   agent, on what the lines disagree on).
   Against a signal means: the crossing was on red, or on a yellow the road user could have
   stopped for (at the yellow's first step its front was at least
   ``v * YELLOW_REACTION_S + v^2 / (2 * YELLOW_DECEL_MPS2)`` from the line, the kinematic
   stopping distance traffic engineers time yellows by), and, if it stood still
   (``STOP_SPEED_MPS``) after the crossing with its front at most ``CREEP_M`` past the line (it
   crept over, waited and went from there), the last such standstill was against it too: on
   red, or still on that yellow. So the creep standstill only excuses: an ego that crept over on
   red and went on green entered on green, one that crossed on green and stood in a queue just
   past the line entered on green whatever the light did then; a standstill deeper in the
   junction is no entry (one that entered on green and waited inside for an oncoming car entered
   on green, one that ran the red and stopped inside entered on red). Against a stop sign or a
   flashing red means: it did not stand still with its front within ``STOP_ZONE_M`` before the
   line and within ``lateral_m`` of its stop point to the side (in that lane, not the next), nor
   after crossing it within ``CREEP_M`` (at the crossing step too). A collision the ego's box
   geometry does not put on it (hit from behind, a side contact within its lane) is not judged
   here at all.

Every at-fault class is judged (STOPPED_TRACK, ACTIVE_FRONT and the at-fault ACTIVE_LATERAL).
Who has the priority once everyone stopped (an all-way stop's order) is not modelled. Everything
here reads the rollout's arrays; nothing is simulated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

import shapely

from evaluators.geometry import box_corners, box_overlap_depth
from evaluators.stop_lines import SHARED_STOP_M, Control, held_to, stop_line_crossings, stop_line_offsets
from scenarios.common import STOP_SPEED_MPS, STOP_ZONE_M  # re-exported: standing still, the stop zone
from scenarios.model import SignalState

#: A proper response that stops this close to the agent avoided it [m] (float rounding at the boundary).
BOUNDARY_M = 1e-6
#: Sideways moves below this are the ego holding its lane, not moving into the agent [m].
LATERAL_NOISE_M = 0.1
#: Times this close are one time [s] (clock rounding).
_CLOCK_TOLERANCE_S = 1e-6
#: Bisection steps for the arc at which the ego's box first touches the agent (2^-40 of a step).
_BISECTION_STEPS = 40
#: A yellow the road user could have stopped for: its perception-reaction time [s] and
#: deceleration [m/s2] (the kinematic terms of ITE's yellow change interval: 1 s, 10 ft/s2).
YELLOW_REACTION_S = 1.0
YELLOW_DECEL_MPS2 = 3.0
#: A standstill with the front at most this far past a stop line [m] is where the road user
#: entered: it crept over the line, stopped and went from there; it only ever excuses a crossing
#: against the line (a standstill deeper in the junction is a wait inside it, not its entry).
CREEP_M = 2.0


@dataclass(frozen=True, slots=True)
class Response:
    """The proper response the ego is held to.

    Attributes:
        reaction_s: time from the conflict's onset to braking [s].
        brake_mps2: the ego's braking once it reacts [m/s2].
        agent_max_brake_mps2: the hardest the other road user is assumed to brake after the
            rollout ends [m/s2].
        min_overlap_m: boxes touch when they overlap deeper than this [m] (the collision rule's).
    """

    reaction_s: float
    brake_mps2: float
    agent_max_brake_mps2: float
    min_overlap_m: float = 0.0


@dataclass(frozen=True, slots=True)
class Track:
    """One road user's boxes over the rollout's steps: (S,) arrays [s, m, m, rad, m/s, m/s] and its size [m]."""

    t_s: np.ndarray
    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    valid: np.ndarray
    length: float
    width: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """The avoidability of one collision.

    Attributes:
        unavoidable: the proper response would still have touched the agent (not the ego's fault).
        onset_step: the step the conflict began (the agent entered the ego's corridor).
        reason: one line: why, with the figures.
    """

    unavoidable: bool
    onset_step: int
    reason: str


def braking_travel(v0: float, tau: np.ndarray, brake: float) -> np.ndarray:
    """Way [m] covered in ``tau`` [s] from ``v0`` [m/s] braking at ``brake`` [m/s2] to a stop."""
    tau = np.clip(np.asarray(tau, dtype=np.float64), 0.0, v0 / brake)
    return v0 * tau - 0.5 * brake * tau**2


def stopping_distance(v: float, reaction_s: float, brake: float) -> float:
    """v * reaction_s + v^2 / (2 brake) [m]: the way to a stop from ``v`` [m/s] after reacting."""
    return v * reaction_s + v * v / (2.0 * brake)


def conflict_onset(ego: Track, agent: Track, step: int, min_overlap_m: float = 0.0) -> int:
    """The first step of the unbroken run, ending at ``step`` - 1, where the agent's box overlaps
    one of the ego's boxes from that step to ``step`` (its swept corridor); ``step`` when the
    agent is not in the corridor the step before contact."""
    steps = np.arange(step + 1)
    both = ego.valid[: step + 1] & agent.valid[: step + 1]
    corridor = np.flatnonzero(ego.valid[: step + 1])
    t = steps[both & (steps < step)]
    if t.size == 0 or corridor.size == 0:
        return step
    k = corridor
    reach = np.hypot(ego.length, ego.width) / 2 + np.hypot(agent.length, agent.width) / 2
    near = np.hypot(ego.x[k][None, :] - agent.x[t][:, None], ego.y[k][None, :] - agent.y[t][:, None]) <= reach
    near &= k[None, :] >= t[:, None]
    inside = np.zeros(t.size, dtype=bool)
    rows, cols = np.nonzero(near)
    if rows.size:
        depth = box_overlap_depth(
            ego.x[k[cols]], ego.y[k[cols]], ego.yaw[k[cols]], ego.length, ego.width,
            agent.x[t[rows]], agent.y[t[rows]], agent.yaw[t[rows]], agent.length, agent.width,
        )  # fmt: skip
        np.logical_or.at(inside, rows[depth > min_overlap_m], True)
    in_path = np.zeros(step + 1, dtype=bool)
    in_path[t[inside]] = True
    onset = step
    while onset - 1 >= 0 and in_path[onset - 1]:
        onset -= 1
    return onset


class _Path:
    """The ego's driven path from one step on, by arc length: poses between its samples."""

    def __init__(self, ego: Track, steps: np.ndarray) -> None:
        self.steps = steps
        self.x, self.y = ego.x[steps], ego.y[steps]
        self.yaw = np.unwrap(ego.yaw[steps])
        self.s = np.r_[0.0, np.cumsum(np.hypot(np.diff(self.x), np.diff(self.y)))]
        self.length, self.width = ego.length, ego.width

    def pose(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, yaw) at arc lengths ``s`` [m] (linear between samples; a standing stretch keeps its first)."""
        s = np.asarray(s, dtype=np.float64)
        i = np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, max(self.s.size - 2, 0))
        if self.s.size < 2:
            return np.full(s.shape, self.x[0]), np.full(s.shape, self.y[0]), np.full(s.shape, self.yaw[0])
        span = self.s[i + 1] - self.s[i]
        f = np.where(span > 0, (s - self.s[i]) / np.where(span > 0, span, 1.0), 0.0)
        f = np.clip(f, 0.0, 1.0)
        lerp = lambda a: a[i] + f * (a[i + 1] - a[i])  # noqa: E731
        return lerp(self.x), lerp(self.y), lerp(self.yaw)

    def depth(self, s: np.ndarray, agent: Track, k: np.ndarray | int) -> np.ndarray:
        """Overlap [m] of the ego's box at arc ``s`` with the agent's box at step(s) ``k``."""
        x, y, yaw = self.pose(s)
        return box_overlap_depth(x, y, yaw, self.length, self.width, agent.x[k], agent.y[k], agent.yaw[k], agent.length, agent.width)

    def first_touch(self, lo: float, hi: float, agent: Track, k: int, min_overlap_m: float) -> float:
        """The smallest arc in [lo, hi] [m] at which the ego's box touches the agent's at step ``k``;
        ``hi`` when none does (a contact only the engine saw)."""
        samples = np.unique(np.r_[lo, self.s[(self.s > lo) & (self.s < hi)], hi])
        touching = self.depth(samples, agent, k) > min_overlap_m
        if not touching.any():
            return float(hi)
        j = int(np.argmax(touching))
        if j == 0:
            return float(lo)
        a, b = float(samples[j - 1]), float(samples[j])
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (a + b)
            if self.depth(np.asarray(mid), agent, k) > min_overlap_m:
                b = mid
            else:
                a = mid
        return b


def judge(
    ego: Track,
    agent: Track,
    step: int,
    response: Response,
    lane_tangent: np.ndarray | None = None,
    in_lane: np.ndarray | None = None,
    controls: Sequence[Control] = (),
    lateral_m: float = 2.0,
) -> Verdict:
    """Whether the collision of ``ego`` with ``agent`` that starts at ``step`` was unavoidable
    under ``response`` (see the module's docstring); the caller passes the collisions nuPlan's
    rules put on the ego.

    Args:
        lane_tangent: (S, 2) unit direction of the ego's lane per step (NaN: in no lane), the
            frame of "sideways"; None: the ego's heading.
        in_lane: (S,) the ego's corners are all in one lane or lanes connected to it; None:
            never (any sideways move may be a lane change).
        controls: the map's stop lines, with signal states per step (``evaluators.stop_lines``).
        lateral_m: a stop line is crossed within this distance of its stop point [m].
    """
    onset = conflict_onset(ego, agent, step, response.min_overlap_m)
    verdict = _braking_test(ego, agent, step, onset, response)
    if not verdict.unavoidable:
        return verdict
    seen = np.flatnonzero(agent.valid[:step] & ego.valid[:step])
    window = seen[(seen <= onset) & (ego.t_s[seen] >= ego.t_s[onset] - response.reaction_s - _CLOCK_TOLERANCE_S)]
    start = int(window[0]) if window.size else step
    changed_lane = in_lane is None or not bool(np.all(in_lane[start : step + 1]))
    own = _own_lateral_move(ego, agent, start, step, lane_tangent) if changed_lane else None
    if own is not None:
        return Verdict(False, onset, f"{own}, though {verdict.reason}")
    violation = right_of_way_violation(ego, controls, step, lateral_m, "the ego") if controls else None
    if violation is None:
        return verdict
    other = right_of_way_violation(agent, controls, step, lateral_m, "the agent")
    if other is not None:
        return Verdict(True, onset, f"{verdict.reason} ({violation}, but {other})")
    return Verdict(False, onset, f"{violation}, though {verdict.reason}")


def right_of_way_violation(track: Track, controls: Sequence[Control], step: int, lateral_m: float, who: str) -> str | None:
    """Why the road user of ``track`` is, at ``step``, in a junction it entered against a stop
    line (step 4 of the module's docstring), or None."""
    if not controls or step <= 0:
        return None
    heading = np.column_stack([np.cos(track.yaw), np.sin(track.yaw)])
    xy = np.column_stack([track.x, track.y])
    front = xy + (track.length / 2) * heading
    stop = np.array([c.stop for c in controls])
    direction = np.array([c.direction for c in controls])
    lon, lat = stop_line_offsets(front, stop, direction)
    which, when, _ = stop_line_crossings(front, heading, track.valid, stop, direction, lateral_m, (lon, lat))
    keep = when <= step
    which, when = which[keep], when[keep]
    speed = np.hypot(track.vx, track.vy)
    stopped = track.valid & (speed <= STOP_SPEED_MPS)
    for group in held_to(controls, which, when, xy, track.yaw, track.valid):
        # of a group (lines sharing a stop point, its path not telling which it followed): only what all agree on
        why: list[str | None] = []
        for ci in group.tolist():
            crossings = sorted(when[which == ci].tolist())
            why.append(next(filter(None, (_line_violation(track, controls[ci], tc, step, lon[ci], lat[ci], speed, stopped, lateral_m, who)
                                          for tc in crossings)), None))  # fmt: skip
        if all(why):
            return why[0]
    return None


def _line_violation(track: Track, c: Control, tc: int, step: int, lon: np.ndarray, lat: np.ndarray, speed: np.ndarray,
                    stopped: np.ndarray, lateral_m: float, who: str) -> str | None:  # fmt: skip
    """Why the road user, its front over ``c``'s line at step ``tc`` ((S,) ``lon``, ``lat``: its
    front's offsets past and beside the stop point [m]; ``speed`` [m/s], ``stopped`` where it stood
    still), is at ``step`` in the junction behind it against it, or None."""
    t = track.t_s
    span = np.arange(tc, step + 1)
    seen = span[track.valid[span]]  # a step it is not seen at leaves nothing (its pose there is no place)
    boxes = shapely.polygons(box_corners(track.x[seen], track.y[seen], track.yaw[seen], track.length, track.width))
    if not np.all(shapely.intersects(c.area, boxes)):
        return None  # it left the junction behind that line before the contact (or at its last step seen)
    waited = span[stopped[span] & (lon[span] <= CREEP_M)]  # its creep standstills
    state = None if c.states is None else int(c.states[tc])
    if state is None or state == SignalState.FLASHING_STOP:
        zone = (lon[:tc] >= -STOP_ZONE_M) & (lon[:tc] < 0) & (np.abs(lat[:tc]) <= lateral_m)
        before = np.flatnonzero(stopped[:tc] & zone)
        if before.size == 0 and waited.size == 0:  # a standstill at the crossing step itself is one too
            what = "flashing red " if state is not None else ""
            return f"{who} did not stop at the {what}{c.name} (front over the line at {t[tc]:.1f} s, {speed[tc]:.1f} m/s)"
        return None
    if state == SignalState.STOP:
        why = f"{who} entered the junction against the red {c.name} at {t[tc]:.1f} s"
    elif state == SignalState.CAUTION:
        ky = tc
        while ky > 0 and int(c.states[ky - 1]) == SignalState.CAUTION:
            ky -= 1
        seen = np.flatnonzero(track.valid[ky : tc + 1])
        kv = ky + int(seen[0])  # tc itself is valid
        gap, v = -float(lon[kv]), float(speed[kv])
        need = v * YELLOW_REACTION_S + v * v / (2.0 * YELLOW_DECEL_MPS2)
        if gap < need:
            return None
        why = (f"{who} entered the junction on the yellow {c.name} at {t[tc]:.1f} s that it could have stopped for "
               f"({gap:.1f} m from the line at {v:.1f} m/s when it showed yellow, {need:.1f} m to stop)")  # fmt: skip
    else:
        return None
    if waited.size == 0:
        return why
    # it crept over, stood and went on from there: excused unless the light was against it then too
    k = int(waited[-1])
    if int(c.states[k]) == SignalState.STOP:
        return f"{who} entered the junction against the red {c.name} at {t[k]:.1f} s"
    if state == SignalState.CAUTION and np.all(c.states[tc : k + 1] == SignalState.CAUTION):
        return why  # still the yellow it could have stopped for
    return None


def _braking_test(ego: Track, agent: Track, step: int, onset: int, response: Response) -> Verdict:
    """Steps 1 and 2 of the module's docstring: would the proper response from ``onset`` still
    have touched the agent?"""
    t = ego.t_s
    lead_s = float(t[step] - t[onset])
    t_react = float(t[onset]) + response.reaction_s
    if t_react >= t[step]:
        return Verdict(True, onset, f"in the ego's path {lead_s:.2f} s before contact, under the {response.reaction_s:g} s reaction time")
    steps = np.flatnonzero(ego.valid[onset : step + 1]) + onset
    path = _Path(ego, steps)
    speed = np.hypot(ego.vx[steps], ego.vy[steps])
    ts = t[steps]
    s_react = float(np.interp(t_react, ts, path.s))
    v_react = float(np.interp(t_react, ts, speed))
    b = response.brake_mps2
    braking = s_react + braking_travel(v_react, ts - t_react, b)
    cf = np.where(ts > t_react, np.minimum(path.s, braking), path.s)
    seen = agent.valid[steps]
    touch = path.depth(cf[seen], agent, steps[seen]) > response.min_overlap_m if seen.any() else np.zeros(0, dtype=bool)
    if touch.any():
        hit = steps[seen][np.argmax(touch)]
        return Verdict(True, onset, f"in the ego's path {lead_s:.2f} s before contact at {v_react:.1f} m/s; "
                       f"braking at {b:g} m/s2 after {response.reaction_s:g} s still touches it at {t[hit]:.1f} s")  # fmt: skip
    # after the rollout ends: the response's remaining stop against the gap left and j's own braking
    tau = float(t[step] - t_react)
    on_brake = cf[-1] < path.s[-1]
    v_cf = max(0.0, v_react - b * tau) if on_brake else float(speed[-1])
    remaining = v_cf * v_cf / (2.0 * b)
    a = path.first_touch(float(cf[-1]), float(path.s[-1]), agent, step, response.min_overlap_m)
    _, _, yaw_a = path.pose(np.asarray(a))
    u = float(agent.vx[step] * np.cos(yaw_a) + agent.vy[step] * np.sin(yaw_a))
    travel = np.sign(u) * u * u / (2.0 * response.agent_max_brake_mps2)
    gap = a - float(cf[-1])
    stop = stopping_distance(v_react, response.reaction_s, b)
    if remaining > gap + travel + BOUNDARY_M:
        return Verdict(True, onset, f"in the ego's path {lead_s:.2f} s before contact at {v_react:.1f} m/s; braking at "
                       f"{b:g} m/s2 after {response.reaction_s:g} s ({stop:.1f} m to stop) still reaches it")  # fmt: skip
    return Verdict(False, onset, f"in the ego's path {lead_s:.2f} s before contact: braking at {b:g} m/s2 after "
                   f"{response.reaction_s:g} s stops {gap + travel - remaining:.2f} m short of it")  # fmt: skip


def _own_lateral_move(ego: Track, agent: Track, start: int, step: int, lane_tangent: np.ndarray | None) -> str | None:
    """Why the conflict is the ego's own sideways move, or None: from ``start`` to ``step``, the ego
    closed more of the lateral gap to the agent than the agent did, by more than
    ``LATERAL_NOISE_M``. Each step's moves are measured across the ego's lane there (across its
    heading where it is in no lane), so that following a curve is no sideways move."""
    if step <= start:  # ``start`` is a step where both are seen
        return None
    k = np.arange(start, step)
    heading = np.column_stack([np.cos(ego.yaw[k]), np.sin(ego.yaw[k])])
    along = heading if lane_tangent is None else np.where(np.isfinite(lane_tangent[k]).all(axis=1)[:, None], lane_tangent[k], heading)
    n = np.column_stack([-along[:, 1], along[:, 0]])
    side = float(np.sign((agent.x[start] - ego.x[start]) * n[0, 0] + (agent.y[start] - ego.y[start]) * n[0, 1]))
    if side == 0.0:
        return None
    # a step either one is not seen at either end moves nobody (an unseen pose is 0, not a place)
    both = agent.valid[start : step + 1] & ego.valid[start : step + 1]
    counted = both[:-1] & both[1:]
    across = lambda t: np.sum(np.where(counted, np.diff(t.x[start : step + 1]) * n[:, 0] + np.diff(t.y[start : step + 1]) * n[:, 1], 0.0))  # noqa: E731
    ego_move, agent_move = side * float(across(ego)), -side * float(across(agent))
    if ego_move > max(agent_move, 0.0) + LATERAL_NOISE_M:
        return f"the ego moved {ego_move:.2f} m sideways into it (the agent {round(agent_move, 2) + 0.0:.2f} m)"
    return None


__all__ = [
    "BOUNDARY_M", "CREEP_M", "LATERAL_NOISE_M", "SHARED_STOP_M", "STOP_SPEED_MPS", "STOP_ZONE_M", "YELLOW_DECEL_MPS2",
    "YELLOW_REACTION_S", "Response", "Track", "Verdict", "braking_travel", "conflict_onset", "judge", "right_of_way_violation",
    "stopping_distance",
]  # fmt: skip
