"""The adaptive search: sweeps whose sampler learns from each round's results (``sampler = "cem"``).

Each scenario of an adaptive sweep has its own sampler. A round proposes ``variants`` points per
scenario, runs them all as one batch (``run(batch)``, given by ``run_suite``) and feeds every
point back with its *search score* (``search_score``, lower = worse for the planner):

- ranked by severity first (``evaluators.verdicts.severity_key``): an error, then an at-fault
  collision, another collision, leaving the road, a red light; within one severity class by
  the sweep's objective (a summary column or a weighted sum of columns, minimised). So an
  at-fault collision always counts as worse than any variant without one, whatever its score;
- a proposal rejected before simulation (implausible or inapplicable: no lead to brake, an
  overlap at the start) gets ``REJECTED_SCORE``, worse than any simulated one: the sampler
  learns where the feasible region is instead of proposing there again;
- distinct failures count, not repeats: an at-fault collision that is one more variant of a
  failure mode found before (``evaluators.failure_modes.ModeIndex``: same scenario and agent,
  within 1 s and 2 m, in an earlier round or earlier in this one) scores ``REPEAT_CLASS``, worse
  than any clean run (but better than a rejection): the elite is then the new modes and the near
  misses, so the sampler moves on towards failures it has not found yet instead of re-finding one;
- a scenario whose first (uniform) round of at least ``GIVE_UP_MIN_PROPOSALS`` was rejected
  whole for one and the same reason (the operator does not apply to the scene: no conflict
  point, no signal, no lane beside; fewer proposals are too few to tell), or on
  which ``GIVE_UP_ROUNDS`` rounds in a row had every proposal rejected, gets no more proposals of
  that sweep.

Objective in a suite: ``objective = "closed_loop_score"`` or a weighted sum,
``objective = { closed_loop_score = 1.0, min_ttc_s = 0.1 }``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.config import MEMORY, ConfigError
from scenarios.mutations import REJECTED

if TYPE_CHECKING:
    from harness.config import SuiteConfig
    from harness.worker import VariantOutcome, VariantTask

#: Simulated variants' search scores lie in [0, ``SEVERITY_CLASSES``).
SEVERITY_CLASSES = 32
#: The search score of a proposal rejected before simulation (+inf): worse than any simulated
#: variant's; the sampler never takes it for an elite.
REJECTED_SCORE = REJECTED
#: A scenario whose proposals were all rejected this many rounds in a row leaves the sweep.
GIVE_UP_ROUNDS = 2
#: ... and one whose first round of at least this many proposals was all rejected for one reason.
GIVE_UP_MIN_PROPOSALS = 8
#: The severity class a repeat of a known failure mode scores in: past every clean run's.
REPEAT_CLASS = SEVERITY_CLASSES


@dataclass(frozen=True, slots=True)
class Objective:
    """What an adaptive sweep drives down: sum of weight x column over ``terms``.

    Attributes:
        terms: (column, weight) pairs, in the config's order.
    """

    terms: tuple[tuple[str, float], ...]

    @classmethod
    def parse(cls, value: Any, columns: Sequence[str], source: str = MEMORY, key: str = "mutations.objective") -> Objective:
        """An objective from a config value: a column name or a table ``{column = weight}``.

        Raises:
            ConfigError: naming ``source`` and the key (``mutations.objective.<column>`` for a
                bad term): an unknown or non-numeric column, a weight that is no finite number.
        """
        known = ", ".join(columns)
        if isinstance(value, str):
            if value not in columns:
                raise ConfigError(source, key, f"{value!r} is no numeric summary column; known: {known}")
            return cls(((value, 1.0),))
        if not isinstance(value, Mapping) or not value:
            raise ConfigError(source, key, f"must be a column name or a table {{column = weight}}, got {value!r}")
        terms = []
        for column, weight in value.items():
            if column not in columns:
                raise ConfigError(source, f"{key}.{column}", f"{column!r} is no numeric summary column; known: {known}")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ConfigError(source, f"{key}.{column}", f"the weight must be a finite number, got {weight!r}")
            terms.append((str(column), float(weight)))
        return cls(tuple(terms))

    def value(self, row: Mapping[str, Any]) -> float:
        """The objective of one summary row; NaN when a term's column is missing or null."""
        total = 0.0
        for column, weight in self.terms:
            v = row.get(column)
            try:
                x = float(v)  # bools are 1/0
            except (TypeError, ValueError):
                return math.nan
            if math.isnan(x):
                return math.nan
            total += weight * x
        return total


def severity_class(row: Mapping[str, Any]) -> int:
    """0 (an error, the most severe) .. ``SEVERITY_CLASSES - 1`` (no failing cause): the row's
    place by the flags of ``severity_key`` (error, at-fault collision, collision, off-road, red
    light), a more severe flag always outranking every less severe one."""
    from evaluators.verdicts import severity_key

    flags = severity_key(row)[:5]  # True where the cause is absent
    return sum(int(bool(absent)) << (4 - i) for i, absent in enumerate(flags))


