"""The Parquet report: round trip, metadata, many writers, a run that stops midway, error rows, comparison."""

from __future__ import annotations

import json
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from evaluators import evaluate_all
from evaluators import report as rp
from evaluators.compare import compare_runs, regressions
from scenarios.synthetic import AgentSpec, scene
from scenarios.rollout import Rollout


def evaluations(n: int = 4, series: bool = False):
    """Rollouts with collisions, inf TTC, NaN times and bools, under distinct variant ids."""
    scenes = [
        scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("lead", 30.0)], num_steps=41),  # at-fault collision
        scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("beside", 0.0, y=3.5, speed=10.0)], num_steps=41),  # clean
        scene([AgentSpec("ego", 0.0, speed=12.0, accel=-6.0)], num_steps=41),  # harsh braking, alone: TTC inf
        scene([AgentSpec("ego", 0.0), AgentSpec("follower", -20.0, speed=10.0)], num_steps=41),  # rear-ended
    ]
    out = []
    for i in range(n):
        s = scenes[i % len(scenes)]
        out.append(evaluate_all(Rollout.from_log(s), s, variant_id=f"v{i:03d}", scenario_id=f"s{i % 4}", series=series))
    return out


def same(a, b) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)) or a is pd.NA:
        return b is None or b is pd.NA or (isinstance(b, float) and math.isnan(b))
    if isinstance(a, float):
        return isinstance(b, (float, np.floating)) and (a == b)
    return a == b


def test_round_trip_pandas_and_pyarrow(tmp_path):
    evs = evaluations(4, series=True)
    with rp.ReportWriter(tmp_path, "run-1", writer_id="w0", flush_every=3) as writer:
        for ev in evs:
            writer.add(ev)
    assert len(writer.parts) == 2 * 3  # flushed after 3 variants and at close, three tables each

    summary = rp.read_summary(tmp_path)
    by_pandas = pd.read_parquet(tmp_path / rp.SUMMARY)
    by_arrow = pq.read_table(tmp_path / rp.SUMMARY).to_pylist()
    by_dataset = ds.dataset(tmp_path / rp.SUMMARY, format="parquet").to_table().to_pylist()
    assert len(summary) == len(by_pandas) == len(by_arrow) == len(by_dataset) == 4
    arrow_rows = {r[rp.VARIANT_ID]: r for r in by_arrow}
    dataset_rows = {r[rp.VARIANT_ID]: r for r in by_dataset}
    pandas_rows = by_pandas.set_index(rp.VARIANT_ID)
    for ev in evs:
        vid = ev.summary[rp.VARIANT_ID]
        for col, value in ev.summary.items():
            assert same(value, arrow_rows[vid][col]), (vid, col, value, arrow_rows[vid][col])
            assert same(value, dataset_rows[vid][col]), (vid, col)
            if col != rp.VARIANT_ID:
                got = pandas_rows.loc[vid, col]
                assert same(value, got.item() if hasattr(got, "item") else got), (vid, col, value, got)
        assert arrow_rows[vid][rp.RUN_ID] == "run-1"
    assert set(rp.REQUIRED_SUMMARY_COLUMNS) <= set(summary.columns)
    assert summary.set_index(rp.VARIANT_ID).loc["v002", rp.MIN_TTC_S] == math.inf

    metrics = rp.read_metrics(tmp_path)
    assert len(metrics) == sum(len(ev.metrics) for ev in evs)
    expected = {(r["variant_id"], r["metric"]): r for ev in evs for r in ev.metrics}
    for row in pq.read_table(tmp_path / rp.METRICS).to_pylist():
        want = expected[(row["variant_id"], row["metric"])]
        assert same(want["value"], row["value"]) and row["unit"] == want["unit"] and row["passed"] == want["passed"]

    series = rp.read_series(tmp_path)
    assert len(series) == 4 * 41
    first = series[series[rp.VARIANT_ID] == "v000"].sort_values(rp.STEP)
    np.testing.assert_array_equal(first[rp.TTC_S].to_numpy(dtype=float), evs[0].series["ttc_s"])
    np.testing.assert_array_equal(first[rp.SPEED_MPS].to_numpy(dtype=float), evs[0].series["speed_mps"])


