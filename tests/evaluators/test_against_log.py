"""Verdicts against the log: a metric the log itself fails is judged relative to the log.

Hand-built scenes with known answers (the log off the road, tailgating, speeding, braking hard,
overlapping boxes; a planner that does worse), a mutated variant judged against its source, and
the real logs: the expert driven through the twin scores >= 0.99 on every sample scenario and
every logged ego of ../shared/data while the data's flags stay visible in their own columns.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from evaluators import EvaluatorConfig, evaluate
from evaluators.against_log import LogBaseline, clear_log_cache
from scenarios.mutations import mutate
from scenarios.rollout import Rollout
from scenarios.synthetic import AgentSpec, scene, straight_road

ABSOLUTE = EvaluatorConfig(judge_against_log=False)
LANE_WIDTH = 3.5
HALF_WIDTH = 1.9 / 2
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def shifted(rollout: Rollout, dx: float = 0.0, dy: float = 0.0) -> Rollout:
    """The rollout with the ego moved by (dx, dy) [m] at every step: a planner driving beside the log."""
    x, y = rollout.x.copy(), rollout.y.copy()
    x[rollout.ego_index] += dx
    y[rollout.ego_index] += dy
    return rollout.replace(x=x, y=y)


# --- off the drivable area ------------------------------------------------------------------


def log_forty_centimetres_off_road():
    """The logged ego drives along the right road edge with its right corners 0.4 m beyond it."""
    return scene([AgentSpec("ego", 0.0, y=-LANE_WIDTH / 2 - 0.4 + HALF_WIDTH, speed=10.0)])


def test_a_log_off_the_road_is_not_the_planners_failure():
    s = log_forty_centimetres_off_road()
    row = evaluate(Rollout.from_log(s), s)
    assert row["drivable_area_max_distance_m"] == pytest.approx(0.4)  # the data flag stays visible
    assert row["log_drivable_area_max_distance_m"] == pytest.approx(0.4)
    assert row["drivable_area_compliance"] == 1.0 and row["closed_loop_score"] == 1.0
    assert "drivable_area: log itself 0.40 m off-road" in row["against_log"]
    absolute = evaluate(Rollout.from_log(s), s, ABSOLUTE)  # today's verdict
    assert absolute["drivable_area_compliance"] == 0.0 and absolute["closed_loop_score"] == 0.0
    assert absolute["log_drivable_area_max_distance_m"] is None and absolute["against_log"] is None


def test_a_planner_one_metre_further_off_road_than_the_log_still_fails():
    s = log_forty_centimetres_off_road()
    row = evaluate(shifted(Rollout.from_log(s), dy=-1.0), s)
    assert row["drivable_area_max_distance_m"] == pytest.approx(1.4)
    assert row["log_drivable_area_max_distance_m"] == pytest.approx(0.4)
    assert row["drivable_area_compliance"] == 0.0 and row["closed_loop_score"] == 0.0
    assert "planner 1.40 m fails (limit 0.60 m)" in row["against_log"]


@pytest.mark.parametrize("dy, compliant", [(-0.15, True), (-0.25, False)])
def test_the_margin_is_the_stated_one(dy, compliant):
    """0.2 m beyond the log's 0.4 m passes; 0.55 m and 0.65 m off straddle it."""
    s = log_forty_centimetres_off_road()
    row = evaluate(shifted(Rollout.from_log(s), dy=dy), s)
    assert row["drivable_area_compliance"] == (1.0 if compliant else 0.0)
    tighter = EvaluatorConfig().with_settings("drivable_area", log_margin_m=0.1)
    assert evaluate(shifted(Rollout.from_log(s), dy=-0.15), s, tighter)["drivable_area_compliance"] == 0.0


def test_a_log_on_the_road_gives_absolute_verdicts():
    s = scene([AgentSpec("ego", 0.0, speed=10.0)])
    row = evaluate(shifted(Rollout.from_log(s), dy=-(LANE_WIDTH / 2 - HALF_WIDTH) - 0.35), s)  # 0.35 m off
    assert row["log_drivable_area_max_distance_m"] == 0.0
    assert row["drivable_area_compliance"] == 0.0 and row["against_log"] is None


