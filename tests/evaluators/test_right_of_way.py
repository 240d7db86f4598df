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
from evaluators import stop_lines
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


def test_the_priority_operator_shares_the_rules_stop_constants():
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


@pytest.mark.parametrize(("through", "blamed"), [(GREEN, None), (RED, "west_through")])
def test_a_car_whose_path_and_heading_do_not_tell_is_held_only_to_what_both_lines_agree_on(through, blamed):
    """Its front over the shared line at 1.0 s, it stands from 1.06 s with its centre at x = 40.3,
    heading 0, in both lanes: west_left there turns 1.7 deg from the line, within the heading
    margin, so neither its path nor its heading tells; with the arrow red it broke a rule only
    if the through signal is red too."""
    t = np.arange(61) * 0.1
    x = np.minimum(37.75 + 5.0 * (t - 1.0), 40.3)
    v = np.where(x < 40.3, 5.0, 0.0)
    car = Track(t, x, np.zeros(61), np.zeros(61), v, np.zeros(61), np.ones(61, bool), 4.5, 1.9)
    s = with_left_turn_lane(crossroads([AgentSpec("ego", 0.0)], ego_signal=through, num_steps=61), RED)
    controls = Context(Rollout.from_log(s), s, CFG).stop_controls
    assert stop_lines.followed(controls, np.column_stack([car.x, car.y]), car.yaw, t >= 1.0) is None
    why = right_of_way_violation(car, controls, 30, 2.0, "the car")
    assert why == (None if blamed is None else f"the car entered the junction against the red signal on lane {blamed} at 1.0 s")


def cut(r: Rollout, k: int) -> Rollout:
    """``r``'s first ``k`` steps, ended by a collision (as ``terminate_on_collision`` ends it)."""
    fields = {n: getattr(r, n)[:, :k] for n in ("x", "y", "yaw", "vx", "vy", "valid", "contact", "contact_impulse")}
    fields.update({n: getattr(r, n)[:k] for n in ("t_us", "accel_cmd", "steer_cmd", "offroad")})
    return r.replace(termination="collision", **fields)


@pytest.mark.parametrize("arrow", [GREEN, RED])
def test_a_through_ego_on_green_whose_rollout_ends_where_the_lanes_overlap_is_not_held_to_the_arrow(arrow):
    """The crossing car in the near lane (x = 46.5): the contact at step 44, the ego's centre at
    x = 44 in both west_through and west_left; heading straight (0 deg) where west_left has
    turned 22 deg, it follows west_through: the arrow's red is not its signal."""
    t_hit = float(np.interp(46.5 - 1.9 / 2, STEADY + HALF, np.arange(91) * 0.1))
    cross = AgentSpec("cross", 46.5, y=-EGO_HALF_WIDTH - HALF - V * (t_hit - 0.15), speed=V, yaw=np.pi / 2)
    s = with_left_turn_lane(with_ego_x(crossroads([AgentSpec("ego", 0.0), cross], ego_signal=GREEN), STEADY), arrow)
    full = Rollout.from_log(s)
    (c,) = collision_table(Context(full, s, CFG))
    r = cut(full, c["step"] + 1)
    (c,) = collision_table(Context(r, s, CFG))
    assert c["step"] == 44 and r.x[0, -1] == pytest.approx(44.0)
    assert c["unavoidable"] and not c["at_fault"]
    assert c["avoidability"] == "in the ego's path 0.20 s before contact, under the 0.5 s reaction time"


def straight_track(end_x: float, speed: float = 10.0) -> Track:
    """A car at ``speed`` along y = 0 from x = 0, seen until its centre reaches ``end_x`` (the rollout's end)."""
    t = np.arange(91) * 0.1
    x = speed * t
    valid = x <= end_x + 1e-9
    return Track(t, np.where(valid, x, 0.0), np.zeros(91), np.zeros(91), np.where(valid, speed, 0.0), np.zeros(91), valid, 4.5, 1.9)