def test_metadata_carries_version_and_units(tmp_path):
    with rp.ReportWriter(tmp_path, "run-1") as writer:
        writer.add(evaluations(1, series=True)[0])
    for table in rp.TABLES:
        part = next((tmp_path / table).glob("*.parquet"))
        schema = pq.read_schema(part)
        meta = {k.decode(): v.decode() for k, v in schema.metadata.items()}
        assert meta[rp.META_TABLE] == table and meta[rp.META_VERSION] == str(rp.SCHEMA_VERSION)
        units = json.loads(meta[rp.META_UNITS])
        assert set(units) == set(schema.names)
    summary = pq.read_schema(next((tmp_path / rp.SUMMARY).glob("*.parquet")))
    assert rp.units(summary)[rp.MIN_TTC_S] == "s" and rp.units(summary)[rp.COLLISIONS] == "count"
    assert summary.field(rp.DRIVABLE_AREA_COMPLIANCE).metadata[b"unit"] == b"1"
    assert summary.field(rp.ADE_M).metadata[b"unit"] == b"m"
    assert rp.units(pq.read_schema(next((tmp_path / rp.SERIES).glob("*.parquet"))))[rp.LON_ACCEL_MPS2] == "m/s2"


def test_error_row(tmp_path):
    with rp.ReportWriter(tmp_path, "run-1") as writer:
        writer.add(evaluations(1)[0])
        writer.add_error("v-bad", "s-bad", "ego", "policy returned NaN at step 12", policy="planner:Bad")
    summary = rp.read_summary(tmp_path).set_index(rp.VARIANT_ID)
    bad = summary.loc["v-bad"]
    assert bad[rp.STATUS] == "error" and bad[rp.ERROR] == "policy returned NaN at step 12"
    assert bad["policy"] == "planner:Bad"
    metric_cols = [s.name for s in rp.metric_specs()]
    assert summary.loc["v-bad", metric_cols].isna().all()
    assert summary.loc["v000", rp.STATUS] == "ok" and pd.isna(summary.loc["v000", rp.ERROR])
    assert list(rp.error_rows(rp.read_summary(tmp_path))[rp.VARIANT_ID]) == ["v-bad"]
    assert set(rp.read_metrics(tmp_path)[rp.VARIANT_ID]) == {"v000"}  # an error has no metric rows


def _write_some(args):
    directory, writer_id, evs = args
    with rp.ReportWriter(directory, "run-7", writer_id=writer_id) as writer:
        for ev in evs:
            writer.add(ev)
    return len(writer.parts)


def test_many_writers_into_one_dataset(tmp_path):
    evs = evaluations(12)
    chunks = [(tmp_path, f"w{i}", evs[i::4]) for i in range(4)]
    with ThreadPoolExecutor(2) as pool:  # two in threads of this process
        list(pool.map(_write_some, chunks[:2]))
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:  # two in other processes
        list(pool.map(_write_some, chunks[2:]))
    summary = rp.read_summary(tmp_path)
    assert sorted(summary[rp.VARIANT_ID]) == [f"v{i:03d}" for i in range(12)]
    assert len(list((tmp_path / rp.SUMMARY).glob("*.parquet"))) == 12  # one part per variant by default
    assert not list((tmp_path / "_tmp").iterdir())  # every temporary file was renamed into place


def test_a_run_that_stops_midway_keeps_its_flushed_rows(tmp_path):
    evs = evaluations(5)
    writer = rp.ReportWriter(tmp_path, "run-1", writer_id="crashy", flush_every=2)
    for ev in evs:
        writer.add(ev)  # flushes after v001 and v003; v004 is still buffered when the "crash" comes
    (tmp_path / "_tmp" / "summary-part-half-written.parquet.tmp").write_bytes(b"PAR1 garbage")  # a write cut short
    del writer
    summary = rp.read_summary(tmp_path)
    assert sorted(summary[rp.VARIANT_ID]) == ["v000", "v001", "v002", "v003"]
    assert pd.read_parquet(tmp_path / rp.SUMMARY).shape[0] == 4


