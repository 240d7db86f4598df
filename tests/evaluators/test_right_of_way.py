"""The right-of-way rule of ``evaluators.avoidability`` on hand-built crossroads with known answers.

The ego drives along +x on ``crossroads`` (its stop line at x = 40, the crossing road's centre at
x = 50); a car on the crossing road enters the ego's path 0.15 s before the ego's front reaches
it: under the 0.5 s reaction time, so the braking test alone excuses the collision. It stays the
ego's when the ego entered the junction against the light or a stop sign, and only then.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import shapely

from evaluators import EvaluatorConfig, evaluate
from evaluators.avoidability import CREEP_M, YELLOW_DECEL_MPS2, YELLOW_REACTION_S, Track, right_of_way_violation
from evaluators.collisions import collision_table
from evaluators.context import Context
from evaluators.stop_lines import Control
from scenarios.model import Lane, RoadMap, Signals, SignalState, Tracks
from scenarios.rollout import Rollout
from scenarios.synthetic import AgentSpec, crossroads

CFG = EvaluatorConfig(judge_against_log=False)  # absolute verdicts: the scenes are the log
RED, YELLOW, GREEN = int(SignalState.STOP), int(SignalState.CAUTION), int(SignalState.GO)
HALF = 4.5 / 2  # AgentSpec's default car: half its length [m]
CROSS_NEAR_SIDE_X = 50.0 - 1.9 / 2  # the crossing car's near side [m]
EGO_HALF_WIDTH = 1.9 / 2
V = 10.0


def ego_x_wait_then_go(front_stop_x: float, go_s: float = 3.0, num_steps: int = 91) -> np.ndarray:
    """The ego's centre x [m]: from 4 m/s braking at 2 m/s2 to stand at 2.0 s with its front at
    ``front_stop_x``, standing to ``go_s``, then accelerating at 3 m/s2."""
    t = np.arange(num_steps) * 0.1
    x_stop = front_stop_x - HALF
    tb = np.minimum(t, 2.0)
    x = x_stop - 4.0 + 4.0 * tb - tb**2
    return np.where(t > go_s, x_stop + 1.5 * (t - go_s) ** 2, x)


def with_ego_x(s, x: np.ndarray):
    """``s`` with the ego's x replaced by ``x`` and its vx by the differences."""
    tr = s.tracks
    fields = {n: getattr(tr, n).copy() for n in ("x", "y", "z", "yaw", "vx", "vy", "valid")}
    fields["x"][0] = x
    fields["vx"][0] = np.gradient(x, 0.1)
    return s.replace(tracks=Tracks(tr.agent_ids, tr.agent_types, tr.length, tr.width, tr.height, **fields))


def crossing_car_for(ego_x: np.ndarray, lead_s: float = 0.15) -> AgentSpec:
    """A car at 10 m/s along +y at x = 50 whose front enters the ego's half width ``lead_s`` before
    the ego's front reaches its near side."""
    t_hit = float(np.interp(CROSS_NEAR_SIDE_X, ego_x + HALF, np.arange(ego_x.size) * 0.1))
    y0 = -EGO_HALF_WIDTH - HALF - V * (t_hit - lead_s)
    return AgentSpec("cross", 50.0, y=y0, speed=V, yaw=np.pi / 2)


def junction(ego_x: np.ndarray, **signals) -> dict:
    """The one collision of the ego driving ``ego_x`` into the crossing car, as ``collision_table`` gives it, and the summary row."""
    n = ego_x.size
    s = crossroads([AgentSpec("ego", float(ego_x[0])), crossing_car_for(ego_x)], num_steps=n, **signals)
    s = with_ego_x(s, ego_x)
    ctx = Context(Rollout.from_log(s), s, CFG)
    (c,) = collision_table(ctx)
    row = evaluate(Rollout.from_log(s), s, CFG)
    assert c["type"] == "active_front" and row["collisions"] == 1
    assert row["at_fault_collisions"] + row["unavoidable_collisions"] == 1
    return {**c, "row": row}


STEADY = V * np.arange(91) * 0.1  # the ego at 10 m/s from x = 0: its front crosses x = 40 at 3.775 s (step 38)


