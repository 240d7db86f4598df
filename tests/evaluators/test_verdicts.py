"""A summary row's verdict: causes by severity, what set its score, its own failures."""

from __future__ import annotations

import pandas as pd
import pytest

from evaluators import EvaluatorConfig, evaluate
from evaluators.verdicts import causes, failures_by_cause, rank, score_drivers, verdict_failures
from scenarios.rollout import Rollout
from scenarios.synthetic import AgentSpec, scene

ABSOLUTE = EvaluatorConfig(judge_against_log=False)


def row_of(s, config=ABSOLUTE, **identity):
    return {**evaluate(Rollout.from_log(s), s, config), **identity}


def rear_end():
    """The ego at 10 m/s into a car standing 25.5 m ahead: at fault, first contact at 2.6 s."""
    return scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("lead", 30.0)])


def rear_ended():
    """The ego waits; a car from behind drives into it: a collision, not at fault."""
    return scene([AgentSpec("ego", 0.0), AgentSpec("follower", -20.0, speed=10.0)])


def off_road():
    return scene([AgentSpec("ego", 0.0, y=-1.75 - 0.5 + 0.95, speed=10.0)])


def clean():
    return scene([AgentSpec("ego", 0.0, speed=10.0)])


def harsh():
    return scene([AgentSpec("ego", 0.0, speed=12.0, accel=-6.0)])


def test_causes_and_messages_of_named_scenes():
    hit = row_of(rear_end(), variant_id="hit")
    assert causes(hit) == ["at_fault_collision", "ttc"]
    assert verdict_failures(hit) == ["1 at-fault collision, the first at 2.6 s"]
    assert score_drivers(hit) == ["no_at_fault_collisions 0"]
    later = {**hit, "collisions": 2, "unavoidable_collisions": 1, "first_collision_s": 1.0}  # an unavoidable one first
    assert causes(later) == ["at_fault_collision", "collision", "ttc"]
    assert verdict_failures(later) == ["1 at-fault collision, the first at 2.6 s"]
    hit_by = row_of(rear_ended(), variant_id="hit_by")
    assert causes(hit_by) == ["collision"] and verdict_failures(hit_by) == []
    off = row_of(off_road(), variant_id="off")
    assert causes(off) == ["off_road"] and verdict_failures(off) == ["0.50 m off the drivable area"]
    assert score_drivers(off) == ["drivable_area_compliance 0"]
    # judged against its own log, the off-road log is no failure of the planner's
    assert causes(row_of(off_road(), EvaluatorConfig())) == []
    braking = row_of(harsh(), variant_id="harsh")
    assert causes(braking) == ["uncomfortable"] and verdict_failures(braking) == []
    assert score_drivers(braking) == ["comfortable 0.00 (-0.12)"]  # weight 2 of 16
    assert verdict_failures(braking, min_variant_score=0.9) == ["closed-loop score 0.875 under min_variant_score 0.9"]
    assert verdict_failures(row_of(clean()), min_variant_score=0.9) == []


def test_severity_ranks_collisions_first_then_off_road_then_score():
    rows = [
        row_of(clean(), variant_id="clean"),
        row_of(harsh(), variant_id="harsh"),
        row_of(off_road(), variant_id="off"),
        row_of(rear_ended(), variant_id="hit_by"),
        row_of(rear_end(), variant_id="hit"),
        {"variant_id": "crashed", "status": "error", "error": "policy: boom"},
    ]
    summary = pd.DataFrame(rows)
    assert list(rank(summary)["variant_id"]) == ["crashed", "hit", "hit_by", "off", "harsh", "clean"]
    table = failures_by_cause(summary)
    assert list(table["cause"]) == ["error", "at_fault_collision", "collision", "off_road", "ttc", "uncomfortable"]
    assert table.set_index("cause").loc["ttc", "variants"] == ["hit"]
    assert verdict_failures(rows[-1]) == ["error: policy: boom"]


@pytest.mark.parametrize("score, fails", [(0.49, True), (0.5, False)])
def test_min_variant_score_is_a_strict_floor(score, fails):
    row = {"variant_id": "v", "status": "ok", "closed_loop_score": score}
    assert bool(verdict_failures(row, 0.5)) is fails


def test_the_vectorised_causes_and_rank_agree_with_the_row_rules():
    """``cause_flags`` and ``rank`` on a table of every kind of value (NaN, None, bools, object
    columns, error rows, equal scores) give exactly ``causes`` and ``sorted(severity_key)``; and
    the gate's failures match ``verdict_failures`` row by row."""
    import numpy as np

    from evaluators.verdicts import CAUSES, RULES, cause_flags, severity_key
    from harness.config import GateConfig
    from harness.gate import variant_failures

    rng = np.random.default_rng(7)
    n = 400
    table = {"variant_id": [f"v{i % 350:03d}" for i in range(n)],  # some ids twice: ties keep their order
             "status": rng.choice(["ok", "ok", "ok", "error", "rejected"], n).astype(object),
             "closed_loop_score": rng.choice([0.0, 0.5, 0.5, 1.0, np.nan], n)}
    for column in sorted({c for c, _, _ in RULES.values()}):
        values = rng.choice([0.0, 1.0, 2.0, np.nan], n).astype(object)
        values[rng.random(n) < 0.1] = None
        values[rng.random(n) < 0.1] = True
        table[column] = values if rng.random() < 0.5 else pd.to_numeric(pd.Series(values), errors="coerce").to_numpy()
    table["status"][:3] = None  # a row without a status is not an error
    table["status"][3] = np.nan
    summary = pd.DataFrame(table)
    rows = summary.to_dict("records")
    flags = cause_flags(summary)
    assert list(flags.columns) == list(CAUSES)
    assert [list(flags.columns[flags.iloc[i].to_numpy()]) for i in range(n)] == [causes(r) for r in rows]
    assert flags.to_numpy().any(axis=0).all()  # every cause occurs, so each rule was compared
    expected = sorted(range(n), key=lambda i: severity_key(rows[i]))
    assert list(rank(summary).index) == expected
    for floor in (0.0, 0.75):
        got = variant_failures(summary, GateConfig(min_variant_score=floor)).tolist()
        want = [verdict_failures(r, floor or None) for r in rows]
        assert [list(g) for g in got] == want
