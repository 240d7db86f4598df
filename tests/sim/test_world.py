"""The pybullet world: road mesh and friction, agent bodies, off-road from rays, the local frame."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon

from scenarios.model import Conditions, Scenario, FeatureKind, Lane, MapFeature, RoadMap
from scenarios.synthetic import AgentSpec, scene, straight_road
from sim.road import MEASURED_SHOULDER_M, Polyline, RoadGeometry, triangulate
from sim.runner import rollout


def test_triangulation_covers_the_surface_and_keeps_holes() -> None:
    square = Polygon([(0, 0), (20, 0), (20, 20), (0, 20)], [[(5, 5), (10, 5), (10, 10), (5, 10)]])
    vertices, indices = triangulate(square)
    tri = indices.reshape(-1, 3)
    v = vertices[:, :2]
    e1, e2 = v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]]
    cross = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    assert 0.5 * cross.sum() == pytest.approx(400 - 25)
    assert (cross > 0).all()  # counter-clockwise, so the surface faces up
    centroids = v[tri].mean(axis=1)
    assert not shapely.contains_xy(Polygon([(5, 5), (10, 5), (10, 10), (5, 10)]), centroids[:, 0], centroids[:, 1]).any()


def test_road_geometry_unions_lanes_and_widens_by_the_shoulder() -> None:
    road = straight_road(num_lanes=2, length=100.0, lane_width=3.5)
    geom = RoadGeometry(road)
    assert geom.shoulder_m == MEASURED_SHOULDER_M  # the synthetic road has boundaries and a drivable area
    assert geom.surface.area == pytest.approx(100.0 * 7.0, rel=1e-6)
    assert geom.paved.area > geom.surface.area
    # a centerline-only map gets the wider shoulder of a derived drivable area
    derived = RoadMap.from_parts([Lane("a", [[0, 0], [50, 0]])])
    assert RoadGeometry(derived).shoulder_m == 1.0


def test_friction_from_conditions_reaches_the_road_body(make_env) -> None:
    base = scene([AgentSpec("ego", x=0.0, speed=5.0)], num_steps=11)
    env = make_env(base, ground_friction=0.4)
    icy = base.replace(id="icy", conditions=Conditions(road_friction=0.15))
    other_map = scene([AgentSpec("ego", x=0.0, speed=5.0)], num_steps=11, road=straight_road(num_lanes=3), scenario_id="three")
    for scenario, mu in ((base, 0.9), (icy, 0.15), (base, 0.9), (other_map, 0.9), (icy, 0.15)):
        env.reset(seed=0, options={"scenario": scenario})
        world = env.world
        road_bodies = world.road_bodies
        assert road_bodies
        for body in road_bodies:
            assert world.p.getDynamicsInfo(body, -1, physicsClientId=world.cid)[1] == pytest.approx(mu)
        ground = world.ground_body
        assert ground not in road_bodies
        assert world.p.getDynamicsInfo(ground, -1, physicsClientId=world.cid)[1] == pytest.approx(0.4)
        assert world.p.getBasePositionAndOrientation(ground, physicsClientId=world.cid)[0][2] == pytest.approx(-0.05)
        assert world.ground_under([(0.0, 0.0), (0.0, -30.0)]) == [True, False]


def _drifting_ego() -> Scenario:
    """``ego_drifts_right``: the ego starts heading -0.2 rad at 10 m/s from the centre of lane 0,
    while its log goes straight down the lane (so leaving the road is the policy's doing, not the log's)."""
    drift = scene([AgentSpec("ego", x=0.0, speed=10.0, yaw=-0.2)], num_steps=31, scenario_id="ego_drifts_right")
    tracks = drift.tracks
    return drift.replace(tracks=dataclasses.replace(tracks, y=np.zeros_like(tracks.y)))


def test_an_ego_leaving_the_road_where_its_log_did_is_not_ended(make_env) -> None:
    """The log itself drifts off the road (the old ``ego_drifts_right``): its ego goes off-road at
    step 5 as the log does, and drives on to the log's end (its goal); the evaluators judge it against the log."""
    drift = scene([AgentSpec("ego", x=0.0, speed=10.0, yaw=-0.2)], num_steps=31, scenario_id="log_drifts_right")
    record = rollout(make_env(drift), "constant_velocity", seed=0)
    assert record.termination == "goal"
    assert record.num_steps > 20
    assert record.offroad.tolist()[:6] == [False] * 5 + [True]


