"""The adaptive search: sweeps whose sampler learns from each round's results (``sampler = "cem"``).

Each scenario of an adaptive sweep has its own sampler (an *arm*). The budget is the config's,
``rounds x variants`` proposals per scenario and sweep in all, but it is spent where it finds
failures: the first round proposes ``variants`` points on every arm, and each later round
shares its part of the budget across the arms as a bandit on *new* failure modes per proposal
(``allocate``: an upper confidence bound; a scenario with no failure yet keeps a floor, for
coverage). A round runs all arms' proposals as one batch (``run(batch)``, given by
``run_suite``) and feeds every point back with its *search score* (``search_score``, lower =
worse for the planner) and whether it made the planner fail (the sampler then fills in around
failures and explores away from them, ``CrossEntropySampler``):

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
  that sweep (its share goes to the other arms).

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
#: ``allocate``: after the first round, an arm of a scenario with no failure found yet gets at
#: least this share of its sweep's ``variants`` per round (coverage) ...
COVERAGE_FLOOR = 0.5
#: ... the rest goes this many proposals at a time to the arm of the highest bound ...
CHUNK = 2
#: ... whose exploration term has this weight ...
UCB_C = 0.15
#: ... up to this many times its sweep's ``variants`` per arm and round ...
MAX_SHARE = 8
#: ... each earlier round's yield weighing this much of the next's (an arm's recent yield counts most).
DECAY = 0.5


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


def unavoidable_only(row: Mapping[str, Any]) -> bool:
    """Whether every collision of the row is one the ego could not have avoided (its
    ``unavoidable_collisions``: braking within the reaction time from the conflict's onset would
    still have touched): a staged last-moment hit, not the planner's failure."""
    try:
        hits, unavoidable, at_fault = (float(row.get(c) or 0) for c in ("collisions", "unavoidable_collisions", "at_fault_collisions"))
    except (TypeError, ValueError):
        return False
    return hits > 0 and at_fault == 0 and unavoidable >= hits


def severity_class(row: Mapping[str, Any]) -> int:
    """0 (an error, the most severe) .. ``SEVERITY_CLASSES - 1`` (no failing cause): the row's
    place by the flags of ``severity_key`` (error, at-fault collision, collision, off-road, red
    light), a more severe flag always outranking every less severe one. Collisions that were
    all unavoidable (``unavoidable_only``) do not count."""
    from evaluators.verdicts import SEVERE_CAUSES, severity_key

    n = len(SEVERE_CAUSES)
    flags = list(severity_key(row)[:n])  # True where the cause is absent
    if unavoidable_only(row):
        flags[SEVERE_CAUSES.index("collision")] = True
    return sum(int(bool(absent)) << (n - 1 - i) for i, absent in enumerate(flags))


def search_score(row: Mapping[str, Any] | None, objective: Objective, repeat: bool = False) -> float:
    """The score an adaptive sampler minimises for one proposal (lower = worse for the planner).

    ``severity_class`` plus the objective squashed monotonically into [0, 1) (x / (1 + |x|)
    mapped from (-1, 1)); a NaN objective (an error row) is the worst of its class. ``None`` (a
    proposal rejected before simulation) gives ``REJECTED_SCORE``. With ``repeat`` (the row's
    at-fault collision is a failure mode found before) the class is ``REPEAT_CLASS``. A row whose
    collisions were all unavoidable scores as the worst of its class without them: the search
    is steered to conflicts the planner had time to see (near misses, avoidable failures), not
    to staging ever later cut-ins.
    """
    if row is None:
        return REJECTED_SCORE
    x = math.nan if unavoidable_only(row) else objective.value(row)
    squashed = 0.999999 if math.isnan(x) else min(0.5 + 0.5 * x / (1.0 + abs(x)), 0.999999)
    return (REPEAT_CLASS if repeat else severity_class(row)) + squashed


