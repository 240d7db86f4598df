"""The avoidability rule (``evaluators.avoidability``) on hand-built scenes with closed-form answers.

The ego drives at V along +x; an agent enters its path at a gap g [m] (bumper to bumper) at the
conflict's onset. Braking at b after a reaction time t_r needs D = V t_r + V^2 / (2 b) to stop:
the collision is unavoidable (excused) when g < D, the ego's fault when g >= D (the exact
boundary is at fault: stopping at the agent avoids it).
"""

from __future__ import annotations

import numpy as np
import pytest

from evaluators import EvaluatorConfig, EvaluatorError, evaluate
from evaluators.avoidability import Response, Track, conflict_onset, judge, stopping_distance
from evaluators.collisions import collision_table
from evaluators.context import Context
from scenarios import AgentType
from scenarios.model import Tracks
from scenarios.rollout import Rollout
from scenarios.synthetic import AgentSpec, scene

CFG = EvaluatorConfig(judge_against_log=False)  # absolute verdicts: the scenes are the log
GEOMETRIC = CFG.with_settings("collisions", avoidability=False)
V = 10.0  # the ego's speed [m/s]
EGO_HALF_LENGTH = 4.5 / 2  # AgentSpec's default car
DEFAULT_STOP_M = V * 0.5 + V**2 / (2 * 6.0)  # the defaults: 0.5 s, 6 m/s2: 13.33 m


def with_track(s, row: int, **arrays: np.ndarray):
    """``s`` with agent ``row``'s x/y/yaw/vx/vy replaced by ``arrays``."""
    tr = s.tracks
    fields = {n: getattr(tr, n).copy() for n in ("x", "y", "z", "yaw", "vx", "vy", "valid")}
    for name, value in arrays.items():
        fields[name][row] = value
    return s.replace(tracks=Tracks(tr.agent_ids, tr.agent_types, tr.length, tr.width, tr.height, **fields))


def cut_in(gap_m: float, onset_step: int = 10, num_steps: int = 61):
    """The ego at V; a car standing in the next lane slides into the ego's lane at ``onset_step``
    (1.0 s), its rear ``gap_m`` ahead of the ego's front then, and stands there."""
    t0 = onset_step * 0.1
    x = V * t0 + 2 * EGO_HALF_LENGTH + gap_m  # its centre: the ego's front + gap + its half length
    s = scene([AgentSpec("ego", 0.0, speed=V), AgentSpec("cutter", x, y=3.5)], num_steps=num_steps)
    y = np.where(np.arange(num_steps) < onset_step, 3.5, 0.0)
    return with_track(s, 1, y=y)


def judged(s, config=CFG):
    ctx = Context(Rollout.from_log(s), s, config)
    (collision,) = collision_table(ctx)
    return evaluate(Rollout.from_log(s), s, config), collision


def test_the_stopping_distance_is_the_closed_form():
    assert stopping_distance(V, 0.5, 6.0) == pytest.approx(5.0 + 100.0 / 12.0)  # 13.33 m
    assert stopping_distance(V, 0.5, 5.0) == 15.0


def test_a_cut_in_closer_than_the_stopping_distance_is_unavoidable():
    row, c = judged(cut_in(8.0))  # 8 m < 13.33 m
    assert c["type"] == "stopped_track" and c["conflict_s"] == pytest.approx(1.0)  # it entered the path at 1.0 s
    assert row["collisions"] == 1 and row["at_fault_collisions"] == 0 and row["unavoidable_collisions"] == 1
    assert c["unavoidable"] and not c["at_fault"] and "0.90 s before contact" in c["avoidability"]
    assert row["no_at_fault_collisions"] == 1.0
    geometric = evaluate(Rollout.from_log(cut_in(8.0)), cut_in(8.0), GEOMETRIC)  # nuPlan's stage alone: at fault
    assert geometric["at_fault_collisions"] == 1 and geometric["unavoidable_collisions"] is None


