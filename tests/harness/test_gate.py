"""compare and gate: the statistics on hand-made tables, the verdict and JUnit on real runs."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.config import GateConfig, parse_suite
from harness.gate import bootstrap_mean, compare, gate
from harness.runner import run_suite

IDS = [f"commonroad-USA_US101-4_1_T-1.ego-{i}" for i in (381, 383, 384, 387, 388, 389)]


def table(scores, *, errors=(), at_fault=()):
    """A summary table with the given closed-loop scores (variant i is 'v<i>')."""
    n = len(scores)
    return pd.DataFrame(
        {
            "variant_id": [f"v{i}" for i in range(n)],
            "scenario_id": [f"s{i % 2}" for i in range(n)],
            "status": ["error" if i in errors else "ok" for i in range(n)],
            "error": ["boom" if i in errors else None for i in range(n)],
            "closed_loop_score": [None if i in errors else s for i, s in enumerate(scores)],
            "driving_score": [None if i in errors else s for i, s in enumerate(scores)],
            "at_fault_collisions": [1 if i in at_fault else 0 for i in range(n)],
            "collisions": [1 if i in at_fault else 0 for i in range(n)],
            "progress_ratio": [1.0] * n,
            "min_ttc_s": [np.inf] * n,
            "worker_s": [0.1] * n,
        }
    )


def test_bootstrap_interval_brackets_the_mean_and_is_deterministic():
    values = np.random.default_rng(1).normal(0.3, 0.1, 200)
    mean, lo, hi = bootstrap_mean(values, 0.95)
    assert mean == pytest.approx(values.mean())
    assert lo < mean < hi
    assert hi - lo == pytest.approx(2 * 1.96 * values.std(ddof=1) / np.sqrt(200), rel=0.15)  # normal theory
    assert bootstrap_mean(values, 0.95) == (mean, lo, hi)


def test_a_clear_drop_is_a_significant_regression():
    base = table([0.9] * 20)
    cand = table([0.9] * 10 + [0.5] * 10)
    c = compare(base, cand)
    assert c.paired == 20 and c.delta == pytest.approx(-0.2)
    assert c.delta_hi < 0 and c.significant_regression(0.05)
    assert not c.significant_regression(0.25)  # a drop within the tolerance
    result = gate(cand, GateConfig(), base)
    assert not result.passed
    assert {ch.name for ch in result.checks if not ch.passed} == {"score_change_vs_baseline"}


def test_no_change_passes_and_noise_is_not_significant():
    base = table([0.8, 0.9] * 10)
    assert gate(table([0.8, 0.9] * 10), GateConfig(), base).passed
    noisy = table([0.9, 0.8] * 10)  # every variant changed by +-0.1, the mean by nothing
    c = compare(base, noisy)
    assert c.delta == pytest.approx(0.0) and c.delta_lo < 0 < c.delta_hi
    assert not c.significant_regression(0.0)


def test_errors_count_as_zero_and_new_failures_are_named():
    base = table([0.9] * 4)
    cand = table([0.9] * 4, errors=(1,), at_fault=(2,))
    c = compare(base, cand)
    assert c.mean_candidate == pytest.approx((0.9 * 3 + 0) / 4)
    assert c.newly_failing == ["v1", "v2"]
    result = gate(cand, GateConfig(max_error_rate=0.5, max_at_fault_collision_rate=0.5, max_new_failures=1), base)
    failed = {ch.name for ch in result.checks if not ch.passed}
    assert failed == {"newly_failing_variants"}


def test_absolute_thresholds():
    cand = table([0.4, 0.6, 0.8, 1.0])
    assert gate(cand, GateConfig(min_mean_closed_loop_score=0.7)).passed
    result = gate(cand, GateConfig(min_mean_closed_loop_score=0.71))
    assert [ch.name for ch in result.checks if not ch.passed] == ["mean_closed_loop_score"]
    result = gate(cand, GateConfig(min_variant_score=0.5))
    assert [ch.name for ch in result.checks if not ch.passed] == ["variants_below_min_score"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The expert (baseline) and constant velocity (candidate) on six sample scenarios."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, policy in (("base", "expert"), ("cand", "constant_velocity")):
        cfg = parse_suite(
            {
                "suite": {"name": name},
                "scenarios": {"sources": ["sample"], "ids": IDS},
                "policy": {"name": policy},
                "gate": {"min_mean_closed_loop_score": 0.5, "max_at_fault_collision_rate": 0.0},
                "run": {"seed": 3, "executor": "sequential"},
            },
            f"{name}.toml",
        )
        out[name] = run_suite(cfg, out=root / name).run_dir
    return out


def test_gate_cli_passes_the_expert_and_fails_a_regression(runs, tmp_path, capsys):
    assert main(["gate", str(runs["base"]), "--junit", str(tmp_path / "base.xml")]) == 0
    assert "verdict: PASS" in capsys.readouterr().out
    status = main(["gate", str(runs["cand"]), "--baseline", str(runs["base"]), "--junit", str(tmp_path / "cand.xml")])
    printed = capsys.readouterr().out
    assert status == 1 and "verdict: FAIL" in printed
    cand = pd.read_parquet(runs["cand"] / "summary.parquet")
    collided = int((cand["at_fault_collisions"] > 0).sum())
    assert collided > 0  # constant velocity runs into the slowing traffic of US-101

    suite = ET.parse(tmp_path / "cand.xml").getroot().find("testsuite")
    cases = suite.findall("testcase")
    variant_cases = [c for c in cases if c.get("classname") != "drivetwin.gate"]
    assert len(variant_cases) == len(IDS)
    failed = {c.get("name") for c in variant_cases if c.find("failure") is not None}
    assert len(failed) >= collided
    assert int(suite.get("failures")) == sum(c.find("failure") is not None for c in cases)
    assert suite.find("properties/property[@name='verdict']").get("value") == "fail"


def test_compare_cli(runs, tmp_path, capsys):
    assert main(["compare", str(runs["base"]), str(runs["cand"]), "--csv", str(tmp_path / "c.csv")]) == 0
    printed = capsys.readouterr().out
    assert "6 paired by variant id" in printed and "newly failing:" in printed
    per_variant = pd.read_csv(tmp_path / "c.csv")
    assert set(per_variant["variant_id"]) == set(IDS)


def test_gate_on_a_missing_run_is_a_usage_error(tmp_path, capsys):
    assert main(["gate", str(tmp_path / "nope")]) == 2


AT_FAULT, CLOSE_CALL, NEAR_EDGE = IDS[3], IDS[4], IDS[5]  # constant velocity on 387, 388, 389


def test_junit_fails_a_variant_on_its_own_verdict_naming_the_cause_and_the_replay(runs, tmp_path):
    """Constant velocity rear-ends on 387 (at 3.2 s); 388's TTC under bound lowers its score
    (0.6875) without failing it; on 389 it is 0.31 m off the drivable area, where its log is
    0.30 m off: within the log's own distance plus 0.2 m, no failure of the planner's."""
    main(["gate", str(runs["cand"]), "--baseline", str(runs["base"]), "--junit", str(tmp_path / "cand.xml")])
    suite = ET.parse(tmp_path / "cand.xml").getroot().find("testsuite")
    failures = {c.get("name"): c.find("failure") for c in suite.findall("testcase") if c.get("classname") != "drivetwin.gate"}
    failed = {name: f for name, f in failures.items() if f is not None}
    assert set(failed) == {AT_FAULT}
    failure = failed[AT_FAULT]
    assert failure.get("type") == "at_fault_collision"
    assert failure.get("message").startswith("1 at-fault collision, the first at 3.2 s; regressed: passed in the baseline")
    assert failure.get("message").endswith(f"; replay: drivetwin replay {AT_FAULT} --run {runs['cand']}")
    assert f"replay: drivetwin replay {AT_FAULT} --run {runs['cand']}" in failure.text
    near_edge = [c for c in suite.findall("testcase") if c.get("name") == NEAR_EDGE][0]
    assert "judged against the log: drivable_area: log itself 0.30 m off-road; planner 0.31 m passes" in near_edge.find("system-out").text


def test_report_with_a_baseline_ranks_collisions_first_and_shows_what_changed(runs, tmp_path):
    from harness.report import build_report

    page = build_report(runs["cand"], out=tmp_path / "report.html", worst=2, baseline=runs["base"]).read_text()
    assert '<span class="verdict bad">FAIL</span>' in page
    assert "<code>at_fault_collision_rate</code>" in page and "<code>newly_failing_variants</code>" in page
    # failures by cause, each variant linked to its row in "Every failing variant"
    for cause, variant in (("at_fault_collision", AT_FAULT), ("ttc", CLOSE_CALL)):
        anchor = "v-" + variant.replace(".", "-")
        assert f'<td class="cause">{cause}</td>' in page and f'href="#{anchor}"' in page and f'id="{anchor}"' in page
    assert '<td class="cause">off_road</td>' not in page  # 389's 0.31 m is its log's own 0.30 m
    assert "Newly failing: 1" in page and "Newly passing: 0" in page
    assert "95% paired bootstrap interval [" in page
    # the worst variants by severity: the collision first, then the lowest score
    assert page.index(f"<h3>#1 {AT_FAULT}</h3>") < page.index(f"<h3>#2 {CLOSE_CALL}</h3>")
    assert "score set by <code>no_at_fault_collisions 0</code>" in page
    # weight 5 of 16; then progress, the episode ending with its ego's log 3% short of the log's progress
    assert "score set by <code>ttc_within_bound 0.00 (-0.31); progress_ratio 0.97 (-0.01)</code>" in page
    assert "The moment drawn: boxes at t = 3.2 s: first collision" in page
    assert page.index("Failures by cause") < page.index("The 2 worst variants") < page.index("Score distributions")


def test_an_off_road_variant_is_drawn_at_its_furthest_step():
    """The ego drives with its right corners 0.5 m past the road edge all along: that is its
    moment (every step ties; the first), not its lowest TTC."""
    from evaluators import EvaluatorConfig, evaluate
    from harness.plots import key_moment
    from scenarios.rollout import Rollout
    from scenarios.synthetic import AgentSpec, scene

    s = scene([AgentSpec("ego", 0.0, y=-1.75 - 0.5 + 0.95, speed=10.0), AgentSpec("lead", 60.0, speed=5.0)])
    r = Rollout.from_log(s)
    row = evaluate(r, s, EvaluatorConfig(judge_against_log=False))
    moment = key_moment(s, r, None, row)
    assert moment.kind == "off_road" and moment.offroad_m == pytest.approx(0.5) and moment.step == 0
    assert moment.describe(r) == "boxes at t = 0.0 s: furthest off the drivable area, 0.50 m"
    assert any(m.kind == "off-road" for m in moment.markers)
    judged = evaluate(r, s)  # against its own log it is not off-road: the lowest TTC is the moment
    assert key_moment(s, r, None, judged).kind == "min_ttc"


def test_run_with_a_gate_prints_the_verdict_and_counts_driving_failures(tmp_path, capsys):
    suite = tmp_path / "cv.toml"
    suite.write_text(
        "[suite]\nname = 'cv'\n[scenarios]\nsources = ['sample']\n"
        f"ids = {[AT_FAULT, CLOSE_CALL, NEAR_EDGE]!r}\n"
        "[policy]\nname = 'constant_velocity'\n[gate]\nmax_at_fault_collision_rate = 0.0\n[run]\nseed = 3\n"
    )
    assert main(["run", str(suite), "--sequential", "--out", str(tmp_path / "run")]) == 0  # no errors
    captured = capsys.readouterr()
    assert "drivetwin: 3/3 variants, 1 failing (0 errors, 1 driving)" in captured.err
    assert "FAIL  at_fault_collision_rate: 1 of 3 variants with an at-fault collision" in captured.out
    assert f"variant {AT_FAULT}: 1 at-fault collision, the first at 3.2 s" in captured.out
    assert captured.out.rstrip().splitlines()[-1].startswith("verdict: FAIL")


def test_junit_holds_any_error_text_and_counts_every_case(tmp_path):
    """Error texts with control characters, markup and quotes (a crashing policy's message)
    still make well-formed XML; the counts are the cases'."""
    from evaluators.report import SUMMARY_SCHEMA, error_summary
    from harness.config import parse_suite
    from harness.gate import gate, write_junit

    rows = [error_summary(f"v{i}<&\"'>", "s\x01", "e", f"boom \x00\x1b[31m <tag> & ]]> {i}") for i in range(3)]
    summary = pd.DataFrame(rows).reindex(columns=SUMMARY_SCHEMA.names)
    result = gate(summary, parse_suite({}).gate, run_id="r\x02", suite="odd")
    root = ET.parse(write_junit(result, tmp_path / "j.xml", run_dir=tmp_path / "a b")).getroot()
    suite = root.find("testsuite")
    cases = [c for c in suite.findall("testcase") if c.get("classname") != "drivetwin.gate"]
    assert [c.get("name") for c in cases] == [f"v{i}<&\"'>" for i in range(3)] and cases[0].get("classname") == "s\ufffd"
    error = cases[0].find("error")
    assert error.get("message").startswith("boom \ufffd\ufffd[31m <tag> & ]]> 0; replay: drivetwin replay")
    assert error.text.endswith(f"--run '{tmp_path / 'a b'}'")
    checks = len(result.checks)
    assert suite.get("tests") == str(3 + checks) and suite.get("errors") == "3" and root.get("errors") == "3"
    assert int(suite.get("failures")) == sum(not c.passed for c in result.checks) > 0
    assert [p.name for p in tmp_path.iterdir()] == ["j.xml"]  # no temporary left


def test_junit_failing_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    """An error while the cases are written (here: a failure reason that raises) leaves the
    previous junit.xml whole and no temporary file behind."""
    import harness.gate as G
    from evaluators.report import SUMMARY_SCHEMA, error_summary
    from harness.config import parse_suite

    rows = [error_summary("v0", "s", "e", "boom")]
    summary = pd.DataFrame(rows).reindex(columns=SUMMARY_SCHEMA.names)
    result = G.gate(summary, parse_suite({}).gate, run_id="r", suite="odd")
    (tmp_path / "j.xml").write_text("<old/>")

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(G, "_replay_command", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        G.write_junit(result, tmp_path / "j.xml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.xml"] and (tmp_path / "j.xml").read_text() == "<old/>"