@dataclass(slots=True)
class _Arm:
    """One scenario of one adaptive sweep: its sampler and what it has yielded so far."""

    sweep: int
    name: str
    plan: Any
    objective: Objective
    root: str
    scenario: Any
    sampler: Any
    proposed: int = 0
    recent_proposed: float = 0.0  # proposals, each earlier round's worth ``DECAY`` of the next's
    recent_new: float = 0.0  # ... and new failure modes among them
    barren: int = 0  # rounds in a row with every proposal rejected
    done: bool = False

    @property
    def scenario_id(self) -> str:
        return str(self.scenario.id)


def allocate(arms: Sequence[_Arm], budget: int, round_: int, found: Mapping[str, int]) -> list[int]:
    """How many proposals each arm gets this round, ``budget`` in all: a bandit on new failure modes.

    Round 0 gives every live arm its sweep's ``variants`` (a uniform first look). Later rounds
    first give every live arm of a scenario with no failure found yet (``found``: new modes by
    scenario, any sweep) a floor of ``COVERAGE_FLOOR`` of its ``variants`` (coverage: such a
    scenario stays alive until its sweeps give up), then hand out the rest ``CHUNK`` proposals
    at a time to the arm of the highest upper confidence bound on new modes per proposal,
    ``(new + 1) / (n + 2) + UCB_C * sqrt(ln N / n)`` (new, n: its new modes and proposals, each
    earlier round weighted ``DECAY`` of the next, and this round's proposals; N: all arms'
    proposals), at most ``MAX_SHARE`` x its ``variants`` per arm. An arm that keeps finding new
    failure modes gets more of the budget, one that has run out of them (its recent rounds
    found none) less, one that finds nothing less still (never none for long: its bound grows
    as the others are tried).
    """
    live = [i for i, a in enumerate(arms) if not a.done]
    out = [0] * len(arms)
    if round_ == 0:
        for i in live:
            out[i] = arms[i].plan.variants
        return out
    left = budget
    for i in live:
        if not found.get(arms[i].scenario_id) and left > 0:
            out[i] = min(left, max(1, int(math.ceil(COVERAGE_FLOOR * arms[i].plan.variants))))
            left -= out[i]
    total = sum(a.proposed for a in arms) + budget
    while left > 0:
        best, best_index = -1, -math.inf
        for i in live:
            a = arms[i]
            room = MAX_SHARE * a.plan.variants - out[i]
            if room <= 0:
                continue
            n = a.recent_proposed + out[i]
            index = (a.recent_new + 1) / (n + 2) + UCB_C * math.sqrt(math.log(total) / max(n, 1))
            if index > best_index:
                best, best_index = i, index
        if best < 0:
            break
        give = min(CHUNK, left, MAX_SHARE * arms[best].plan.variants - out[best])
        out[best] += give
        left -= give
    return out


