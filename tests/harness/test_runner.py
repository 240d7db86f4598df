"""The runner on both executors: results, failures contained, determinism, resume."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.config import parse_suite
from harness.runner import RunError, read_tasks, run_suite

SAMPLE = "commonroad-USA_US101-4_1_T-1"
#: Four sample scenarios (ids sort in this order), enough to see one fail while others pass.
IDS = [f"{SAMPLE}.ego-{i}" for i in (381, 383, 384, 387)]
#: Columns that say how a run went rather than what the driving was (they differ between runs).
RUN_COLUMNS = ["run_id", "worker_s", "attempts"]


def suite(policy="expert", options=None, **run):
    return parse_suite(
        {
            "suite": {"name": "t"},
            "scenarios": {"sources": ["sample"], "ids": IDS},
            "policy": {"name": policy, "options": options or {}},
            "run": {"seed": 7, "workers": 2, "timeout_s": 60, **run},
        },
        "test-suite.toml",
    )


def test_expert_on_the_sample(executor_kind, tmp_path):
    result = run_suite(suite(), out=tmp_path / "run", executor=executor_kind)
    s = result.summary
    assert list(s["variant_id"]) == IDS  # one row per variant, sorted
    assert (s["status"] == "ok").all() and result.num_errors == 0
    assert (s["at_fault_collisions"] == 0).all()
    assert (s["ade_m"] < 0.2).all()  # the expert reproduces the log
    assert (tmp_path / "run" / "metrics.parquet").exists()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["num_variants"] == 4
    assert manifest["config"]["policy"]["name"] == "expert" and "pybullet" in manifest["packages"]
    assert set(read_tasks(tmp_path / "run")) == set(IDS)


@pytest.mark.parametrize("policy, message", [("faulty_policies:Raises", "planner blew up"), ("faulty_policies:ReturnsNaN", "nan")])
def test_a_failing_policy_fails_its_scenario_only(executor_kind, tmp_path, policy, message):
    result = run_suite(suite(policy, {"target": IDS[1]}), out=tmp_path / "run", executor=executor_kind)
    s = result.summary.set_index("variant_id")
    assert s.loc[IDS[1], "status"] == "error"
    assert message in s.loc[IDS[1], "error"].lower()
    assert "step 4" in s.loc[IDS[1], "error"]  # the step the policy misbehaved at
    assert (s.drop(IDS[1])["status"] == "ok").all()
    assert result.num_errors == 1


def test_a_hung_scenario_times_out(executor_kind, tmp_path):
    cfg = suite("faulty_policies:Hangs", {"target": IDS[2]}, timeout_s=3, chunk_size=1)
    result = run_suite(cfg, out=tmp_path / "run", executor=executor_kind)
    s = result.summary.set_index("variant_id")
    assert s.loc[IDS[2], "status"] == "error" and "timeout after 3 s" in s.loc[IDS[2], "error"]
    assert (s.drop(IDS[2])["status"] == "ok").all()


def test_a_dead_worker_is_retried_then_an_error_row(ray_local, tmp_path):
    cfg = suite("faulty_policies:Exits", {"target": IDS[0]}, retries=1, chunk_size=2)
    result = run_suite(cfg, out=tmp_path / "run", executor="ray")
    s = result.summary.set_index("variant_id")
    assert s.loc[IDS[0], "status"] == "error" and "worker died" in s.loc[IDS[0], "error"]
    assert s.loc[IDS[0], "attempts"] == 2
    assert (s.drop(IDS[0])["status"] == "ok").all() and len(s) == 4


def test_same_results_with_one_and_two_workers_and_sequential(ray_local, tmp_path):
    tables = []
    for i, (kind, workers) in enumerate([("sequential", 1), ("ray", 1), ("ray", 2)]):
        result = run_suite(suite(workers=workers), out=tmp_path / f"run{i}", executor=kind)
        tables.append(result.summary.drop(columns=RUN_COLUMNS))
        metrics = pd.read_parquet(tmp_path / f"run{i}" / "metrics.parquet").drop(columns=["run_id"])
        if i == 0:
            first_metrics = metrics
        else:
            pd.testing.assert_frame_equal(metrics, first_metrics)
    for table in tables[1:]:
        pd.testing.assert_frame_equal(table, tables[0])


def test_resume_runs_only_what_is_missing(executor_kind, tmp_path):
    out = tmp_path / "run"
    full = run_suite(suite(), out=out, executor=executor_kind).summary.drop(columns=RUN_COLUMNS)
    parts = sorted((out / "parts" / "summary").glob("*.parquet"))
    assert len(parts) == 4  # one part per variant at this size: nothing finished is ever lost
    for part in parts[:2]:  # as if the run had stopped after two variants
        part.unlink()
    for name in ("summary.parquet", "metrics.parquet"):
        (out / name).unlink()
    with pytest.raises(RunError, match="already there"):
        run_suite(suite(), out=out, executor=executor_kind)
    resumed = run_suite(suite(), out=out, executor=executor_kind, resume=True)
    assert resumed.num_skipped == 2
    pd.testing.assert_frame_equal(resumed.summary.drop(columns=RUN_COLUMNS), full)
    with pytest.raises(RunError, match="suite changed"):
        run_suite(suite(policy="constant_velocity"), out=out, executor=executor_kind, resume=True)


def test_plain_progress_ends_with_a_line_when_the_run_stops_short_of_its_budget(capsys):
    """An adaptive search that gives up on scenarios runs fewer than its budgeted variants: the
    plain progress (CI logs) still ends with a line of what ran; a run that reached its total
    prints no second last line."""
    from harness.runner import _Progress

    short = _Progress(10, interactive=False)
    for status in ("ok", "ok", "error", "ok", "ok", "ok", "ok"):
        short.update({"status": status, "error": "boom" if status == "error" else ""})
    short.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("drivetwin: 7 variants (of at most 10), 1 failing (1 errors, 0 driving)")
    whole = _Progress(2, interactive=False)
    whole.update({"status": "ok"})
    whole.update({"status": "ok"})
    whole.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("drivetwin: 2/2 variants, 0 failing")
