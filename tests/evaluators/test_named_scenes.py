"""Small hand-built scenes named after what they show, each with the value it must produce."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluators import EvaluatorConfig, evaluate, evaluate_all
from scenarios import AgentType, FeatureKind, MapFeature, RoadMap, Signals, SignalState
from scenarios.synthetic import AgentSpec, scene, straight_road
from scenarios.rollout import Rollout

#: The scenes test each metric's own definition: absolute verdicts (a log replay judged against
#: its own log would excuse everything it does; tests/evaluators/test_against_log.py covers that).
CFG = EvaluatorConfig(judge_against_log=False)
LANE_WIDTH = 3.5  # straight_road's default
HALF_WIDTH = 1.9 / 2  # AgentSpec's default car width / 2


def row_of(s, rollout=None):
    return evaluate(rollout or Rollout.from_log(s), s, CFG)


# --- collisions ----------------------------------------------------------------------------


def ego_rear_ends_stopped_lead():
    """The ego at 10 m/s drives into a car standing 25.5 m ahead (bumper to bumper)."""
    return scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("lead", 30.0)])


def test_ego_rear_ends_stopped_lead():
    row = row_of(ego_rear_ends_stopped_lead())
    assert row["collisions"] == 1 and row["collisions_vehicle"] == 1
    assert row["at_fault_collisions"] == 1 and row["at_fault_collisions_vehicle"] == 1
    assert row["first_collision_s"] == pytest.approx(2.6)  # contact after 25.5 m at 10 m/s: first step past 2.55 s
    assert row["no_at_fault_collisions"] == 0.0
    assert row["closed_loop_score"] == 0.0
    assert row["min_ttc_s"] == 0.0 and row["ttc_within_bound"] is False  # TTC is 0 at an at-fault collision
    assert row["driving_score"] == pytest.approx(0.6)  # CARLA: route completed x 0.6 for one vehicle


def ego_rear_ended_while_stopped():
    """The ego waits; a car behind at 10 m/s drives into it."""
    return scene([AgentSpec("ego", 0.0), AgentSpec("follower", -20.0, speed=10.0)])


def test_ego_rear_ended_while_stopped():
    row = row_of(ego_rear_ended_while_stopped())
    assert row["collisions"] == 1
    assert row["at_fault_collisions"] == 0
    assert row["no_at_fault_collisions"] == 1.0
    assert row["closed_loop_score"] == 1.0  # standing still where the expert stood is perfect
    assert row["driving_score"] == pytest.approx(0.6)  # CARLA counts every collision


def test_ego_rear_ended_while_moving_is_not_at_fault():
    s = scene([AgentSpec("ego", 0.0, speed=5.0), AgentSpec("follower", -20.0, speed=15.0)])
    row = row_of(s)
    assert row["collisions"] == 1 and row["at_fault_collisions"] == 0


def test_ego_hits_stopped_pedestrian_is_at_fault_vru():
    s = scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("ped", 30.0, length=0.6, width=0.6, agent_type=AgentType.PEDESTRIAN)])
    row = row_of(s)
    assert row["at_fault_collisions_vru"] == 1 and row["no_at_fault_collisions"] == 0.0
    assert row["driving_score"] == pytest.approx(0.5)


def test_ego_hits_cone_object_halves_the_score():
    s = scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("cone", 30.0, length=0.5, width=0.5, agent_type=AgentType.OTHER)])
    row = row_of(s)
    assert row["at_fault_collisions_object"] == 1
    assert row["no_at_fault_collisions"] == 0.5  # nuPlan: one object collision is tolerated at half score
    # multipliers 0.5 x (5 progress 1 + 5 TTC 0 (at-fault collision) + 4 speed 1 + 2 comfort 1) / 16
    assert row["closed_loop_score"] == pytest.approx(0.5 * (5 * 1 + 5 * 0 + 4 * 1 + 2 * 1) / 16)
    assert row["driving_score"] == pytest.approx(0.65)


def sideswipe(ego_y: float):
    """A car in the next lane drifts (yaw -0.15 rad) into the ego's left side."""
    other_y = ego_y + 2.6 if ego_y == 0.0 else 5.0
    return scene(
        [AgentSpec("ego", 0.0, y=ego_y, speed=10.0), AgentSpec("drifter", -1.0, y=other_y, speed=10.0, yaw=-0.15)],
        num_steps=31,
    )


