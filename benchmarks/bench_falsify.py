"""Falsification: the adaptive search against plain random sampling, with the same simulation budget.

Usage: python benchmarks/bench_falsify.py [--quick] [--arms] [--curve] [--config configs/falsify.toml] [--policies idm constant_velocity]

Scenarios: the built-in sample (NGSIM US-101) and every log of ``../shared/data`` but its
CommonRoad file (the sample's own source): Waymo (JSON and TFRecord), nuScenes (ScenarioNet),
Argoverse 2 (motion forecasting and sensor), imported once into a temporary library. Sweeps: the
``[[mutations]]`` of the config (``configs/falsify.toml``), each with its parameter space.

For each policy:

- **adaptive**: ``harness.search.adaptive_rounds``, the suite's cross-entropy sweeps as
  ``drivetwin run`` runs them (rejections fed back, severity first, the sweep's objective);
- **random**: the same spaces sampled uniformly (``RandomSampler``), in the same rounds of
  ``variants`` proposals per scenario and sweep, until it has simulated as many variants in all
  as the adaptive search did (the budget is simulations; rejected proposals cost their
  mutation's and checks' CPU time, as they do the adaptive search's).

Every variant runs in this process (mutation, plausibility, the twin, the evaluators), so the
process's CPU time is the cost. Printed per method: variants simulated, CPU seconds, distinct
at-fault failure modes (``evaluators.failure_modes``: same scenario, same agent, within 1 s and
2 m) and modes per CPU-minute; the adaptive/random ratio of that; and the share of scenarios that
have another road user within 30 m of the ego's logged path on which an at-fault failure of the
policy was found. Targets (issue 15, for ``idm``): ratio >= 3, share >= 0.5.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
#: ../shared/data folders imported (commonroad is the sample's source file, already in it).
SHARED_FOLDERS = ("waymo_json", "womd_tfrecord", "scenarionet", "argoverse2", "argoverse2_sensor")
#: A scenario counts for the coverage figure when another road user comes this close [m] to the ego's logged path.
NEAR_PATH_M = 30.0


def build_library(folder: Path, quick: bool) -> str:
    """Import ../shared/data's logs (logged egos) into a library under ``folder``; its root."""
    from harness.sources import iter_sources
    from scenarios import load_many
    from scenarios.library import ScenarioLibrary

    library = ScenarioLibrary.create(folder / "shared", exist_ok=True)
    names = ("waymo_json", "scenarionet") if quick else SHARED_FOLDERS
    files = list(iter_sources([str(SHARED / name) for name in names if (SHARED / name).exists()]))
    for outcome in load_many(files, egos="logged"):
        if outcome.ok:
            library.append(outcome.scenarios)
        else:
            print(f"bench_falsify: skipped {outcome.error}", file=sys.stderr)
    return str(library.root)


def near_road_user(scenario: Any, within_m: float = NEAR_PATH_M) -> bool:
    """Whether another road user (vehicle, pedestrian, cyclist) comes within ``within_m`` [m] of the ego's logged path."""
    import shapely

    from scenarios.model import AgentType

    tr = scenario.tracks
    ego = scenario.ego_index
    valid = tr.valid[ego]
    if valid.sum() < 2:
        return False
    path = shapely.LineString(np.column_stack([tr.x[ego][valid], tr.y[ego][valid]]))
    road_users = {int(AgentType.VEHICLE), int(AgentType.PEDESTRIAN), int(AgentType.CYCLIST)}
    for row in range(tr.num_agents):
        if row == ego or int(tr.agent_types[row]) not in road_users or not tr.valid[row].any():
            continue
        v = tr.valid[row]
        if shapely.distance(path, shapely.points(tr.x[row][v], tr.y[row][v])).min() <= within_m:
            return True
    return False


class Runner:
    """Runs tasks in this process with one worker and keeps every outcome's summary row."""

    def __init__(self, config: Any) -> None:
        from harness.runner import _worker_factory

        self.worker = _worker_factory(config)()
        self.rows: list[dict[str, Any]] = []
        self.simulated: Counter[tuple[str, str]] = Counter()
        self.refused: Counter[tuple[str, str]] = Counter()
        self.cpu: Counter[tuple[str, str]] = Counter()
        self.reasons: dict[tuple[str, str], Counter[str]] = {}
        self.rejected = 0
        #: CPU seconds [s] from this runner's start until each row of ``rows`` was simulated (rejections' cost included).
        self.row_cpu: list[float] = []
        self.started = time.process_time()

    def __call__(self, batch: list[Any]) -> list[tuple[Any, Any]]:
        out = []
        for task in batch:
            started = time.process_time()
            outcome = self.worker.run(task)
            arm = (task.scenario_id, task.mutation)
            self.cpu[arm] += time.process_time() - started
            if outcome.summary.get("status") == "rejected":
                self.rejected += 1
                self.refused[arm] += 1
                self.reasons.setdefault(arm, Counter())[str(outcome.summary.get("error")).split(":")[0][:40]] += 1
            else:
                self.rows.append(outcome.summary)
                self.row_cpu.append(time.process_time() - self.started)
                self.simulated[arm] += 1
            out.append((task, outcome))
        return out

    def close(self) -> None:
        self.worker.close()