@pytest.mark.parametrize("table", [rp.METRICS, rp.SUMMARY])
@pytest.mark.parametrize("when", ["before", "after"])
def test_an_interrupt_inside_a_flush_loses_no_row_and_writes_none_twice(tmp_path, monkeypatch, table, when):
    """Ctrl-C lands inside a flush, before or after one table's part is renamed into place: the
    interrupt propagates (not an "already exists" error from the flush at close), and each row
    ends up on disk exactly once."""
    evs = evaluations(3)
    real = rp.write_part
    armed = {"on": True}

    def interrupted(directory, name, rows, *, part_name):
        if name == table and armed["on"] and rows[0][rp.VARIANT_ID] == "v001":
            armed["on"] = False
            if when == "after":
                real(directory, name, rows, part_name=part_name)
            raise KeyboardInterrupt
        return real(directory, name, rows, part_name=part_name)

    monkeypatch.setattr(rp, "write_part", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with rp.ReportWriter(tmp_path, "run-1", writer_id="w") as writer:
            for ev in evs:
                writer.add(ev)
    summary = rp.read_summary(tmp_path)
    assert sorted(summary[rp.VARIANT_ID]) == ["v000", "v001"]  # v002 was never added
    metrics = rp.read_table(tmp_path, rp.METRICS).to_pandas()
    expected = sum(len(ev.metrics) for ev in evs[:2])
    assert len(metrics) == expected and not metrics.duplicated(["variant_id", "metric"]).any()


def test_text_utf8_cannot_hold_is_escaped_not_fatal(tmp_path):
    """A policy's error about an undecodable file name carries a lone surrogate: the part is
    written (the surrogate as its escape), with the clean rows beside it intact."""
    writer = rp.ReportWriter(tmp_path, "run-1", writer_id="w", flush_every=2)
    writer.add(evaluations(1)[0])
    writer.add_error("v-bad", "s-bad", "e", "no such map 'x\udcff.json'\x00")
    summary = rp.read_summary(tmp_path).set_index(rp.VARIANT_ID)
    assert summary.loc["v-bad", "error"] == "no such map 'x\\udcff.json'\x00"
    assert summary.loc["v000", "status"] == "ok" and len(summary) == 2


def test_empty_report_reads_as_an_empty_table(tmp_path):
    assert rp.read_summary(tmp_path).empty
    assert list(rp.read_summary(tmp_path).columns) == rp.SUMMARY_SCHEMA.names


def test_unknown_column_is_rejected(tmp_path):
    with pytest.raises(rp.EvaluatorError, match="not a column"):
        rp.write_part(tmp_path, rp.SUMMARY, [{"variant_id": "v", "bogus": 1}], part_name="p")


def test_compare_runs_finds_regressions():
    base = pd.DataFrame(
        {
            "variant_id": ["a", "b", "c", "d", "e"],
            "status": ["ok", "ok", "ok", "ok", "ok"],
            "closed_loop_score": [0.9, 0.8, 0.7, 0.6, 0.5],
            "driving_score": [1.0, 1.0, 1.0, 1.0, 1.0],
            "at_fault_collisions": [0, 0, 0, 0, 0],
        }
    )
    cand = pd.DataFrame(
        {
            "variant_id": ["a", "b", "c", "d", "f"],
            "status": ["ok", "ok", "error", "ok", "ok"],
            "closed_loop_score": [0.95, 0.79, None, 0.6, 0.1],
            "driving_score": [1.0, 1.0, None, 0.6, 1.0],
            "at_fault_collisions": [0, 0, None, 1, 0],
        }
    )
    cmp = compare_runs(base, cand, tolerance=0.005).set_index("variant_id")
    assert cmp.loc["a", "closed_loop_score_delta"] == pytest.approx(0.05)
    assert cmp.loc["b", "reason"].startswith("closed_loop_score dropped")
    assert cmp.loc["c", "reason"] == "error"
    assert cmp.loc["d", "reason"] == "new at-fault collision"
    assert cmp.loc["e", "reason"] == "missing in candidate"
    assert not cmp.loc["f", "regressed"] and not cmp.loc["a", "regressed"]
    assert sorted(regressions(cmp.reset_index())["variant_id"]) == ["b", "c", "d", "e"]
    assert not compare_runs(base, cand, tolerance=0.02).set_index("variant_id").loc["b", "regressed"]
