"""The verdict at scale: gate, rank, failures by cause and JUnit XML on a large summary.

Usage: python benchmarks/bench_gate.py [--sizes 10000,100000] [--runs 3] [--fail 0.05]

A real summary comes from the smoke suite (``configs/smoke.toml``: the expert on the sample's 18
NGSIM scenarios, run once here, sequentially); its rows are repeated to N variants under
distinct ids, and a fraction ``--fail`` of them is turned into at-fault collisions (score 0), so
that every failing variant gets its reasons, causes and replay command. Timed, each the median
of ``--runs``: ``harness.gate.gate``, ``evaluators.verdicts.rank(head=5)``,
``failures_by_cause``, ``harness.gate.write_junit`` (streamed to a file), and as the reference
measured in the same run, ``pandas.read_parquet`` of the same N rows (what any reader of the
run pays first). Printed: seconds, microseconds per variant, the ratio to the reference, the
JUnit file's size, and the peak RSS growth of the whole script.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _median_s(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fail", type=float, default=0.05, help="fraction of variants made at-fault collisions")
    args = parser.parse_args()

    from evaluators.verdicts import failures_by_cause, rank
    from harness.config import load_suite
    from harness.gate import gate, write_junit
    from harness.runner import run_suite

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as tmp:
        config = load_suite(ROOT / "configs" / "smoke.toml")
        base = run_suite(config, out=Path(tmp) / "smoke", executor="sequential", progress=False).summary
        gate_config = config.gate
        print(f"bench_gate: a real summary of {len(base)} rows (configs/smoke.toml), load average {os.getloadavg()[0]:.1f}")
        print(f"{'variants':>9} {'step':<18} {'seconds':>8} {'us/variant':>11} {'x read':>7}")
        for n in (int(s) for s in args.sizes.split(",") if s):
            reps = -(-n // len(base))
            summary = pd.concat([base] * reps, ignore_index=True).iloc[:n].copy()
            summary["variant_id"] = [f"{v}~{i:08x}" for i, v in enumerate(summary["variant_id"])]
            fail = np.random.default_rng(0).random(n) < args.fail
            summary.loc[fail, "at_fault_collisions"] = 1
            summary.loc[fail, "closed_loop_score"] = 0.0
            path = Path(tmp) / f"summary-{n}.parquet"
            summary.to_parquet(path)
            junit = Path(tmp) / "junit.xml"
            result = gate(summary, gate_config, run_id="bench", suite="bench")
            timings = {
                "read_parquet (ref)": _median_s(lambda: pd.read_parquet(path), args.runs),
                "gate": _median_s(lambda: gate(summary, gate_config, run_id="bench", suite="bench"), args.runs),
                "rank(head=5)": _median_s(lambda: rank(summary, head=5), args.runs),
                "failures_by_cause": _median_s(lambda: failures_by_cause(summary), args.runs),
                "write_junit": _median_s(lambda: write_junit(result, junit, run_dir=tmp), args.runs),
            }
            ref = timings["read_parquet (ref)"]
            for step, seconds in timings.items():
                print(f"{n:>9} {step:<18} {seconds:>8.2f} {1e6 * seconds / n:>11.1f} {seconds / ref:>7.1f}")
            print(f"{n:>9} junit file {junit.stat().st_size / 1e6:.1f} MB; {int(result.variants['passed'].eq(False).sum())} failing variants")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MB ({rss - rss0:+.0f} MB over the script's start)")


if __name__ == "__main__":
    main()