def test_the_same_cut_in_at_a_gap_the_ego_could_stop_in_is_at_fault():
    row, c = judged(cut_in(20.0))  # 20 m > 13.33 m: braking stops 6.67 m short
    assert row["at_fault_collisions"] == 1 and row["unavoidable_collisions"] == 0 and row["no_at_fault_collisions"] == 0.0
    assert not c["unavoidable"] and f"stops {20.0 - DEFAULT_STOP_M:.2f} m short" in c["avoidability"]
    assert row["first_at_fault_collision_s"] == pytest.approx(3.1)  # contact after 20 m more at 10 m/s: 3.0 s, first overlap at 3.1 s


@pytest.mark.parametrize(("gap_m", "unavoidable"), [(14.99, True), (15.0, False), (15.01, False)])
def test_the_boundary_at_the_exact_stopping_distance_is_at_fault(gap_m, unavoidable):
    """0.5 s and 5 m/s2 from 10 m/s: exactly 15 m to stop. Stopping with the front at the car's
    rear (a touch of depth 0, not an overlap) avoided it: 15 m is the ego's fault."""
    config = CFG.with_settings("collisions", reaction_s=0.5, brake_mps2=5.0)
    row, c = judged(cut_in(gap_m), config)
    assert c["unavoidable"] is unavoidable and row["at_fault_collisions"] == (0 if unavoidable else 1)


def test_a_stopped_car_ahead_driven_into_is_at_fault():
    """In the ego's path from the first step, 25.5 m ahead: braking would stop 12.17 m short."""
    row, c = judged(scene([AgentSpec("ego", 0.0, speed=V), AgentSpec("parked", 30.0)]))
    assert c["type"] == "stopped_track" and c["conflict_s"] == 0.0
    assert row["at_fault_collisions"] == 1 and row["unavoidable_collisions"] == 0
    assert f"stops {25.5 - DEFAULT_STOP_M:.2f} m short" in c["avoidability"]


def test_a_lead_braking_within_limits_with_a_gap_the_ego_could_keep_is_at_fault():
    """A lead 25.5 m ahead at the ego's speed brakes at 4 m/s2 to a stop; the ego keeps going."""
    row, c = judged(scene([AgentSpec("ego", 0.0, speed=V), AgentSpec("lead", 30.0, speed=V, accel=-4.0)]))
    assert c["conflict_s"] == 0.0 and row["at_fault_collisions"] == 1 and row["unavoidable_collisions"] == 0


def test_a_lead_braking_hard_from_a_gap_the_scene_started_with_is_unavoidable():
    """6 m behind a lead at 10 m/s that brakes at 8 m/s2 from the first step: the lead stops in
    6.25 m, the ego (0.5 s, 6 m/s2) needs 13.33 m, 1.08 m more than the 12.25 m it has."""
    row, c = judged(scene([AgentSpec("ego", 0.0, speed=V), AgentSpec("lead", 10.5, speed=V, accel=-8.0)]))
    assert row["at_fault_collisions"] == 0 and row["unavoidable_collisions"] == 1


def test_a_pedestrian_stepping_out_0_2_s_before_contact_is_unavoidable():
    """A pedestrian walks across at 1.5 m/s; it enters the ego's path at 1.0 s, 0.2 s before the
    ego's front reaches it (its box overlaps the ego's from 1.2 s)."""
    n, k0 = 41, 10
    t = np.arange(n) * 0.1
    x = V * 1.0 + EGO_HALF_LENGTH + 1.5 + 0.3  # the ego's front reaches its near side at 1.15 s
    s = scene([AgentSpec("ego", 0.0, speed=V),
               AgentSpec("ped", x, length=0.6, width=0.6, agent_type=AgentType.PEDESTRIAN)], num_steps=n)  # fmt: skip
    s = with_track(s, 1, y=-1.2 + 1.5 * (t - t[k0]), vy=np.full(n, 1.5), yaw=np.full(n, np.pi / 2))
    row, c = judged(s)
    assert c["type"] == "active_front" and c["t_s"] == pytest.approx(1.2) and c["conflict_s"] == pytest.approx(1.0)
    assert row["collisions_vru"] == 1 and row["at_fault_collisions_vru"] == 0 and row["unavoidable_collisions"] == 1
    assert "0.20 s before contact, under the 0.5 s reaction time" in c["avoidability"]
    assert evaluate(Rollout.from_log(s), s, GEOMETRIC)["at_fault_collisions_vru"] == 1


