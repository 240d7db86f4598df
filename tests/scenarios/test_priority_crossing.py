"""``insert_priority_crossing``: a crossing car with the right of way, where the logged ego stops.

On ``crossroads`` the logged ego comes along +x at 10 m/s and brakes to stand with its front at
x = 39, 1 m short of its red stop line (x = 40); the crossing road (x = 50) has green. The
would-be ego keeps its 10 m/s: its centre reaches x = 50 at 5.0 s.
"""

from __future__ import annotations

import numpy as np
import pytest

import scenarios.mutations as m
from scenarios.model import AgentType, SignalState
from scenarios.mutations.operators.insert import typical_box
from scenarios.synthetic import AgentSpec, crossroads

RED, GREEN = int(SignalState.STOP), int(SignalState.GO)
DT = 0.1
STOP_CENTRE_X = 39.0 - 4.5 / 2  # the logged ego's centre where it stands [m]


def stopping_ego(ego_signal=RED, cross_signal=GREEN, **kw):
    """The logged ego braking from 10 m/s at x = 0 to stand at ``STOP_CENTRE_X``; a parked car far down the road."""
    decel = 10.0**2 / (2 * STOP_CENTRE_X)
    agents = [AgentSpec("ego", 0.0, speed=10.0, accel=-decel), AgentSpec("parked", 200.0, length=4.0, width=1.8)]
    return crossroads(agents, ego_signal=ego_signal, cross_signal=cross_signal, **kw)


def crossing_time(v, row: int) -> float:
    """When the new car's centre crosses y = 0 [s] (linear between steps)."""
    tr = v.tracks
    t = np.arange(v.num_steps) * DT
    k = int(np.argmax(tr.valid[row] & (tr.y[row] >= 0.0)))
    return float(np.interp(0.0, tr.y[row, k - 1 : k + 1], t[k - 1 : k + 1]))


def inserted(v, s) -> int:
    (new,) = sorted(set(v.tracks.agent_ids.tolist()) - set(s.tracks.agent_ids.tolist()))
    assert new.startswith("inserted-priority_crossing") and new in v.conditions.replay_agents
    m.check_plausible(s, v)
    return v.tracks.index_of(new)


@pytest.mark.parametrize("offset_s", [-0.5, 0.0, 0.8])
def test_the_crossing_car_reaches_the_conflict_point_when_the_ego_would(offset_s):
    s = stopping_ego()
    v = m.mutate(s, [("insert_priority_crossing", {"offset_s": offset_s, "speed": 12.0, "lead_in_s": 3.0})])
    row = inserted(v, s)
    tr = v.tracks
    valid = tr.valid[row]
    assert np.allclose(tr.x[row, valid], 50.0) and np.allclose(tr.yaw[row, valid], np.pi / 2)  # on the crossing lane, going +y
    assert crossing_time(v, row) == pytest.approx(5.0 + offset_s, abs=1e-6)
    first = int(np.argmax(valid))
    assert first == round((5.0 + offset_s - 3.0) / DT) and np.allclose(tr.vy[row, first : first + 30], 12.0)
    assert tr.agent_types[row] == AgentType.VEHICLE and (tr.length[row], tr.width[row]) == typical_box(s, int(AgentType.VEHICLE))[:2]


def test_an_ego_standing_at_the_line_is_met_where_it_would_be_accelerating():
    """Standing with its centre at x = 36.75, at 2 m/s2 (to the 10 m/s limit) it covers the 13.25 m to
    x = 50 in sqrt(2 * 13.25 / 2) = 3.64 s; keeping its 0 m/s it would never get there."""
    s = crossroads([AgentSpec("ego", STOP_CENTRE_X)], ego_signal=RED, cross_signal=GREEN)
    v = m.mutate(s, [("insert_priority_crossing", {"accel": 2.0, "speed": 10.0})])
    assert crossing_time(v, inserted(v, s)) == pytest.approx(np.sqrt(13.25), abs=1e-6)
    with pytest.raises(m.NotApplicable) as info:
        m.mutate(s, [("insert_priority_crossing", {"accel": 0.0})])
    assert info.value.reason == "ego_standing"


