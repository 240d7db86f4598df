"""Time to collision (nuPlan's projected TTC) and the minimum distance to another road user.

At every step where the ego moves (speed > ``ego_stopped_mps``), the ego and each relevant
agent are moved on at constant velocity in ``[evaluators.ttc] step_s`` steps before ``horizon_s``
(0.1 s .. 2.9 s: nuPlan's ``np.arange(step, horizon, step)``, which leaves the horizon itself
out); the TTC is the first projected time their boxes are in contact, touching included as
nuPlan's shapely ``intersects`` has it (a lead 9 m ahead closing at 10 m/s gives 0.9 s; inf when
none; found in closed form per pair, see ``first_overlap_time``, identical to testing every
step). An
agent is relevant, as in nuPlan, when it is ahead of the ego (within 30 deg of its heading from
the rear axle) or, while the ego straddles lanes, is off the lane map or is where lanes cross, not
behind it (beyond 150 deg); agents the ego already collided with are left out from that step on,
and the TTC is 0 at the step of an at-fault collision. Within bound: the TTC never drops to
``bound_s`` (0.95 s) or below.

Deviations from nuPlan, on purpose: agents move along their velocity vector rather than their
heading (identical for a car without side slip, right for a reversing one), and "where lanes
cross" stands in for nuPlan's intersection layer, which the scenario model does not have: the
lanes containing the ego's centre include two more than 30 deg apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.base import Evaluator, MetricSpec, MetricValue, register
from evaluators.config import check_fields
from evaluators.context import Context
from evaluators.errors import EvaluatorError
from evaluators.geometry import (
    box_corners,
    box_overlap_depth,
    convex_distance,
    first_overlap_time,
)


@dataclass(frozen=True, slots=True)
class TTCSettings:
    """``[evaluators.ttc]``.

    Attributes:
        step_s, horizon_s: projection step and horizon [s] (nuPlan 0.1, 3).
        bound_s: the TTC is within bound when it never drops to this or below [s] (nuPlan 0.95).
        ego_stopped_mps: no TTC is computed while the ego is this slow [m/s] (nuPlan 5e-3).
        log_margin_s: the planner fails only where its smallest TTC is at or below ``bound_s``
            *and* below the log's own by more than this [s] (0.2: two projection steps); where
            the log itself drops to the bound, or within this margin of it, the log sets the floor.
    """

    step_s: float = 0.1
    horizon_s: float = 3.0
    bound_s: float = 0.95
    ego_stopped_mps: float = 5e-3
    log_margin_s: float = 0.2

    def __post_init__(self) -> None:
        src = "[evaluators.ttc]"
        check_fields(self, src, nonneg=("bound_s", "ego_stopped_mps", "log_margin_s"), positive=("step_s", "horizon_s"))
        if self.step_s > self.horizon_s:
            raise EvaluatorError(src, "step_s", "must not exceed horizon_s")


def projected_ttc(ctx: Context) -> np.ndarray:
    """(S,) the ego's TTC [s] per step: inf when no projected overlap, NaN where the ego is invalid."""
    cfg = ctx.config
    ttc_cfg = ctx.config.of("ttc")
    r = ctx.rollout
    e = ctx.ego
    ev = ctx.collision_events
    ego_speed = ctx.speed[e]
    moving = ctx.ego_valid & (ego_speed > ttc_cfg.ego_stopped_mps)
    _, _, crossing = ctx.lane_at_ego
    lateral = ~ctx.in_common_lane | crossing
    cos = ctx.relative_cos
    ahead = cos > np.cos(np.deg2rad(cfg.agent_ahead_deg))
    not_behind = cos >= np.cos(np.deg2rad(cfg.agent_behind_deg))
    relevant = ctx.valid & ctx.others[:, None] & moving[None, :] & ~ev.collided & (ahead | (lateral[None, :] & not_behind))
    # only pairs whose bounding circles can meet within the horizon at their relative speed
    rel_speed = np.hypot(r.vx - r.vx[e], r.vy - r.vy[e])
    relevant &= ctx.centre_distance <= ctx.half_diagonal[:, None] + ctx.half_diagonal[e] + rel_speed * ttc_cfg.horizon_s
    ttc = np.full(ctx.num_steps, np.inf)
    j, t = np.nonzero(relevant)
    if j.size:
        pair_ttc = first_overlap_time(
            r.x[e, t], r.y[e, t], r.yaw[e, t], r.length[e], r.width[e], r.vx[e, t], r.vy[e, t],
            r.x[j, t], r.y[j, t], r.yaw[j, t], r.length[j], r.width[j], r.vx[j, t], r.vy[j, t],
            ttc_cfg.step_s, ttc_cfg.horizon_s, cfg.collision_min_overlap_m,
        )  # fmt: skip
        np.minimum.at(ttc, t, pair_ttc)
    ttc[ev.step[ev.at_fault & ~ev.excused]] = 0.0
    ttc[~ctx.ego_valid] = np.nan
    return ttc


