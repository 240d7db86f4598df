"""The anytime curve of ``benchmarks/bench_falsify.py``: modes counted at their first variant, in simulation order."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_falsify", ROOT / "benchmarks" / "bench_falsify.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)  # type: ignore[union-attr]


def _row(variant: str, agent: str | None = None, t: float = 1.0, x: float = 0.0) -> dict:
    row = {"status": "ok", "scenario_id": "s", "variant_id": variant, "at_fault_collisions": 0, "closed_loop_score": 0.5,
           "first_at_fault_agent": None, "first_at_fault_collision_s": None, "first_at_fault_x_m": None, "first_at_fault_y_m": None}  # fmt: skip
    if agent is not None:
        row.update(at_fault_collisions=1, closed_loop_score=0.0, first_at_fault_agent=agent,
                   first_at_fault_collision_s=t, first_at_fault_x_m=x, first_at_fault_y_m=0.0)  # fmt: skip
    return row


def test_first_found_counts_each_mode_at_its_first_variant_in_simulation_order() -> None:
    from evaluators.failure_modes import failure_modes

    # mode A at rows 2 and 5 (same place), clean rows, mode B at row 4, mode C (same agent as A, 10 m away) at row 7
    rows = [_row("v0"), _row("v1"), _row("v2", "A"), _row("v3"), _row("v4", "B"), _row("v5", "A", t=1.2, x=0.5), _row("v6"), _row("v7", "A", x=10.0)]
    modes = failure_modes(pd.DataFrame(rows))
    assert len(modes) == 3
    found = bench.first_found(rows, modes)
    assert found == [3, 5, 8]
    assert [bench.modes_within(found, k) for k in (1, 2, 3, 4, 5, 7, 8)] == [0, 0, 1, 1, 2, 2, 3]
    # a mode none of whose variants the method simulated is left out (the union's modes, per method)
    assert bench.first_found(rows[:4], modes) == [3]


def test_cpu_after_is_the_cpu_when_the_kth_simulation_finished() -> None:
    runner = SimpleNamespace(row_cpu=[0.5, 1.25, 3.0])
    assert bench.cpu_after(runner, 0) == 0.0
    assert bench.cpu_after(runner, 2) == 1.25
    assert bench.cpu_after(runner, 9) == 3.0