@pytest.mark.parametrize("end_x", [44.0, 45.0, 46.0, 47.0, 50.0])
def test_a_through_agent_on_green_beside_a_red_arrow_did_not_run_it_wherever_its_track_ends(end_x):
    """The agent side: a through car on green, its track ending (the collision) at ``end_x``,
    in the lanes' overlap up to x = 46: no "the agent also ran the red" that would excuse the ego."""
    s = with_left_turn_lane(crossroads([AgentSpec("ego", 0.0)], ego_signal=GREEN, num_steps=91), RED)
    controls = Context(Rollout.from_log(s), s, CFG).stop_controls
    k = int(round(end_x))
    assert right_of_way_violation(straight_track(end_x), controls, k, 2.0, "the agent") is None
    s = with_left_turn_lane(crossroads([AgentSpec("ego", 0.0)], ego_signal=RED, num_steps=91), GREEN)
    controls = Context(Rollout.from_log(s), s, CFG).stop_controls
    assert right_of_way_violation(straight_track(end_x), controls, k, 2.0, "the agent") == (
        "the agent entered the junction against the red signal on lane west_through at 3.8 s")


@pytest.mark.parametrize(("through", "left", "blamed"), [(GREEN, RED, "west_left"), (RED, GREEN, None)])
def test_a_turner_whose_rollout_ends_where_the_lanes_overlap_is_known_by_its_heading(through, left, blamed):
    """``arc_track`` ended at 1.8 s: its centre at (41.74, 0.15), in both lanes, heading 10 deg,
    as west_left there: it follows west_left."""
    s = with_left_turn_lane(crossroads([AgentSpec("ego", 0.0)], ego_signal=through, num_steps=61), left)
    controls = Context(Rollout.from_log(s), s, CFG).stop_controls
    car = arc_track()
    car = replace(car, valid=np.arange(61) <= 18)
    assert np.all([shapely.contains_xy(c.onward, car.x[18], car.y[18]) for c in controls])
    why = right_of_way_violation(car, controls, 18, 2.0, "the car")
    assert why == (None if blamed is None else f"the car entered the junction against the red signal on lane {blamed} at 1.0 s")


def wide_arc_track(wide_m: float, num_steps: int = 61) -> Track:
    """``arc_track`` swinging out by up to ``wide_m`` [m] in the middle of the turn (0 at both ends)."""
    t = np.arange(num_steps) * 0.1
    centre_s = 5.0 * t - 5.0 - HALF
    a = np.clip(centre_s, 0.0, None) / 10.0 - np.pi / 2
    r = 10.0 + wide_m * np.sin(np.clip(a + np.pi / 2, 0, np.pi / 2) * 2)
    x = np.where(centre_s < 0, 40.0 + centre_s, 40.0 + r * np.cos(a))
    y = np.where(centre_s < 0, 0.0, 10.0 + r * np.sin(a))
    yaw = np.where(centre_s < 0, 0.0, a + np.pi / 2)
    return Track(t, x, y, yaw, 5.0 * np.cos(yaw), 5.0 * np.sin(yaw), np.ones(num_steps, bool), 4.5, 1.9)


@pytest.mark.parametrize("wide_m", [0.0, 2.0])
def test_a_turner_swinging_wide_out_of_its_lane_is_still_a_turner(wide_m):
    """On its green arrow, the through signal red: 2 m wide its centre leaves west_left for
    west_through for a few steps, then follows west_left onto south_out."""
    s = with_left_turn_lane(crossroads([AgentSpec("ego", 0.0)], ego_signal=RED, num_steps=61), GREEN)
    controls = Context(Rollout.from_log(s), s, CFG).stop_controls
    car = wide_arc_track(wide_m)
    xy = np.column_stack([car.x, car.y])
    left_only = ~shapely.contains_xy(controls[1].onward, car.x, car.y) & shapely.contains_xy(controls[0].onward, car.x, car.y)
    assert bool(left_only.any()) is (wide_m > 0)
    assert stop_lines.followed(controls, xy, car.yaw, car.t_s >= 1.0).tolist() == [False, True]
    assert right_of_way_violation(car, controls, 30, 2.0, "the car") is None