# --- collisions -------------------------------------------------------------------------------


def ego_drives_into_parked_car_beside_its_lane():
    """The log: the ego at 10 m/s in lane 0, 0.4 m off the road edge; a car parked 40 m ahead in lane 1."""
    return scene(
        [
            AgentSpec("ego", 0.0, y=-LANE_WIDTH / 2 - 0.4 + HALF_WIDTH, speed=10.0),
            AgentSpec("parked", 40.0, y=LANE_WIDTH),
        ]
    )


def test_an_at_fault_collision_is_not_excused_by_the_logs_other_defects():
    s = ego_drives_into_parked_car_beside_its_lane()
    r = Rollout.from_log(s)
    y = r.y.copy()
    y[0] = LANE_WIDTH  # the planner drives in lane 1, into the parked car
    row = evaluate(r.replace(y=y), s)
    assert row["log_drivable_area_max_distance_m"] == pytest.approx(0.4)  # the log has its own defect...
    assert row["at_fault_collisions"] == 1 and row["collisions"] == 1  # ...which excuses nothing else
    assert row["excused_collisions"] == 0 and row["log_overlaps"] == 0
    assert row["no_at_fault_collisions"] == 0.0 and row["closed_loop_score"] == 0.0


def ego_rear_ends_stopped_lead():
    """The log itself: the ego at 10 m/s drives into a car standing 25.5 m ahead (overlapping boxes)."""
    return scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("lead", 30.0)])


def test_a_collision_is_excused_only_where_the_logged_boxes_overlap():
    s = ego_rear_ends_stopped_lead()
    absolute = evaluate(Rollout.from_log(s), s, ABSOLUTE)
    assert absolute["at_fault_collisions"] == 1 and absolute["closed_loop_score"] == 0.0
    row = evaluate(Rollout.from_log(s), s)
    assert row["log_overlaps"] == 1 and row["excused_collisions"] == 1
    assert row["at_fault_collisions"] == 0 and row["collisions"] == 0 and row["no_at_fault_collisions"] == 1.0
    assert "logged boxes of the ego and lead overlap in the log itself; collisions with lead excused" in row["against_log"]
    assert row["min_ttc_s"] > 0  # an excused collision does not zero the TTC


def test_a_collision_before_the_logged_boxes_overlap_is_not_excused():
    """The log's boxes touch at 2.6 s; a planner 10 m ahead hits the lead at 1.6 s, an earlier span."""
    s = ego_rear_ends_stopped_lead()
    r = Rollout.from_log(s)
    keep = 18  # the planner's episode ends at 1.7 s, just after its collision
    ahead = shifted(r, dx=10.0)
    cut = ahead.replace(
        t_us=ahead.t_us[:keep], x=ahead.x[:, :keep], y=ahead.y[:, :keep], yaw=ahead.yaw[:, :keep], vx=ahead.vx[:, :keep],
        vy=ahead.vy[:, :keep], valid=ahead.valid[:, :keep], accel_cmd=ahead.accel_cmd[:keep], steer_cmd=ahead.steer_cmd[:keep],
        contact=ahead.contact[:, :keep], contact_impulse=ahead.contact_impulse[:, :keep], offroad=ahead.offroad[:keep],
    )  # fmt: skip
    row = evaluate(cut, s)
    assert row["first_collision_s"] == pytest.approx(1.6)
    assert row["log_overlaps"] == 0 and row["excused_collisions"] == 0 and row["at_fault_collisions"] == 1


def test_a_log_on_another_clock_excuses_nothing():
    """A variant whose clock is not its log's (fewer steps) has no step-by-step correspondence to
    it: every agent counts as rewritten, so the log's own overlap with the lead excuses nothing."""
    from evaluators.against_log import rewritten_agents

    log = ego_rear_ends_stopped_lead()
    assert rewritten_agents(log, log) == frozenset() and rewritten_agents(log, mutate(log, [], seed=0)) == frozenset()
    shorter = scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("lead", 30.0)], num_steps=60)  # same tracks, 60 of 91 steps
    assert rewritten_agents(log, shorter) == {"ego", "lead"}
    assert evaluate(Rollout.from_log(log), log)["excused_collisions"] == 1  # judged against itself: the log's own overlap
    row = evaluate(Rollout.from_log(shorter), shorter, log=log)
    assert row["log_overlaps"] == 0 and row["excused_collisions"] == 0 and row["at_fault_collisions"] == 1