def print_arms(runners: dict[str, Any], modes: dict[str, pd.DataFrame]) -> None:
    """Where each method's budget went, per scenario and sweep: proposals rejected, variants
    simulated, CPU seconds [s], at-fault variants and distinct modes (``--arms``)."""
    arms = sorted(set().union(*(set(r.simulated) | set(r.refused) for r in runners.values())))
    print(f"    {'scenario':<40} {'sweep':<18} " + " ".join(f"{m + ' rej/sim/cpu/hit/modes':>32}" for m in runners))
    for arm in arms:
        cells = []
        for method, runner in runners.items():
            rows = [r for r in runner.rows if (r.get("scenario_id"), r.get("mutation")) == arm]
            hits = sum(1 for r in rows if (r.get("at_fault_collisions") or 0) > 0)
            table = modes[method]
            n = int(((table["scenario_id"] == arm[0]) & (table["mutation"] == arm[1])).sum()) if len(table) else 0
            cells.append(f"{runner.refused[arm]:>6}/{runner.simulated[arm]:>4}/{runner.cpu[arm]:>6.1f}/{hits:>4}/{n:>4}")
        why = runners["adaptive"].reasons.get(arm) if "adaptive" in runners else None
        print(f"    {arm[0][:40]:<40} {arm[1][:18]:<18} " + " ".join(f"{c:>32}" for c in cells) + (f"  {why.most_common(1)[0][0]}" if why else ""))


#: ``--curve``: the shares of the simulation budget the anytime curve is printed at.
CURVE_POINTS = (0.10, 0.25, 0.50, 0.75, 1.00)
#: ... and the shares of the modes the two methods found together whose cost is printed.
REACH_SHARES = (0.5, 0.9)


def first_found(rows: list[dict[str, Any]], modes: pd.DataFrame) -> list[int]:
    """Per failure mode of ``modes`` (a ``failure_modes`` table), how many simulations of ``rows``
    (in the order simulated) it took to find it: 1 + the position of its first variant there;
    sorted. A mode none of whose variants is in ``rows`` is left out."""
    position: dict[str, int] = {}
    for i, row in enumerate(rows):
        position.setdefault(str(row.get("variant_id")), i)
    found = []
    for variants in modes["variants"] if len(modes) else []:
        at = [position[v] for v in variants if v in position]
        if at:
            found.append(min(at) + 1)
    return sorted(found)


def modes_within(found: Sequence[int], k: int) -> int:
    """How many of the modes found after ``found`` simulations (``first_found``) the first ``k`` found."""
    return bisect.bisect_right(list(found), k)


def cpu_after(runner: Runner, k: int) -> float:
    """CPU seconds [s] the runner had spent when its ``k``-th simulation finished (0 for k = 0)."""
    return runner.row_cpu[min(k, len(runner.row_cpu)) - 1] if k > 0 and runner.row_cpu else 0.0