@pytest.mark.parametrize(
    ("scene", "reason"),
    [
        (lambda: stopping_ego(ego_signal=GREEN), "not_red"),  # the ego stopped with no red to stop for
        (lambda: stopping_ego(cross_signal=RED), "no_priority"),  # the crossing road has no right of way
        (lambda: crossroads([AgentSpec("ego", 0.0, speed=10.0)], ego_signal=RED, cross_signal=GREEN), "ego_went"),  # the log ran it
        (lambda: crossroads([AgentSpec("ego", 0.0, speed=10.0)], stop_sign=True), "no_stop"),  # rolled through its stop sign
        (lambda: crossroads([AgentSpec("ego", 0.0, speed=10.0)]), "no_stop_line"),
    ],
)
def test_it_applies_only_where_the_log_stops_for_the_crossing_traffics_priority(scene, reason):
    with pytest.raises(m.NotApplicable) as info:
        m.mutate(scene(), [("insert_priority_crossing", {})])
    assert info.value.reason == reason


def test_a_stop_sign_the_log_stopped_at_gives_the_crossing_road_the_priority():
    s = stopping_ego(ego_signal=None, cross_signal=None, stop_sign=True)
    v = m.mutate(s, [("insert_priority_crossing", {"speed": 10.0})])
    assert crossing_time(v, inserted(v, s)) == pytest.approx(5.0, abs=1e-6)


def test_the_expert_meets_nobody_and_idm_runs_its_red_into_it():
    """Closed loop through the twin (goal termination off: the logged path ends at the stop line).
    The expert stops as the log did; ``idm`` ignores the signal, enters on red at 3.8 s and strikes
    the car that had green: at fault, however late the car entered its path."""
    from evaluators.collisions import collision_table
    from evaluators.config import EvaluatorConfig
    from evaluators.context import Context
    from evaluators.summary import evaluate
    from sim.env import DriveTwinEnv
    from sim.runner import rollout

    s = stopping_ego()
    v = m.mutate(s, [("insert_priority_crossing", {"offset_s": 0.0, "speed": 10.0, "lead_in_s": 3.0})])
    rows = {}
    for policy in ("expert", "idm"):
        env = DriveTwinEnv(scenario=v, config={"agents_mode": "replay", "terminate_on_goal": False})
        try:
            r = rollout(env, policy, seed=0)
        finally:
            env.close()
        rows[policy] = evaluate(r, v, log=s)
        if policy == "idm":
            (c,) = collision_table(Context(r, v, EvaluatorConfig()))
    assert rows["expert"]["collisions"] == 0 and rows["expert"]["red_light_violations"] == 0
    assert rows["idm"]["at_fault_collisions"] == 1 and rows["idm"]["red_light_violations"] == 1
    assert c["agent_id"].startswith("inserted-priority_crossing") and c["type"] == "active_front"
    assert c["avoidability"].startswith("the ego entered the junction against the red signal on lane west_through at 3.8 s")


def test_on_the_real_logs_it_applies_where_the_map_has_stop_lines(data_dir):
    """Of the Waymo logs, only the TFRecord scene has signals (12; its ego stands before a red for all
    9.1 s) and stop signs that name their lanes (3 signs, 8 lanes); GPUDrive's JSON has empty
    ``tl_states`` and stop signs without lanes. There the standing ego is met when it would be
    accelerating; the expert, standing as the log did, meets nobody."""
    import scenarios
    from evaluators.config import EvaluatorConfig
    from evaluators.context import Context
    from evaluators.summary import evaluate
    from scenarios.rollout import Rollout
    from sim.env import DriveTwinEnv
    from sim.runner import rollout

    (womd,) = scenarios.load(data_dir / "womd_tfrecord" / "motion_data_one_scenario.tfrecord")
    controls = Context(Rollout.from_log(womd), womd, EvaluatorConfig()).stop_controls
    assert len(controls) == 20 and sum(c.signal_row >= 0 for c in controls) == 12
    v = m.mutate(womd, [("insert_priority_crossing", {"conflict": 1, "accel": 2.0, "offset_s": 0.0})])
    row = inserted(v, womd)
    env = DriveTwinEnv(scenario=v, config={"agents_mode": "replay", "terminate_on_goal": False})
    try:
        r = rollout(env, "expert", seed=0)
    finally:
        env.close()
    assert evaluate(r, v, log=womd)["collisions"] == 0 and v.tracks.valid[row].any()
    for path in sorted((data_dir / "waymo_json").glob("*.json")):
        (s,) = scenarios.load(path)
        with pytest.raises(m.NotApplicable) as info:
            m.mutate(s, [("insert_priority_crossing", {"accel": 2.0})])
        assert info.value.reason == "no_stop_line"