def test_a_collision_after_running_the_red_is_the_egos():
    c = junction(STEADY, ego_signal=RED, cross_signal=GREEN)
    assert c["at_fault"] and not c["unavoidable"] and c["row"]["at_fault_collisions"] == 1
    assert c["avoidability"].startswith("the ego entered the junction against the red signal on lane west_through at 3.8 s, though")
    assert "under the 0.5 s reaction time" in c["avoidability"]  # the braking test alone would excuse it


def test_the_same_collision_on_green_is_excused():
    c = junction(STEADY, ego_signal=GREEN, cross_signal=RED)
    assert c["unavoidable"] and not c["at_fault"] and "junction" not in c["avoidability"]


def test_when_both_ran_the_red_the_ego_is_not_blamed_for_it():
    c = junction(STEADY, ego_signal=RED, cross_signal=RED)
    assert c["unavoidable"] and "but the agent entered the junction against the red signal on lane south_through" in c["avoidability"]


@pytest.mark.parametrize("front_stop_x", [39.0, 40.5])  # stopped before the line; crept 0.5 m over it on red
def test_an_ego_that_stopped_at_the_red_and_went_on_green_is_never_blamed(front_stop_x):
    c = junction(ego_x_wait_then_go(front_stop_x), ego_signal=[RED] * 30 + [GREEN] * 61, cross_signal=RED)
    assert c["unavoidable"] and "junction" not in c["avoidability"]


def test_an_ego_that_waited_and_went_on_red_is_blamed_from_when_it_went():
    c = junction(ego_x_wait_then_go(40.5), ego_signal=RED, cross_signal=GREEN)
    # entered at its last standing step: 3.1 s, where it moves at 0.3 m/s (under STOP_SPEED_MPS), not the crossing at 1.3 s
    assert c["at_fault"] and "against the red signal on lane west_through at 3.1 s" in c["avoidability"]


@pytest.mark.parametrize(("yellow_s", "blamed"), [(1.0, True), (1.2, False)])
def test_a_yellow_counts_when_the_ego_could_have_stopped_for_it(yellow_s, blamed):
    """At 10 m/s the ego needs 10 * 1 + 100 / 6 = 26.67 m to stop; at 1.0 s its front is 27.75 m
    from the line (could stop: the ego's), at 1.2 s 25.75 m (could not: excused)."""
    need = V * YELLOW_REACTION_S + V**2 / (2 * YELLOW_DECEL_MPS2)
    gap = 40.0 - (HALF + V * yellow_s)
    assert (gap >= need) is blamed
    k = int(round(yellow_s * 10))
    c = junction(STEADY, ego_signal=[GREEN] * k + [YELLOW] * (91 - k))  # the crossing road has no signal
    assert c["at_fault"] is blamed
    if blamed:
        assert f"({gap:.1f} m from the line at 10.0 m/s when it showed yellow, {need:.1f} m to stop)" in c["avoidability"]


def test_a_stop_sign_rolled_through_is_the_egos_and_one_stopped_at_is_not():
    c = junction(STEADY, stop_sign=True)
    assert c["at_fault"] and "the ego did not stop at the stop sign stop on lane west_through (front over the line at 3.8 s" in c["avoidability"]
    c = junction(ego_x_wait_then_go(39.0), stop_sign=True)
    assert c["unavoidable"] and "stop sign" not in c["avoidability"]


def test_a_stop_signs_stop_point_is_on_its_lane():
    s = crossroads([AgentSpec("ego", 0.0, speed=V)], stop_sign=True)
    (control,) = Context(Rollout.from_log(s), s, CFG).stop_controls
    assert control.signal_row == -1 and control.states is None
    assert np.allclose(control.stop, [40.0, 0.0]) and np.allclose(control.direction, [1.0, 0.0])