def print_curve(runners: dict[str, Runner], modes: dict[str, pd.DataFrame], union: pd.DataFrame, budget: int) -> None:
    """The anytime curve (``--curve``): each method's distinct at-fault modes after the first k
    simulations (its own ``failure_modes`` groups, each counted at its first variant) and the CPU
    seconds [s] spent until then (rejected proposals included), at ``CURVE_POINTS`` of the budget,
    with the adaptive/random ratios of modes and of modes per CPU-minute; then the simulations
    and CPU each method needed to find ``REACH_SHARES`` of the modes the two found together."""
    found = {m: first_found(r.rows, modes[m]) for m, r in runners.items()}
    a, b = "adaptive", "random"

    def ratio(x: float, y: float) -> str:
        return f"{x / y:.2f}" if y > 0 else ("-" if x == 0 else "inf")

    print("  anytime: distinct at-fault modes after the first k simulations (in the order simulated) and CPU s until then")
    print(f"    {'budget':>6} {'k':>6} {'adaptive modes':>14} {'CPU s':>7} {'random modes':>12} {'CPU s':>7} {'modes a/r':>9} {'modes/CPU-min a/r':>17}")
    for share in CURVE_POINTS:
        k = max(1, int(math.ceil(share * budget)))
        n = {m: modes_within(found[m], k) for m in runners}
        cpu = {m: cpu_after(r, k) for m, r in runners.items()}
        rate = {m: n[m] / (cpu[m] / 60.0) if cpu[m] > 0 else 0.0 for m in runners}
        print(f"    {share:>6.0%} {k:>6} {n[a]:>14} {cpu[a]:>7.1f} {n[b]:>12} {cpu[b]:>7.1f} {ratio(n[a], n[b]):>9} {ratio(rate[a], rate[b]):>17}")
    together = {m: first_found(r.rows, union) for m, r in runners.items()}
    for share in REACH_SHARES:
        need = int(math.ceil(share * len(union)))
        cells = []
        for m, r in runners.items():
            if need == 0:
                cells.append(f"{m} 0 simulations")
            elif len(together[m]) >= need:
                k = together[m][need - 1]
                cells.append(f"{m} {k} simulations / {cpu_after(r, k):.1f} CPU s")
            else:
                cells.append(f"{m} not within its {len(r.rows)} simulations ({len(together[m])} found)")
        print(f"  budget to find {share:.0%} ({need} of {len(union)}) of the modes the two found together: " + "; ".join(cells))


def run_adaptive(config: Any, scenarios: list[tuple[str, str]]) -> tuple[Runner, float]:
    from harness.search import adaptive_rounds

    runner = Runner(config)
    started = time.process_time()
    adaptive_rounds(config, scenarios, runner, Counter(), {})
    cpu = time.process_time() - started
    runner.close()
    return runner, cpu


def run_random(config: Any, scenarios: list[tuple[str, str]], budget: int) -> tuple[Runner, float]:
    """Uniform proposals, in the adaptive search's rounds (``variants`` per scenario and sweep each),
    until ``budget`` variants were simulated in all (or 20 x the adaptive search's rounds ran)."""
    from harness.runner import _seed, _sweep, _variant_task
    from scenarios.library import ScenarioLibrary
    from scenarios.mutations import RandomSampler, variant_seeds

    runner = Runner(config)
    started = time.process_time()
    libraries: dict[str, Any] = {}
    sweeps = [(_sweep(config, i), m) for i, m in enumerate(config.mutations)]
    states = {}
    for (name, plan), _ in sweeps:
        for root, scenario_id in scenarios:
            scenario = libraries.setdefault(root, ScenarioLibrary(root)).load(scenario_id)
            states[(name, scenario_id)] = (root, scenario, plan, RandomSampler(plan.space, _seed(plan.seed, scenario_id, "random")))
    most_rounds = 20 * max(m.rounds for m in config.mutations)
    for round_ in range(most_rounds):
        for (name, scenario_id), (root, scenario, plan, sampler) in states.items():
            points = sampler.propose(plan.variants)
            seeds = variant_seeds(_seed(plan.seed, scenario_id, "random", round_), len(points))
            for p, seed in zip(points, seeds):
                if len(runner.rows) >= budget:
                    break
                runner([_variant_task(scenario, root, plan, p, seed, name)])
        if len(runner.rows) >= budget:
            break
    cpu = time.process_time() - started
    runner.close()
    return runner, cpu


