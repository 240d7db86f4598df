"""The adaptive search's budget: a bandit on new failure modes, a sampler that fills in around known failures."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from harness.config import parse_suite
from harness.search import COVERAGE_FLOOR, MAX_SHARE, _Arm, adaptive_rounds, allocate
from harness.worker import VariantOutcome
from scenarios.library import ScenarioLibrary
from scenarios.mutations.samplers import CrossEntropySampler
from scenarios.mutations.spaces import SearchSpace, Uniform

SAMPLE = "commonroad-USA_US101-4_1_T-1"


def arm(scenario_id: str, proposed: int, new_modes: int, variants: int = 8, done: bool = False) -> _Arm:
    class Plan:
        pass

    plan = Plan()
    plan.variants = variants

    class Scenario:
        id = scenario_id

    return _Arm(0, "sweep", plan, None, "", Scenario(), None, proposed=proposed,  # type: ignore[arg-type]
                recent_proposed=proposed, recent_new=new_modes, done=done)  # fmt: skip


def test_the_bandit_gives_the_budget_to_the_arm_that_finds_new_modes_and_keeps_barren_scenarios_alive():
    arms = [arm("a", 8, 4), arm("b", 8, 0), arm("c", 8, 0), arm("d", 8, 1, done=True)]
    assert allocate(arms, 32, 0, {}) == [8, 8, 8, 0]  # the first round: a uniform look at every live arm
    found = {"a": 4, "b": 2}  # b's scenario failed in another sweep; c's never did
    given = allocate(arms, 32, 1, found)
    assert sum(given) == 32 and given[3] == 0
    assert given[2] >= COVERAGE_FLOOR * 8  # coverage: c's scenario has no failure yet
    assert given[0] > given[1] and given[0] > given[2]
    assert allocate(arms, 200, 1, found)[0] == MAX_SHARE * 8  # at most this much per arm and round
    # a scenario with failures found elsewhere gets no floor: b gets only what its bound earns
    assert allocate([arm("a", 8, 4), arm("b", 8, 0)], 8, 1, {"a": 4, "b": 2}) == [8, 0]
    # an arm that has run out of new modes (its last round found none) loses the budget to one still finding them
    spent = arm("a", 24, 4)
    spent.recent_proposed, spent.recent_new = 0.5 * 8 + 16, 0.5 * 4  # 4 modes in round 0, none in 16 proposals since
    given = allocate([spent, arm("e", 24, 3)], 16, 2, {"a": 4, "e": 3})
    assert given[1] > given[0] and sum(given) == 16


def two_regions(u: np.ndarray) -> tuple[bool, float]:
    """A planner that fails in two discs of the unit square, far apart; the score is the distance to the nearer one."""
    d = min(np.hypot(*(u - (0.2, 0.2))) - 0.12, np.hypot(*(u - (0.8, 0.75))) - 0.12)
    return bool(d <= 0), float(d)


def search(infill: float, explore: float, seed: int, rounds: int = 8, n: int = 12) -> tuple[set[int], set[tuple[int, int]]]:
    """Regions found and distinct failure cells (0.05 wide: one mode each) of a cross-entropy search scored as
    ``harness.search`` scores (a failure in a cell found before scores worse than any non-failure)."""
    space = SearchSpace([("lead_brake", {"decel": Uniform(1.0, 2.0, "m/s2"), "onset_s": Uniform(0.0, 1.0, "s")})])
    sampler = CrossEntropySampler(space, seed, infill=infill, explore=explore)
    cells: set[tuple[int, int]] = set()
    regions: set[int] = set()
    for _ in range(rounds):
        points = sampler.propose(n)
        scores, failed = [], []
        for p in points:
            u = space.encode(p)
            fails, d = two_regions(u)
            cell = (int(u[0] / 0.05), int(u[1] / 0.05))
            repeat = fails and cell in cells
            if fails:
                cells.add(cell)
                regions.add(int(u[0] > 0.5))
            scores.append(10.0 + d if repeat else d)
            failed.append(fails)
        sampler.update(points, scores, failed)
    return regions, cells


def test_filling_in_around_failures_finds_both_failure_regions_and_more_distinct_failures():
    """Plain cross-entropy collapses onto the first failure region it finds (both in 1 of 6 seeds);
    filling in and exploring away from what was tried reaches the other region too (in every
    seed), with more distinct failures from the same evaluations."""
    plain = [search(0.0, 0.0, seed) for seed in range(6)]
    novel = [search(0.6, 0.2, seed) for seed in range(6)]
    assert sum(len(r) == 2 for r, _ in plain) <= 2
    assert all(len(r) == 2 for r, _ in novel)
    assert sum(len(c) for _, c in novel) >= 1.2 * sum(len(c) for _, c in plain)


def test_filled_in_points_are_spread_away_from_every_point_tried():
    space = SearchSpace([("lead_brake", {"decel": Uniform(1.0, 2.0, "m/s2"), "onset_s": Uniform(0.0, 1.0, "s")})])
    sampler = CrossEntropySampler(space, 3, infill=1.0, explore=0.0)
    points = sampler.propose(8)
    sampler.update(points, [0.0] + [1.0] * 7, [True] + [False] * 7)
    tried = np.array([space.encode(p) for p in points])
    fresh = np.array([space.encode(p) for p in sampler.propose(6)])
    near = np.linalg.norm(fresh - tried[0], axis=1)
    assert (near < 0.5).all()  # around the failure ...
    gaps = np.linalg.norm(fresh[:, None] - fresh[None, :], axis=2)[np.triu_indices(6, 1)]
    assert gaps.min() > 0.04 and np.linalg.norm(fresh[:, None] - tried[None], axis=2).min() > 0.02  # ... never twice in one place


def test_the_search_moves_its_budget_to_the_scenario_that_still_yields_new_modes():
    """A planner that fails on one scenario at a moment set by the sampled deceleration (a new
    mode every second of it) and never on the other: after the first round, the failing scenario
    gets the larger share; the other keeps its coverage floor; the budget is spent exactly."""
    config = parse_suite(
        {
            "scenarios": {"sources": ["sample"]},
            "policy": {"name": "idm"},
            "mutations": [{
                "name": "brake", "operator": "lead_brake", "sampler": "cem", "variants": 6, "rounds": 4,
                "params": {"decel": {"uniform": [1.0, 9.0], "unit": "m/s2"}},
            }],
            "run": {"seed": 0, "include_original": False},
        }
    )  # fmt: skip
    root = str(ScenarioLibrary("sample").root)
    failing, clean = f"{SAMPLE}.ego-389", f"{SAMPLE}.ego-400"
    proposed: list[Counter[str]] = []

    def run(batch):
        proposed.append(Counter(task.scenario_id for task in batch))
        for task in batch:
            decel = json.loads(task.params_json)["lead_brake.decel"]
            row = {"variant_id": task.variant_id, "scenario_id": task.scenario_id, "status": "ok", "collisions": 0,
                   "at_fault_collisions": 0, "closed_loop_score": 1.0, "drivable_area_compliance": 1.0, "red_light_violations": 0}  # fmt: skip
            if task.scenario_id == failing:
                row.update(at_fault_collisions=1, collisions=1, closed_loop_score=0.0, first_at_fault_agent="lead",
                           first_at_fault_collision_s=decel, first_at_fault_x_m=0.0, first_at_fault_y_m=0.0)  # fmt: skip
            yield task, VariantOutcome(row)

    simulated = adaptive_rounds(config, [(root, failing), (root, clean)], run, Counter(), {})
    assert simulated == sum(sum(c.values()) for c in proposed) == 4 * 6 * 2
    assert proposed[0] == Counter({failing: 6, clean: 6})
    for later in proposed[1:]:
        assert later[failing] > later[clean] >= COVERAGE_FLOOR * 6