def test_the_egos_own_sideways_move_into_a_car_stays_at_fault():
    """The ego drifts left (0.1 rad) into a car driving beside-ahead in the next lane at its
    speed: the car enters the ego's corridor 0.4 s before contact, but the ego moved into it."""
    s = scene([AgentSpec("ego", 0.0, speed=V / np.cos(0.1), yaw=0.1), AgentSpec("beside", 4.0, y=3.5, speed=V)], num_steps=41)
    row, c = judged(s)
    assert c["type"] == "active_front"
    assert row["at_fault_collisions"] == 1 and row["unavoidable_collisions"] == 0
    assert "sideways into it" in c["avoidability"]


def test_a_lane_change_into_the_side_of_a_car_stays_at_fault():
    """The ego drifts left (0.1 rad) into a car driving beside it in the next lane: a side contact
    while it straddles the lanes (nuPlan: at fault), the car in its corridor only at the contact,
    but from the reaction time (0.5 s) before then the ego moved 0.5 m sideways into it."""
    s = scene([AgentSpec("ego", 0.0, speed=V / np.cos(0.1), yaw=0.1), AgentSpec("beside", -2.0, y=3.5, speed=V)], num_steps=41)
    row, c = judged(s)
    assert c["type"] == "active_lateral" and c["t_s"] == pytest.approx(1.6) and c["conflict_s"] == pytest.approx(1.6)
    assert "the ego moved 0.50 m sideways into it (the agent 0.00 m)" in c["avoidability"]
    assert row["at_fault_collisions"] == 1 and row["unavoidable_collisions"] == 0
    assert "sideways into it" in c["avoidability"] and "under the 0.5 s reaction time" in c["avoidability"]


def test_a_car_drifting_into_the_side_of_an_ego_that_keeps_its_line_is_unavoidable():
    """The same contact the other way round: the car drifts (-0.15 rad) into the ego's side while
    the ego straddles the lane line, driving straight (nuPlan: at fault, for the straddling)."""
    s = scene([AgentSpec("ego", 0.0, y=1.75, speed=V), AgentSpec("drifter", -1.0, y=5.0, speed=V, yaw=-0.15)], num_steps=31)
    row, c = judged(s)
    assert c["type"] == "active_lateral" and c["unavoidable"] and row["unavoidable_collisions"] == 1
    assert evaluate(Rollout.from_log(s), s, GEOMETRIC)["at_fault_collisions"] == 1


def test_the_onset_is_where_the_agent_entered_the_corridor():
    s = cut_in(8.0, onset_step=14)
    r = Rollout.from_log(s)
    track = lambda i: Track(r.t_us / 1e6, r.x[i], r.y[i], r.yaw[i], r.vx[i], r.vy[i], r.valid[i], 4.5, 1.9)  # noqa: E731
    contact = int(np.argmax(Context(r, s, CFG).overlap[1] > 0))
    assert conflict_onset(track(0), track(1), contact) == 14
    verdict = judge(track(0), track(1), contact, Response(reaction_s=0.0, brake_mps2=6.0, agent_max_brake_mps2=8.0))
    assert verdict.unavoidable  # 8 m < 100 / 12 = 8.33 m even braking at once
    verdict = judge(track(0), track(1), contact, Response(reaction_s=0.0, brake_mps2=7.0, agent_max_brake_mps2=8.0))
    assert not verdict.unavoidable  # 100 / 14 = 7.14 m < 8 m


@pytest.mark.parametrize(
    ("table", "field"),
    [({"brake_mps2": 0.0}, "collisions.brake_mps2"), ({"reaction_s": -0.1}, "collisions.reaction_s"),
     ({"avoidability": "yes"}, "collisions.avoidability"), ({"reaction": 1.0}, "collisions.reaction")],
)  # fmt: skip
def test_bad_avoidability_settings_name_the_file_and_key(table, field):
    with pytest.raises(EvaluatorError) as info:
        EvaluatorConfig.from_mapping({"collisions": table}, "configs/suite.toml")
    assert info.value.field == field and "configs/suite.toml" in str(info.value)