def main() -> None:
    from evaluators.failure_modes import failure_modes
    from harness.config import load_suite
    from harness.runner import select_scenarios
    from scenarios.library import ScenarioLibrary

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "falsify.toml"))
    parser.add_argument("--policies", nargs="+", default=["idm", "constant_velocity"])
    parser.add_argument("--quick", action="store_true", help="4 sample scenarios and the Waymo JSON and nuScenes logs, 2 rounds (< 2 min)")
    parser.add_argument("--sample-limit", type=int, default=None, metavar="N", help="sample scenarios used (default: all, 4 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=None, metavar="N", help="rounds of every sweep (default: the config's, 2 with --quick)")
    parser.add_argument("--arms", action="store_true", help="print where each method's budget went, per scenario and sweep")
    parser.add_argument("--curve", action="store_true", help="print the anytime curve: modes found and CPU spent at 10..100%% of the budget")
    args = parser.parse_args()

    base = load_suite(args.config)
    with tempfile.TemporaryDirectory(prefix="bench_falsify-") as tmp:
        shared = build_library(Path(tmp), args.quick)
        sample_limit = args.sample_limit if args.sample_limit is not None else (4 if args.quick else 0)
        scenarios_cfg = dataclasses.replace(base.scenarios, sources=("sample",), limit=sample_limit, ids=(), datasets=(), tags=())
        chosen = select_scenarios(base.replace(scenarios=scenarios_cfg), [str(ScenarioLibrary("sample").root)])
        chosen += [(shared, sid) for sid in ScenarioLibrary(shared).summaries()["id"].sort_values()]
        near = {sid: near_road_user(ScenarioLibrary(root).load(sid)) for root, sid in chosen}
        sweeps = base.mutations
        if args.quick or args.rounds:
            sweeps = tuple(dataclasses.replace(m, rounds=args.rounds or min(m.rounds, 2)) for m in sweeps)
        datasets = Counter(ScenarioLibrary(root).load(sid).provenance.dataset for root, sid in chosen)
        print(f"{len(chosen)} scenarios ({', '.join(f'{d} {n}' for d, n in sorted(datasets.items()))}); "
              f"{sum(near.values())} with another road user within {NEAR_PATH_M:g} m of the ego's path")  # fmt: skip
        print("sweeps: " + "; ".join(f"{m.label(i)} ({m.rounds} rounds x {m.variants_per_round()})" for i, m in enumerate(sweeps)))
        for policy in args.policies:
            from harness.config import PolicyConfig, RunConfig

            config = base.replace(policy=PolicyConfig(name=policy), mutations=sweeps,
                                  run=dataclasses.replace(base.run, seed=args.seed, executor="sequential", workers=1))  # fmt: skip
            results = {}
            adaptive, cpu_a = run_adaptive(config, chosen)
            results["adaptive"] = (adaptive, cpu_a)
            results["random"] = run_random(config, chosen, len(adaptive.rows))
            print(f"\npolicy {policy}:")
            print(f"  {'method':<9} {'simulated':>9} {'rejected':>8} {'CPU s':>7} {'at-fault variants':>17} {'modes':>5} {'modes/CPU-min':>13} {'scenarios hit':>13}")
            rates = {}
            found_in: dict[str, set[str]] = {}
            tables = {}
            for method, (runner, cpu) in results.items():
                summary = pd.DataFrame(runner.rows)
                modes = tables[method] = failure_modes(summary)
                rates[method] = len(modes) / (cpu / 60.0) if cpu > 0 else 0.0
                found_in[method] = set(modes["scenario_id"])
                hits = int((pd.to_numeric(summary.get("at_fault_collisions"), errors="coerce").fillna(0) > 0).sum()) if len(summary) else 0
                print(f"  {method:<9} {len(runner.rows):>9} {runner.rejected:>8} {cpu:>7.1f} {hits:>17} {len(modes):>5} {rates[method]:>13.2f} {len(found_in[method]):>13}")
                for m in modes.head(8).itertuples():
                    print(f"      #{m.mode} {m.scenario_id}: agent {m.agent_id} at {m.t_s:.1f} s, ({m.x_m:.1f}, {m.y_m:.1f}) m, {m.count} variants [{m.mutation}] -> {m.variant_id}")
                if len(modes) > 8:
                    print(f"      ... {len(modes) - 8} more")
            if args.arms:
                print_arms({method: runner for method, (runner, _) in results.items()}, tables)
            union = failure_modes(pd.DataFrame([row for runner, _ in results.values() for row in runner.rows]))
            if args.curve:
                print_curve({method: runner for method, (runner, _) in results.items()}, tables, union, len(adaptive.rows))
            print(f"  distinct at-fault failure modes the two found together: {len(union)} (how many the budget can find: "
                  "when random alone finds most of them, no search can find 3x as many)")  # fmt: skip
            ratio = rates["adaptive"] / rates["random"] if rates["random"] > 0 else float("inf")
            print(f"  distinct at-fault failure modes per CPU-minute, adaptive / random: {ratio:.2f} (target >= 3)")
            eligible = {sid for sid, ok in near.items() if ok}
            for method in results:
                covered = len(eligible & found_in[method])
                share = covered / len(eligible) if eligible else float("nan")
                print(f"  scenarios with a road user within {NEAR_PATH_M:g} m of the ego's path where the {method} search found an "
                      f"at-fault failure of {policy}: {covered}/{len(eligible)} = {share:.2f} (target >= 0.5)")  # fmt: skip


if __name__ == "__main__":
    main()