def test_a_red_light_runner_hitting_the_egos_side_is_not_the_egos_fault():
    """The ego on green at 10 m/s; the runner (red) reaches the ego's path when the ego's centre
    is there: it strikes the ego's side, within the ego's lane."""
    t_centre = 50.0 / V
    runner = AgentSpec("runner", 50.0, y=-EGO_HALF_WIDTH - HALF - V * (t_centre - 0.1), speed=V, yaw=np.pi / 2)
    s = crossroads([AgentSpec("ego", 0.0, speed=V), runner], ego_signal=GREEN, cross_signal=RED)
    ctx = Context(Rollout.from_log(s), s, CFG)
    (c,) = collision_table(ctx)
    assert c["type"] == "active_lateral" and not c["at_fault"]
    assert evaluate(Rollout.from_log(s), s, CFG)["at_fault_collisions"] == 0


def test_a_collision_after_the_ego_left_the_junction_is_judged_as_before():
    """The ego ran the red at 3.8 s and left the junction lane (x 40 to 60) by 6.5 s; a parked
    car first seen at 9.4 s, 0.2 s before the ego's front reaches it, is excused as ever."""
    s = crossroads([AgentSpec("ego", 0.0, speed=V), AgentSpec("late", 100.0, valid_from=94)], num_steps=101, ego_signal=RED)
    ctx = Context(Rollout.from_log(s), s, CFG)
    (c,) = collision_table(ctx)
    assert c["type"] == "stopped_track" and c["unavoidable"] and "junction" not in c["avoidability"]


def test_an_ego_that_ran_the_red_and_is_hit_from_behind_is_not_at_fault():
    """The ego runs the red at 5 m/s; a car behind at 10 m/s, 30 m back, runs into its rear after 4.2 s (21 m closed at 5 m/s), inside the junction."""
    s = crossroads([AgentSpec("ego", 30.0, speed=5.0), AgentSpec("follower", 4.5, speed=10.0)], ego_signal=RED)
    ctx = Context(Rollout.from_log(s), s, CFG)
    (c,) = collision_table(ctx)
    assert c["type"] == "active_rear" and not c["at_fault"] and 40.0 < ctx.ego_xy[c["step"], 0] < 60.0
    assert evaluate(Rollout.from_log(s), s, CFG)["red_light_violations"] == 1


def ego_x_through_then_wait(front_stop_x: float, go_s: float = 5.0, num_steps: int = 91) -> np.ndarray:
    """The ego's centre x [m]: its front at ``front_stop_x`` - 9 at 0 s, braking from 6 m/s at
    2 m/s2 to stand at 3.0 s with its front at ``front_stop_x``, standing to ``go_s``, then
    accelerating at 1.5 m/s2. With ``front_stop_x`` = 45 its front crosses the line (x = 40) at
    3 - sqrt(5) = 0.76 s (step 8) and waits 5 m inside the junction."""
    t = np.arange(num_steps) * 0.1
    x_stop = front_stop_x - HALF
    tb = np.minimum(t, 3.0)
    x = x_stop - 9.0 + 6.0 * tb - tb**2
    return np.where(t > go_s, x_stop + 0.75 * (t - go_s) ** 2, x)


INSIDE = ego_x_through_then_wait(45.0)


def test_a_wait_inside_the_junction_after_entering_on_green_is_not_an_entry_on_red():
    """Green until 2.0 s (the ego's front crossed at 0.76 s), red after: the ego waits 5 m inside
    (beyond ``CREEP_M``) and clears on red; it entered on green."""
    assert 40.0 + CREEP_M < 45.0
    c = junction(INSIDE, ego_signal=[GREEN] * 20 + [RED] * 71)
    assert c["unavoidable"] and not c["at_fault"] and "junction" not in c["avoidability"]


def test_running_the_red_and_stopping_inside_is_entering_on_red():
    """Red until 4.0 s: the ego's front crossed on red at 0.8 s, stood 5 m inside and went on green."""
    c = junction(INSIDE, ego_signal=[RED] * 40 + [GREEN] * 51)
    assert c["at_fault"] and "the ego entered the junction against the red signal on lane west_through at 0.8 s, though" in c["avoidability"]


def test_a_stop_sign_rolled_through_then_a_stop_inside_is_the_egos():
    c = junction(INSIDE, stop_sign=True)
    assert c["at_fault"] and "the ego did not stop at the stop sign stop on lane west_through (front over the line at 0.8 s, 4.4 m/s)" in c["avoidability"]


