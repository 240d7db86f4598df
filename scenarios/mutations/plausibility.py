"""Plausibility of a mutated scenario, judged against the scenario it was made from.

Only what the mutation changed is judged (entries of rewritten or added agents), against the
limits or, where the log itself goes beyond them, against what the agent reached in the log (an
added agent: the worst agent of its type). Recorded logs carry noise that would otherwise fail
kinematic limits, and a mutation must not be blamed for the log.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from scenarios.model import AgentType, Scenario
from scenarios.mutations.base import ImplausibleVariant
from scenarios.mutations.geometry import boxes_overlap, wrap_angle

#: Standard gravity [m/s2].
G = 9.81


@dataclass(frozen=True, slots=True)
class Limits:
    """Kinematic limits a mutated track must keep.

    Attributes:
        max_accel: largest |d velocity / dt| [m/s2] (braking, accelerating and turning together).
        friction_margin: the acceleration is also limited to ``friction_margin * mu * g`` with
            the scenario's ``conditions.road_friction`` mu [-]; 0 turns that off.
        max_speed_vehicle, max_speed_cyclist, max_speed_pedestrian: largest speed [m/s].
        max_yaw_rate: largest yaw rate [rad/s] of a vehicle or cyclist moving at least
            ``yaw_rate_min_speed`` [m/s] (slower ones turn on the spot in logs).
        max_mismatch: largest difference [m/s] between a step's displacement / dt and its mean
            velocity (positions that jump, or velocities that do not match them).
        window_s: acceleration and yaw rate are differences over about this long [s], so that
            the per-step noise of recorded velocities does not count as acceleration.
    """

    max_accel: float = 10.0
    friction_margin: float = 1.1
    max_speed_vehicle: float = 70.0
    max_speed_cyclist: float = 25.0
    max_speed_pedestrian: float = 12.0
    max_yaw_rate: float = 2.0
    yaw_rate_min_speed: float = 2.0
    max_mismatch: float = 5.0
    window_s: float = 0.4

    def accel_limit(self, scenario: Scenario) -> float:
        """The acceleration limit [m/s2] on ``scenario``'s road."""
        if self.friction_margin <= 0:
            return self.max_accel
        return min(self.max_accel, self.friction_margin * scenario.conditions.road_friction * G)

    def speed_limits(self, agent_types: np.ndarray) -> np.ndarray:
        """(N,) largest speed [m/s] per agent."""
        out = np.full(agent_types.shape, self.max_speed_vehicle)
        out[agent_types == AgentType.CYCLIST] = self.max_speed_cyclist
        out[agent_types == AgentType.PEDESTRIAN] = self.max_speed_pedestrian
        return out


DEFAULT_LIMITS = Limits()


def _source_rows(source: Scenario, variant: Scenario) -> np.ndarray:
    """(N_variant,) row of each variant agent in the source, -1 for added agents."""
    index = {a: i for i, a in enumerate(source.tracks.agent_ids.tolist())}
    return np.array([index.get(a, -1) for a in variant.tracks.agent_ids.tolist()], int)


def _aligned(source_array: np.ndarray, rows: np.ndarray, fill: float | bool) -> np.ndarray:
    out = source_array[np.maximum(rows, 0)].copy()
    out[rows < 0] = fill
    return out


def changed_entries(source: Scenario, variant: Scenario) -> np.ndarray:
    """(N, T) bool: the variant's valid entries that differ from the source (all of an added agent)."""
    rows = _source_rows(source, variant)
    vt, st = variant.tracks, source.tracks
    changed = vt.valid != _aligned(st.valid, rows, False)
    for name in ("x", "y", "yaw", "vx", "vy"):
        changed |= getattr(vt, name) != _aligned(getattr(st, name), rows, np.nan)
    changed[rows < 0] = True
    return changed & vt.valid