def adaptive_rounds(
    config: SuiteConfig,
    scenarios: Sequence[tuple[str, str]],
    run: Callable[[list[VariantTask]], Iterable[tuple[VariantTask, VariantOutcome]]],
    rejected: Counter[str],
    stored: Mapping[str, Mapping[str, Any]],
    shipper: Any = None,
) -> int:
    """Run every adaptive sweep of ``config``: per scenario and sweep a sampler (an *arm*); each
    round ``allocate`` the round's share of the budget across the arms, propose, run all as one
    batch, learn, repeat.

    The budget is the config's: ``rounds x variants`` proposals per scenario and sweep, in all;
    the rounds are the longest sweep's, each spending an even share of what is left (an arm
    that gave up leaves its share to the others).

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
    from collections import ChainMap

    from evaluators.failure_modes import ModeIndex
    from harness.runner import _seed, _sweep, _variant_task
    from harness.worker import STATUS_REJECTED
    from scenarios.library import ScenarioLibrary
    from scenarios.mutations import variant_seeds

    sweeps = [(i, m) for i, m in enumerate(config.mutations) if m.adaptive]
    if not sweeps:
        return 0
    loaded: dict[tuple[str, str], Any] = {}
    libraries: dict[str, Any] = {}
    for root, scenario_id in scenarios:
        loaded[(root, scenario_id)] = scenario = libraries.setdefault(root, ScenarioLibrary(root)).load(scenario_id)
        if shipper is not None:
            shipper.add(root, scenario_id, scenario)
    arms: list[_Arm] = []
    for i, mutation in sweeps:
        name, plan = _sweep(config, i)
        objective = mutation.parsed_objective()
        arms.extend(_Arm(i, name, plan, objective, root, loaded[(root, sid)], plan.make_sampler()) for root, sid in scenarios)
    budget = sum(config.mutations[a.sweep].rounds * a.plan.variants for a in arms)  # rounds x variants per scenario and sweep
    rounds = max(m.rounds for _, m in sweeps)
    modes = ModeIndex()
    found: Counter[str] = Counter()  # new failure modes by scenario, any sweep
    count = 0
    for round_ in range(rounds):
        if all(a.done for a in arms) or budget <= 0:
            break
        share = budget // (rounds - round_) if round_ else budget
        given = allocate(arms, share, round_, found)
        batch: list[VariantTask] = []
        entries_of: dict[int, list[tuple[dict[str, Any], VariantTask]]] = {}
        for k, (arm, n) in enumerate(zip(arms, given)):
            if n <= 0:
                continue
            points = arm.sampler.propose(n)
            seeds = variant_seeds(_seed(arm.plan.seed, arm.scenario_id, round_), len(points))
            entries_of[k] = [(point, _variant_task(arm.scenario, arm.root, arm.plan, point, seed, arm.name)) for point, seed in zip(points, seeds)]
            batch.extend(task for _, task in entries_of[k])
            arm.proposed += len(points)
            arm.recent_proposed = DECAY * arm.recent_proposed + len(points)
            arm.recent_new *= DECAY
            budget -= len(points)
        fresh: dict[str, Mapping[str, Any] | None] = {}
        rows = ChainMap(fresh, stored)  # type: ignore[arg-type]
        reasons: dict[str, str] = {}
        for task, outcome in run([t for t in batch if t.variant_id not in stored]):
            rejected_here = outcome.summary.get("status") == STATUS_REJECTED
            fresh[task.variant_id] = None if rejected_here else outcome.summary
            if rejected_here:
                reasons[task.variant_id] = str(outcome.summary.get("error"))
        for k, entries in entries_of.items():
            arm = arms[k]
            points, scores, failed = [], [], []
            for point, task in entries:  # in proposal order: the first variant of a new mode is the new one
                row = rows.get(task.variant_id)  # None: rejected (or, none should, never came back)
                new = modes.add(row) if row is not None else None
                points.append(point)
                scores.append(search_score(row, arm.objective, repeat=new is False))
                failed.append(new is not None)
                arm.recent_new += int(bool(new))
                found[arm.scenario_id] += int(bool(new))
            simulated = sum(1 for _, task in entries if rows.get(task.variant_id) is not None)
            arm.barren = 0 if simulated else arm.barren + 1
            one_reason = len({reasons.get(task.variant_id) for _, task in entries}) == 1
            if round_ == 0 and not simulated and len(entries) >= GIVE_UP_MIN_PROPOSALS and one_reason:
                arm.barren = GIVE_UP_ROUNDS  # one reason all over the space: not for this scene
            arm.done = arm.barren >= GIVE_UP_ROUNDS
            count += simulated
            arm.sampler.update(points, scores, failed)
    return count


__all__ = [
    "CHUNK", "COVERAGE_FLOOR", "DECAY", "GIVE_UP_MIN_PROPOSALS", "GIVE_UP_ROUNDS", "MAX_SHARE", "REJECTED_SCORE", "REPEAT_CLASS", "SEVERITY_CLASSES", "UCB_C",
    "Objective", "adaptive_rounds", "allocate", "search_score", "severity_class", "unavoidable_only",
]