def test_side_contact_while_ego_keeps_its_lane_is_not_at_fault():
    row = row_of(sideswipe(0.0))
    assert row["collisions"] == 1 and row["at_fault_collisions"] == 0


def test_side_contact_while_ego_straddles_lanes_is_at_fault_by_nuplans_rules():
    s = sideswipe(LANE_WIDTH / 2)  # centred on the lane line: corners in two lanes
    geometric = evaluate(Rollout.from_log(s), s, CFG.with_settings("collisions", avoidability=False))
    assert geometric["collisions"] == 1 and geometric["at_fault_collisions"] == 1
    row = row_of(s)  # the drifter moved into the ego's side, the ego kept its line: unavoidable
    assert row["collisions"] == 1 and row["at_fault_collisions"] == 0 and row["unavoidable_collisions"] == 1


def test_engine_contact_counts_when_boxes_do_not_overlap():
    s = scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("lead", 8.0, y=LANE_WIDTH, speed=10.0)])
    r = Rollout.from_log(s)
    contact = np.zeros_like(r.contact)
    contact[1, 40:45] = True
    row = row_of(s, r.replace(contact=contact))
    assert row["collisions"] == 1 and row["collisions_engine"] == 1 and row["collisions_geometry"] == 0
    assert row["first_collision_s"] == pytest.approx(4.0)


def test_track_born_inside_the_ego_is_not_a_collision():
    """Label noise: a second track of the same car appears on top of it (an id switch)."""
    s = scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("ghost", 0.3, y=0.1, speed=10.0, valid_from=30)])
    row = row_of(s)
    assert row["collisions"] == 0 and row["initial_overlaps"] == 1


# --- TTC -------------------------------------------------------------------------------------

LEAD_GAP = 25.0  # bumper to bumper [m]
SPEED = 15.0
BRAKE = -5.0


def lead_brakes_ttc():
    """Both at 15 m/s, 25 m apart; the lead brakes at 5 m/s2 and stops after 3 s, 2.5 m short of the ego."""
    return scene([AgentSpec("ego", 0.0, speed=SPEED), AgentSpec("lead", LEAD_GAP + 4.5, speed=SPEED, accel=BRAKE)], num_steps=31)


def closed_form_ttc(t: float) -> float:
    """First k x 0.1 s (k = 1..29, nuPlan's steps before the 3 s horizon) at which the
    constant-velocity projections overlap."""
    gap = LEAD_GAP + (SPEED * t + 0.5 * BRAKE * t**2) - SPEED * t  # = 25 - 2.5 t^2
    closing = -BRAKE * t
    if closing <= 0:
        return math.inf
    k = math.floor(gap / (closing * 0.1)) + 1  # overlap needs k * 0.1 * closing > gap
    return k * 0.1 if k <= 29 else math.inf


def test_lead_brakes_ttc():
    s = lead_brakes_ttc()
    ev = evaluate_all(Rollout.from_log(s), s, CFG, series=True)
    t = np.arange(31) * 0.1
    expected = np.array([closed_form_ttc(x) for x in t])
    # the smallest TTC is at 3 s: gap 2.5 m closing at 15 m/s, so the boxes overlap at the 2nd step (0.2 s)
    assert ev.summary["min_ttc_s"] == pytest.approx(0.2)
    assert expected.min() == pytest.approx(0.2)
    assert ev.summary["ttc_within_bound"] is False
    gap_steps = (LEAD_GAP - 2.5 * t**2) / np.maximum(5.0 * t * 0.1, 1e-12)
    clear = np.abs(gap_steps - np.round(gap_steps)) > 1e-6  # steps where the projection is not exactly touching
    np.testing.assert_allclose(ev.series["ttc_s"][clear], expected[clear])
    assert ev.summary["collisions"] == 0
    assert ev.summary["min_distance_m"] == pytest.approx(2.5)


def lead_nine_metres_ahead_closing_at_ten():
    """The ego at 20 m/s, 9 m (bumper to bumper) behind a lead at 10 m/s."""
    return scene([AgentSpec("ego", 0.0, speed=20.0), AgentSpec("lead", 9.0 + 4.5, speed=10.0)], num_steps=3)