def test_a_stop_sign_crept_over_stopped_at_and_left_is_not_the_egos():
    c = junction(ego_x_through_then_wait(40.0 + CREEP_M - 0.5), stop_sign=True)
    assert c["unavoidable"] and "stop sign" not in c["avoidability"]


def diagonal_track(front_lat_m: float, num_steps: int = 41) -> Track:
    """A car heading -45 deg standing for 2.0 s with its front 3.9 m before a stop line at x = 40
    and ``front_lat_m`` to the side of its stop point (40, 0), then driving at 5 m/s down the
    diagonal to y = 0 and on along +x (yaw 0)."""
    t = np.arange(num_steps) * 0.1
    s = 5.0 * np.maximum(t - 2.0, 0.0)
    d = HALF / np.sqrt(2.0)  # the front's offset along each axis on the diagonal [m]
    y0 = front_lat_m + d
    run = y0 * np.sqrt(2.0)  # the diagonal's length [m]
    on_diag = s < run
    x = np.where(on_diag, 34.0 + s / np.sqrt(2.0), 34.0 + y0 + (s - run))
    y = np.where(on_diag, y0 - s / np.sqrt(2.0), 0.0)
    yaw = np.where(on_diag, -np.pi / 4, 0.0)
    v = np.where(t > 2.0, 5.0, 0.0)
    return Track(t, x, y, yaw, v * np.cos(yaw), v * np.sin(yaw), np.ones(num_steps, bool), 4.5, 1.9)


@pytest.mark.parametrize(("front_lat_m", "blamed"), [(6.0, True), (1.5, False)])
def test_a_stop_counts_for_a_stop_sign_only_in_its_lane(front_lat_m, blamed):
    """A stop 6 m to the side (in the next lane but one) is no stop at the sign; one 1.5 m to the side is."""
    sign = Control("stop sign s on lane a", 0, np.array([40.0, 0.0]), np.array([1.0, 0.0]), shapely.box(40.0, -1.75, 60.0, 1.75), None)
    why = right_of_way_violation(diagonal_track(front_lat_m), [sign], 40, 2.0, "the car")
    if blamed:
        assert why == "the car did not stop at the stop sign s on lane a (front over the line at 3.3 s, 5.0 m/s)"
    else:
        assert why is None


def test_the_priority_operator_reads_a_stop_as_the_rule_does():
    import evaluators.avoidability as avoidability
    import scenarios.common as common
    from scenarios.mutations.operators import priority

    assert {"STOP_SPEED_MPS", "STOP_ZONE_M"} <= set(avoidability.__all__)
    for name in ("STOP_SPEED_MPS", "STOP_ZONE_M"):
        assert getattr(avoidability, name) is getattr(common, name) is getattr(priority, name)
    assert (common.STOP_SPEED_MPS, common.STOP_ZONE_M) == (0.5, 6.0)


def left_turn_lane(width: float = 3.5) -> Lane:
    """``west_left``: from the ego's stop line (40, 0) heading +x, a quarter circle of radius 10
    about (40, 10) onto ``south_out`` at (50, 10) heading +y."""
    a = np.linspace(-np.pi / 2, 0.0, 21)
    c = np.column_stack([40.0 + 10.0 * np.cos(a), 10.0 + 10.0 * np.sin(a)])
    n = np.column_stack([-np.cos(a), -np.sin(a)]) * width / 2  # towards the circle's centre: the lane's left
    return Lane("west_left", c, left_boundary=c + n, right_boundary=c - n, speed_limit=10.0,
                predecessors=("west_in",), successors=("south_out",))  # fmt: skip


def with_left_turn_lane(s, left_signal: int):
    """``s`` (``crossroads`` with an ego signal) with ``west_left`` sharing the ego's stop point, its signal showing ``left_signal``."""
    lanes = tuple(replace(ln, successors=(*ln.successors, "west_left")) if ln.id == "west_in" else ln for ln in s.road_map.lanes)
    sig = s.signals
    signals = Signals(np.r_[sig.lane_ids, ["west_left"]], np.vstack([sig.states, np.full((1, s.num_steps), left_signal, np.int8)]),
                      np.vstack([sig.stop_points, [[40.0, 0.0, 0.0]]]))  # fmt: skip
    return s.replace(road_map=RoadMap((*lanes, left_turn_lane()), s.road_map.features), signals=signals)


