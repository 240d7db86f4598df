"""Runner throughput: variants per hour with 1 and 2 workers, against bare processes, and Ray's overhead.

Usage: python benchmarks/bench_runner.py [--config configs/regression.toml] [--repeats 3] [--limit N]

Every configuration runs the same variants (the suite's, made once):

- ``in-process``: one worker in this process, no executor: the variants' own compute.
- ``bare xN``: N plain processes (multiprocessing, spawn), each running an interleaved share
  with its own worker: what the machine gives without Ray.
- ``ray xN``: the Ray executor with N workers (``ray.init`` done beforehand, not counted).

Printed: wall time and variants/hour (median of ``--repeats``), the 2-vs-1 speedup of Ray against
that of bare processes measured in the same run, and Ray's overhead per variant: Ray's wall time
with one worker less the in-process time, per variant, as a share of a variant's compute (with
and without the actor's start-up, which is paid once per worker).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bare_share(args: tuple) -> tuple[float, int]:
    factory, tasks = args
    start = time.perf_counter()
    worker = factory()
    for task in tasks:
        worker.run(task)
    return time.perf_counter() - start, len(tasks)


def bare(factory, tasks, n: int) -> float:
    """Wall time of ``n`` spawned processes sharing ``tasks`` (start-up included)."""
    ctx = mp.get_context("spawn")
    start = time.perf_counter()
    with ctx.Pool(n) as pool:
        pool.map(_bare_share, [(factory, tasks[i::n]) for i in range(n)])
    return time.perf_counter() - start


def in_process(factory, tasks) -> tuple[float, float]:
    """(wall time with the worker's set-up, wall time of the variants alone) in this process."""
    start = time.perf_counter()
    worker = factory()
    worker.run(tasks[0])  # the first variant pays the imports and the first world build
    warm = time.perf_counter()
    for task in tasks[1:]:
        worker.run(task)
    end = time.perf_counter()
    per_variant = (end - warm) / max(1, len(tasks) - 1)
    return end - start, per_variant * len(tasks)


def ray_run(factory, tasks, n: int) -> tuple[float, float]:
    """(wall time, summed in-worker time) of the Ray executor with ``n`` workers."""
    from harness.executor import RayExecutor

    start = time.perf_counter()
    with RayExecutor(n, timeout_s=600) as executor:
        results = list(executor.map(factory, tasks))
    wall = time.perf_counter() - start
    bad = [r for r in results if not r.ok]
    if bad:
        print(f"  warning: {len(bad)} variants failed: {bad[0].error}", file=sys.stderr)
    return wall, sum(r.elapsed_s for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "regression.toml"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N variants (0: all)")
    args = parser.parse_args()

    import tempfile

    from harness.config import load_suite
    from harness.executor import init_ray
    from harness.runner import _worker_factory, make_tasks, resolve_sources, select_scenarios

    config = load_suite(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        scenarios = select_scenarios(config, resolve_sources(config, Path(tmp)))
        tasks, rejected = make_tasks(config, scenarios)
    if args.limit:
        tasks = tasks[: args.limit]
    factory = _worker_factory(config)
    n = len(tasks)
    print(f"suite {config.name}: {n} variants of {len(scenarios)} scenarios ({sum(rejected.values())} rejected before simulation)")
    print(f"policy {config.policy.name}, {mp.cpu_count()} cores, median of {args.repeats} runs\n")

    init_ray(num_cpus=2)
    rows: dict[str, list[float]] = {}
    extra: dict[str, list[float]] = {"in-process variants only": [], "ray x1 in-worker": []}
    for _ in range(args.repeats):
        total, compute = in_process(factory, tasks)
        rows.setdefault("in-process", []).append(total)
        extra["in-process variants only"].append(compute)
        for k in (1, 2):
            rows.setdefault(f"bare x{k}", []).append(bare(factory, tasks, k))
            wall, inside = ray_run(factory, tasks, k)
            rows.setdefault(f"ray x{k}", []).append(wall)
            if k == 1:
                extra["ray x1 in-worker"].append(inside)

    med = {name: statistics.median(times) for name, times in rows.items()}
    print(f"{'configuration':<14} {'wall s':>8} {'variants/h':>11}")
    for name in ("in-process", "bare x1", "bare x2", "ray x1", "ray x2"):
        print(f"{name:<14} {med[name]:>8.2f} {n / med[name] * 3600:>11.0f}")
    bare_speedup = med["bare x1"] / med["bare x2"]
    ray_speedup = med["ray x1"] / med["ray x2"]
    print(f"\nspeedup 2 vs 1 worker: ray {ray_speedup:.2f}x, bare processes {bare_speedup:.2f}x "
          f"(ray reaches {ray_speedup / bare_speedup:.0%} of the bare speedup)")
    compute = statistics.median(extra["in-process variants only"])
    per_variant = compute / n
    overhead = (med["ray x1"] - med["in-process"]) / n
    inside = statistics.median(extra["ray x1 in-worker"])
    dispatch = (med["ray x1"] - inside) / n
    print(f"variant compute {per_variant * 1e3:.1f} ms; ray overhead per variant vs in-process: "
          f"{overhead * 1e3:.1f} ms ({overhead / per_variant:.1%} of a variant, actor start-up included)")
    print(f"ray wall time outside the workers' variant code: {dispatch * 1e3:.1f} ms per variant "
          f"({dispatch / per_variant:.1%}; actor start-up, imports and chunk round trips)")


if __name__ == "__main__":
    main()