def test_offroad_detected_at_the_step_geometry_predicts(make_env) -> None:
    """``_drifting_ego``: heading -0.2 rad at 10 m/s from the centre of lane 0.

    Lane 0's right edge is y = -1.75, plus the 0.5 m shoulder: -2.25. The front-right corner is at
    y_c - L/2 sin(0.2) - W/2 cos(0.2) = y_c - 1.3781 and y_c = -0.19867 k, so it leaves the road
    at step 5 (corner at -2.371; at step 4 it is at -2.173).
    """
    drift = _drifting_ego()
    env = make_env(drift)
    record = rollout(env, "constant_velocity", seed=0)
    assert record.termination == "offroad"
    assert record.num_steps - 1 == 5
    assert record.offroad.tolist() == [False] * 5 + [True]
    world = env.unwrapped.world
    # rays straight down: on the road, on the shoulder, beyond it (local frame = scenario frame here)
    assert world.ground_under([(10.0, 0.0), (10.0, -2.1), (10.0, -2.4)]) == [True, True, False]


@pytest.mark.parametrize("dynamics", ["bicycle", "bullet"])
def test_an_ego_crossing_a_road_edge_passes_through_its_wall(make_env, dynamics: str) -> None:
    """``_drifting_ego`` with the lidar on (its edge walls built, rays below their top): the walls
    are for rays only. The ego drives through the right edge's wall touching nothing, and ends
    off-road at the step it does without walls (step 5 for the kinematic bicycle)."""
    drift = _drifting_ego()
    plain = rollout(make_env(drift, dynamics=dynamics), "constant_velocity", seed=0)
    env = make_env(drift, dynamics=dynamics, observation=["state", "lidar"], lidar_height_m=0.15)
    world = env.unwrapped.world
    walls = []
    step = world.recorder.stepSimulation

    def recorded(*args, **kwargs):  # the wheeled ego's substeps: any contact with a wall
        out = step(*args, **kwargs)
        for wall in world.wall_bodies:
            walls.extend(world.p.getContactPoints(bodyA=world.ego_body, bodyB=wall, physicsClientId=world.cid))
        return out

    world.recorder.stepSimulation = recorded
    record = rollout(env, "constant_velocity", seed=0)
    assert world.wall_bodies and not walls
    assert not record.contact.any()
    assert record.termination == plain.termination == "offroad"
    assert record.num_steps == plain.num_steps and record.offroad.tolist() == plain.offroad.tolist()
    if dynamics == "bicycle":
        assert record.num_steps - 1 == 5
        assert np.array_equal(record.y, plain.y)
    # the ground rays go through walls: on the edge itself the road is found below
    assert world.ground_under([(10.0, -1.75), (10.0, 5.25), (10.0, -2.4)]) == [True, True, False]
    for wall in world.wall_bodies:  # collision geometry (unlike the edges' visual-only ribbons)
        assert world.p.getCollisionShapeData(wall, -1, physicsClientId=world.cid)
    # without termination the ego drives on beyond the wall, never held back by it
    free = make_env(drift, dynamics=dynamics, observation=["state", "lidar"], lidar_height_m=0.15, terminate_on_offroad=False)
    record = rollout(free, "constant_velocity", seed=0)
    assert not record.contact.any()
    assert record.y[0, -1] < -1.75 - 3.0