def test_lead_nine_metres_ahead_closing_at_ten():
    ev = evaluate_all(Rollout.from_log(lead_nine_metres_ahead_closing_at_ten()), lead_nine_metres_ahead_closing_at_ten(), CFG, series=True)
    # the boxes touch exactly at the 0.9 s projection step: nuPlan counts touching as contact
    np.testing.assert_allclose(ev.series["ttc_s"], [0.9, 0.8, 0.7])
    assert ev.summary["min_ttc_s"] == pytest.approx(0.7) and ev.summary["collisions"] == 0


def test_ttc_ignores_agents_behind_and_a_stopped_ego():
    s = scene([AgentSpec("ego", 0.0, speed=5.0), AgentSpec("follower", -12.0, speed=10.0)], num_steps=11)
    assert row_of(s)["min_ttc_s"] == math.inf  # the follower closes in, but from behind
    s = scene([AgentSpec("ego", 0.0), AgentSpec("oncoming", 20.0, speed=-10.0)], num_steps=11)
    assert row_of(s)["min_ttc_s"] == math.inf  # a standing ego has no TTC


# --- map compliance ---------------------------------------------------------------------------


def corner_half_metre_off_road():
    """The ego drives along the right road edge with its right corners 0.5 m beyond it."""
    y = -LANE_WIDTH / 2 - 0.5 + HALF_WIDTH
    return scene([AgentSpec("ego", 0.0, y=y, speed=10.0)])


def test_corner_half_metre_off_road():
    row = row_of(corner_half_metre_off_road())
    assert row["drivable_area_max_distance_m"] == pytest.approx(0.5)
    assert row["drivable_area_compliance"] == 0.0
    assert row["closed_loop_score"] == 0.0


def test_corner_quarter_metre_off_road_complies():
    y = -LANE_WIDTH / 2 - 0.25 + HALF_WIDTH
    row = row_of(scene([AgentSpec("ego", 0.0, y=y, speed=10.0)]))
    assert row["drivable_area_max_distance_m"] == pytest.approx(0.25)
    assert row["drivable_area_compliance"] == 1.0


def test_without_road_edges_the_distance_is_to_the_drivable_area():
    road = straight_road()
    far_lot = MapFeature("lot", FeatureKind.DRIVABLE_AREA, [[0, -60], [10, -60], [10, -50], [0, -50]])
    road = RoadMap(road.lanes, (*(f for f in road.features if f.kind != FeatureKind.ROAD_EDGE), far_lot))
    y = -LANE_WIDTH / 2 - 0.5 + HALF_WIDTH
    row = row_of(scene([AgentSpec("ego", 0.0, y=y, speed=10.0)], road=road))
    assert row["drivable_area_max_distance_m"] == pytest.approx(0.5)


def test_leaving_through_the_maps_cut_is_not_judged():
    """The road runs off the map's edge at x = 250; the ego drives on past it."""
    road = straight_road()
    road = RoadMap(road.lanes, tuple(f for f in road.features if f.kind != FeatureKind.ROAD_EDGE))
    row = row_of(scene([AgentSpec("ego", 200.0, speed=10.0)], road=road))
    assert row["drivable_area_compliance"] == 1.0
    assert row["offmap_steps"] == 91 - 48  # the front corners pass x = 250 after 47.75 m


def curb_beyond_a_parking_lane() -> RoadMap:
    """Lanes only (no drivable polygon) and road edges 2.5 m beyond them: a parking lane each side."""
    road = straight_road()
    lo, hi = -LANE_WIDTH / 2 - 2.5, 1.5 * LANE_WIDTH + 2.5
    edges = (
        MapFeature("edge-right", FeatureKind.ROAD_EDGE, [[-50, lo], [250, lo]]),
        MapFeature("edge-left", FeatureKind.ROAD_EDGE, [[-50, hi], [250, hi]]),
    )
    keep = tuple(f for f in road.features if f.kind not in (FeatureKind.ROAD_EDGE, FeatureKind.DRIVABLE_AREA))
    return RoadMap.from_parts(road.lanes, keep + edges)


@pytest.mark.parametrize("beyond_lane, expected", [(2.0, 0.0), (3.0, 0.5)])
def test_parked_car_between_lane_and_curb_is_on_the_road(beyond_lane, expected):
    """A car parked outside the lanes but inside the curb is on the road; 0.5 m past the curb it is not."""
    y = -LANE_WIDTH / 2 - beyond_lane + HALF_WIDTH
    row = row_of(scene([AgentSpec("ego", 0.0, y=y, speed=0.0)], road=curb_beyond_a_parking_lane()))
    assert row["drivable_area_max_distance_m"] == pytest.approx(expected)


