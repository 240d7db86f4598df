"""Driving-direction compliance: how far the ego drove against its lane's direction within 1 s.

nuPlan's rule: each step's progress is the ego's displacement to the next step projected on the
direction of the lane it is in (0 when it is in none); the progress is summed over sliding
``direction_window_s`` windows, and the wrong-way distance is minus the most negative sum.
Compliance is 1 below ``direction_compliant_m`` (2 m), 0.5 below ``direction_violation_m``
(6 m), else 0. The ego's lane is the lane containing its centre whose direction is closest to
its heading, so a lane it merely overlaps in an intersection does not make it wrong-way.
"""

from __future__ import annotations

import numpy as np

from evaluators.base import Evaluator, MetricSpec, MetricValue, register
from evaluators.context import Context


def direction_score(wrong_way_m: float, compliant_m: float, violation_m: float) -> float:
    """1 below ``compliant_m``, 0.5 below ``violation_m``, else 0."""
    if wrong_way_m < compliant_m:
        return 1.0
    if wrong_way_m < violation_m:
        return 0.5
    return 0.0


@register("driving_direction")
class DrivingDirection(Evaluator):
    """Largest wrong-way progress over a 1 s window, and nuPlan's direction multiplier."""

    metrics = (
        MetricSpec("wrong_way_max_m", "m", "largest progress against the lane direction within a 1 s window", "< 2 m"),
        MetricSpec("driving_direction_compliance", "1", "nuPlan multiplier: 1 below 2 m, 0.5 below 6 m, else 0", "== 1"),
    )

    def _compute(self, ctx: Context) -> list[MetricValue]:
        cfg = ctx.config
        _, tangent, _ = ctx.lane_at_ego
        xy = ctx.ego_xy
        step_ok = ctx.ego_valid[:-1] & ctx.ego_valid[1:] & np.isfinite(tangent[:-1, 0])
        progress = np.where(step_ok, np.sum(np.diff(xy, axis=0) * np.nan_to_num(tangent[:-1]), axis=1), 0.0)
        window = max(1, round(cfg.direction_window_s / ctx.dt_s))
        if progress.size == 0:
            worst = 0.0
        else:
            csum = np.r_[0.0, np.cumsum(progress)]
            w = min(window, progress.size)
            sums = csum[w:] - csum[:-w]
            worst = max(0.0, -float(sums.min()))
        score = direction_score(worst, cfg.direction_compliant_m, cfg.direction_violation_m)
        return [
            self.value("wrong_way_max_m", worst, worst < cfg.direction_compliant_m),
            self.value("driving_direction_compliance", score, score == 1.0),
        ]