def test_agent_bodies_are_sized_from_the_log_and_follow_the_valid_mask(make_env) -> None:
    agents = [
        AgentSpec("ego", x=0.0, speed=10.0),
        AgentSpec("late", x=0.0, y=3.5, speed=10.0, length=6.2, width=2.3, height=2.9, valid_from=10, valid_to=20),
    ]
    env = make_env(scene(agents, num_steps=41))
    env.reset(seed=0)
    world = env.world
    body = int(world.bodies[1])
    assert world.bodies[0] == -1  # the ego's body belongs to the dynamics model
    shape = world.p.getCollisionShapeData(body, -1, physicsClientId=world.cid)[0]
    assert np.allclose(shape[3], [6.2, 2.3, 2.9])
    heights = {}
    for k in range(1, 30):
        env.step(np.zeros(2, np.float32))
        pos, _ = world.p.getBasePositionAndOrientation(body, physicsClientId=world.cid)
        heights[k] = pos[2]
        if k == 12:
            assert pos[0] == pytest.approx(env.ego.x, abs=1e-6)  # beside the ego, both at 10 m/s
            assert pos[1] == pytest.approx(3.5)
    assert heights[5] < -100 and heights[25] < -100  # parked while not observed
    assert heights[12] == pytest.approx(1.45)
    record = env.rollout_record()
    assert record.valid[1].tolist() == env.plan.scenario.tracks.valid[1, :30].tolist()


def test_reset_reuses_the_client_and_the_bodies(make_env, scenes) -> None:
    env = make_env(scenes.lead_stopped())
    other = scenes.cruise()
    env.reset(seed=0)
    world = env.world
    count = world.p.getNumBodies(physicsClientId=world.cid)
    for _ in range(3):
        env.reset(seed=1)
    assert world.p.getNumBodies(physicsClientId=world.cid) == count
    env.reset(options={"scenario": other})
    env.reset(options={"scenario": scenes.lead_stopped()})  # same content, new object: same bodies
    env.reset(options={"scenario": other})
    assert world.p.getNumBodies(physicsClientId=world.cid) == count  # same road, the far car reuses the lead's box


def test_local_frame_keeps_city_coordinates_exact(make_env, scenes) -> None:
    city = scenes.shifted(scenes.lead_stopped(gap_m=80.0), 4312.5, -2271.25, "city")
    env = make_env(city, action="trajectory")
    record = rollout(env, "expert", seed=0)
    e = city.ego_index
    n = record.num_steps
    assert np.abs(record.x[e] - city.tracks.x[e, :n]).max() < 1e-6
    assert np.abs(record.y[e] - city.tracks.y[e, :n]).max() < 1e-6
    assert record.x[1, 0] == city.tracks.x[1, 0]  # other agents: the log, bit for bit
    world = env.unwrapped.world
    pos, _ = world.p.getBasePositionAndOrientation(world.ego_body, physicsClientId=world.cid)
    assert abs(pos[0]) < 200 and abs(pos[1]) < 10  # the engine works near the origin
    info_x = env.unwrapped._info([], False, 0, (0.0, 0.0), {}, "")["ego"]["x"]
    assert info_x == pytest.approx(city.tracks.x[e, n - 1], abs=1e-6)


def test_polyline_track_matches_project() -> None:
    t = np.linspace(0, math.pi, 200)
    line = Polyline(np.column_stack([30 * np.cos(t), 30 * np.sin(t)])).resampled(0.5)
    rng = np.random.default_rng(0)
    hint = 0
    for s_true in np.linspace(0, line.length, 50):
        p = line.interpolate(s_true) + rng.normal(0, 0.3, 2)
        s_fast, lat_fast, hint = line.track(float(p[0]), float(p[1]), hint, 10)
        s_ref, lat_ref, _ = line.project(p)
        assert s_fast == pytest.approx(s_ref, abs=1e-9)
        assert lat_fast == pytest.approx(lat_ref, abs=1e-9)


