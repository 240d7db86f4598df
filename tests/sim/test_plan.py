"""The compiled plan: a pure function of scenario and config, checked without an engine."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scenarios.errors import ScenarioError
from scenarios.model import AgentType, Conditions
from scenarios.synthetic import AgentSpec, scene
from sim.config import EnvConfig
from sim.plan import ROUTE_EXTENSION_M, START_SLIP_MAX_RAD, PlanCache, compile_plan, start_heading

#: The real log of these tests and its known counts (Waymo Open Motion, GPUDrive JSON).
REAL_LOG = ("waymo_json", "tfrecord-00000-of-01000_222.json")
REAL_AGENTS, REAL_STEPS, REAL_EGO_ROW = 25, 91, 24


def accelerating_ego() -> object:
    """``accelerating_ego``: the ego from x = 10 m at 8 m/s, +1 m/s2, first seen at step 5 (t = 0.5 s);
    a lead 30 m ahead at 8 m/s that reacts, a pedestrian that replays; 0.3 s ego latency.

    At step 5 the ego is at x = 10 + 8 * 0.5 + 0.5 * 0.25 = 14.125 m (the local origin) at 8.5 m/s;
    at the log's end (step 40, t = 4 s) at x = 50 m, 35.875 m along its path, at 12 m/s.
    """
    agents = [
        AgentSpec("ego", x=10.0, speed=8.0, accel=1.0, valid_from=5),
        AgentSpec("lead", x=40.0, speed=8.0),
        AgentSpec("ped", x=30.0, y=5.0, speed=1.0, length=0.5, width=0.5, agent_type=AgentType.PEDESTRIAN),
    ]
    s = scene(agents, num_steps=41, scenario_id="accelerating_ego")
    return s.replace(conditions=Conditions(ego_latency_s=0.3, reactive_agents=("lead",)))


def test_plan_of_a_synthetic_scene_has_the_closed_form_values() -> None:
    plan = compile_plan(accelerating_ego(), EnvConfig())
    assert plan.start_step == 5 and plan.dt_us == 100_000 and plan.dt_s == 0.1
    assert plan.origin.tolist() == [14.125, 0.0]
    assert plan.num_steps == 36  # steps 5..40
    assert plan.ego0.x == 0.0 and plan.ego0.y == 0.0 and plan.ego0.speed == pytest.approx(8.5) and plan.ego0.steer == 0.0
    assert plan.ego_log[-1].tolist() == pytest.approx([35.875, 0.0, 0.0, 12.0])
    # the goal is the logged end along the route; the route goes on along lane 0 (y = 0) past it
    assert plan.has_goal and plan.goal_s == pytest.approx(35.875, abs=1e-9)
    assert plan.route.xy[0].tolist() == [0.0, 0.0]
    assert plan.route.length >= plan.goal_s + ROUTE_EXTENSION_M
    assert np.abs(plan.route.xy[:, 1]).max() < 1e-9
    assert plan.speed_limit == 20.0  # straight_road's lanes
    # 0.3 s at 10 Hz: three commands in the FIFO, the logged ego's own: +1 m/s2, wheels straight
    assert plan.latency_steps == 3 and len(plan.prefill) == 3
    assert [round(a, 9) for a, _ in plan.prefill] == [1.0, 1.0, 1.0] and all(s == 0.0 for _, s in plan.prefill)
    # the lead reacts, the pedestrian replays: "mixed"
    assert plan.reactive_rows.tolist() == [1] and plan.agents_mode == "mixed"
    assert plan.types.tolist() == [AgentType.VEHICLE, AgentType.VEHICLE, AgentType.PEDESTRIAN]
    assert plan.sizes[2].tolist() == [0.5, 0.5, 1.5] and plan.half_diag[2] == pytest.approx(0.5 * np.hypot(0.5, 0.5))
    # the log per env step in the local frame; the ego's own row is not among the others
    k = np.arange(plan.num_steps)
    assert np.allclose(plan.stack[:, 0, 1], 40.0 + 8.0 * (0.5 + 0.1 * k) - 14.125)
    assert not plan.others[:, 0].any() and plan.others[:, 1:].all()
    assert plan.offset.tolist() == pytest.approx((plan.geometry.anchor - plan.origin).tolist())


def test_a_plan_is_frozen_read_only_and_pure() -> None:
    s = accelerating_ego()
    x_before = s.tracks.x.copy()
    a, b = compile_plan(s, EnvConfig()), compile_plan(s, EnvConfig())
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.start_step = 0  # type: ignore[misc]
    for name in ("origin", "offset", "ego_log", "sizes", "types", "half_diag", "reactive_rows", "stack", "others", "lw"):
        array = getattr(a, name)
        assert not array.flags.writeable, name
        assert np.array_equal(array, getattr(b, name)), name
        with pytest.raises(ValueError):
            array[...] = 0
    assert a.prefill == b.prefill and a.goal_s == b.goal_s and a.route.xy.tolist() == b.route.xy.tolist()
    assert np.array_equal(s.tracks.x, x_before)  # the scenario is left as it was


def test_config_and_conditions_shape_the_plan() -> None:
    s = accelerating_ego()
    half = compile_plan(s, EnvConfig(sim_dt_s=0.05))
    assert half.dt_us == 50_000 and half.num_steps == 71 and half.latency_steps == 6  # 0.3 s at 20 Hz
    assert half.stack[1, 0, 1] == pytest.approx(40.0 + 8.0 * 0.55 - 14.125)  # interpolated at the half step
    every = compile_plan(s.replace(conditions=Conditions(agents_mode="reactive")), EnvConfig())
    assert every.reactive_rows.tolist() == [1, 2] and every.agents_mode == "reactive" and every.latency_steps == 0
    assert every.prefill == ()
    by_config = compile_plan(s.replace(conditions=Conditions()), EnvConfig(agents_mode="reactive"))
    assert by_config.agents_mode == "reactive"
    staged = compile_plan(s.replace(conditions=Conditions(agents_mode="reactive", replay_agents=("lead",))), EnvConfig())
    assert staged.reactive_rows.tolist() == [2] and staged.agents_mode == "mixed"


def test_no_usable_ego_is_refused_naming_the_scenario() -> None:
    once = scene([AgentSpec("ego", x=0.0, speed=5.0, valid_from=40), AgentSpec("b", x=9.0)], num_steps=41, scenario_id="seen-once")
    with pytest.raises(ScenarioError, match="seen-once.*ego.*at least one env step"):
        compile_plan(once, EnvConfig())


def test_plan_of_a_real_log(data_dir: Path) -> None:
    import scenarios

    (s,) = scenarios.load(data_dir.joinpath(*REAL_LOG))[:1]
    tr, e = s.tracks, s.ego_index
    assert (s.num_agents, s.num_steps, e) == (REAL_AGENTS, REAL_STEPS, REAL_EGO_ROW)
    plan = compile_plan(s, EnvConfig())
    assert plan.start_step == 0 and plan.num_steps == REAL_STEPS and plan.dt_s == 0.1
    assert plan.origin.tolist() == [tr.x[e, 0], tr.y[e, 0]]  # the ego's first logged position
    valid = tr.valid[e]
    assert valid.all()
    # the logged ego in the local frame, exactly the log minus the origin
    assert np.array_equal(plan.ego_log[:, 0], tr.x[e] - tr.x[e, 0]) and np.array_equal(plan.ego_log[:, 1], tr.y[e] - tr.y[e, 0])
    # the goal lies along the route where the logged path ends: its arc length, within 0.1 m
    path_m = np.hypot(np.diff(tr.x[e]), np.diff(tr.y[e])).sum()
    assert path_m == pytest.approx(22.834, abs=1e-3)
    assert plan.goal_s == pytest.approx(path_m, abs=0.1) and plan.has_goal
    assert plan.route.length >= plan.goal_s + 100.0
    assert plan.agents_mode == "replay" and plan.latency_steps == 0 and plan.prefill == ()
    assert np.isnan(plan.speed_limit)  # this map has no speed limits
    assert plan.params.length == pytest.approx(float(tr.length[e])) and plan.params.width == pytest.approx(float(tr.width[e]))
    assert plan.stack.shape == (REAL_STEPS, 5, REAL_AGENTS) and plan.others.sum(axis=1).max() <= REAL_AGENTS - 1
    slow = compile_plan(s.replace(conditions=Conditions(ego_latency_s=0.3, agents_mode="reactive")), EnvConfig())
    assert slow.latency_steps == 3 and len(slow.prefill) == 3 and slow.agents_mode == "reactive"
    assert len(slow.reactive_rows) == REAL_AGENTS - 1  # every other agent is seen in the log


def test_the_plan_cache_shares_plans_by_content_and_geometry_by_map() -> None:
    cache = PlanCache(EnvConfig())
    s = accelerating_ego()
    plan = cache.plan(s)
    assert cache.plan(s) is plan
    rebuilt = s.replace(tracks=s.tracks.replace(x=s.tracks.x.copy()))  # another object, the same content
    assert cache.plan(rebuilt) is plan
    moved = s.replace(tracks=s.tracks.replace(x=s.tracks.x + 1.0))
    other = cache.plan(moved)
    assert other is not plan and other.geometry is plan.geometry  # one map, one geometry
    assert other.origin.tolist() == [15.125, 0.0]


def test_compiling_a_plan_needs_no_engine() -> None:
    """``sim.plan`` works without pybullet: it is not even imported."""
    code = (
        "import sys; sys.path.insert(0, 'tests/sim'); from test_plan import accelerating_ego; "
        "from sim.config import EnvConfig; from sim.plan import compile_plan; "
        "p = compile_plan(accelerating_ego(), EnvConfig()); assert p.num_steps == 36; "
        "assert 'pybullet' not in sys.modules, 'pybullet was imported'"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def turning_ego(radius_m: float = 6.0, speed_mps: float = 3.0, num_steps: int = 31) -> object:
    """``turning_ego``: the ego's rear axle on a circle of ``radius_m`` about (0, 6) at
    ``speed_mps``, turning left from (0, 0) heading +x; its box (4.5 m, wheelbase 2.7 m, the rear
    axle 1.35 m behind the centre) heads along the circle's tangent, its centre 1.35 m ahead of
    the axle moving at the rigid body's velocity: atan(1.35 / 6) = 12.7 deg off its heading."""
    s = scene([AgentSpec("ego", x=0.0), AgentSpec("far", x=100.0, y=-3.5)], num_steps=num_steps, scenario_id="turning_ego")
    tr, e = s.tracks, s.ego_index
    t = np.arange(num_steps) * 0.1
    w = speed_mps / radius_m
    yaw = w * t
    d = 0.5 * 0.6 * 4.5
    rx, ry = radius_m * np.sin(yaw), radius_m * (1.0 - np.cos(yaw))
    fields = {n: getattr(tr, n).copy() for n in ("x", "y", "yaw", "vx", "vy")}
    fields["x"][e], fields["y"][e], fields["yaw"][e] = rx + d * np.cos(yaw), ry + d * np.sin(yaw), yaw
    fields["vx"][e] = speed_mps * np.cos(yaw) - w * d * np.sin(yaw)
    fields["vy"][e] = speed_mps * np.sin(yaw) + w * d * np.cos(yaw)
    return s.replace(tracks=tr.replace(**fields))


