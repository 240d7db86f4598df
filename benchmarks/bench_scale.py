"""Scaling: the driver's own cost per variant and its memory, the 2-worker speedup, capacity.

Usage: python benchmarks/bench_scale.py [--sizes 10000,100000,1000000] [--limit 0] [--skip-speedup]

- Driver cost: ``run_suite`` on the bundled sample (18 scenarios) with one ``road_friction``
  sweep sized to N planned variants, sequential executor, and the simulation replaced by a
  no-op worker (it returns an "ok" row with every metric null), so that only the harness is
  timed: lazy planning, tasks.jsonl (appended as planned), dispatch, the Parquet parts and the
  consolidation (streamed, timed on its own too). Each N runs in a fresh process; printed: µs per
  variant (wall / N, and the process's CPU time / N, which a loaded machine inflates less), peak
  RSS (``ru_maxrss``) against the same process before the run, and the load average.
- Speedup: ``benchmarks/bench_runner.py``'s bare-process and Ray measures, 1 and 2 workers, on
  the regression suite's variants (or the first ``--limit``).
- Capacity: variants/hour and virtual km/day per core from the in-process run of those variants
  (km from ``ego_progress_m``), and the cores needed for 16 million virtual km a day.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SCENARIOS = 18
TARGET_KM_PER_DAY = 16e6


class NoopWorker:
    """A worker that simulates nothing: the variant's row, status "ok", metrics null (the row of
    nulls made once; a real worker makes its row in its own process, not on the driver)."""

    def __init__(self) -> None:
        from evaluators import error_summary

        self.template = error_summary("", "", "", "")
        self.template.update(status="ok", error=None)

    def run(self, task):
        from harness.worker import VariantOutcome, task_identity

        task = getattr(task, "task", task)
        return VariantOutcome({**self.template, "variant_id": task.variant_id, "scenario_id": task.scenario_id, **task_identity(task)})

    def preflight(self, task) -> None:
        pass

    def close(self) -> None:
        pass


def driver_cost(n: int) -> dict:
    """Run the no-op suite of about ``n`` variants here; wall, variants and RSS figures."""
    import harness.runner as runner
    from harness.config import parse_suite

    per_scenario = math.ceil(n / SAMPLE_SCENARIOS)
    config = parse_suite(
        {
            "suite": {"name": f"noop{n}"},
            "scenarios": {"sources": ["sample"]},
            "mutations": [{"name": "mu", "operator": "road_friction", "params": {"mu": {"uniform": [0.3, 1.0]}}, "sampler": "random", "variants": per_scenario}],
            "run": {"seed": 1, "executor": "sequential", "include_original": False, "timeout_s": 60},
        },
        "bench_scale.toml",
    )
    runner._worker_factory = lambda config, run_dir=None: NoopWorker  # noqa: SLF001 - the simulation, replaced
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    consolidated = {}
    consolidate = runner.consolidate

    def timed(run_dir, *args, **kwargs):
        start = time.perf_counter()
        out = consolidate(run_dir, *args, **kwargs)
        consolidated["s"] = time.perf_counter() - start
        return out

    runner.consolidate = timed
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), time.process_time()
        result = runner.run_suite(config, out=Path(tmp) / "run", progress=False)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    planned = result.num_variants + int(sum(result.rejected.values()))
    return {"planned": planned, "rows": result.num_variants, "wall_s": wall, "us_per_variant": wall / planned * 1e6,
            "cpu_us_per_variant": cpu / planned * 1e6, "consolidate_s": consolidated.get("s", 0.0),
            "rss_before_mb": rss0, "rss_peak_mb": rss1, "load": os.getloadavg()[0]}


def speedup_and_capacity(limit: int) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_runner import bare, ray_run

    from harness.config import load_suite
    from harness.executor import init_ray
    from harness.runner import _worker_factory, make_tasks, resolve_sources, select_scenarios

    config = load_suite(ROOT / "configs" / "regression.toml")
    with tempfile.TemporaryDirectory() as tmp:
        scenarios = select_scenarios(config, resolve_sources(config, Path(tmp)))
        tasks, _ = make_tasks(config, scenarios)
    tasks = tasks[:limit] if limit else tasks
    factory = _worker_factory(config)
    worker = factory()
    worker.warm()
    km, simulated, start = 0.0, 0, time.perf_counter()
    for task in tasks:
        outcome = worker.run(task)
        simulated += outcome.summary.get("status") != "rejected"  # rejected on the worker: not simulated
        km += sum(float(m["value"] or 0.0) for m in outcome.metrics if m.get("metric") == "ego_progress_m") / 1000.0
    per_core_s = time.perf_counter() - start
    worker.close()
    init_ray(num_cpus=2)
    bare1, bare2 = bare(factory, tasks, 1)[1], bare(factory, tasks, 2)[1]
    ray1, ray2 = ray_run(factory, tasks, 1)[1], ray_run(factory, tasks, 2)[1]
    print(f"\n2-worker speedup on {len(tasks)} regression variants (work wall): ray {ray1 / ray2:.2f}x "
          f"({ray1:.1f} s -> {ray2:.1f} s), bare processes {bare1 / bare2:.2f}x ({bare1:.1f} s -> {bare2:.1f} s)")
    per_hour = simulated / per_core_s * 3600
    km_day = km / per_core_s * 86400
    print(f"capacity per core (in-process, regression suite): {per_hour:.0f} variants/hour, "
          f"{km_day:.0f} virtual km/day ({km / max(1, simulated) * 1000:.0f} m per simulated variant, {len(tasks) - simulated} of {len(tasks)} rejected); "
          f"{TARGET_KM_PER_DAY / 1e6:.0f} million virtual km/day needs {math.ceil(TARGET_KM_PER_DAY / km_day) if km_day else 'inf'} cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--limit", type=int, default=0, help="regression variants for the speedup and capacity (0: all)")
    parser.add_argument("--skip-speedup", action="store_true")
    parser.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)  # child: one driver-cost run
    args = parser.parse_args()
    if args.one:
        print(json.dumps(driver_cost(args.one)))
        return
    print(f"{'planned':>9} {'rows':>9} {'wall s':>8} {'us/variant':>11} {'cpu us/var':>11} {'consol. s':>10} "
          f"{'peak RSS MB':>12} {'RSS before MB':>14} {'load':>5}")
    peaks = []
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        done = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{n:>9} failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        peaks.append(r["rss_peak_mb"])
        print(f"{r['planned']:>9} {r['rows']:>9} {r['wall_s']:>8.1f} {r['us_per_variant']:>11.0f} {r['cpu_us_per_variant']:>11.0f} "
              f"{r['consolidate_s']:>10.1f} {r['rss_peak_mb']:>12.0f} {r['rss_before_mb']:>14.0f} {r['load']:>5.1f}", flush=True)
    if len(peaks) > 1:
        print(f"peak RSS growth from the smallest to the largest size: {peaks[-1] - peaks[0]:.0f} MB (target < 200 MB); "
              "target <= 200 us/variant")
    if not args.skip_speedup:
        speedup_and_capacity(args.limit)


if __name__ == "__main__":
    main()