def test_crosswalks_and_edges_become_visual_geometry(make_env) -> None:
    road = straight_road()
    crosswalk = MapFeature("cw", FeatureKind.CROSSWALK, [[20, -1.75], [24, -1.75], [24, 5.25], [20, 5.25]])
    s = scene([AgentSpec("ego", x=0.0, speed=5.0)], road=RoadMap(road.lanes, road.features + (crosswalk,)), num_steps=11)
    env = make_env(s)
    env.reset(seed=0)
    decor = env.world.road.decor
    assert len(decor) == 3  # lines, edges, crosswalks
    for body in decor:  # visual only: nothing to collide with
        assert env.world.p.getCollisionShapeData(body, -1, physicsClientId=env.world.cid) == ()


def test_an_ego_that_starts_off_the_road_is_not_ended_for_it(make_env) -> None:
    """``parked_on_the_verge``: the ego starts 3 m beyond the right edge of the road (its corners
    on the ground) and drives along it: off-road every step, but it never *left* the road, so
    the episode runs to the log's end (the evaluators judge where it drove)."""
    verge = scene([AgentSpec("ego", x=0.0, y=-5.0, speed=5.0)], num_steps=21, scenario_id="parked_on_the_verge")
    record = rollout(make_env(verge), "constant_velocity", seed=0)
    assert record.offroad.all()
    assert record.termination == "goal" and record.num_steps >= 15  # not ended at its first step


def test_a_track_born_inside_the_ego_is_no_collision(make_env) -> None:
    """``track_born_inside_the_ego``: a logged agent appears at step 10 overlapping the ego (label
    noise, as in real logs) and drives along with it: contact is recorded, the episode goes on."""
    agents = [AgentSpec("ego", x=0.0, speed=10.0), AgentSpec("ghost", x=1.0, speed=10.0, valid_from=10)]
    record = rollout(make_env(scene(agents, num_steps=31)), "constant_velocity", seed=0)
    assert record.contact[1, 10:].all() and not record.contact[1, :10].any()
    assert record.termination == "goal"


def test_an_agent_overlapping_from_the_start_is_no_collision_until_it_separates(make_env) -> None:
    """``overlap_then_stopped_car``: a car overlaps the ego from the start and moves with it (no
    collision: the log began that way); a car stopped ahead is then hit: that ends the episode."""
    agents = [
        AgentSpec("ego", x=0.0, speed=10.0),
        AgentSpec("overlap", x=2.0, speed=10.0),  # 2 m apart, 4.5 m long: overlapping all along
        AgentSpec("stopped", x=60.0, y=0.0, speed=0.0),
    ]
    record = rollout(make_env(scene(agents, num_steps=91)), "constant_velocity", seed=0)
    assert record.contact[1].all()
    # the ego's front reaches the stopped car's rear (60 - 2.25) at centre x = 57.75 - 2.25 = 55.5,
    # t = 5.55 s: first contact at step 56
    assert record.termination == "collision" and record.num_steps - 1 == 56
    assert record.contact[2, 56] and not record.contact[2, :56].any()


def test_lane_path_takes_the_straightest_successor_at_a_fork() -> None:
    """A lane forking into a right turn (listed first) and a straight on: the path goes straight
    on, whichever order the map lists them in; a lone turning successor is still followed."""
    turn = np.array([[50.0 + 10 * math.sin(a), -10 + 10 * math.cos(a)] for a in np.linspace(0, math.pi / 2, 12)])
    for order in (("right", "straight"), ("straight", "right")):
        road = RoadMap.from_parts([
            Lane("in", [[0, 0], [50, 0]], successors=order),
            Lane("right", turn),
            Lane("straight", [[50, 0], [100, 0]]),
        ])
        geom = RoadGeometry(road)
        index = {lane.id: i for i, lane in enumerate(road.lanes)}
        path = geom.lane_path(index["in"], 10.0, 70.0) + geom.anchor
        assert path[-1, 0] == pytest.approx(100.0) and np.abs(path[:, 1]).max() == pytest.approx(0.0, abs=1e-9)
    road = RoadMap.from_parts([Lane("in", [[0, 0], [50, 0]], successors=("right",)), Lane("right", turn)])
    geom = RoadGeometry(road)
    path = geom.lane_path(0, 10.0, 50.0) + geom.anchor
    assert path[:, 1].min() < -9.0  # down the turn
