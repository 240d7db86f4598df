"""Driving-direction compliance: how far the ego drove against its lane's direction within 1 s.

nuPlan's rule: each step's progress is the ego's displacement to the next step projected on the
direction of the lane it is in (0 when it is in none); the progress is summed over sliding
``direction_window_s`` windows, and the wrong-way distance is minus the most negative sum.
Compliance is 1 below ``compliant_m`` (2 m), 0.5 below ``violation_m``
(6 m), else 0. The ego's lane is the lane containing its centre whose direction is closest to
its heading, so a lane it merely overlaps in an intersection does not make it wrong-way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.base import Evaluator, MetricSpec, MetricValue, register
from evaluators.config import check_fields
from evaluators.context import Context
from evaluators.errors import EvaluatorError


def direction_score(wrong_way_m: float, compliant_m: float, violation_m: float) -> float:
    """1 below ``compliant_m``, 0.5 below ``violation_m``, else 0."""
    if wrong_way_m < compliant_m:
        return 1.0
    if wrong_way_m < violation_m:
        return 0.5
    return 0.0


@dataclass(frozen=True, slots=True)
class DrivingDirectionSettings:
    """``[evaluators.driving_direction]``: the wrong-way window [s] (1), and the wrong-way progress
    below which the compliance is 1 (``compliant_m``, 2 m) and 0.5 (``violation_m``, 6 m)."""

    window_s: float = 1.0
    compliant_m: float = 2.0
    violation_m: float = 6.0

    def __post_init__(self) -> None:
        src = "[evaluators.driving_direction]"
        check_fields(self, src, positive=("window_s", "compliant_m", "violation_m"))
        if not self.violation_m > self.compliant_m:
            raise EvaluatorError(src, "violation_m", "must be larger than compliant_m")


@register("driving_direction")
class DrivingDirection(Evaluator):
    """Largest wrong-way progress over a 1 s window, and nuPlan's direction multiplier."""

    settings_type = DrivingDirectionSettings
    metrics = (
        MetricSpec("wrong_way_max_m", "m", "largest progress against the lane direction within a 1 s window", "< 2 m"),
        MetricSpec("driving_direction_compliance", "1", "nuPlan multiplier: 1 below 2 m, 0.5 below 6 m, else 0", "== 1"),
    )

    def _compute(self, ctx: Context) -> list[MetricValue]:
        cfg = self.settings(ctx)
        _, tangent, _ = ctx.lane_at_ego
        xy = ctx.ego_xy
        step_ok = ctx.ego_valid[:-1] & ctx.ego_valid[1:] & np.isfinite(tangent[:-1, 0])
        progress = np.where(step_ok, np.sum(np.diff(xy, axis=0) * np.nan_to_num(tangent[:-1]), axis=1), 0.0)
        window = max(1, round(cfg.window_s / ctx.dt_s))
        if progress.size == 0:
            worst = 0.0
        else:
            csum = np.r_[0.0, np.cumsum(progress)]
            w = min(window, progress.size)
            sums = csum[w:] - csum[:-w]
            worst = max(0.0, -float(sums.min()))
        score = direction_score(worst, cfg.compliant_m, cfg.violation_m)
        return [
            self.value("wrong_way_max_m", worst, worst < cfg.compliant_m),
            self.value("driving_direction_compliance", score, score == 1.0),
        ]
