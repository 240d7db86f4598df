"""How often each metric flags the expert on real logs: a study of the evaluators' truthfulness.

Usage: python benchmarks/truthfulness.py [--config configs/real_data.toml] [--executor ray|sequential]

Runs the suite (the ``expert`` policy through the twin) with the logged egos and again with
every vehicle as the ego, each twice: with absolute verdicts (``judge_against_log = false``) and
judged against the log (the default). It prints per dataset how many scenarios each metric flags,
as "absolute > judged", and the log's own flags (what the logged trajectory itself does, over the
same time) that explain the difference, and for every scenario still uncomfortable judged
against the log, which comfort quantities failed. A real human drive replayed should not be a
crash: at-fault collisions must be 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import pandas as pd

from evaluators.comfort import QUANTITIES
from harness.config import Egos, load_suite
from harness.rundir import RunDirectory
from harness.runner import run_suite

ROOT = Path(__file__).resolve().parents[1]

#: flag name -> (summary column, the failing test on it)
FLAGS = {
    "collision": ("collisions", lambda v: v > 0),
    "at_fault": ("at_fault_collisions", lambda v: v > 0),
    "off_road": ("drivable_area_compliance", lambda v: v < 1),
    "wrong_way": ("driving_direction_compliance", lambda v: v < 1),
    "no_progress": ("making_progress", lambda v: v == False),  # noqa: E712
    "ttc": ("ttc_within_bound", lambda v: v == False),  # noqa: E712
    "overspeed": ("speed_limit_compliance", lambda v: v < 1),
    "uncomfortable": ("comfortable", lambda v: v == False),  # noqa: E712
    "infeasible": ("kinematically_feasible", lambda v: v == False),  # noqa: E712
    "red_light": ("red_light_violations", lambda v: v > 0),
}


#: the log's own flags, from the judged run's log columns: flag name -> (column, failing test)
LOG_FLAGS = {
    "log_off_road": ("log_drivable_area_max_distance_m", lambda v: v > 0.3),
    "log_ttc": ("log_min_ttc_s", lambda v: v <= 0.95),
    "log_overspeed": ("log_max_overspeed_mps", lambda v: v > 0),
    "log_uncomfortable": ("log_comfortable", lambda v: v == False),  # noqa: E712
    "log_wrong_way": ("log_wrong_way_max_m", lambda v: v >= 2.0),
    "log_overlaps": ("log_overlaps", lambda v: v > 0),
}


def _count(group: pd.DataFrame, column: str, failing) -> int | None:
    values = group[column].dropna()
    return int(failing(values).sum()) if len(values) else None


def flag_table(absolute: pd.DataFrame, judged: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: scenarios flagged by each metric, "absolute > judged", then the log's own flags."""
    a_ok, j_ok = absolute[absolute["status"] == "ok"], judged[judged["status"] == "ok"]
    rows = []
    for dataset, group in j_ok.groupby("dataset", sort=True):
        before = a_ok[a_ok["dataset"] == dataset]
        row = {"dataset": dataset, "n": len(group)}
        for name, (column, failing) in FLAGS.items():
            b, a = _count(before, column, failing), _count(group, column, failing)
            row[name] = "-" if a is None else (f"{b}>{a}" if b != a else f"{a}")
        for name, (column, failing) in LOG_FLAGS.items():
            n = _count(group, column, failing)
            row[name] = "-" if n is None else str(n)
        rows.append(row)
    return pd.DataFrame(rows)


def uncomfortable_lines(summary: pd.DataFrame, metrics: pd.DataFrame, limit: int = 12) -> list[str]:
    """One line per scenario flagged uncomfortable (judged): the comfort quantities that failed,
    with the planner's value and the log's note, so that a flag can be traced without a rerun."""
    ok = summary[(summary["status"] == "ok") & (summary["comfortable"] == False)]  # noqa: E712
    failed = metrics[metrics["metric"].isin(list(QUANTITIES)) & (metrics["passed"] == False)]  # noqa: E712
    lines = []
    for _, row in ok.head(limit).iterrows():
        mine = failed[failed["variant_id"] == row["variant_id"]]
        what = ", ".join(f"{m} {v:.2f}" for m, v in zip(mine["metric"], mine["value"]))
        note = row.get("against_log")
        lines.append(f"  uncomfortable {row['variant_id']}: {what}" + (f" ({note})" if isinstance(note, str) and "comfort" in note else ""))
    if len(ok) > limit:
        lines.append(f"  ... and {len(ok) - limit} more")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "real_data.toml"))
    parser.add_argument("--executor", default=None, choices=("ray", "sequential"))
    args = parser.parse_args()
    base = load_suite(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        for egos in ("logged", "vehicles"):
            runs = {}
            for judged in (False, True):
                evaluators = {**dict(base.evaluators), "judge_against_log": judged}
                config = base.replace(scenarios=dataclasses.replace(base.scenarios, egos=Egos(egos)), evaluators=evaluators)
                runs[judged] = run_suite(config, out=Path(tmp) / f"{egos}-{judged}", executor=args.executor, progress=False)
            result, s = runs[True], runs[True].summary
            print(f"\negos = {egos!r}: {len(s)} scenarios, {result.num_errors} errors, {result.wall_s:.0f} s judged "
                  f"({runs[False].wall_s:.0f} s absolute); flags as absolute > judged against the log")  # fmt: skip
            print(flag_table(runs[False].summary, s).to_string(index=False))
            print(f"closed-loop score: mean {runs[False].summary['closed_loop_score'].mean():.3f} > {s['closed_loop_score'].mean():.3f}, "
                  f"below 0.99: {int((runs[False].summary['closed_loop_score'] < 0.99).sum())} > {int((s['closed_loop_score'] < 0.99).sum())}")
            for line in uncomfortable_lines(s, pd.read_parquet(RunDirectory(result.run_dir).metrics)):
                print(line)
            terminations = s[s["status"] == "ok"].groupby(["dataset", "termination"]).size()
            print("terminations: " + ", ".join(f"{d}/{t} {n}" for (d, t), n in terminations.items()))
            errors = s[s["status"] != "ok"]
            for _, row in errors.head(5).iterrows():
                print(f"  error {row['variant_id']}: {row['error']}")


if __name__ == "__main__":
    main()
