"""Runner throughput: variants per hour with 1 and 2 workers, Ray against bare processes, Ray's overhead.

Usage: python benchmarks/bench_runner.py [--config configs/regression.toml] [--repeats 3] [--limit N]

Every configuration runs the same variants (the suite's, made once). Start-up (imports, the
first pybullet world: paid once per worker per run) is timed apart from the work:

- ``in-process``: one worker in this process: the variants' own compute, nothing else.
- ``bare xN``: N plain processes (multiprocessing, spawn), each warming its own worker and then
  running an interleaved share: what the machine gives without Ray.
- ``ray xN``: the Ray executor with N workers, warmed with ``RayExecutor.ready`` (``ray.init``
  is done beforehand, not counted), then ``map``.

Printed (medians of ``--repeats``): start-up and work wall times, variants/hour, the 2-vs-1
speedup of Ray's work against bare processes' work measured in the same run, and Ray's overhead
per variant: its work wall time with one worker less the variants' own time inside the worker,
as a share of a variant's compute.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bare_share(args: tuple) -> tuple[float, float, float]:
    """(start, set-up seconds, work seconds) of one bare process's share."""
    factory, tasks = args
    t0 = time.perf_counter()
    worker = factory()
    worker.warm()
    t1 = time.perf_counter()
    for task in tasks:
        worker.run(task)
    return t0, t1 - t0, time.perf_counter() - t1


def bare(factory, tasks, n: int) -> tuple[float, float]:
    """(start-up wall, work wall) of ``n`` spawned processes sharing ``tasks``."""
    ctx = mp.get_context("spawn")
    start = time.perf_counter()
    with ctx.Pool(n) as pool:
        shares = pool.map(_bare_share, [(factory, tasks[i::n]) for i in range(n)])
    total = time.perf_counter() - start
    work = max(w for _, _, w in shares)
    return total - work, work


def in_process(factory, tasks) -> float:
    worker = factory()
    worker.warm()
    start = time.perf_counter()
    for task in tasks:
        worker.run(task)
    return time.perf_counter() - start


def ray_run(factory, tasks, n: int) -> tuple[float, float, float]:
    """(start-up wall, work wall, summed in-worker time) of the Ray executor with ``n`` workers."""
    from harness.executor import RayExecutor

    with RayExecutor(n, timeout_s=600) as executor:
        t0 = time.perf_counter()
        executor.ready(factory)
        t1 = time.perf_counter()
        results = list(executor.map(factory, tasks))
        t2 = time.perf_counter()
    bad = [r for r in results if not r.ok]
    if bad:
        print(f"  warning: {len(bad)} variants failed: {bad[0].error}", file=sys.stderr)
    return t1 - t0, t2 - t1, sum(r.elapsed_s for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "regression.toml"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N variants (0: all)")
    args = parser.parse_args()

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
    start: dict[str, list[float]] = {}
    work: dict[str, list[float]] = {}
    inside: list[float] = []
    for _ in range(args.repeats):
        work.setdefault("in-process", []).append(in_process(factory, tasks))
        start.setdefault("in-process", []).append(0.0)
        for k in (1, 2):
            s, w = bare(factory, tasks, k)
            start.setdefault(f"bare x{k}", []).append(s)
            work.setdefault(f"bare x{k}", []).append(w)
            s, w, i = ray_run(factory, tasks, k)
            start.setdefault(f"ray x{k}", []).append(s)
            work.setdefault(f"ray x{k}", []).append(w)
            if k == 1:
                inside.append(i)

    med_s = {k: statistics.median(v) for k, v in start.items()}
    med_w = {k: statistics.median(v) for k, v in work.items()}
    print(f"{'configuration':<14} {'start-up s':>10} {'work s':>8} {'variants/h (work)':>18} {'variants/h (with start-up)':>27}")
    for name in ("in-process", "bare x1", "bare x2", "ray x1", "ray x2"):
        s, w = med_s[name], med_w[name]
        print(f"{name:<14} {s:>10.2f} {w:>8.2f} {n / w * 3600:>18.0f} {n / (s + w) * 3600:>27.0f}")
    bare_speedup = med_w["bare x1"] / med_w["bare x2"]
    ray_speedup = med_w["ray x1"] / med_w["ray x2"]
    print(
        f"\nspeedup 2 vs 1 worker (work): ray {ray_speedup:.2f}x, bare processes {bare_speedup:.2f}x "
        f"(ray reaches {ray_speedup / bare_speedup:.0%} of the bare speedup)"
    )
    per_variant = med_w["in-process"] / n
    overhead = (med_w["ray x1"] - statistics.median(inside)) / n
    print(
        f"variant compute {per_variant * 1e3:.1f} ms; ray overhead per variant {overhead * 1e3:.2f} ms "
        f"({overhead / per_variant:.1%} of a variant: dispatch, chunk round trips, result transfer)"
    )
    print(f"one-time start-up per run: ray {med_s['ray x2']:.2f} s with 2 workers (bare processes {med_s['bare x2']:.2f} s)")


if __name__ == "__main__":
    main()
