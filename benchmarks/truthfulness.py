"""How often each metric flags the expert on real logs: a study of the evaluators' truthfulness.

Usage: python benchmarks/truthfulness.py [--config configs/real_data.toml] [--executor ray|sequential]

Runs the suite (the ``expert`` policy through the twin) with the logged egos and again with
every vehicle as the ego, then prints per dataset the share of scenarios each metric flags.
A real human drive replayed should not be a crash: at-fault collisions must be 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import pandas as pd

from harness.config import Egos, load_suite
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


def flag_table(summary: pd.DataFrame) -> pd.DataFrame:
    ok = summary[summary["status"] == "ok"]
    rows = []
    for dataset, group in ok.groupby("dataset", sort=True):
        row = {"dataset": dataset, "n": len(group)}
        for name, (column, failing) in FLAGS.items():
            values = group[column].dropna()
            row[name] = f"{int(failing(values).sum())}" if len(values) else "-"
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "real_data.toml"))
    parser.add_argument("--executor", default=None, choices=("ray", "sequential"))
    args = parser.parse_args()
    base = load_suite(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        for egos in ("logged", "vehicles"):
            config = base.replace(scenarios=dataclasses.replace(base.scenarios, egos=Egos(egos)))
            result = run_suite(config, out=Path(tmp) / egos, executor=args.executor, progress=False)
            s = result.summary
            print(f"\negos = {egos!r}: {len(s)} scenarios, {result.num_errors} errors, {result.wall_s:.0f} s")
            print(flag_table(s).to_string(index=False))
            terminations = s[s["status"] == "ok"].groupby(["dataset", "termination"]).size()
            print("terminations: " + ", ".join(f"{d}/{t} {n}" for (d, t), n in terminations.items()))
            errors = s[s["status"] != "ok"]
            for _, row in errors.head(5).iterrows():
                print(f"  error {row['variant_id']}: {row['error']}")


if __name__ == "__main__":
    main()
