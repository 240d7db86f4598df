"""The adaptive search: objectives, severity-first scores, rejections fed back, failures replayed."""

from __future__ import annotations

import math
import textwrap
from collections import Counter

import pytest

from evaluators.failure_modes import failure_modes
from harness.cli import main
from harness.config import ConfigError, load_suite, parse_suite
from harness.replay import Replayer
from harness.runner import _worker_factory, run_suite
from harness.search import REJECTED_SCORE, Objective, adaptive_rounds, search_score, severity_class
from scenarios.library import ScenarioLibrary

SAMPLE = "commonroad-USA_US101-4_1_T-1"


def write_suite(tmp_path, objective: str):
    path = tmp_path / "search.toml"
    path.write_text(textwrap.dedent(f"""
        [[mutations]]
        operator = "lead_brake"
        params = {{ decel = {{ uniform = [2.0, 9.0], unit = "m/s2" }} }}
        sampler = "cem"
        objective = {objective}
    """))
    return path


@pytest.mark.parametrize(
    "objective, key, problem",
    [
        ('"closed_loop_scor"', "mutations.objective", "no numeric summary column"),
        ("{ closed_loop_score = 1.0, min_ttc = 0.1 }", "mutations.objective.min_ttc", "no numeric summary column"),
        ('{ closed_loop_score = "high" }', "mutations.objective.closed_loop_score", "finite number"),
        ('{ policy = 1.0 }', "mutations.objective.policy", "no numeric summary column"),  # text, not a number
        ("{}", "mutations.objective", "a column name or a table"),
        ("3", "mutations.objective", "a column name or a table"),
    ],
)
def test_a_bad_objective_names_the_file_and_the_key(tmp_path, objective, key, problem):
    path = write_suite(tmp_path, objective)
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert err.value.source == str(path) and err.value.key == key and problem in err.value.problem


def test_a_weighted_objective_is_the_weighted_sum_of_its_columns(tmp_path):
    config = load_suite(write_suite(tmp_path, "{ closed_loop_score = 1.0, min_ttc_s = 0.1 }"))
    objective = config.mutations[0].parsed_objective()
    assert objective == Objective((("closed_loop_score", 1.0), ("min_ttc_s", 0.1)))
    assert objective.value({"closed_loop_score": 0.5, "min_ttc_s": 2.0}) == pytest.approx(0.7)
    assert math.isnan(objective.value({"closed_loop_score": 0.5, "min_ttc_s": None}))


def row(**values):
    base = {"status": "ok", "at_fault_collisions": 0, "collisions": 0, "drivable_area_compliance": 1.0,
            "red_light_violations": 0, "closed_loop_score": 1.0, "progress_ratio": 1.0}  # fmt: skip
    return {**base, **values}


def test_an_at_fault_collision_scores_worse_than_any_variant_without_one():
    """Severity first: whatever the objective, the search scores an at-fault collision below every
    variant without one, and a rejected proposal above (worse than) every simulated one."""
    progress = Objective((("progress_ratio", 1.0),))
    crash = row(at_fault_collisions=1, collisions=1, closed_loop_score=0.0, progress_ratio=1.0)
    stalled = row(progress_ratio=0.0, closed_loop_score=0.0)  # the lowest objective, no collision
    offroad = row(drivable_area_compliance=0.0, progress_ratio=1.0)
    hit = row(collisions=1)  # not at fault
    error = {"status": "error"}
    scores = [search_score(r, progress) for r in (error, crash, hit, offroad, stalled)]
    assert scores == sorted(scores) and len(set(scores)) == 5
    assert search_score(None, progress) == REJECTED_SCORE > search_score(row(at_fault_collisions=1, collisions=1), progress, repeat=True)
    assert [severity_class(r) for r in (error, crash, stalled)] == [15, 23, 31]
    # within a class, the objective decides, on any scale
    far, near = row(min_ttc_s=80.0), row(min_ttc_s=-3.0)
    ttc = Objective((("min_ttc_s", 1.0),))
    assert search_score(near, ttc) < search_score(far, ttc) < 32
    # a collision the ego could not have avoided (braking in time would still have touched) is no
    # failure of the planner: the worst of the clean runs, so the search is not drawn to staging it
    unavoidable = row(collisions=1, unavoidable_collisions=1, closed_loop_score=0.0, progress_ratio=0.0)
    assert severity_class(unavoidable) == 31
    assert search_score(row(progress_ratio=1.0), progress) < search_score(unavoidable, progress) < 32
    assert severity_class(row(collisions=2, unavoidable_collisions=1)) == 27  # one of two excused: still a collision
    # a repeat of a known failure mode: worse than any clean run, better than a rejection
    assert search_score(stalled, progress) < search_score(row(progress_ratio=1.0), progress) < search_score(crash, progress, repeat=True) < REJECTED_SCORE