def test_a_variant_is_judged_against_its_source_log():
    """A lead braking into the logged ego is the mutation, not the log's defect: never excused."""
    base = scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("lead", 20.0, speed=10.0)])
    variant = mutate(base, [("lead_brake", {"decel": 8.0, "onset_s": 1.0})], seed=0)
    r = Rollout.from_log(variant)  # the logged ego keeps going: it drives into the braking lead
    assert evaluate(r, variant, ABSOLUTE)["at_fault_collisions"] == 1
    row = evaluate(r, variant, log=base)
    assert row["at_fault_collisions"] == 1 and row["log_overlaps"] == 0 and row["closed_loop_score"] == 0.0
    assert evaluate(r, variant)["at_fault_collisions"] == 0  # what log=base prevents: the variant's own log excuses it


# --- time to collision --------------------------------------------------------------------------


def tailgating_log():
    """The log: the ego at 15 m/s closes on a lead at 10 m/s; 9.5 m bumper to bumper at the start,
    4.5 m after 1 s: the TTC drops to 0.9 s (4.5 m / 5 m/s), under the 0.95 s bound."""
    return scene([AgentSpec("ego", 0.0, speed=15.0), AgentSpec("lead", 9.5 + 4.5, speed=10.0)], num_steps=11)


@pytest.mark.parametrize("dx, ttc, within", [(0.0, 0.9, True), (0.5, 0.8, True), (2.0, 0.5, False)])
def test_ttc_under_bound_in_the_log_is_judged_relative_to_it(dx, ttc, within):
    s = tailgating_log()
    row = evaluate(shifted(Rollout.from_log(s), dx=dx), s)  # a planner dx [m] closer to the lead
    assert row["log_min_ttc_s"] == pytest.approx(0.9)
    assert row["min_ttc_s"] == pytest.approx(ttc)
    assert row["ttc_within_bound"] is within  # fails below 0.9 - 0.2 s
    assert "ttc: log itself min TTC 0.90 s" in row["against_log"]
    assert evaluate(shifted(Rollout.from_log(s), dx=dx), s, ABSOLUTE)["ttc_within_bound"] is False


# --- speed limit and comfort --------------------------------------------------------------------


def speed_profile(speeds: np.ndarray):
    s = scene([AgentSpec("ego", 0.0, speed=float(speeds[0]))], num_steps=len(speeds))
    r = Rollout.from_log(s)
    x = np.r_[0.0, np.cumsum(speeds[:-1] * 0.1)]
    return s, r.replace(x=x[None, :], vx=np.asarray(speeds, float)[None, :])


def test_overspeed_in_the_log_raises_the_limit_by_it():
    """Log: 3 m/s over the 20 m/s limit for 2 s. A planner 4 m/s over is 0.5 m/s beyond the log's 3 + 0.5."""
    speeds = np.full(91, 18.0)
    speeds[20:40] = 23.0
    s_log, r_log = speed_profile(speeds)
    s = s_log.replace(tracks=dataclasses.replace(s_log.tracks, x=r_log.x, vx=r_log.vx))  # the log speeds
    row = evaluate(r_log, s)
    assert row["log_max_overspeed_mps"] == pytest.approx(3.0) and row["max_overspeed_mps"] == pytest.approx(3.0)
    assert row["speed_limit_compliance"] == 1.0
    faster = speeds.copy()
    faster[20:40] = 24.0
    _, r_fast = speed_profile(faster)
    row = evaluate(r_fast, s)
    assert row["max_overspeed_mps"] == pytest.approx(4.0)
    assert row["speed_limit_compliance"] == pytest.approx(1.0 - 0.5 * 2.0 / (2.23 * 9.0), abs=1e-12)
    assert evaluate(r_fast, s, ABSOLUTE)["speed_limit_compliance"] == pytest.approx(1.0 - 4.0 * 2.0 / (2.23 * 9.0), abs=1e-12)


