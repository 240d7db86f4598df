"""Collisions of the ego: any, and at fault by nuPlan's rules and avoidable, per class (vehicle, VRU, object).

The ego touches an agent at a step when the engine reported contact (``rollout.contact``; the
twin's pybullet contact points, which also catch a touch between two samples) OR the two boxes
overlap by more than ``collision_min_overlap_m`` (geometry, the only source in a log replay,
where ``contact`` is all False). A collision is the start of a touch: touching now and not at
the last step both were valid; whichever source fires first sets the step, and each agent
counts once. An agent already touching the ego the first time both exist is not a collision
(``initial_overlaps``): the ego cannot have driven into it, and in real logs it is label noise
(one vehicle tracked twice after an id switch, a pedestrian getting into a car, boxes of
default size). The classification uses the geometry at the collision step:

- the ego is stopped (speed <= 0.05 m/s): STOPPED_EGO, not at fault (e.g. rear-ended while waiting);
- the other agent is stopped: STOPPED_TRACK, at fault (the ego drove into it);
- the agent is behind the ego (more than 150 deg off its heading, seen from the rear axle):
  ACTIVE_REAR, not at fault;
- the ego's front edge touches the agent's box (within ``front_edge_tolerance_m``): ACTIVE_FRONT,
  at fault;
- else ACTIVE_LATERAL: at fault only while the ego straddles lanes or is off the lane map
  (its four corners are not within one lane or lanes connected to it).

Then, with ``[evaluators.collisions] avoidability = true`` (the default), an at-fault
collision the ego could not have avoided is excused: the agent entered the ego's path closer
than the ego could stop in after ``reaction_s`` at ``brake_mps2`` (``evaluators.avoidability``:
a stopped car or a lead braking within limits, in the path long enough, stays at fault, and so
do a lane change into a car and a collision in a junction the ego entered against a red light
or a stop sign; a cut-in or a pedestrian stepping out at the last moment does not). It
counts in ``collisions`` and ``unavoidable_collisions``, not in ``at_fault_collisions``: a
collision can only become excused this way, never the reverse.

Judged against the log (``[evaluators] judge_against_log``), a collision is excused only when the
logged boxes of the ego and that agent themselves overlap within the rollout's time (a duplicate
track, a box of default size: label noise no driver could avoid); it is then left out of every
count here and of the TTC, counted in ``excused_collisions`` and named in the row's reason. Any
other collision, at fault or not, counts exactly as without judging.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.base import Evaluator, MetricSpec, MetricValue, register
from evaluators.config import check_fields
from evaluators.context import AgentClass, CollisionType, Context

_CLASSES = (("vehicle", AgentClass.VEHICLE), ("vru", AgentClass.VRU), ("object", AgentClass.OBJECT))


@dataclass(frozen=True, slots=True)
class CollisionSettings:
    """``[evaluators.collisions]``: at-fault collisions tolerated per class (the class score is
    max(0, 1 - n / (max + 1)); nuPlan: 0 vehicles, 0 VRUs, 1 object), and the avoidability rule.

    Attributes:
        avoidability: excuse an at-fault collision the ego could not have avoided
            (``evaluators.avoidability``); false keeps nuPlan's geometric verdicts alone.
        reaction_s: the ego's reaction time from the conflict's onset to braking [s].
        brake_mps2: the ego's braking once it reacts [m/s2].
        agent_max_brake_mps2: the hardest a road user ahead is assumed to brake after the
            rollout ends (RSS's a_max,brake of the car in front) [m/s2].
    """

    max_at_fault_vru: int = 0
    max_at_fault_vehicle: int = 0
    max_at_fault_object: int = 1
    avoidability: bool = True
    reaction_s: float = 0.5
    brake_mps2: float = 6.0
    agent_max_brake_mps2: float = 8.0

    def __post_init__(self) -> None:
        names = ("max_at_fault_vru", "max_at_fault_vehicle", "max_at_fault_object")
        check_fields(
            self, "[evaluators.collisions]", nonneg=(*names, "reaction_s"), integer=names,
            positive=("brake_mps2", "agent_max_brake_mps2"), flags=("avoidability",),
        )  # fmt: skip


def nuplan_collision_score(at_fault: dict[str, int], limits: dict[str, int]) -> float:
    """nuPlan's no-at-fault-collisions multiplier: the product over classes of max(0, 1 - n / (limit + 1))."""
    score = 1.0
    for name, n in at_fault.items():
        score *= max(0.0, 1.0 - n / (limits[name] + 1))
    return score


@register("collisions")
class Collisions(Evaluator):
    """Counts of collisions and at-fault collisions per class, and nuPlan's collision multiplier."""

    settings_type = CollisionSettings
    metrics = (
        MetricSpec("collisions", "count", "agents the ego touched (engine contact or box overlap)", "== 0"),
        *(MetricSpec(f"collisions_{c}", "count", f"{c} agents the ego touched") for c, _ in _CLASSES),
        MetricSpec("at_fault_collisions", "count", "collisions the ego caused (nuPlan's rules) and could have avoided", "== 0"),
        *(MetricSpec(f"at_fault_collisions_{c}", "count", f"at-fault collisions with {c} agents") for c, _ in _CLASSES),
        MetricSpec("unavoidable_collisions", "count", "at fault by nuPlan's rules, but braking within the reaction time from when the agent entered the ego's path would not have avoided them (null with avoidability = false)"),
        MetricSpec("collisions_engine", "count", "collisions the engine reported (a subset of collisions)"),
        MetricSpec("collisions_geometry", "count", "collisions seen as box overlap (a subset of collisions)"),
        MetricSpec("no_at_fault_collisions", "1", "nuPlan multiplier: 0 for a vehicle or VRU, 0.5 per object", "== 1"),
        MetricSpec("first_collision_s", "s", "time of the first collision since the start, NaN when none"),
        MetricSpec("first_at_fault_collision_s", "s", "time of the first at-fault collision since the start, NaN when none"),
        MetricSpec("first_at_fault_x_m", "m", "the ego's centre x at the first at-fault collision (map frame), NaN when none"),
        MetricSpec("first_at_fault_y_m", "m", "the ego's centre y at the first at-fault collision (map frame), NaN when none"),
        MetricSpec("initial_overlaps", "count", "agents already overlapping the ego when first seen (not collisions)"),
        MetricSpec("excused_collisions", "count", "collisions left out because the logged boxes themselves overlap (null unless judged against the log)"),
        MetricSpec("log_overlaps", "count", "agents whose logged box overlaps the logged ego's within the rollout's time (null unless judged against the log)"),
    )

    def _compute(self, ctx: Context) -> list[MetricValue]:
        ev = ctx.collision_events
        cfg = self.settings(ctx)
        counted = ~ev.excused
        n = int(counted.sum())
        at_fault = ev.at_fault & counted
        n_fault = int(at_fault.sum())
        per = {c: int((counted & (ev.agent_class == k)).sum()) for c, k in _CLASSES}
        fault = {c: int((at_fault & (ev.agent_class == k)).sum()) for c, k in _CLASSES}
        limits = {"vehicle": cfg.max_at_fault_vehicle, "vru": cfg.max_at_fault_vru, "object": cfg.max_at_fault_object}
        score = nuplan_collision_score(fault, limits)
        first = float(ctx.t_s[ev.step[counted].min()]) if n else float("nan")
        fault_at = ctx.first_at_fault
        unavoidable = int((ev.unavoidable & counted).sum()) if cfg.avoidability else float("nan")
        nan = float("nan")
        log = ctx.log
        if log is not None and log.overlapping:
            ids = ctx.rollout.agent_ids
            hit = sorted(str(ids[a]) for a in ev.agent[ev.excused])
            listed = ", ".join(sorted(log.overlapping))
            excuse = f"; collisions with {', '.join(hit)} excused" if hit else ""
            ctx.note("collisions", f"logged boxes of the ego and {listed} overlap in the log itself{excuse}")
        return [
            self.value("collisions", n, n == 0),
            *(self.value(f"collisions_{c}", per[c]) for c, _ in _CLASSES),
            self.value("at_fault_collisions", n_fault, n_fault == 0),
            *(self.value(f"at_fault_collisions_{c}", fault[c]) for c, _ in _CLASSES),
            self.value("unavoidable_collisions", unavoidable),
            self.value("collisions_engine", int(ev.engine.sum())),
            self.value("collisions_geometry", int(ev.geometry.sum())),
            self.value("no_at_fault_collisions", score, score == 1.0),
            self.value("first_collision_s", first),
            self.value("first_at_fault_collision_s", fault_at["t_s"] if fault_at else nan),
            self.value("first_at_fault_x_m", fault_at["x_m"] if fault_at else nan),
            self.value("first_at_fault_y_m", fault_at["y_m"] if fault_at else nan),
            self.value("initial_overlaps", int(ev.initial_overlaps.size)),
            self.value("excused_collisions", float("nan") if log is None else int(ev.excused.sum())),
            self.value("log_overlaps", float("nan") if log is None else len(log.overlapping)),
        ]


def collision_table(ctx: Context) -> list[dict[str, object]]:
    """One dict per collision (agent id, time, type, class, at fault, sources, avoidability), for
    reports and debugging; ``conflict_s`` is when the conflict began (NaN: not judged for
    avoidability) and ``avoidability`` says why it was or was not avoidable."""
    ev = ctx.collision_events
    ids = ctx.rollout.agent_ids
    return [
        {
            "agent_id": str(ids[a]),
            "t_s": float(ctx.t_s[s]),
            "step": int(s),
            "type": CollisionType(int(k)).name.lower(),
            "agent_class": AgentClass(int(c)).name.lower(),
            "at_fault": bool(f),
            "engine": bool(en),
            "geometry": bool(g),
            "excused": bool(x),
            "unavoidable": bool(u),
            "conflict_s": float(ctx.t_s[o]) if o >= 0 else float("nan"),
            "avoidability": why,
        }
        for a, s, k, c, f, en, g, x, u, o, why in zip(
            ev.agent, ev.step, ev.kind, ev.agent_class, ev.at_fault, ev.engine, ev.geometry, ev.excused,
            ev.unavoidable, ev.onset_step, ev.reasons,
        )
    ]


__all__ = ["Collisions", "collision_table", "nuplan_collision_score"]