def test_a_through_ego_is_not_held_to_the_turn_lanes_red_arrow_at_its_stop_point():
    """Through green, the left turn's arrow red, one stop point: the ego drove on along
    ``west_through`` (its centre left ``west_left`` at x = 47), so the arrow is not its signal."""
    s = crossroads([AgentSpec("ego", 0.0), crossing_car_for(STEADY)], ego_signal=GREEN)
    s = with_left_turn_lane(with_ego_x(s, STEADY), RED)
    ctx = Context(Rollout.from_log(s), s, CFG)
    through, left = ctx.stop_controls
    assert (through.name, left.name) == ("signal on lane west_through", "signal on lane west_left")
    assert np.allclose(through.stop, left.stop) and np.allclose(left.direction, [1.0, 0.0], atol=0.05)
    (c,) = collision_table(ctx)
    assert c["type"] == "active_front" and c["unavoidable"] and not c["at_fault"] and "junction" not in c["avoidability"]


def test_a_through_ego_on_its_own_red_is_still_blamed_beside_a_green_arrow():
    s = crossroads([AgentSpec("ego", 0.0), crossing_car_for(STEADY)], ego_signal=RED)
    s = with_left_turn_lane(with_ego_x(s, STEADY), GREEN)
    (c,) = collision_table(Context(Rollout.from_log(s), s, CFG))
    assert c["at_fault"] and "the ego entered the junction against the red signal on lane west_through at 3.8 s" in c["avoidability"]


def arc_track(num_steps: int = 61) -> Track:
    """A car at 5 m/s along +x, its front reaching the line (40, 0) at 1.0 s, its centre on
    ``west_left``'s quarter circle once there (yaw along it)."""
    t = np.arange(num_steps) * 0.1
    s = 5.0 * t - 5.0  # arc length of the front past the line [m]
    centre_s = s - HALF
    a = np.clip(centre_s, 0.0, None) / 10.0 - np.pi / 2
    x = np.where(centre_s < 0, 40.0 + centre_s, 40.0 + 10.0 * np.cos(a))
    y = np.where(centre_s < 0, 0.0, 10.0 + 10.0 * np.sin(a))
    yaw = np.where(centre_s < 0, 0.0, a + np.pi / 2)
    return Track(t, x, y, yaw, 5.0 * np.cos(yaw), 5.0 * np.sin(yaw), np.ones(num_steps, bool), 4.5, 1.9)


@pytest.mark.parametrize(("through", "left", "blamed"), [(GREEN, RED, "west_left"), (RED, GREEN, None)])
def test_a_turning_car_is_held_to_the_turn_lanes_signal(through, left, blamed):
    s = with_left_turn_lane(crossroads([AgentSpec("ego", 0.0)], ego_signal=through, num_steps=61), left)
    controls = Context(Rollout.from_log(s), s, CFG).stop_controls
    why = right_of_way_violation(arc_track(), controls, 30, 2.0, "the car")
    assert why == (None if blamed is None else f"the car entered the junction against the red signal on lane {blamed} at 1.0 s")


def test_a_car_that_goes_no_further_than_where_the_lanes_overlap_is_held_to_both():
    """Its front over the shared line at 1.0 s, it stands from 1.5 s with its centre at x = 42.25,
    in both lanes: its path does not tell which it follows, so the turn lane's red holds it."""
    t = np.arange(61) * 0.1
    x = 37.75 + 5.0 * np.minimum(t, 1.5) - 5.0
    v = np.where(t < 1.5, 5.0, 0.0)
    car = Track(t, x, np.zeros(61), np.zeros(61), v, np.zeros(61), np.ones(61, bool), 4.5, 1.9)
    s = with_left_turn_lane(crossroads([AgentSpec("ego", 0.0)], ego_signal=GREEN, num_steps=61), RED)
    controls = Context(Rollout.from_log(s), s, CFG).stop_controls
    assert right_of_way_violation(car, controls, 30, 2.0, "the car") == "the car entered the junction against the red signal on lane west_left at 1.0 s"