def wrong_way_three_metres():
    """The ego drives 3 m against its lane's direction in 1 s (3 m/s, heading -x in a +x lane)."""
    return scene([AgentSpec("ego", 100.0, speed=3.0, yaw=math.pi)], num_steps=11)


def test_wrong_way_three_metres():
    row = row_of(wrong_way_three_metres())
    assert row["wrong_way_max_m"] == pytest.approx(3.0)
    assert row["driving_direction_compliance"] == 0.5


@pytest.mark.parametrize("speed, score", [(1.5, 1.0), (7.0, 0.0)])
def test_wrong_way_thresholds(speed, score):
    row = row_of(scene([AgentSpec("ego", 100.0, speed=speed, yaw=math.pi)], num_steps=11))
    assert row["driving_direction_compliance"] == score


# --- speed limit -------------------------------------------------------------------------------


def ego_with_speed_profile(speeds: np.ndarray, road=None):
    """A log replay of an ego along lane 0 at the given speed at each step (positions integrated)."""
    s = scene([AgentSpec("ego", 0.0, speed=float(speeds[0]))], num_steps=len(speeds), road=road)
    r = Rollout.from_log(s)
    x = np.r_[0.0, np.cumsum(speeds[:-1] * 0.1)]
    return s, r.replace(x=x[None, :], vx=np.asarray(speeds, float)[None, :])


OVERSPEED = 3.0  # above the 20 m/s limit [m/s]


def overspeed_for_two_seconds():
    """18 m/s on a 20 m/s road, except 23 m/s for steps 20..39: 3 m/s over the limit for 2 s."""
    speeds = np.full(91, 18.0)
    speeds[20:40] = 20.0 + OVERSPEED
    return ego_with_speed_profile(speeds)


def test_overspeed_for_two_seconds():
    s, r = overspeed_for_two_seconds()
    row = row_of(s, r)
    duration = 9.0
    expected = 1.0 - OVERSPEED * 2.0 / (2.23 * duration)
    assert row["speed_limit_compliance"] == pytest.approx(expected, abs=1e-12)
    assert row["max_overspeed_mps"] == pytest.approx(OVERSPEED)
    assert row["speed_limit_coverage"] == 1.0
    # the closed-loop score's weighted mean, every multiplier being 1; the speed jumps are not comfortable
    assert row["comfortable"] is False
    assert row["closed_loop_score"] == pytest.approx((5 * 1.0 + 5 * 1.0 + 4 * expected + 2 * 0.0) / 16)


def test_overspeed_for_the_whole_rollout_saturates_at_zero():
    s, r = ego_with_speed_profile(np.full(91, 25.0))
    assert row_of(s, r)["speed_limit_compliance"] == 0.0


def test_unknown_speed_limit_is_not_a_violation():
    s, r = ego_with_speed_profile(np.full(91, 25.0), road=straight_road(speed_limit=float("nan")))
    row = row_of(s, r)
    assert row["speed_limit_compliance"] == 1.0 and row["speed_limit_coverage"] == 0.0


# --- comfort, feasibility -------------------------------------------------------------------------


def harsh_braking():
    """The ego brakes from 12 m/s at 6 m/s2 (nuPlan's bound is 4.05) and stops after 2 s."""
    return scene([AgentSpec("ego", 0.0, speed=12.0, accel=-6.0)])


def test_harsh_braking():
    row = row_of(harsh_braking())
    assert row["comfortable"] is False
    assert row["lon_accel_min_mps2"] == pytest.approx(-6.0, abs=1e-6)
    assert row["max_abs_lat_accel_mps2"] == pytest.approx(0.0, abs=1e-9)
    assert row["kinematically_feasible"] is True  # 6 m/s2 is within the bicycle model's 10.4


def test_gentle_braking_is_comfortable():
    row = row_of(scene([AgentSpec("ego", 0.0, speed=12.0, accel=-1.0)]))
    assert row["comfortable"] is True
    assert row["lon_accel_min_mps2"] == pytest.approx(-1.0, abs=1e-6)