def _kinematics(scenario: Scenario, rows: np.ndarray, window_s: float, turn_speed: float) -> dict[str, np.ndarray]:
    """For agents ``rows``: (R, T-w) accel [m/s2] and yaw rate [rad/s] over ``w`` steps spanning
    about ``window_s`` (yaw rate 0 below ``turn_speed`` [m/s] and for pedestrians), (R, T-1) the
    mismatch [m/s] between a step's displacement / dt and its mean velocity, (R, T) speed [m/s];
    each with a mask of where it is defined (valid ends).
    """
    tr = scenario.tracks
    w = max(1, int(round(window_s * 1e6 / max(scenario.dt_us, 1))))
    w = min(w, max(scenario.num_steps - 1, 1))
    t = scenario.t_us / 1e6
    dtw = t[w:] - t[:-w]
    dt = np.diff(t)
    x, y, yaw, vx, vy, valid = (getattr(tr, n)[rows] for n in ("x", "y", "yaw", "vx", "vy", "valid"))
    speed = np.hypot(vx, vy)
    mean_vx, mean_vy = (vx[:, 1:] + vx[:, :-1]) / 2, (vy[:, 1:] + vy[:, :-1]) / 2
    turning = (tr.agent_types[rows] != AgentType.PEDESTRIAN)[:, None] & (np.minimum(speed[:, w:], speed[:, :-w]) >= turn_speed)
    return {
        "window": np.array(w),
        "accel": np.hypot(vx[:, w:] - vx[:, :-w], vy[:, w:] - vy[:, :-w]) / dtw,
        "yaw_rate": np.where(turning, np.abs(wrap_angle(yaw[:, w:] - yaw[:, :-w])) / dtw, 0.0),
        "speed": speed,
        "valid": valid,
        "both_w": valid[:, w:] & valid[:, :-w],
        "mismatch": np.hypot(np.diff(x, axis=1) / dt - mean_vx, np.diff(y, axis=1) / dt - mean_vy),
        "both_1": valid[:, 1:] & valid[:, :-1],
    }


def _touched(changed: np.ndarray, w: int) -> np.ndarray:
    """(N, T-w): whether any of steps k .. k+w is changed."""
    c = np.cumsum(np.pad(changed, ((0, 0), (1, 0))).astype(np.int64), axis=1)
    return (c[:, w + 1 :] - c[:, : -w - 1]) > 0


