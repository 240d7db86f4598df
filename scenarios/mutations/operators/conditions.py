"""Operators on ``Scenario.conditions``: what the twin applies (friction, latency, perception, agent modes).

These change no track: the twin reads ``scenario.conditions`` and applies them (road surface
friction, the delay of the ego's actions, noise and dropped detections in what the ego observes,
whether other agents replay the log or react).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from scenarios.model import AgentType, Scenario
from scenarios.mutations.base import NotApplicable, Param, register
from scenarios.mutations.geometry import resolve_agent


def _with_conditions(scenario: Scenario, **changes: Any) -> Scenario:
    return scenario.replace(conditions=dataclasses.replace(scenario.conditions, **changes))


@register("road_friction", Param("mu", "-", 0.9, low=0.05, high=1.5, doc="tyre-road friction coefficient (0.9 dry, 0.5 wet, 0.15 ice)"))
def road_friction(scenario: Scenario, rng: np.random.Generator, *, mu: float) -> Scenario:
    """Set the road surface friction coefficient ``mu`` [-] (``conditions.road_friction``)."""
    return _with_conditions(scenario, road_friction=mu)


@register("ego_latency", Param("latency_s", "s", 0.2, low=0.0, high=2.0, doc="delay between the policy's action and its effect"))
def ego_latency(scenario: Scenario, rng: np.random.Generator, *, latency_s: float) -> Scenario:
    """Set the ego's actuation latency [s] (``conditions.ego_latency_s``)."""
    return _with_conditions(scenario, ego_latency_s=latency_s)


@register(
    "perception_noise",
    Param("position_m", "m", None, low=0.0, high=10.0, doc="std of the noise on observed positions; None keeps it"),
    Param("heading_rad", "rad", None, low=0.0, high=3.2, doc="std of the noise on observed headings; None keeps it"),
    Param("dropout", "-", None, low=0.0, high=1.0, doc="probability that an agent is missing from a step's observation"),
)
def perception_noise(
    scenario: Scenario, rng: np.random.Generator, *, position_m: float | None, heading_rad: float | None, dropout: float | None
) -> Scenario:
    """Noise and dropped detections in what the ego observes (never the ground truth); None keeps a value."""
    changes: dict[str, float] = {}
    if position_m is not None:
        changes["position_noise_m"] = position_m
    if heading_rad is not None:
        changes["heading_noise_rad"] = heading_rad
    if dropout is not None:
        changes["detection_dropout"] = dropout
    return _with_conditions(scenario, **changes)


@register("agents_mode", Param("mode", "", "reactive", kind="str", choices=("replay", "reactive"), doc="what every other agent does"))
def agents_mode(scenario: Scenario, rng: np.random.Generator, *, mode: str) -> Scenario:
    """Every other agent replays the log or reacts (IDM along its logged path): ``conditions.agents_mode``."""
    return _with_conditions(scenario, agents_mode=mode)


@register(
    "reactive_agents",
    Param("agents", "", (), kind="strs", doc="agent ids, or rules: lead, nearest, random"),
    Param("fraction", "-", 0.0, low=0.0, high=1.0, doc="share of the other vehicles, chosen at random, that react"),
)
def reactive_agents(scenario: Scenario, rng: np.random.Generator, *, agents: tuple[str, ...], fraction: float) -> Scenario:
    """Make some agents react (IDM) while the rest replay: adds to ``conditions.reactive_agents``."""
    tracks = scenario.tracks
    chosen = set(scenario.conditions.reactive_agents)
    for rule in agents:
        row = resolve_agent(scenario, rule, 0, rng)
        if row is None or row == scenario.ego_index:
            raise NotApplicable(scenario.source, "no_agent", f"no agent matches {rule!r}")
        chosen.add(str(tracks.agent_ids[row]))
    if fraction > 0:
        rows = np.flatnonzero(tracks.agent_types == AgentType.VEHICLE)
        rows = rows[rows != scenario.ego_index]
        count = int(round(fraction * rows.size))
        chosen.update(str(a) for a in tracks.agent_ids[rng.choice(rows, size=count, replace=False)])
    return _with_conditions(scenario, reactive_agents=tuple(sorted(chosen)))