def sample_root() -> str:
    return str(ScenarioLibrary("sample").root)


def test_rejected_proposals_teach_the_search_the_feasible_region_on_real_logs():
    """time_shift of the nearest agent by -20..20 s on 10 s logs: beyond about 10 s nothing of
    the agent is left (rejected "no_agent") and some shifts overlap the ego at the start. The
    first round is rejected about half the time; the search, fed the rejections, then proposes
    fewer rejected variants in every later round."""
    config = parse_suite(
        {
            "scenarios": {"sources": ["sample"]},
            "policy": {"name": "idm"},
            "mutations": [{
                "name": "shift", "operator": "time_shift", "sampler": "cem", "variants": 10, "rounds": 4,
                "params": {"agent": "nearest", "shift_s": {"uniform": [-20.0, 20.0], "unit": "s"}},
            }],
            "run": {"seed": 0, "include_original": False},
        }
    )  # fmt: skip
    worker = _worker_factory(config)()
    rounds: list[list[str]] = []

    def run(batch):
        outcomes = [(task, worker.run(task)) for task in batch]
        rounds.append([o.summary["status"] for _, o in outcomes])
        return outcomes

    scenarios = [(sample_root(), f"{SAMPLE}.ego-{e}") for e in (381, 383, 384, 387, 388, 389)]
    try:
        simulated = adaptive_rounds(config, scenarios, run, Counter(), {})
    finally:
        worker.close()
    rates = [statuses.count("rejected") / len(statuses) for statuses in rounds]
    assert len(rates) == 4 and simulated == sum(s.count("ok") for s in rounds)
    assert rates[0] >= 0.4
    assert all(rate <= 0.5 * rates[0] for rate in rates[1:]), rates


def test_a_found_failure_replays_to_the_same_collision_and_the_report_lists_it(tmp_path, capsys):
    """constant_velocity does not brake: the search finds it driving into agent 381 (ego 387),
    the failure modes name one replayable variant each, and replaying it gives the same collision."""
    config = parse_suite(
        {
            "suite": {"name": "found"},
            "scenarios": {"sources": ["sample"], "ids": [f"{SAMPLE}.ego-387", f"{SAMPLE}.ego-381"]},
            "policy": {"name": "constant_velocity"},
            "mutations": [{
                "name": "shift", "operator": "time_shift", "sampler": "cem", "variants": 4, "rounds": 2,
                "params": {"agent": "nearest", "shift_s": {"uniform": [-3.0, 3.0], "unit": "s"}},
                "objective": {"closed_loop_score": 1.0, "min_ttc_s": 0.1},
            }],
            "run": {"seed": 0, "workers": 1, "executor": "sequential", "include_original": False},
        },
        "found.toml",
    )  # fmt: skip
    result = run_suite(config, out=tmp_path / "run", progress=False)
    modes = failure_modes(result.summary)
    assert len(modes) >= 1
    mode = modes.iloc[0]
    assert mode["scenario_id"] == f"{SAMPLE}.ego-387" and mode["agent_id"] == "381"
    with Replayer(result.run_dir) as replayer:
        replayed = replayer.replay(mode["variant_id"])
    assert replayed.exact, replayed.mismatches
    assert replayed.row["first_at_fault_agent"] == "381"
    assert replayed.row["first_at_fault_collision_s"] == mode["t_s"]
    assert (replayed.row["first_at_fault_x_m"], replayed.row["first_at_fault_y_m"]) == (mode["x_m"], mode["y_m"])
    assert main(["report", str(result.run_dir), "--worst", "0"]) == 0
    out = capsys.readouterr().out
    assert f"{len(modes)} distinct at-fault failure mode" in out
    assert f"hits agent 381 at {mode['t_s']:.1f} s" in out and f"drivetwin replay '{mode['variant_id']}'" in out
    assert "Distinct failure modes" in (result.run_dir / "report.html").read_text()