def search_score(row: Mapping[str, Any] | None, objective: Objective, repeat: bool = False) -> float:
    """The score an adaptive sampler minimises for one proposal (lower = worse for the planner).

    ``severity_class`` plus the objective squashed monotonically into [0, 1) (x / (1 + |x|)
    mapped from (-1, 1)); a NaN objective (an error row) is the worst of its class. ``None`` (a
    proposal rejected before simulation) gives ``REJECTED_SCORE``. With ``repeat`` (the row's
    at-fault collision is a failure mode found before) the class is ``REPEAT_CLASS``.
    """
    if row is None:
        return REJECTED_SCORE
    x = objective.value(row)
    squashed = 0.999999 if math.isnan(x) else min(0.5 + 0.5 * x / (1.0 + abs(x)), 0.999999)
    return (REPEAT_CLASS if repeat else severity_class(row)) + squashed


def adaptive_rounds(
    config: SuiteConfig,
    scenarios: Sequence[tuple[str, str]],
    run: Callable[[list[VariantTask]], Iterable[tuple[VariantTask, VariantOutcome]]],
    rejected: Counter[str],
    stored: Mapping[str, Mapping[str, Any]],
    shipper: Any = None,
) -> int:
    """Run every adaptive sweep of ``config``: per scenario a sampler; propose, run, learn, repeat.

    Args:
        scenarios: (library, scenario id) pairs.
        run: runs a batch of tasks and yields (task, outcome) as they finish (in any order).
        rejected: counts rejected proposals by "sweep:reason" (``run`` fills it).
        stored: summary rows by variant id of a resumed run: those are not run again, their
            rows are fed back as they are.
        shipper: the runner's ``ScenarioShipper`` (each scenario read here is shared once).

    Returns:
        The number of proposals that were simulated (or read back from ``stored``).
    """
    from evaluators.failure_modes import ModeIndex
    from harness.runner import _seed, _sweep, _variant_task
    from harness.worker import STATUS_REJECTED
    from scenarios.library import ScenarioLibrary
    from scenarios.mutations import variant_seeds

    count = 0
    for i, mutation in enumerate(config.mutations):
        if not mutation.adaptive:
            continue
        name, plan = _sweep(config, i)
        objective = mutation.parsed_objective()
        states = {}
        libraries: dict[str, Any] = {}
        for root, scenario_id in scenarios:
            scenario = libraries.setdefault(root, ScenarioLibrary(root)).load(scenario_id)
            if shipper is not None:
                shipper.add(root, scenario_id, scenario)
            states[scenario_id] = (root, scenario, plan.make_sampler())
        modes = ModeIndex()
        barren: Counter[str] = Counter()  # rounds in a row with every proposal rejected, per scenario
        for round_ in range(mutation.rounds):
            batch: list[VariantTask] = []
            entries_of: dict[str, list[tuple[dict[str, Any], VariantTask]]] = {}
            for scenario_id, (root, scenario, sampler) in states.items():
                if barren[scenario_id] >= GIVE_UP_ROUNDS:
                    continue
                points = sampler.propose(plan.variants)
                seeds = variant_seeds(_seed(plan.seed, scenario_id, round_), len(points))
                entries = [(point, _variant_task(scenario, root, plan, point, seed, name)) for point, seed in zip(points, seeds)]
                batch.extend(task for _, task in entries)
                entries_of[scenario_id] = entries
            rows: dict[str, Mapping[str, Any] | None] = {vid: row for vid, row in stored.items()}
            reasons: dict[str, str] = {}
            for task, outcome in run([t for t in batch if t.variant_id not in stored]):
                rejected_here = outcome.summary.get("status") == STATUS_REJECTED
                rows[task.variant_id] = None if rejected_here else outcome.summary
                if rejected_here:
                    reasons[task.variant_id] = str(outcome.summary.get("error"))
            for scenario_id, entries in entries_of.items():
                sampler = states[scenario_id][2]
                points, scores = [], []
                for point, task in entries:  # in proposal order: the first variant of a new mode is the new one
                    row = rows.get(task.variant_id)  # None: rejected (or, none should, never came back)
                    points.append(point)
                    scores.append(search_score(row, objective, repeat=row is not None and modes.add(row) is False))
                simulated = sum(1 for _, task in entries if rows.get(task.variant_id) is not None)
                barren[scenario_id] = 0 if simulated else barren[scenario_id] + 1
                one_reason = len({reasons.get(task.variant_id) for _, task in entries}) == 1
                if round_ == 0 and not simulated and len(entries) >= GIVE_UP_MIN_PROPOSALS and one_reason:
                    barren[scenario_id] = GIVE_UP_ROUNDS  # one reason all over the space: not for this scene
                count += simulated
                if points:
                    sampler.update(points, scores)
    return count


__all__ = ["GIVE_UP_MIN_PROPOSALS", "GIVE_UP_ROUNDS", "REJECTED_SCORE", "REPEAT_CLASS", "SEVERITY_CLASSES", "Objective", "adaptive_rounds", "search_score", "severity_class"]
