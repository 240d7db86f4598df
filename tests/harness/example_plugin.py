"""A drivetwin plug-in, as a user writes one: a metric, a mutation operator and a policy.

Suites load it with ``[suite] plugins = ["example_plugin"]``; this folder is on the tests' path
(and on the Ray workers' PYTHONPATH, see conftest.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from evaluators.base import Evaluator, MetricSpec, MetricValue, register
from evaluators.context import Context
from scenarios.model import Scenario
from scenarios.mutations.base import Param
from scenarios.mutations.base import register as register_operator
from sim.policies import make_policy, register_policy

#: What the plug-in registers, for the tests' clean-up.
EVALUATOR, OPERATOR, POLICY = "example_path", "example_wet_road", "example_expert"
METRICS = ("example_ego_path_m", "example_surface_friction")


@register(EVALUATOR)
class EgoPath(Evaluator):
    """How far the ego drove [m], and the road friction the twin ran with [-]."""

    metrics = (
        MetricSpec(METRICS[0], "m", "length of the ego's driven path"),
        MetricSpec(METRICS[1], "1", "the scenario's road friction coefficient"),
    )

    def _compute(self, ctx: Context) -> list[MetricValue]:
        xy = ctx.ego_xy[ctx.ego_steps]
        length = float(np.hypot(*np.diff(xy, axis=0).T).sum()) if len(xy) > 1 else 0.0
        return [self.value(METRICS[0], length), self.value(METRICS[1], ctx.scenario.conditions.road_friction)]


@register_operator(OPERATOR, Param("mu", "-", 0.5, low=0.05, high=1.5, doc="friction of the wet road"))
def wet_road(scenario: Scenario, rng: np.random.Generator, *, mu: float) -> Scenario:
    """The road surface's friction set to ``mu`` [-]."""
    return scenario.replace(conditions=dataclasses.replace(scenario.conditions, road_friction=mu))


@register_policy(POLICY)
class PluginExpert:
    """The built-in expert under the plug-in's own name."""

    def __init__(self) -> None:
        self.expert = make_policy("expert")

    def reset(self, scenario_info) -> None:
        self.expert.reset(scenario_info)

    def act(self, observation):
        return self.expert.act(observation)
