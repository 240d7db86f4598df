"""Benchmark of the mutation operators: variants generated per second, per operator.

Runs on the largest real scenario: the Waymo JSON log with the most agents when one imports,
else the largest scenario any importer reads, else a hand-built scene (it says which). For each
operator it proposes ``--n`` parameter sets from a random sampler over a typical space and builds
them with ``generate_variants`` (operator, variant id, plausibility check, rejections counted),
``--runs`` times; it prints the median rate of variants tried per second, and how many of them
were accepted or rejected and why. Not a test: nothing here asserts a time.

    python benchmarks/bench_mutations.py
    python benchmarks/bench_mutations.py --n 100 --runs 7 --scenario ../shared/data/commonroad/USA_US101-4_1_T-1.xml
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scenarios import Scenario, ScenarioError, load  # noqa: E402
from scenarios.mutations import Choice, RandomSampler, SearchSpace, Uniform, generate_variants, names  # noqa: E402
from scenarios.synthetic import AgentSpec, scene  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

#: A typical parameter space per operator (what a suite would sample).
SPACES: dict[str, dict] = {
    "lead_brake": {"decel": Uniform(2.0, 9.0, "m/s2"), "onset_s": Uniform(0.0, 6.0, "s")},
    "cut_in": {"gap_m": Uniform(3.0, 30.0, "m"), "onset_s": Uniform(0.0, 5.0, "s"), "rel_speed": Uniform(-4.0, 1.0, "m/s")},
    "retime": {"agent": Choice(("random", "lead")), "scale": Uniform(0.5, 1.5), "from_s": Uniform(0.0, 4.0, "s")},
    "time_shift": {"agent": Choice(("random", "lead")), "shift_s": Uniform(-2.0, 2.0, "s")},
    "lateral_offset": {"agent": Choice(("random", "lead")), "offset_m": Uniform(-1.0, 1.0, "m"), "ramp_s": Uniform(0.0, 2.0, "s")},
    "remove_agents": {"fraction": Uniform(0.0, 0.5)},
    "traffic_density": {"scale": Uniform(0.5, 1.5)},
    "perception_noise": {"position_m": Uniform(0.0, 1.0, "m"), "heading_rad": Uniform(0.0, 0.1, "rad"), "dropout": Uniform(0.0, 0.3)},
    "road_friction": {"mu": Uniform(0.1, 1.0)},
    "ego_latency": {"latency_s": Uniform(0.0, 0.5, "s")},
    "ego_speed_offset": {"delta": Uniform(-3.0, 3.0, "m/s")},
    "agents_mode": {"mode": Choice(("replay", "reactive"))},
    "reactive_agents": {"fraction": Uniform(0.0, 1.0)},
}


def candidates(data: Path) -> list[tuple[Path, Scenario]]:
    out = []
    for path in sorted(p for p in data.rglob("*") if p.is_file() and p.suffix != ".md"):
        try:
            out.extend((path, s) for s in load(path))
        except ScenarioError:
            continue
    return out


def pick_scenario(found: list[tuple[Path, Scenario]], explicit: Path | None) -> tuple[Scenario, str]:
    if explicit is not None:
        scenario = max(load(explicit), key=lambda s: s.num_agents)
        return scenario, f"{explicit} (asked for)"
    waymo = [(p, s) for p, s in found if s.provenance.dataset.startswith("waymo")]
    if waymo:
        path, scenario = max(waymo, key=lambda ps: ps[1].num_agents)
        return scenario, f"{path} (the Waymo JSON log with the most agents)"
    if found:
        path, scenario = max(found, key=lambda ps: ps[1].num_agents)
        return scenario, f"{path} (no Waymo JSON imports: the largest scenario that does)"
    agents = [AgentSpec("ego", 0.0, speed=15.0)] + [AgentSpec(f"car{i}", 15.0 * (i // 2 + 1), y=3.5 * (i % 2), speed=14.0) for i in range(40)]
    return scene(agents, num_steps=91), "a hand-built 41-agent scene (no real log imports)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--scenario", type=Path, default=None, help="a log file to use instead of the largest")
    parser.add_argument("--n", type=int, default=50, help="variants per run and operator")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    found = candidates(args.data)
    scenario, why = pick_scenario(found, args.scenario)
    print(f"scenario: {scenario.id}: {scenario.num_agents} agents x {scenario.num_steps} steps, {len(scenario.road_map.lanes)} lanes")
    print(f"  from {why}")
    print(f"{args.n} variants per run, median of {args.runs} runs\n")
    print(f"{'operator':<18} {'variants/s':>10} {'ms/variant':>10} {'accepted':>9}  rejected (by reason)")
    inapplicable = []
    for name in names():
        accepted = row(name, scenario, args.n, args.runs)
        if accepted == 0:
            inapplicable.append(name)
    # an operator that never applies here is timed again on the largest scenario where it does
    for name in inapplicable:
        for _, other in sorted(found, key=lambda ps: -ps[1].num_agents):
            if other is not scenario and row(name, other, args.n, 1, probe=True):
                print(f"  ({name} never applies to {scenario.id}; above: on {other.id}, {other.num_agents} agents)")
                break


def row(name: str, scenario: Scenario, n: int, runs: int, probe: bool = False) -> int:
    """Time ``runs`` batches of ``n`` variants of operator ``name``; print a line unless probing
    finds none accepted. Returns the number accepted."""
    space = SearchSpace.single(name, **SPACES.get(name, {}))
    chains = [space.chain(p) for p in RandomSampler(space, seed=0).propose(n)]
    batch = generate_variants(scenario, chains, seed=0)
    if probe and not batch.accepted:
        return 0
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        batch = generate_variants(scenario, chains, seed=0)
        rates.append(n / (time.perf_counter() - start))
    rate = statistics.median(rates)
    rejected = ", ".join(f"{k} {v}" for k, v in Counter(batch.rejected).most_common()) or "-"
    print(f"{name:<18} {rate:>10.0f} {1000 / rate:>10.2f} {len(batch.accepted):>5}/{n:<3}  {rejected}")
    return len(batch.accepted)

if __name__ == "__main__":
    main()
