"""The first at-fault collision's agent, time and place, and distinct failure modes built from them."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from evaluators import EvaluatorConfig, evaluate
from evaluators.failure_modes import MODE_COLUMNS, ModeIndex, failure_modes
from scenarios.rollout import Rollout
from scenarios.synthetic import AgentSpec, scene

CFG = EvaluatorConfig(judge_against_log=False)


def test_first_at_fault_collision_names_the_agent_the_time_and_the_egos_place():
    """The ego at 10 m/s from x = 0 drives into a car standing 25.5 m ahead (bumper to bumper):
    contact at the first step past 2.55 s, 2.6 s, with the ego's centre at x = 26 m."""
    s = scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("bystander", -60.0), AgentSpec("lead", 30.0)])
    row = evaluate(Rollout.from_log(s), s, CFG)
    assert row["at_fault_collisions"] == 1
    assert row["first_at_fault_agent"] == "lead"
    assert row["first_at_fault_collision_s"] == pytest.approx(2.6)
    assert row["first_at_fault_x_m"] == pytest.approx(26.0)
    assert row["first_at_fault_y_m"] == pytest.approx(float(s.tracks.y[s.ego_index, 0]))


def test_a_collision_the_ego_did_not_cause_has_no_at_fault_details():
    s = scene([AgentSpec("ego", 0.0), AgentSpec("follower", -20.0, speed=10.0)])
    row = evaluate(Rollout.from_log(s), s, CFG)
    assert row["collisions"] == 1 and row["at_fault_collisions"] == 0
    assert row["first_at_fault_agent"] is None
    assert row["first_at_fault_collision_s"] is None and row["first_at_fault_x_m"] is None


def _row(vid, scenario="s1", agent="a", t=3.0, x=10.0, y=0.0, score=0.0, faults=1, status="ok", mutation="search"):
    return {
        "variant_id": vid, "scenario_id": scenario, "status": status, "at_fault_collisions": faults,
        "first_at_fault_agent": agent if faults else None, "first_at_fault_collision_s": t if faults else None,
        "first_at_fault_x_m": x if faults else None, "first_at_fault_y_m": y if faults else None,
        "collisions": faults, "closed_loop_score": score, "mutation": mutation,
    }  # fmt: skip


def test_failures_at_the_same_place_with_the_same_agent_are_one_mode():
    summary = pd.DataFrame(
        [
            _row("s1~a", t=3.0, x=10.0),
            _row("s1~b", t=3.8, x=11.5),  # 0.8 s and 1.5 m from s1~a: the same mode
            _row("s1~c", t=2.2, x=8.8),  # 0.8 s and 1.2 m from s1~a: the same mode
            _row("s1~i", t=4.6, x=12.9),  # 0.8 s and 1.4 m from s1~b, but 1.6 s and 2.9 m from s1~a: another
            _row("s1~d", t=7.0, x=10.0),  # 2.4 s later: another mode
            _row("s1~e", t=3.0, x=10.0, y=2.5),  # 2.5 m to the side: another mode
            _row("s1~f", agent="b", t=3.0, x=10.0),  # another agent: another mode
            _row("s2~a", scenario="s2", t=3.0, x=10.0),  # another scenario: another mode
            _row("s1~g", faults=0, score=0.4),  # no at-fault collision: no mode
            _row("s1~h", status="error", faults=0, score=None),
        ]
    )
    modes = failure_modes(summary)
    assert list(modes.columns) == list(MODE_COLUMNS)
    assert len(modes) == 6
    first = modes[modes["variants"].map(len) == 3].iloc[0]
    assert first["variants"] == ["s1~a", "s1~b", "s1~c"] and first["count"] == 3
    assert first["variant_id"] == "s1~a"  # all score 0: the lowest id
    assert sorted(modes["variant_id"]) == ["s1~a", "s1~d", "s1~e", "s1~f", "s1~i", "s2~a"]
    assert list(modes["mode"]) == [1, 2, 3, 4, 5, 6]
    assert failure_modes(summary, time_s=10.0, distance_m=10.0)["count"].tolist() == [6, 1, 1]  # per scenario and agent


def test_the_search_tells_a_new_mode_from_a_repeat_by_the_same_rule():
    index = ModeIndex()
    assert index.add(_row("s1~a", t=3.0, x=10.0)) is True
    assert index.add(_row("s1~b", t=3.8, x=11.5)) is False  # within 1 s and 2 m of s1~a
    assert index.add(_row("s1~c", t=4.6, x=12.9)) is True  # 1.6 s from s1~a, the mode's first
    assert index.add(_row("s1~d", agent="b")) is True and index.add(_row("s2~a", scenario="s2")) is True
    assert index.add(_row("s1~g", faults=0)) is None and len(index) == 4


def test_a_mode_is_represented_by_its_most_severe_variant():
    summary = pd.DataFrame([_row("s1~a", score=0.3), _row("s1~b", t=3.5, score=0.1), _row("s1~c", t=3.2, score=0.2)])
    modes = failure_modes(summary)
    assert len(modes) == 1 and modes.iloc[0]["variant_id"] == "s1~b"
    assert modes.iloc[0]["t_s"] == 3.5 and math.isclose(modes.iloc[0]["closed_loop_score"], 0.1)


def test_a_summary_without_collision_details_has_no_modes():
    assert failure_modes(pd.DataFrame({"variant_id": ["x"], "status": ["ok"]})).empty
    assert failure_modes(pd.DataFrame()).empty
    with pytest.raises(ValueError):
        failure_modes(pd.DataFrame(), time_s=-1)