def test_a_tight_turn_at_the_start_keeps_its_logged_heading() -> None:
    """The centre's 12.7 deg off the box is the turn's (over START_SLIP_MAX_RAD: it was taken for
    label noise and the ego started heading along its motion, 12.7 deg off the road)."""
    s = turning_ego()
    e = s.ego_index
    slip = np.arctan2(s.tracks.vy[e, 0], s.tracks.vx[e, 0]) - s.tracks.yaw[e, 0]
    assert np.degrees(slip) == pytest.approx(np.degrees(np.arctan(1.35 / 6.0)), abs=1e-9)
    assert slip > START_SLIP_MAX_RAD
    plan = compile_plan(s, EnvConfig())
    assert plan.params.wheelbase == pytest.approx(2.7)
    assert plan.ego0.yaw == pytest.approx(0.0, abs=1e-12)
    tr = s.tracks
    yaw0, rate = start_heading(tr.yaw[e], tr.vx[e], tr.vy[e], 0.1, 1.35)
    assert (yaw0, rate) == (0.0, pytest.approx(0.5))


def test_a_label_swinging_while_its_car_drives_straight_is_still_replaced() -> None:
    """A box heading 18 deg off a straight motion at 8 m/s, swinging onto it over 0.8 s: the
    heading turns, the motion does not, so no turn explains the slip (the AV2 label noise)."""
    yaw = np.radians(18.0) * np.clip(1.0 - np.arange(20) / 8, 0.0, None)
    vx, vy = np.full(20, 8.0), np.zeros(20)
    assert start_heading(yaw, vx, vy, 0.1, 1.35) == (0.0, 0.0)


