"""Log divergence: how far the ego's centre strayed from the logged ego's (ADE and FDE).

The logged position is read at the rollout's own times (linear between log samples, exact
where the clocks agree); steps where either is invalid are skipped. ADE is the mean distance
over the common steps, FDE the distance at the last of them; both NaN when there is none.
"""

from __future__ import annotations

import numpy as np

from evaluators.base import Evaluator, MetricSpec, MetricValue, register
from evaluators.context import Context


@register("divergence")
class LogDivergence(Evaluator):
    """Average and final displacement from the logged ego [m]."""

    metrics = (
        MetricSpec("ade_m", "m", "average displacement from the logged ego"),
        MetricSpec("fde_m", "m", "displacement from the logged ego at the last common step"),
    )

    def _compute(self, ctx: Context) -> list[MetricValue]:
        log_xy, known = ctx.expert_at_rollout_times
        common = known & ctx.ego_valid
        if not common.any():
            return [self.value("ade_m", float("nan")), self.value("fde_m", float("nan"))]
        d = np.hypot(*(ctx.ego_xy[common] - log_xy[common]).T)
        return [self.value("ade_m", float(d.mean())), self.value("fde_m", float(d[-1]))]
