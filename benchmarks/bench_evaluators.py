"""Time to evaluate one rollout on every metric: the median over many runs.

Usage: python benchmarks/bench_evaluators.py [--data ../shared/data] [--repeats 200]

The rollout is ``Rollout.from_log`` of the Waymo JSON scenario with the most agents in the data
directory (91 steps, about 80 agents), or, when ``scenarios.load`` cannot read it, a synthetic
80-agent straight-road scene of 91 steps; the script prints which. Figures:

- warm: ``evaluators.evaluate`` with the map's geometry cached (every rollout of a scenario after
  the first, e.g. the variants a worker runs), wall-clock median and 90th percentile, and the
  process's CPU time per run (less sensitive to other load on the machine);
- cold: the first rollout of a map, building its geometry (drivable-area union, lane tree) too;
- the log baseline (verdicts against the log, on by default): scoring the scenario's own log the
  first time, the cached lookup every later rollout of it pays, and a warm evaluation with
  ``judge_against_log = false`` for comparison;
- per evaluator: the median share of each evaluator, on a fresh context (the first to need a
  shared quantity, such as the collision events, pays for it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import evaluators
import scenarios
from evaluators.against_log import LogBaseline, clear_log_cache
from evaluators.context import Context, MapGeometry, clear_map_cache
from scenarios.synthetic import AgentSpec, scene, straight_road
from scenarios.rollout import Rollout


def pick_scenario(data: Path) -> tuple[scenarios.Scenario, str]:
    """The Waymo JSON scenario with the most agents, else a synthetic 80-agent scene."""
    best = None
    files = sorted((data / "waymo_json").glob("*.json")) if (data / "waymo_json").is_dir() else []
    for path in files:
        try:
            for s in scenarios.load(path):
                if best is None or s.num_agents > best[0].num_agents:
                    best = (s, f"Waymo JSON {path.name}")
        except Exception as exc:  # noqa: BLE001  (any importer failure falls back to synthetic)
            print(f"cannot load {path.name}: {exc}", file=sys.stderr)
    if best is not None:
        return best
    rng = np.random.default_rng(0)
    agents = [AgentSpec("ego", 0.0, speed=10.0)]
    for i in range(79):
        x, lane = float(rng.uniform(-40, 200)), int(rng.integers(0, 3))
        agents.append(AgentSpec(f"a{i}", x, y=3.5 * lane, speed=float(rng.uniform(0, 15)), accel=float(rng.uniform(-1, 1))))
    return scene(agents, road=straight_road(3)), "synthetic 80-agent straight road (no Waymo JSON importable)"


def time_ms(fn, repeats: int, clock=time.perf_counter) -> list[float]:
    out = []
    for _ in range(repeats):
        start = clock()
        fn()
        out.append((clock() - start) * 1e3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    s, what = pick_scenario(args.data)
    rollout = Rollout.from_log(s)
    print(f"rollout: {what}: {s.id}, {rollout.num_steps} steps, {rollout.num_agents} agents, "
          f"{len(s.road_map.lanes)} lanes, {len(s.road_map.features)} map features")  # fmt: skip

    cold = []
    for _ in range(max(3, args.repeats // 20)):
        clear_map_cache()
        cold.extend(time_ms(lambda: evaluators.evaluate(rollout, s), 1))
    evaluators.evaluate(rollout, s)  # warm the cache
    warm = time_ms(lambda: evaluators.evaluate(rollout, s), args.repeats)
    cpu = time_ms(lambda: evaluators.evaluate(rollout, s), args.repeats, time.process_time)
    geometry = time_ms(lambda: MapGeometry.build(s.road_map), max(3, args.repeats // 20))
    warm.sort()
    print(f"warm (map geometry cached): median {statistics.median(warm):.2f} ms, "
          f"p90 {warm[int(0.9 * (len(warm) - 1))]:.2f} ms over {len(warm)} runs; "
          f"CPU time {statistics.mean(cpu):.2f} ms per run (mean)")  # fmt: skip
    print(f"cold (first rollout of the map): median {statistics.median(cold):.2f} ms "
          f"(building the map geometry alone: {statistics.median(geometry):.2f} ms)")  # fmt: skip

    config = evaluators.EvaluatorConfig()
    absolute = config.replace(judge_against_log=False)

    def score_log() -> None:
        clear_log_cache()
        LogBaseline.of(s, config)

    first = time_ms(score_log, max(3, args.repeats // 20))
    lookup = time_ms(lambda: LogBaseline.of(s, config), args.repeats)
    plain = time_ms(lambda: evaluators.evaluate(rollout, s, absolute), args.repeats)
    print(f"log baseline: scoring the log {statistics.median(first):.2f} ms once per scenario, "
          f"cached lookup {statistics.median(lookup):.3f} ms; warm evaluation without judging against "
          f"the log {statistics.median(plain):.2f} ms")  # fmt: skip

    shares: dict[str, list[float]] = {}
    for _ in range(max(10, args.repeats // 4)):
        ctx = Context(rollout, s, config)
        for cls in evaluators.select():
            start = time.perf_counter()
            cls(config).evaluate(rollout, s, ctx)
            shares.setdefault(cls.name, []).append((time.perf_counter() - start) * 1e3)
    print("per evaluator (median ms, fresh context each run):")
    for name, times in shares.items():
        print(f"  {name:<20} {statistics.median(times):6.2f}")


if __name__ == "__main__":
    main()