@pytest.mark.parametrize("decel, comfortable", [(6.0, True), (7.0, True), (8.0, False)])
def test_harsh_braking_in_the_log_widens_the_bound_to_it(decel, comfortable):
    """The log brakes at 6 m/s2 (bound 4.05): the planner is uncomfortable only beyond 6 x 1.25 = 7.5."""
    log = scene([AgentSpec("ego", 0.0, speed=12.0, accel=-6.0)])
    planner = scene([AgentSpec("ego", 0.0, speed=12.0, accel=-decel)])
    row = evaluate(Rollout.from_log(planner), log)
    assert row["log_comfortable"] is False
    assert row["lon_accel_min_mps2"] == pytest.approx(-decel, abs=1e-6)
    assert row["comfortable"] is comfortable
    assert "comfort: log itself uncomfortable (lon_accel_min_mps2 -6.00" in row["against_log"]


# --- the baseline itself --------------------------------------------------------------------------


def test_the_log_is_scored_once_per_scenario_and_config():
    clear_log_cache()
    s = log_forty_centimetres_off_road()
    config = EvaluatorConfig()
    first = LogBaseline.of(s, config)
    assert LogBaseline.of(s, config) is first
    assert LogBaseline.of(s.replace(tags=("again",)), config) is first  # same content: same baseline
    assert LogBaseline.of(s, config.with_settings("drivable_area", max_distance_m=0.5)) is not first
    other = scene([AgentSpec("ego", 0.0, speed=12.0)], road=straight_road())
    assert LogBaseline.of(other, config) is not first  # same id ("synthetic"), other content
    assert first.over(9.0).offroad_m == pytest.approx(0.4) and first.over(0.0).duration_s == 0.0


# --- the real logs --------------------------------------------------------------------------------


def run(config_name: str, tmp_path: Path, **changes):
    from harness.config import load_suite
    from harness.runner import run_suite

    config = load_suite(CONFIGS / config_name)
    if changes:
        config = config.replace(**changes)
    return run_suite(config, out=tmp_path, executor="sequential", progress=False).summary


def test_the_expert_scores_as_the_log_on_every_sample_scenario(tmp_path):
    summary = run("smoke.toml", tmp_path / "judged")
    assert len(summary) == 18 and (summary["status"] == "ok").all()
    assert (summary["closed_loop_score"] >= 0.99).all(), summary.loc[summary["closed_loop_score"] < 0.99, ["variant_id", "against_log"]]
    # the data's own flags stay visible: two NGSIM cars 0.32 m and 0.40 m past their lanelet's edge
    flagged = summary[summary["log_drivable_area_max_distance_m"] > 0.3]
    assert sorted(flagged["ego_id"]) == ["381", "475"]
    assert (flagged["drivable_area_max_distance_m"] > 0.3).all()
    assert flagged["against_log"].str.contains("drivable_area: log itself 0.3[0-9] m off-road|drivable_area: log itself 0.40 m off-road").all()
    absolute = run("smoke.toml", tmp_path / "absolute", evaluators={"judge_against_log": False})
    assert sorted(absolute.loc[absolute["closed_loop_score"] == 0.0, "ego_id"]) == ["381", "475"]  # today's verdicts
    assert absolute["against_log"].isna().all() and absolute["log_min_ttc_s"].isna().all()