def min_distance(ctx: Context) -> float:
    """Smallest distance [m] between the ego's box and any other agent's box over the rollout (inf: none).

    Exact distances are computed only for pairs that could be the closest: first by bounding
    circles, then by the separating-axis gap (a lower bound of the distance).
    """
    cd = ctx.centre_distance
    if not np.isfinite(cd).any():
        return float("inf")
    r = ctx.rollout
    e = ctx.ego
    lower = cd - ctx.half_diagonal[:, None] - ctx.half_diagonal[e]
    j, t = np.nonzero(lower <= cd.min())  # the closest centres bound the answer from above
    depth = box_overlap_depth(
        r.x[e, t], r.y[e, t], r.yaw[e, t], r.length[e], r.width[e],
        r.x[j, t], r.y[j, t], r.yaw[j, t], r.length[j], r.width[j],
    )  # fmt: skip
    if (depth >= 0).any():
        return 0.0
    bound = -depth
    order = np.argsort(bound)

    def exact(idx: np.ndarray) -> np.ndarray:
        ca = box_corners(r.x[e, t[idx]], r.y[e, t[idx]], r.yaw[e, t[idx]], r.length[e], r.width[e])
        cb = box_corners(r.x[j[idx], t[idx]], r.y[j[idx], t[idx]], r.yaw[j[idx], t[idx]], r.length[j[idx]], r.width[j[idx]])
        return convex_distance(ca, cb, np.zeros(idx.size, bool))

    best = float(exact(order[:8]).min())
    rest = order[8:][bound[order[8:]] < best]
    return min(best, float(exact(rest).min())) if rest.size else best


@register("ttc")
class TimeToCollision(Evaluator):
    """Minimum projected TTC, whether it stays within bound, and the minimum distance to another agent."""

    settings_type = TTCSettings
    metrics = (
        MetricSpec("min_ttc_s", "s", "smallest projected time to collision (inf when none by 2.9 s)", "> 0.95 s"),
        MetricSpec("ttc_within_bound", "bool", "the TTC never dropped to 0.95 s or below", "> 0.95 s"),
        MetricSpec("min_distance_m", "m", "smallest distance between the ego's box and another agent's"),
        MetricSpec("log_min_ttc_s", "s", "the logged ego's smallest TTC over the same time (null unless judged against the log)"),
    )

    def _compute(self, ctx: Context) -> list[MetricValue]:
        ttc = projected_ttc(ctx)
        ctx.series["ttc_s"] = ttc
        cfg = self.settings(ctx)
        known = ttc[ctx.ego_valid]
        low = float(known.min())
        within = bool((known > cfg.bound_s).all())
        log_low = ctx.log.min_ttc_s if ctx.log is not None else float("nan")
        if log_low - cfg.log_margin_s <= cfg.bound_s:  # the log itself is under bound or near it (NaN: not judged)
            floor = log_low - cfg.log_margin_s
            within = within or not low < floor - 1e-9 * cfg.step_s  # TTCs sit on the step grid: equal is not below
            verdict = "passes" if within else "fails"
            ctx.note("ttc", f"log itself min TTC {log_low:.2f} s; planner {low:.2f} s {verdict} (fails below {floor:.2f} s)")
        return [
            self.value("min_ttc_s", low, within),
            self.value("ttc_within_bound", within, within),
            self.value("min_distance_m", min_distance(ctx)),
            self.value("log_min_ttc_s", log_low),
        ]