@pytest.mark.parametrize(("ego_signal", "arrow", "red"), [(GREEN, RED, 0), (GREEN, GREEN, 0), (RED, GREEN, 1), (RED, RED, 1)])
def test_red_light_holds_a_through_ego_to_its_own_signal_only(ego_signal, arrow, red):
    s = with_left_turn_lane(crossroads([AgentSpec("ego", 0.0, speed=V)], ego_signal=ego_signal), arrow)
    row = evaluate(Rollout.from_log(s), s, CFG)
    assert (row["red_light_violations"], row["signals_passed"]) == (red, 2)


def yellow_stop_track(stand: bool) -> Track:
    """A car at 5 m/s with its front 30 m before a line at x = 40 when the yellow comes (0 s; it
    needs 5 + 25 / 6 = 9.2 m to stop): it drives on over the line at 6.0 s, or (``stand``) brakes
    from front 39 at 5.8 s to stand with its front 1 m past the line from 6.6 s to 7.6 s, then
    drives on."""
    t = np.arange(141) * 0.1
    tb, tg = np.clip(t - 5.8, 0.0, 0.8), np.clip(t - 7.6, 0.0, None)
    front = np.where(t <= 5.8, 10.0 + 5.0 * t, 39.0 + 5.0 * tb - 3.125 * tb**2 + tg**2) if stand else 10.0 + 5.0 * t
    x = front - HALF
    return Track(t, x, np.zeros(141), np.zeros(141), np.gradient(x, 0.1), np.zeros(141), np.ones(141, bool), 4.5, 1.9)


@pytest.mark.parametrize("stand", [False, True])
def test_a_creep_standstill_on_the_yellow_it_could_have_stopped_for_does_not_excuse_it(stand):
    sig = Control("signal on lane a", 0, np.array([40.0, 0.0]), np.array([1.0, 0.0]), shapely.box(40.0, -1.75, 70.0, 1.75), np.full(141, YELLOW, np.int8))
    car = yellow_stop_track(stand)
    k = int(np.searchsorted(car.x + HALF, 50.0))
    tc = 6.1 if stand else 6.0
    assert right_of_way_violation(car, [sig], k, 2.0, "the ego") == (
        f"the ego entered the junction on the yellow signal on lane a at {tc:.1f} s that it could have stopped for "
        "(30.0 m from the line at 5.0 m/s when it showed yellow, 9.2 m to stop)")


@pytest.mark.parametrize("signal", [[GREEN] * 16 + [RED] * 75, [GREEN] * 10 + [YELLOW] * 10 + [RED] * 71])
def test_an_ego_that_entered_on_green_stood_in_a_queue_past_the_line_and_went_on_red_entered_on_green(signal):
    """Its front crosses the line at 1.3 s, on green (or on a yellow from 1.0 s it could not stop
    for: 2.5 m from the line at 2 m/s, 2.7 m needed), stands 1.5 m past it from 2.0 s to 3.0 s
    and goes on the red: the creep standstill only ever excuses."""
    c = junction(ego_x_wait_then_go(41.5), ego_signal=signal)
    assert c["unavoidable"] and not c["at_fault"] and "junction" not in c["avoidability"]


def test_a_standstill_at_the_very_step_the_front_crosses_a_stop_sign_is_a_stop():
    """Slowing to 0.3 m/s (under STOP_SPEED_MPS) at the step its front is 0.02 m over the line,
    then on: it stopped there, only at that one step."""
    t = np.arange(60) * 0.1
    v = np.r_[np.linspace(3.0, 0.6, 20), [0.3], np.linspace(0.6, 5.0, 39)]
    front = np.r_[0.0, np.cumsum(v[1:] * 0.1)]
    front += 40.02 - front[20]
    assert front[19] < 40.0 <= front[20] and np.flatnonzero(v <= 0.5).tolist() == [20]
    car = Track(t, front - HALF, np.zeros(60), np.zeros(60), v, np.zeros(60), np.ones(60, bool), 4.5, 1.9)
    sign = Control("stop sign s on lane a", 0, np.array([40.0, 0.0]), np.array([1.0, 0.0]), shapely.box(40.0, -1.75, 60.0, 1.75), None)
    assert right_of_way_violation(car, [sign], 40, 2.0, "the car") is None
    rolled = replace(car, vx=np.where(v <= 0.5, 0.6, v))
    assert right_of_way_violation(rolled, [sign], 40, 2.0, "the car") == "the car did not stop at the stop sign s on lane a (front over the line at 2.0 s, 0.6 m/s)"