def test_a_turn_excuses_a_slip_but_adds_none() -> None:
    """An AV2 car turning left at 0.35 rad/s and 2.4 m/s whose motion is 3 deg right of its box
    (its centre nearer the rear axle than a rigid box's, which would slip 12 deg left): the box
    is no label noise, though 3 + 12 deg is more than START_SLIP_MAX_RAD from the turn's slip."""
    t = np.arange(8) * 0.1
    yaw = 0.35 * t
    motion = yaw - np.radians(3.0)
    vx, vy = 2.4 * np.cos(motion), 2.4 * np.sin(motion)
    assert np.degrees(np.arcsin(0.35 * 1.41 / 2.4)) == pytest.approx(11.9, abs=0.05)
    yaw0, rate = start_heading(yaw, vx, vy, 0.1, 1.41)
    assert yaw0 == 0.0 and rate == pytest.approx(0.35)


@pytest.mark.parametrize("label_off_deg", [12.0, 15.0])
def test_a_replaced_heading_keeps_the_slip_the_turn_explains(label_off_deg: float) -> None:
    """A car on a circle of R = 6 m about its rear axle (1.35 m behind the centre) at 3 m/s: its
    centre moves atan(1.35 / 6) = 12.68 deg left of its box. A label turning with it but
    ``label_off_deg`` right of the box is replaced; the start is the box's true heading (0), not
    the motion's (12.68 deg)."""
    t = np.arange(31) * 0.1
    w, d = 3.0 / 6.0, 1.35
    true_yaw = w * t
    vx = 3.0 * np.cos(true_yaw) - w * d * np.sin(true_yaw)
    vy = 3.0 * np.sin(true_yaw) + w * d * np.cos(true_yaw)
    assert np.degrees(np.arctan2(vy[0], vx[0])) == pytest.approx(12.68, abs=0.01)
    yaw0, rate = start_heading(true_yaw - np.radians(label_off_deg), vx, vy, 0.1, d)
    assert yaw0 == pytest.approx(0.0, abs=1e-9) and rate == pytest.approx(w, rel=1e-9)