def check_plausible(source: Scenario, variant: Scenario, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise ``ImplausibleVariant`` (reason: accel, speed, jump, yaw_rate, overlap_at_start,
    agent_collision) when ``variant`` breaks a rule that ``source`` kept."""
    if variant.tracks is source.tracks:
        return
    changed = changed_entries(source, variant)
    if not changed.any():
        return
    rows = _source_rows(source, variant)
    vt = variant.tracks
    # only rewritten or added agents are judged: work on their rows
    sub = np.flatnonzero(changed.any(axis=1))
    ids = vt.agent_ids[sub]
    var = _kinematics(variant, sub, limits.window_s, limits.yaw_rate_min_speed)
    recorded = _recorded_extremes(source, limits.window_s, limits.yaw_rate_min_speed)
    src_rows = rows[sub]
    types = vt.agent_types[sub]
    sub_changed = changed[sub]
    speed_max = limits.speed_limits(types)
    accel_limit = limits.accel_limit(variant)
    w = int(var["window"])
    checks = (
        ("accel", "accel", "both_w", w, accel_limit, "acceleration [m/s2]"),
        ("speed", "speed", "valid", 0, speed_max, "speed [m/s]"),
        ("jump", "mismatch", "both_1", 1, limits.max_mismatch, "displacement / dt - velocity [m/s]"),
        ("yaw_rate", "yaw_rate", "both_w", w, limits.max_yaw_rate, "yaw rate [rad/s]"),
    )
    for reason, name, mask, span, limit, what in checks:
        # an agent may reach what it (or, when added, the worst agent of its type) reached in the log
        by_agent, by_type = recorded[name]
        was = np.where(src_rows >= 0, by_agent[np.maximum(src_rows, 0)], by_type[types])
        threshold = np.maximum(limit, was)[:, None]
        touched = sub_changed if span == 0 else _touched(sub_changed, span)
        bad = touched & var[mask] & (var[name] > threshold)
        if bad.any():
            agent, step = np.argwhere(bad)[0]
            raise ImplausibleVariant(
                variant.source,
                reason,
                f"{what} of agent {str(ids[agent])!r} at step {step}: {var[name][agent, step]:.2f} > {threshold[agent, 0]:.2f}",
            )
    _check_overlaps(source, variant, changed, rows)


@functools.lru_cache(maxsize=8)
def _recorded_extremes(source: Scenario, window_s: float, turn_speed: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per metric: (N,) the largest value each source agent reaches, and (len(AgentType),) per type."""
    kin = _kinematics(source, np.arange(source.num_agents), window_s, turn_speed)
    types = source.tracks.agent_types
    out = {}
    for name, mask in (("accel", "both_w"), ("speed", "valid"), ("mismatch", "both_1"), ("yaw_rate", "both_w")):
        values = np.where(kin[mask], kin[name], 0.0)
        by_agent = values.max(axis=1, initial=0.0)
        by_type = np.array([by_agent[types == t].max(initial=0.0) for t in range(len(AgentType))])
        out[name] = (by_agent, by_type)
    return out


def _overlap_rows(scenario: Scenario, row: int, step: int | np.ndarray, others: np.ndarray) -> np.ndarray:
    tr = scenario.tracks
    return boxes_overlap(
        tr.x[row, step], tr.y[row, step], tr.yaw[row, step], tr.length[row], tr.width[row],
        tr.x[others, step], tr.y[others, step], tr.yaw[others, step], tr.length[others], tr.width[others],
    )


def _source_overlap(source: Scenario, rows: np.ndarray, a: int, b: np.ndarray, step: int) -> np.ndarray:
    """Whether variant agents ``a`` and ``b`` (rows of the variant) overlapped in the source at ``step``."""
    sa, sb = rows[a], rows[b]
    out = np.zeros(len(b), bool)
    if sa < 0:
        return out
    st = source.tracks
    ok = (sb >= 0) & st.valid[sa, step] & st.valid[np.maximum(sb, 0), step]
    if ok.any():
        out[ok] = _overlap_rows(source, sa, step, sb[ok])
    return out


def _check_overlaps(source: Scenario, variant: Scenario, changed: np.ndarray, rows: np.ndarray) -> None:
    vt = variant.tracks
    ids = vt.agent_ids
    n = vt.num_agents
    # at the start (step 0) and at each rewritten agent's first valid step: no new overlap, the ego included
    for a in np.flatnonzero(changed.any(axis=1)):
        for step in sorted({0, int(np.argmax(vt.valid[a]))}):
            if not vt.valid[a, step]:
                continue
            others = np.flatnonzero(vt.valid[:, step] & (np.arange(n) != a))
            if others.size == 0:
                continue
            hit = _overlap_rows(variant, a, step, others) & ~_source_overlap(source, rows, a, others, step)
            if hit.any():
                raise ImplausibleVariant(
                    variant.source, "overlap_at_start", f"agents {str(ids[a])!r} and {str(ids[others[np.argmax(hit)]])!r} overlap at step {step}"
                )
    # at any step: a rewritten agent may not drive through another replayed agent (the ego is
    # driven by the policy under test, and reactive agents brake for themselves)
    cond = variant.conditions
    if cond.agents_mode == "reactive":
        return
    exempt = np.isin(ids, list(cond.reactive_agents)) | (np.arange(n) == variant.ego_index)
    for a in np.flatnonzero(changed.any(axis=1) & ~exempt):
        others = np.flatnonzero(~exempt & (np.arange(n) != a))
        if others.size == 0:
            continue
        steps = np.flatnonzero(changed[a])
        both = vt.valid[others][:, steps] & vt.valid[a, steps][None, :]
        if not both.any():
            continue
        hit = boxes_overlap(
            vt.x[a, steps], vt.y[a, steps], vt.yaw[a, steps], vt.length[a], vt.width[a],
            vt.x[others][:, steps], vt.y[others][:, steps], vt.yaw[others][:, steps],
            vt.length[others][:, None], vt.width[others][:, None],
        ) & both
        if not hit.any():
            continue
        for i, j in np.argwhere(hit):
            if not _source_overlap(source, rows, a, others[i : i + 1], int(steps[j]))[0]:
                raise ImplausibleVariant(
                    variant.source, "agent_collision", f"agents {str(ids[a])!r} and {str(ids[others[i]])!r} overlap at step {steps[j]}"
                )