@pytest.mark.parametrize("unseen", [None, 25, 33])
def test_a_red_light_runner_unseen_for_a_step_inside_the_junction_still_ran_it(unseen):
    """At 8 m/s from x = 20, its front over the red line at 2.3 s (step 23), in the junction
    (x 40 to 70) at the contact (step 40); one step unseen in between changes nothing."""
    t = np.arange(60) * 0.1
    valid = np.ones(60, bool)
    if unseen is not None:
        valid[unseen] = False
    x = np.where(valid, 20.0 + 8.0 * t, 0.0)
    car = Track(t, x, np.zeros(60), np.zeros(60), np.where(valid, 8.0, 0.0), np.zeros(60), valid, 4.5, 1.9)
    sig = Control("signal on lane a", 0, np.array([40.0, 0.0]), np.array([1.0, 0.0]), shapely.box(40.0, -1.75, 70.0, 1.75), np.full(60, RED, np.int8))
    assert right_of_way_violation(car, [sig], 40, 2.0, "the agent") == "the agent entered the junction against the red signal on lane a at 2.3 s"
    left = replace(car, x=np.where(np.arange(60) == 38, 80.0, car.x))  # at step 38 seen out of the junction
    assert right_of_way_violation(left, [sig], 40, 2.0, "the agent") is None


@pytest.mark.parametrize(("front_stop_x", "blamed"), [(40.0 + 1.8, False), (40.0 + 2.3, True)])
def test_a_standstill_is_the_entry_only_with_the_front_within_creep_m_past_the_line(front_stop_x, blamed):
    """Over the line on red, standing to 3.0 s with its front 1.8 m past it (crept over: it
    entered on the green it went on) or 2.3 m past it (beyond ``CREEP_M``: a wait inside the
    junction it entered on red at 0.5 s). Measured from the front: its centre stands 0.45 m
    before and 0.05 m past the line (within CREEP_M both), its tail further back."""
    assert CREEP_M == 2.0
    c = junction(ego_x_wait_then_go(front_stop_x), ego_signal=[RED] * 30 + [GREEN] * 61, cross_signal=GREEN)
    assert c["at_fault"] is blamed
    if blamed:
        assert c["avoidability"].startswith("the ego entered the junction against the red signal on lane west_through at 0.5 s, though")
    else:
        assert "junction" not in c["avoidability"]


def test_stop_lines_are_built_once_per_map_their_states_read_per_rollout():
    s = with_left_turn_lane(crossroads([AgentSpec("ego", 0.0)], ego_signal=[RED] * 45 + [GREEN] * 46, num_steps=91), GREEN)
    g = Context(Rollout.from_log(s), s, CFG).map
    early, late = (stop_lines.controls_of(s, g, np.array([k, k])) for k in (0, 90))
    assert [c.states.tolist() for c in early] == [[RED, RED], [GREEN, GREEN]]
    assert [c.states.tolist() for c in late] == [[GREEN, GREEN], [GREEN, GREEN]]
    assert all(a.onward is b.onward is not None and a.area is b.area for a, b in zip(early, late))
    (sign,) = stop_lines.controls_of(crossroads([AgentSpec("ego", 0.0)], stop_sign=True), g, np.zeros(2, np.int64))
    assert sign.onward is None and sign.states is None  # a line sharing its stop point with none: no onward built
