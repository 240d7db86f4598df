"""Observation parts against hand-built scenes: state layout, perception noise, lidar, bev, camera."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scenarios.model import AgentType, Conditions
from scenarios.synthetic import AgentSpec, scene
from sim.observations import AGENT_FEATURES, EGO_FEATURES, state_layout
from sim.world import (
    EDGE_WALL_HEIGHT_M,
    EDGE_WALL_THICKNESS_M,
    SEG_AGENT0,
    SEG_EGO,
    SEG_ROAD,
)

NF = len(AGENT_FEATURES)


def _parts(env, obs):
    lay = state_layout(env.config)
    st = obs["state"]
    return st[lay["ego"]], st[lay["agents"]].reshape(env.config.num_agents_obs, NF), st[lay["route"]].reshape(-1, 2)


def test_state_holds_the_k_nearest_in_the_ego_frame(make_env) -> None:
    """``ego_heading_north``: the ego at the origin facing +y at 8 m/s; agents at known offsets.

    In the ego frame (x ahead, y left) a car at world (0, 20) is at (20, 0), one at (-5, 0) is at
    (0, 5) and a pedestrian at (0, -12) is at (-12, 0); the far one at (0, 60) is not among K=3.
    """
    north = math.pi / 2
    s = scene(
        [
            AgentSpec("ego", x=0.0, speed=8.0, yaw=north),
            AgentSpec("ahead", x=0.0, y=20.0, speed=5.0, yaw=north, length=4.0, width=2.0),
            AgentSpec("left", x=-5.0, y=0.0, speed=0.0, yaw=0.0),
            AgentSpec("ped", x=0.0, y=-12.0, speed=1.0, yaw=north, length=0.5, width=0.5, agent_type=AgentType.PEDESTRIAN),
            AgentSpec("far", x=0.0, y=60.0, speed=8.0, yaw=north),
        ],
        num_steps=21,
    )
    env = make_env(s, num_agents_obs=3, route_points=4, route_spacing_m=2.0, terminate_on_offroad=False)
    obs, _ = env.reset(seed=0)
    ego, agents, route = _parts(env, obs)
    assert ego[EGO_FEATURES.index("speed")] == pytest.approx(8.0)
    assert ego[EGO_FEATURES.index("length")] == pytest.approx(4.5)
    # nearest first: left (5 m), ped (12 m), ahead (20 m)
    assert agents[:, 0].tolist() == [1.0, 1.0, 1.0]
    assert np.allclose(agents[0, 1:3], [0.0, 5.0], atol=1e-5)
    assert np.allclose(agents[1, 1:3], [-12.0, 0.0], atol=1e-5)
    assert np.allclose(agents[2, 1:3], [20.0, 0.0], atol=1e-5)
    # relative velocity in the ego frame: the car ahead is 3 m/s slower, the parked one comes at 8 m/s
    assert np.allclose(agents[2, 3:5], [-3.0, 0.0], atol=1e-5)
    assert np.allclose(agents[0, 3:5], [-8.0, 0.0], atol=1e-5)
    # relative heading: the parked car faces the ego's right (-90 degrees)
    assert np.allclose(agents[0, 5:7], [0.0, -1.0], atol=1e-6)
    assert np.allclose(agents[2, 7:9], [4.0, 2.0])
    assert agents[1, 9 + AgentType.PEDESTRIAN] == 1.0 and agents[2, 9 + AgentType.VEHICLE] == 1.0
    assert np.allclose(route, [[2, 0], [4, 0], [6, 0], [8, 0]], atol=1e-6)


def test_perception_noise_and_dropout_change_only_what_the_ego_sees(make_env) -> None:
    agents = [AgentSpec("ego", x=0.0, speed=10.0), AgentSpec("a", x=20.0, speed=10.0)]
    base = scene(agents, num_steps=41)
    blind = base.replace(conditions=Conditions(detection_dropout=1.0))
    env = make_env(blind)
    obs, _ = env.reset(seed=0)
    assert not _parts(env, obs)[1][:, 0].any()
    noisy = base.replace(conditions=Conditions(position_noise_m=1.0))
    env = make_env(noisy)
    obs, _ = env.reset(seed=5)
    seen = [_parts(env, obs)[1][0, 1]]
    for _ in range(39):
        obs, *_ = env.step(np.zeros(2, np.float32))
        seen.append(_parts(env, obs)[1][0, 1])
    err = np.array(seen) - 20.0
    assert 0.6 < err.std() < 1.4 and abs(err.mean()) < 0.5
    record = env.rollout_record()
    assert np.allclose(record.x[1] - record.x[0], 20.0)  # the twin itself is not noisy


def test_lidar_measures_the_distance_to_a_box_ahead(make_env) -> None:
    s = scene([AgentSpec("ego", x=0.0, speed=0.0), AgentSpec("a", x=20.0, speed=0.0)], num_steps=11)
    env = make_env(s, observation=["lidar"], lidar_beams=8, lidar_range_m=50.0)
    obs, _ = env.reset(seed=0)
    lidar = obs["lidar"]
    assert lidar[0] == pytest.approx((20.0 - 2.25) / 50.0, abs=1e-4)  # beam 0 straight ahead
    assert np.allclose(lidar[1:], 1.0)  # nothing else; the ego's own box is not seen
    threaded, _ = make_env(s, observation=["lidar"], lidar_beams=8, lidar_range_m=50.0, lidar_threads=2).reset(seed=0)
    assert np.array_equal(threaded["lidar"], lidar)  # threads change the speed, not the result


def test_lidar_sees_the_road_edges(make_env) -> None:
    """``lidar_at_the_kerb``: the ego alone at y = 0 on the straight road (edges at y = -1.75 and 5.25).

    Beams start at the ego's centre, ``lidar_height_m`` above the road (below the edge walls' top):
    the right beam (-y) meets the right wall's near face at 1.75 - thickness / 2, the left beam
    the left wall's at 5.25 - thickness / 2; beams along the road see nothing.
    """
    s = scene([AgentSpec("ego", x=0.0, speed=0.0)], num_steps=11, scenario_id="lidar_at_the_kerb")
    height = 0.5 * EDGE_WALL_HEIGHT_M
    env = make_env(s, observation=["lidar"], lidar_beams=4, lidar_range_m=50.0, lidar_height_m=height)
    obs, _ = env.reset(seed=0)
    ahead, left, behind, right = obs["lidar"].tolist()  # beams counter-clockwise from straight ahead
    half = EDGE_WALL_THICKNESS_M / 2
    assert right * 50.0 == pytest.approx(1.75 - half, abs=1e-3)
    assert left * 50.0 == pytest.approx(5.25 - half, abs=1e-3)
    assert ahead == 1.0 and behind == 1.0
    # the walls are edges only: beams cast above them see open space
    high = make_env(s, observation=["lidar"], lidar_beams=4, lidar_range_m=50.0, lidar_height_m=EDGE_WALL_HEIGHT_M + 0.1)
    obs, _ = high.reset(seed=0)
    assert np.array_equal(obs["lidar"], np.ones(4, np.float32))


def test_bev_channels_place_the_road_agents_and_route(make_env) -> None:
    s = scene([AgentSpec("ego", x=0.0, speed=5.0), AgentSpec("a", x=10.0, speed=5.0)], num_steps=11)
    env = make_env(s, observation=["bev"], bev_size=(64, 64), bev_resolution_m=0.5)
    obs, _ = env.reset(seed=0)
    bev = obs["bev"]
    assert bev.shape == (64, 64, 4) and bev.dtype == np.uint8
    drivable, lines, agents, route = (bev[:, :, c] for c in range(4))
    assert drivable[32, 32] == 255
    # columns grow to the ego's right, 0.5 m each (pixel centres at y = (31.5 - column) * 0.5):
    # the road spans y in [-1.75, 5.25] (lane 0 under the ego, lane 1 to its left)
    assert drivable[32, 34] == 255 and drivable[32, 36] == 0  # y = -1.25 on, y = -2.25 off
    assert drivable[32, 22] == 255 and drivable[32, 20] == 0  # y = 4.75 on, y = 5.75 off
    # the car 10 m ahead: rows 32 - 20 +- 4.5 m, columns 32 +- 0.95 m
    rows, cols = np.nonzero(agents)
    assert rows.min() >= 32 - 20 - 5 and rows.max() <= 32 - 20 + 5
    assert abs(cols.mean() - 31.5) < 1.0
    assert route[:32, 32].any() and not route[40:, :].any()  # the route lies ahead
    assert lines.any()


def test_camera_sees_the_road_and_the_car_ahead(make_env) -> None:
    s = scene([AgentSpec("ego", x=0.0, speed=0.0), AgentSpec("a", x=15.0, speed=0.0)], num_steps=11)
    env = make_env(s, observation=["camera"], camera_size=(48, 64))
    obs, _ = env.reset(seed=0)
    rgb, depth, seg = obs["camera_rgb"], obs["camera_depth"], obs["camera_seg"]
    assert rgb.shape == (48, 64, 3) and depth.shape == (48, 64) and seg.shape == (48, 64)
    assert (seg == SEG_ROAD).any() and (seg == SEG_AGENT0 + AgentType.VEHICLE).any()
    assert not (seg == SEG_EGO).any()
    car = seg == SEG_AGENT0 + AgentType.VEHICLE
    # the camera sits at the ego's front bumper: the car's rear is about 15 - 2.25 - 2.45 m away
    assert depth[car].min() == pytest.approx(15.0 - 2.25 - 2.45, abs=0.6)