def test_the_expert_scores_as_the_log_on_every_logged_ego(tmp_path, data_dir):
    from harness.config import load_suite

    base = load_suite(CONFIGS / "real_data.toml")
    summary = run("real_data.toml", tmp_path, scenarios=dataclasses.replace(base.scenarios, sources=(str(data_dir),)))
    assert len(summary) == 8 and (summary["status"] == "ok").all()
    assert set(summary["dataset"]) == {"av2", "av2_sensor", "commonroad", "scenarionet-nuscenes", "waymo"}
    assert (summary["closed_loop_score"] >= 0.99).all(), summary.loc[summary["closed_loop_score"] < 0.99, ["variant_id", "against_log"]]
    assert (summary["at_fault_collisions"] == 0).all() and (summary["excused_collisions"] == 0).all()
    ngsim = summary[summary["dataset"] == "commonroad"].iloc[0]
    assert ngsim["log_drivable_area_max_distance_m"] == pytest.approx(0.40, abs=0.01)  # flagged, and shown
    assert "log itself 0.40 m off-road" in ngsim["against_log"]


def test_a_log_within_the_margin_of_a_bound_sets_the_limit_too():
    """Off-road and TTC verdicts have no cliff at the bound: a log 0.25 m off (inside 0.3 m) lets a
    planner reach 0.45 m; a log whose TTC bottoms at 1.1 s (above 0.95 s) lets it reach 0.9 s."""
    s = scene([AgentSpec("ego", 0.0, y=-LANE_WIDTH / 2 - 0.25 + HALF_WIDTH, speed=10.0)])
    for dy, compliant in ((-0.15, True), (-0.25, False)):
        row = evaluate(shifted(Rollout.from_log(s), dy=dy), s)
        assert row["log_drivable_area_max_distance_m"] == pytest.approx(0.25)
        assert row["drivable_area_compliance"] == (1.0 if compliant else 0.0), dy
    near = scene([AgentSpec("ego", 0.0, speed=15.0), AgentSpec("lead", 10.5 + 4.5, speed=10.0)], num_steps=11)
    for dx, ttc, within in ((0.0, 1.1, True), (1.0, 0.9, True), (1.5, 0.8, False)):
        row = evaluate(shifted(Rollout.from_log(near), dx=dx), near)
        assert row["log_min_ttc_s"] == pytest.approx(1.1) and row["min_ttc_s"] == pytest.approx(ttc)
        assert row["ttc_within_bound"] is within, dx


# --- driving direction ----------------------------------------------------------------------


def log_backing_three_metres():
    """The logged ego drives 3 m against its lane's direction in 1 s (3 m/s heading -x in a +x
    lane): a map whose lane runs the other way, or a car backing out."""
    return scene([AgentSpec("ego", 100.0, speed=3.0, yaw=np.pi)], num_steps=11)


def against_lane(s, speed: float) -> Rollout:
    """The rollout with the ego driving ``speed`` [m/s] towards -x from the log's start."""
    r = Rollout.from_log(s)
    x = r.x.copy()
    x[r.ego_index] = 100.0 - speed * np.arange(x.shape[1]) * 0.1
    return r.replace(x=x)


@pytest.mark.parametrize("speed, compliance", [(3.0, 1.0), (3.9, 1.0), (5.0, 0.5), (9.0, 0.0)])
def test_a_log_against_its_lane_raises_the_wrong_way_bounds_by_its_excess(speed, compliance):
    """The log's 3 m plus the 1 m margin is the new compliant bound (4 m); the 0.5 tier ends 2 m
    above the stated 6 m (8 m). Absolute verdicts still fail the log's own 3 m."""
    s = log_backing_three_metres()
    row = evaluate(against_lane(s, speed), s)
    assert row["log_wrong_way_max_m"] == pytest.approx(3.0)
    assert row["wrong_way_max_m"] == pytest.approx(speed)
    assert row["driving_direction_compliance"] == compliance
    assert "driving_direction: log itself 3.00 m against the lane" in row["against_log"]
    assert evaluate(Rollout.from_log(s), s, ABSOLUTE)["driving_direction_compliance"] == 0.5


def test_a_log_along_its_lane_judges_wrong_way_absolutely():
    s = scene([AgentSpec("ego", 100.0, speed=3.0)], num_steps=11)
    row = evaluate(against_lane(s, 3.0), s)
    assert row["log_wrong_way_max_m"] == pytest.approx(0.0)
    assert row["driving_direction_compliance"] == 0.5
    assert "driving_direction" not in (row["against_log"] or "")
