"""Driving-direction compliance: how far the ego drove against its lane's direction within 1 s.

nuPlan's rule: each step's progress is the ego's displacement to the next step projected on the
direction of the lane it is in (0 when it is in none); the progress is summed over sliding
``direction_window_s`` windows, and the wrong-way distance is minus the most negative sum.
Compliance is 1 below ``compliant_m`` (2 m), 0.5 below ``violation_m``
(6 m), else 0. The ego's lane is the lane containing its centre whose direction is closest to
its heading, so a lane it merely overlaps in an intersection does not make it wrong-way.

Judged against the log (``[evaluators] judge_against_log``), where the logged ego itself drove
against its lane's direction (a map whose lane runs the other way, a car backing out of a
driveway) by more than ``compliant_m`` less ``log_margin_m``, both bounds move up by the log's
excess: the planner is judged on how much further against the lane it drives than the log did.
``log_wrong_way_max_m`` holds the log's value.
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
    """``[evaluators.driving_direction]``: the wrong-way window [s] (1), the wrong-way progress
    below which the compliance is 1 (``compliant_m``, 2 m) and 0.5 (``violation_m``, 6 m), and the
    margin over the log's own wrong-way progress [m] (1) within which the log sets the bounds."""

    window_s: float = 1.0
    compliant_m: float = 2.0
    violation_m: float = 6.0
    log_margin_m: float = 1.0

    def __post_init__(self) -> None:
        src = "[evaluators.driving_direction]"
        check_fields(self, src, positive=("window_s", "compliant_m", "violation_m"), nonneg=("log_margin_m",))
        if not self.violation_m > self.compliant_m:
            raise EvaluatorError(src, "violation_m", "must be larger than compliant_m")


@register("driving_direction")
class DrivingDirection(Evaluator):
    """Largest wrong-way progress over a 1 s window, and nuPlan's direction multiplier."""

    settings_type = DrivingDirectionSettings
    metrics = (
        MetricSpec("wrong_way_max_m", "m", "largest progress against the lane direction within a 1 s window", "< 2 m"),
        MetricSpec("driving_direction_compliance", "1", "nuPlan multiplier: 1 below 2 m, 0.5 below 6 m, else 0 (bounds raised where the log itself drives against the lane)", "== 1"),
        MetricSpec("log_wrong_way_max_m", "m", "the logged ego's largest wrong-way progress over the same time (null unless judged against the log)"),
    )

    def _compute(self, ctx: Context) -> list[MetricValue]:
        cfg = self.settings(ctx)
        worst = worst_window(lane_progress(ctx), max(1, round(cfg.window_s / ctx.dt_s)))
        compliant, violation = cfg.compliant_m, cfg.violation_m
        log_worst = ctx.log.wrong_way_m if ctx.log is not None else float("nan")
        if log_worst + cfg.log_margin_m > compliant:  # the log itself drives against the lane, or nearly (NaN: not judged)
            raised = log_worst + cfg.log_margin_m - compliant
            compliant, violation = compliant + raised, violation + raised
            verdict = "fails" if worst >= compliant else "passes"
            ctx.note("driving_direction", f"log itself {log_worst:.2f} m against the lane; planner {worst:.2f} m {verdict} (limit {compliant:.2f} m)")
        score = direction_score(worst, compliant, violation)
        return [
            self.value("wrong_way_max_m", worst, worst < compliant),
            self.value("driving_direction_compliance", score, score == 1.0),
            self.value("log_wrong_way_max_m", log_worst),
        ]


def lane_progress(ctx: Context) -> np.ndarray:
    """(S - 1,) the ego's displacement from each step to the next along its lane's direction [m]
    (0 where the ego is invalid at either end or in no lane)."""
    _, tangent, _ = ctx.lane_at_ego
    step_ok = ctx.ego_valid[:-1] & ctx.ego_valid[1:] & np.isfinite(tangent[:-1, 0])
    return np.where(step_ok, np.sum(np.diff(ctx.ego_xy, axis=0) * np.nan_to_num(tangent[:-1]), axis=1), 0.0)


def worst_window(progress: np.ndarray, window: int) -> float:
    """Minus the most negative sum of ``progress`` over ``window`` consecutive steps [m] (0 if none)."""
    if progress.size == 0:
        return 0.0
    csum = np.r_[0.0, np.cumsum(progress)]
    w = min(window, progress.size)
    return max(0.0, -float((csum[w:] - csum[:-w]).min()))
