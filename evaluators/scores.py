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

from dataclasses import dataclass

from evaluators.base import Evaluator, MetricSpec, MetricValue, register
from evaluators.config import check_fields
from evaluators.errors import EvaluatorError
from evaluators.context import Context


@dataclass(frozen=True, slots=True)
class ClosedLoopSettings:
    """``[evaluators.closed_loop_score]``: the weights of the weighted mean (nuPlan 5, 5, 4, 2)."""

    weight_progress: float = 5.0
    weight_ttc: float = 5.0
    weight_speed_limit: float = 4.0
    weight_comfort: float = 2.0

    def __post_init__(self) -> None:
        names = ("weight_progress", "weight_ttc", "weight_speed_limit", "weight_comfort")
        check_fields(self, "[evaluators.closed_loop_score]", nonneg=names)
        if sum(getattr(self, n) for n in names) <= 0:
            raise EvaluatorError("[evaluators.closed_loop_score]", "weight_progress", "the weights must not all be 0")


@dataclass(frozen=True, slots=True)
class DrivingScoreSettings:
    """``[evaluators.driving_score]``: CARLA's penalty factor per infraction: a collision with a
    pedestrian or cyclist (0.5), a vehicle (0.6), a static object or other obstacle (0.65), a red
    light run (0.7)."""

    penalty_pedestrian: float = 0.5
    penalty_vehicle: float = 0.6
    penalty_object: float = 0.65
    penalty_red_light: float = 0.7

    def __post_init__(self) -> None:
        names = ("penalty_pedestrian", "penalty_vehicle", "penalty_object", "penalty_red_light")
        check_fields(self, "[evaluators.driving_score]", unit_interval=names)


def closed_loop_score(values: dict[str, float], config: ClosedLoopSettings) -> float:
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


def infraction_penalty(values: dict[str, float], config: DrivingScoreSettings) -> float:
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

    settings_type = ClosedLoopSettings
    requires = ("collisions", "drivable_area", "driving_direction", "progress", "ttc", "speed_limit", "comfort")
    metrics = (MetricSpec("closed_loop_score", "1", "nuPlan: product of multipliers x weighted mean of progress, TTC, speed limit, comfort"),)

    def _compute(self, ctx: Context) -> list[MetricValue]:
        values = {name: v.value for name, v in ctx.results.items()}
        return [self.value("closed_loop_score", closed_loop_score(values, self.settings(ctx)))]


@register("driving_score")
class DrivingScore(Evaluator):
    """CARLA's driving score in [0, 1]: route completion x infraction penalty."""

    settings_type = DrivingScoreSettings
    requires = ("collisions", "progress", "red_light")
    metrics = (
        MetricSpec("route_completion", "1", "share of the expert's route completed (the progress ratio)"),
        MetricSpec("infraction_penalty", "1", "CARLA: 0.5 per VRU, 0.6 per vehicle, 0.65 per object collision, 0.7 per red light"),
        MetricSpec("driving_score", "1", "CARLA: route completion x infraction penalty"),
    )

    def _compute(self, ctx: Context) -> list[MetricValue]:
        values = {name: v.value for name, v in ctx.results.items()}
        completion = values["progress_ratio"]
        penalty = infraction_penalty(values, self.settings(ctx))
        return [
            self.value("route_completion", completion),
            self.value("infraction_penalty", penalty),
            self.value("driving_score", completion * penalty),
        ]
