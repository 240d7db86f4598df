"""Speed-limit compliance (nuPlan's): overspeed integrated over time, relative to 2.23 m/s held throughout.

At each step the limit is the speed limit of the ego's lane (see ``Context.lane_at_ego``);
steps off the lane map or on a lane without a known limit have no limit and no overspeed. The
integral is a left Riemann sum: each valid step's overspeed times the time to the next valid
step, so a violation held over k steps of dt counts k * dt. Compliance is
max(0, 1 - integral / (max_overspeed_mps * duration)), duration = the ego's valid time span.

Judged against the log: where the logged ego itself exceeds its lane's limit within the
rollout's time, the limit is raised by the log's largest overspeed plus ``log_margin_mps`` for
the compliance (a limit the drivers of that road did not keep; a map's wrong limit);
``max_overspeed_mps`` stays the overspeed against the map's limit, and
``log_max_overspeed_mps`` holds the log's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.base import Evaluator, MetricSpec, MetricValue, register
from evaluators.config import check_fields
from evaluators.context import Context, step_weights


def overspeed(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """(S,) the speed limit of the ego's lane [m/s] (NaN: none known) and the ego's speed above it
    [m/s] (0 where no limit is known)."""
    lane, _, _ = ctx.lane_at_ego
    limit = np.full(ctx.num_steps, np.nan)
    on_lane = lane >= 0
    limit[on_lane] = ctx.map.lane_speed_limit[lane[on_lane]]
    speed = ctx.speed[ctx.ego]
    over = np.where(np.isfinite(limit), np.maximum(speed - np.nan_to_num(limit, nan=np.inf), 0.0), 0.0)
    return limit, np.where(ctx.ego_valid, over, 0.0)


@dataclass(frozen=True, slots=True)
class SpeedLimitSettings:
    """``[evaluators.speed_limit]``.

    Attributes:
        max_overspeed_mps: overspeed that, held for the whole rollout, makes the compliance 0 [m/s]
            (nuPlan 2.23).
        log_margin_mps: where the log itself exceeds the limit, the planner is judged against the
            limit raised by the log's largest overspeed plus this [m/s] (0.5).
    """

    max_overspeed_mps: float = 2.23
    log_margin_mps: float = 0.5

    def __post_init__(self) -> None:
        check_fields(self, "[evaluators.speed_limit]", positive=("max_overspeed_mps",), nonneg=("log_margin_mps",))


@register("speed_limit")
class SpeedLimit(Evaluator):
    """Speed-limit compliance, the largest overspeed and the share of time with a known limit."""

    settings_type = SpeedLimitSettings
    metrics = (
        MetricSpec("speed_limit_compliance", "1", "max(0, 1 - overspeed integral / (2.23 m/s x duration))"),
        MetricSpec("max_overspeed_mps", "m/s", "largest speed above the lane's limit"),
        MetricSpec("speed_limit_coverage", "1", "share of the rollout's time on a lane with a known limit"),
        MetricSpec("log_max_overspeed_mps", "m/s", "the logged ego's largest overspeed over the same time (null unless judged against the log)"),
    )

    def _compute(self, ctx: Context) -> list[MetricValue]:
        cfg = self.settings(ctx)
        steps = ctx.ego_steps
        limit, over = overspeed(ctx)
        allowance = 0.0
        log_over = ctx.log.max_overspeed_mps if ctx.log is not None else float("nan")
        if log_over > 0:  # the log itself exceeds the limit (NaN: not judged)
            allowance = log_over + cfg.log_margin_mps
            ctx.note("speed_limit", f"log itself {log_over:.2f} m/s over the limit; planner judged against the limit + {allowance:.2f} m/s")
        weights = step_weights(ctx.t_s, steps)
        duration = float(weights.sum())
        integral = float(np.sum(np.maximum(over[steps] - allowance, 0.0) * weights))
        compliance = max(0.0, 1.0 - integral / (cfg.max_overspeed_mps * duration)) if duration > 0 else 1.0
        covered = float(np.sum(weights * np.isfinite(limit[steps])) / duration) if duration > 0 else float(np.isfinite(limit[steps]).any())
        ctx.series["speed_limit_mps"] = np.where(ctx.ego_valid, limit, np.nan)
        return [
            self.value("speed_limit_compliance", compliance),
            self.value("max_overspeed_mps", float(over[steps].max()) if steps.size else 0.0),
            self.value("speed_limit_coverage", min(1.0, covered)),
            self.value("log_max_overspeed_mps", log_over),
        ]