def test_tight_turn_is_kinematically_infeasible():
    s = scene([AgentSpec("ego", 0.0, speed=5.0)])
    r = Rollout.from_log(s)
    yaw = np.arange(91) * 0.5 * 0.1 * 5.0  # 0.5 1/m at 5 m/s: 2.5 rad/s
    x = np.r_[0.0, np.cumsum(5.0 * np.cos(yaw[:-1]) * 0.1)]
    y = np.r_[0.0, np.cumsum(5.0 * np.sin(yaw[:-1]) * 0.1)]
    r = r.replace(x=x[None], y=y[None], yaw=yaw[None], vx=(5 * np.cos(yaw))[None], vy=(5 * np.sin(yaw))[None])
    row = row_of(s, r)
    assert row["max_abs_curvature_1pm"] == pytest.approx(0.5)
    assert row["kinematically_feasible"] is False
    assert row["max_abs_yaw_rate_radps"] == pytest.approx(2.5)
    assert row["comfortable"] is False


# --- the expert itself ----------------------------------------------------------------------------


def expert_replay_perfect():
    """The log replayed: the ego at 10 m/s in its lane, a car beside it in the next."""
    return scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("beside", 0.0, y=LANE_WIDTH, speed=10.0)])


def test_expert_replay_perfect():
    row = row_of(expert_replay_perfect())
    assert row["ade_m"] == 0.0 and row["fde_m"] == 0.0
    assert row["progress_ratio"] == 1.0 and row["ego_progress_m"] == pytest.approx(90.0)
    for multiplier in ("no_at_fault_collisions", "drivable_area_compliance", "driving_direction_compliance"):
        assert row[multiplier] == 1.0, multiplier
    assert row["making_progress"] is True
    assert row["ttc_within_bound"] and row["comfortable"] and row["kinematically_feasible"]
    assert row["speed_limit_compliance"] == 1.0
    assert row["closed_loop_score"] == 1.0 and row["driving_score"] == 1.0
    assert row["status"] == "ok" and row["error"] is None


def test_divergence_and_progress_of_a_slower_ego():
    s = expert_replay_perfect()
    r = Rollout.from_log(s)
    x = r.x.copy()
    x[0] = np.arange(91) * 0.5  # 5 m/s instead of 10: 45 m instead of 90
    vx = r.vx.copy()
    vx[0] = 5.0
    row = row_of(s, r.replace(x=x, vx=vx))
    d = np.arange(91) * 0.5
    assert row["ade_m"] == pytest.approx(d.mean()) and row["fde_m"] == pytest.approx(45.0)
    assert row["progress_ratio"] == pytest.approx(0.5) and row["making_progress"] is True
    assert row["driving_score"] == pytest.approx(0.5)


def test_a_standing_ego_makes_no_progress():
    s = expert_replay_perfect()
    r = Rollout.from_log(s)
    x, vx = r.x.copy(), r.vx.copy()
    x[0], vx[0] = 0.0, 0.0
    row = row_of(s, r.replace(x=x, vx=vx))
    assert row["progress_ratio"] == pytest.approx(2.0 / 90.0)  # the 2 m floor
    assert row["making_progress"] is False and row["closed_loop_score"] == 0.0


# --- red lights -------------------------------------------------------------------------------


def with_signal(state: SignalState):
    s = scene([AgentSpec("ego", 0.0, speed=10.0)])
    states = np.full((1, s.num_steps), int(state), np.int8)
    return s.replace(signals=Signals(["lane0"], states, [[50.0, 0.0, 0.0]]))


def test_ego_runs_red_light():
    row = row_of(with_signal(SignalState.STOP))
    assert row["red_light_violations"] == 1 and row["signals_passed"] == 1
    assert row["driving_score"] == pytest.approx(0.7)
    assert row["closed_loop_score"] == 1.0  # nuPlan's score has no red-light term


def test_ego_passes_green_light():
    row = row_of(with_signal(SignalState.GO))
    assert row["red_light_violations"] == 0 and row["signals_passed"] == 1
    assert row["driving_score"] == 1.0


def test_driving_score_multiplies_penalties():
    """A pedestrian hit (0.5) and a red light run (0.7) on the full route: 0.35."""
    s = with_signal(SignalState.STOP)
    ped = scene(
        [AgentSpec("ego", 0.0, speed=10.0), AgentSpec("ped", 70.0, length=0.6, width=0.6, agent_type=AgentType.PEDESTRIAN)]
    )
    s = ped.replace(signals=s.signals)
    row = row_of(s)
    assert row["collisions_vru"] == 1 and row["red_light_violations"] == 1
    assert row["infraction_penalty"] == pytest.approx(0.5 * 0.7)
    assert row["driving_score"] == pytest.approx(1.0 * 0.5 * 0.7)
