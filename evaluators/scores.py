"""The two composite scores, both reported: nuPlan's closed-loop score and CARLA's driving score.

Closed-loop score (nuPlan's form): the product of the multipliers, no at-fault collisions (1,
0.5 per object, 0 for a vehicle or VRU), drivable-area compliance (0/1), making progress (0/1)
and driving-direction compliance (1/0.5/0), times the weighted mean of progress ratio (weight 5),
TTC within bound (5), speed-limit compliance (4) and comfort (2).

Driving score (CARLA's form): route completion times the product of infraction penalties, one
factor per infraction: 0.5 per collision with a pedestrian or cyclist, 0.6 per vehicle, 0.65 per
static object (or other obstacle), 0.7 per red light run. As in CARLA every collision counts,
at fault or not. Route completion is the progress ratio along the expert's route.
"""

from __future__ import annotations

from evaluators.base import Evaluator, MetricSpec, MetricValue, register
from evaluators.config import EvaluatorConfig
from evaluators.context import Context


def closed_loop_score(values: dict[str, float], config: EvaluatorConfig) -> float:
    """nuPlan's closed-loop score from the metric values by name (see the module docstring)."""
    multiplier = (
        values["no_at_fault_collisions"]
        * values["drivable_area_compliance"]
        * values["making_progress"]
        * values["driving_direction_compliance"]
    )
    weights = (config.weight_progress, config.weight_ttc, config.weight_speed_limit, config.weight_comfort)
    parts = (values["progress_ratio"], values["ttc_within_bound"], values["speed_limit_compliance"], values["comfortable"])
    weighted = sum(w * p for w, p in zip(weights, parts)) / sum(weights)
    return multiplier * weighted


def infraction_penalty(values: dict[str, float], config: EvaluatorConfig) -> float:
    """CARLA's product of infraction penalties from the collision and red-light counts by name."""
    return (
        config.penalty_pedestrian ** values["collisions_vru"]
        * config.penalty_vehicle ** values["collisions_vehicle"]
        * config.penalty_object ** values["collisions_object"]
        * config.penalty_red_light ** values["red_light_violations"]
    )


@register("closed_loop_score")
class ClosedLoopScore(Evaluator):
    """nuPlan's closed-loop score in [0, 1]."""

    requires = ("collisions", "drivable_area", "driving_direction", "progress", "ttc", "speed_limit", "comfort")
    metrics = (MetricSpec("closed_loop_score", "1", "nuPlan: product of multipliers x weighted mean of progress, TTC, speed limit, comfort"),)

    def _compute(self, ctx: Context) -> list[MetricValue]:
        values = {name: v.value for name, v in ctx.results.items()}
        return [self.value("closed_loop_score", closed_loop_score(values, ctx.config))]


@register("driving_score")
class DrivingScore(Evaluator):
    """CARLA's driving score in [0, 1]: route completion x infraction penalty."""

    requires = ("collisions", "progress", "red_light")
    metrics = (
        MetricSpec("route_completion", "1", "share of the expert's route completed (the progress ratio)"),
        MetricSpec("infraction_penalty", "1", "CARLA: 0.5 per VRU, 0.6 per vehicle, 0.65 per object collision, 0.7 per red light"),
        MetricSpec("driving_score", "1", "CARLA: route completion x infraction penalty"),
    )

    def _compute(self, ctx: Context) -> list[MetricValue]:
        values = {name: v.value for name, v in ctx.results.items()}
        completion = values["progress_ratio"]
        penalty = infraction_penalty(values, ctx.config)
        return [
            self.value("route_completion", completion),
            self.value("infraction_penalty", penalty),
            self.value("driving_score", completion * penalty),
        ]
