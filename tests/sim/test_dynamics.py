"""Ego dynamics: the kinematic bicycle against closed forms, the wheeled vehicle against physics."""

from __future__ import annotations

import math

import pybullet
import pytest
from pybullet_utils.bullet_client import BulletClient

from sim.dynamics import EgoDynamics, EgoState, VehicleParams, make, names
from sim.dynamics.base import GRAVITY
from sim.dynamics.bullet_vehicle import GRIP_MARGIN

PARAMS = VehicleParams()  # 4.6 x 1.9 x 1.6 m, wheelbase 2.76 m, 1500 kg
L = PARAMS.wheelbase


@pytest.fixture
def client():
    c = BulletClient(connection_mode=pybullet.DIRECT)
    yield c
    c.disconnect()


def flat_road(client, friction: float) -> int:
    """A large static box whose top face is the plane z = 0, with the given friction; sets gravity."""
    client.setGravity(0.0, 0.0, -GRAVITY)
    shape = client.createCollisionShape(client.GEOM_BOX, halfExtents=[500.0, 500.0, 0.5])
    road = client.createMultiBody(baseMass=0, baseCollisionShapeIndex=shape, basePosition=[0.0, 0.0, -0.5])
    client.changeDynamics(road, -1, lateralFriction=friction)
    return road


def start(client, name: str, state: EgoState, friction: float, params: VehicleParams = PARAMS) -> EgoDynamics:
    model = make(name)
    model.reset(client, state, params, friction)
    return model


def bodies(client) -> set[int]:
    return {client.getBodyUniqueId(i) for i in range(client.getNumBodies())}


def angle_diff(a: float, b: float) -> float:
    return math.remainder(a - b, 2.0 * math.pi)


# -- the registry -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bicycle", "bullet"])
def test_model_is_registered_and_made_by_name(name):
    assert name in names()
    model = make(name)
    assert isinstance(model, EgoDynamics) and model.name == name


class CountingClient:
    """A ``BulletClient`` stand-in that counts the bodies created through it."""

    def __init__(self, client) -> None:
        self._client = client
        self.created = 0

    def createMultiBody(self, *args, **kwargs) -> int:
        self.created += 1
        return self._client.createMultiBody(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._client, name)


@pytest.mark.parametrize("name", ["bicycle", "bullet"])
def test_reset_on_the_same_client_reuses_the_body(client, name):
    flat_road(client, 0.9)
    counting = CountingClient(client)
    model = make(name)
    first = model.reset(counting, EgoState(0.0, 0.0, 0.0, 5.0), PARAMS, 0.9)
    model.step(0.5, 0.1, 0.1)
    count = client.getNumBodies()
    again = model.reset(counting, EgoState(10.0, 3.0, 1.0, 2.0), PARAMS, 0.5)
    assert again == first and client.getNumBodies() == count and counting.created == 1
    state = model.step(0.0, 0.0, 0.1)
    assert math.hypot(state.x - 10.0, state.y - 3.0) == pytest.approx(0.2, abs=0.01)  # moved from the new pose
    # a new size replaces the body rather than leaving the old one in the world
    bigger = model.reset(counting, EgoState(10.0, 3.0, 1.0, 2.0), VehicleParams(length=5.5, width=2.1), 0.5)
    assert counting.created == 2 and client.getNumBodies() == count and bigger in bodies(client)
    # another client gets its own body
    other = BulletClient(connection_mode=pybullet.DIRECT)
    try:
        flat_road(other, 0.9)
        body = model.reset(other, EgoState(0.0, 0.0, 0.0, 0.0), PARAMS, 0.9)
        assert body in bodies(other) and other.getNumBodies() == 2
    finally:
        other.disconnect()


# -- the kinematic bicycle: closed forms ---------------------------------------------------------


@pytest.mark.parametrize("dt", [0.125, 0.03])
def test_bicycle_stops_in_closed_form_distance_and_time(client, dt):
    v0, a, yaw0 = 20.0, 8.0, 0.7  # friction 1.5 allows 14.7 m/s2: it does not bind
    model = start(client, "bicycle", EgoState(3.0, -4.0, yaw0, v0), friction=1.5)
    t, prev = 0.0, model.state
    while model.state.speed > 0.0:
        prev = model.state
        state = model.step(-a, 0.0, dt)
        t += dt
        if state.speed > 0.0:  # still rolling: speed and distance follow the closed form
            assert state.speed == pytest.approx(v0 - a * t, rel=1e-9)
            assert math.hypot(state.x - 3.0, state.y + 4.0) == pytest.approx(v0 * t - 0.5 * a * t * t, rel=1e-9)
    # the stop happens inside the last step, at v_prev / a after its start
    t_stop = (t - dt) + prev.speed / a
    assert t_stop == pytest.approx(v0 / a, rel=1e-6)
    assert t - dt < v0 / a <= t + 1e-12
    distance = math.hypot(model.state.x - 3.0, model.state.y + 4.0)
    assert distance == pytest.approx(v0**2 / (2 * a), rel=1e-6)
    assert model.state.yaw == pytest.approx(yaw0, abs=1e-12)
    # braking on at standstill: no reversing, no creeping
    for _ in range(10):
        state = model.step(-a, 0.0, dt)
        assert state.speed == 0.0
    assert math.hypot(state.x - 3.0, state.y + 4.0) == pytest.approx(distance, abs=1e-12)


def test_bicycle_stop_time_is_exact_on_a_dividing_step(client):
    model = start(client, "bicycle", EgoState(0.0, 0.0, 0.0, 20.0), friction=1.5)
    speeds = [model.step(-8.0, 0.0, 0.125).speed for _ in range(21)]
    assert speeds[18] == pytest.approx(1.0) and speeds[19] == 0.0  # 0.125 s steps: stopped at exactly 2.5 s
    assert model.state.x == pytest.approx(25.0, rel=1e-12)


def test_bicycle_turns_on_the_closed_form_circle(client):
    v, delta, yaw0, dt = 10.0, 0.3, -0.4, 0.05
    x0, y0 = 7.0, 2.0
    model = start(client, "bicycle", EgoState(x0, y0, yaw0, v, steer=delta), friction=2.0)
    radius = L / math.tan(delta)  # the rear axle's circle
    rear = (x0 - 0.5 * L * math.cos(yaw0), y0 - 0.5 * L * math.sin(yaw0))
    cx, cy = rear[0] - radius * math.sin(yaw0), rear[1] + radius * math.cos(yaw0)
    for k in range(1, 201):
        state = model.step(0.0, delta, dt)
        t = k * dt
        rx, ry = state.x - 0.5 * L * math.cos(state.yaw), state.y - 0.5 * L * math.sin(state.yaw)
        assert abs(math.hypot(rx - cx, ry - cy) - radius) < 1e-6
        assert abs(math.hypot(state.x - cx, state.y - cy) - math.hypot(radius, 0.5 * L)) < 1e-6
        assert abs(angle_diff(state.yaw, yaw0 + v * t * math.tan(delta) / L)) < 1e-9
    assert state.speed == v and state.steer == delta
    assert state.yaw_rate == pytest.approx(v * math.tan(delta) / L, rel=1e-12)
    # the car went more than once around: the test is not passing on a standing vehicle
    assert v * 10.0 > 2 * math.pi * radius


def test_bicycle_steering_rate_is_limited(client):
    dt, rate = 0.1, PARAMS.max_steer_rate
    model = start(client, "bicycle", EgoState(0.0, 0.0, 0.0, 5.0), friction=0.9)
    assert model.step(0.0, 0.5, dt).steer == pytest.approx(rate * dt, abs=1e-12)
    steers = [model.state.steer]
    for command in [0.6] * 10 + [-0.6] * 15 + [0.0] * 10:
        steers.append(model.step(0.0, command, dt).steer)
    changes = [abs(b - a) for a, b in zip(steers, steers[1:])]
    assert max(changes) <= rate * dt + 1e-12
    assert max(steers) == pytest.approx(PARAMS.max_steer) and min(steers) == pytest.approx(-PARAMS.max_steer)
    assert steers[-1] == pytest.approx(0.0, abs=1e-12)


def test_bicycle_friction_binds_braking_and_cornering(client):
    mu = 0.3
    model = start(client, "bicycle", EgoState(0.0, 0.0, 0.0, 20.0), friction=mu)
    state = model.step(-9.0, 0.0, 1.0)
    assert state.accel == pytest.approx(-mu * GRAVITY, rel=1e-12)
    assert state.speed == pytest.approx(20.0 - mu * GRAVITY, rel=1e-12)
    assert model.step(4.0, 0.0, 1.0).accel == pytest.approx(mu * GRAVITY, rel=1e-12)  # wheelspin: no more traction
    # cornering at 15 m/s with 0.4 rad would need 15^2 tan(0.4) / L = 34 m/s2; the tyres give mu g
    model = start(client, "bicycle", EgoState(0.0, 0.0, 0.0, 15.0, steer=0.4), friction=mu)
    state = model.step(0.0, 0.4, 0.1)
    assert state.speed * state.yaw_rate == pytest.approx(mu * GRAVITY, rel=1e-9)
    assert state.steer == 0.4  # the actuator holds its angle; the car understeers


@pytest.mark.parametrize("command", [(math.nan, 0.0), (0.0, math.nan), (math.inf, 0.0)])
def test_bicycle_rejects_non_finite_commands(client, command):
    model = start(client, "bicycle", EgoState(0.0, 0.0, 0.0, 5.0), friction=0.9)
    with pytest.raises(ValueError):
        model.step(*command, 0.1)


def test_bicycle_moves_its_box(client):
    model = start(client, "bicycle", EgoState(1.0, 2.0, 0.3, 8.0), friction=0.9)
    for _ in range(5):
        state = model.step(1.0, 0.2, 0.1)
    (x, y, z), quat = client.getBasePositionAndOrientation(model.body_id)
    assert (x, y, z) == pytest.approx((state.x, state.y, 0.5 * PARAMS.height), abs=1e-9)
    assert client.getEulerFromQuaternion(quat)[2] == pytest.approx(state.yaw, abs=1e-9)
    dims = client.getCollisionShapeData(model.body_id, -1)[0][3]
    assert dims == pytest.approx((PARAMS.length, PARAMS.width, PARAMS.height))


# -- the wheeled pybullet vehicle ----------------------------------------------------------------


def stopping_distance(friction: float, road_friction: float | None = None, yaw: float = 0.0, v0: float = 20.0) -> tuple[float, float]:
    """Full braking from ``v0`` [m/s] to rest: distance along the heading and lateral drift [m]."""
    client = BulletClient(connection_mode=pybullet.DIRECT)
    try:
        flat_road(client, friction if road_friction is None else road_friction)
        model = start(client, "bullet", EgoState(0.0, 0.0, yaw, v0), friction)
        for _ in range(400):  # 20 s at most
            if model.step(-PARAMS.max_decel, 0.0, 0.05).speed < 0.02:
                break
        else:
            pytest.fail(f"the vehicle did not stop at mu={friction}")
        x, y = model.state.x, model.state.y
        return x * math.cos(yaw) + y * math.sin(yaw), -x * math.sin(yaw) + y * math.cos(yaw)
    finally:
        client.disconnect()


def test_bullet_stopping_distance_follows_the_road_friction():
    (low, _), (high, _) = stopping_distance(0.3), stopping_distance(0.9)
    # ABS holds the braking at GRIP_MARGIN * mu * g: v^2 / (2 * 0.95 mu g) = 71.5 m and 23.8 m
    assert low == pytest.approx(20.0**2 / (2 * GRIP_MARGIN * 0.3 * GRAVITY), rel=0.03)
    assert high == pytest.approx(20.0**2 / (2 * GRIP_MARGIN * 0.9 * GRAVITY), rel=0.03)
    assert 2.7 < low / high < 3.3


def test_bullet_tyres_take_their_grip_from_the_road_body():
    """Told mu = 0.9 on a road of 0.3, ABS brakes for the wrong road: the wheels lock and slide at 0.3 g."""
    along, lateral = stopping_distance(0.9, road_friction=0.3)
    assert along == pytest.approx(20.0**2 / (2 * 0.3 * GRAVITY), rel=0.03)
    assert abs(lateral) < 0.05


@pytest.mark.parametrize("yaw0", [0.0, 0.1, 0.2, 0.4, 0.785, 2.0])
def test_bullet_full_braking_is_the_same_whatever_the_heading(yaw0):
    along, lateral = stopping_distance(0.3, yaw=yaw0)
    assert along == pytest.approx(20.0**2 / (2 * GRIP_MARGIN * 0.3 * GRAVITY), rel=0.01)
    assert abs(lateral) < 0.05


def test_bullet_rolls_on_a_triangle_mesh_road(client):
    """The road need not be a plane: two big triangles with the friction, crossing their shared edge."""
    client.setGravity(0.0, 0.0, -GRAVITY)
    verts = [[-50.0, -50.0, 0.0], [250.0, -50.0, 0.0], [250.0, 50.0, 0.0], [-50.0, 50.0, 0.0]]
    shape = client.createCollisionShape(client.GEOM_MESH, vertices=verts, indices=[0, 1, 2, 0, 2, 3])
    road = client.createMultiBody(baseMass=0, baseCollisionShapeIndex=shape)
    client.changeDynamics(road, -1, lateralFriction=0.3)
    model = start(client, "bullet", EgoState(0.0, -20.0, 0.4, 10.0), 0.3)
    for _ in range(50):
        coasted = model.step(0.0, 0.0, 0.1)
    assert coasted.speed == pytest.approx(10.0, abs=0.05)
    assert abs(angle_diff(coasted.yaw, 0.4)) < 0.005
    for _ in range(60):  # 2 m/s2 is within the grip of mu = 0.3: the wheels roll
        state = model.step(-2.0, 0.0, 0.1)
    assert abs(state.speed) < 0.02
    braking = math.hypot(state.x - coasted.x, state.y - coasted.y)
    assert braking == pytest.approx(coasted.speed**2 / (2 * 2.0), rel=0.02)


@pytest.mark.parametrize("yaw0", [0.0, 0.4, 2.0])
def test_bullet_braking_within_grip_is_exact_whatever_the_heading(client, yaw0):
    flat_road(client, 0.9)
    model = start(client, "bullet", EgoState(1.0, 2.0, yaw0, 20.0), 0.9)
    for _ in range(40):
        state = model.step(-4.0, 0.0, 0.1)
    dx, dy = state.x - 1.0, state.y - 2.0
    along = dx * math.cos(yaw0) + dy * math.sin(yaw0)
    lateral = -dx * math.sin(yaw0) + dy * math.cos(yaw0)
    assert along == pytest.approx(20.0 * 4.0 - 0.5 * 4.0 * 4.0**2, abs=0.1)
    assert abs(lateral) < 0.02 and abs(angle_diff(state.yaw, yaw0)) < 0.002
    assert state.speed == pytest.approx(4.0, abs=0.02)


def test_bullet_drives_straight_without_steering(client):
    flat_road(client, 0.9)
    yaw0 = 0.7
    model = start(client, "bullet", EgoState(5.0, 5.0, yaw0, 15.0), 0.9)
    for k in range(50):
        state = model.step(1.0 if k < 30 else 0.0, 0.0, 0.1)
    along = (state.x - 5.0) * math.cos(yaw0) + (state.y - 5.0) * math.sin(yaw0)
    lateral = -(state.x - 5.0) * math.sin(yaw0) + (state.y - 5.0) * math.cos(yaw0)
    assert along == pytest.approx(15.0 * 5.0 + 0.5 * 3.0**2 + 3.0 * 2.0, rel=0.01)
    assert abs(lateral) < 0.05
    assert abs(angle_diff(state.yaw, yaw0)) < 0.005
    assert state.speed == pytest.approx(18.0, abs=0.05)


def test_bullet_agrees_with_the_bicycle_in_a_gentle_manoeuvre(client):
    """From 5 m/s, 1 m/s2 for 3 s while steering 0.05 rad: lateral acceleration stays under 1.2 m/s2."""
    flat_road(client, 0.9)
    begin = EgoState(10.0, -3.0, 0.5, 5.0)
    wheeled = start(client, "bullet", begin, 0.9)
    bicycle = start(BulletClient(connection_mode=pybullet.DIRECT), "bicycle", begin, 0.9)  # its own world
    for _ in range(30):
        w = wheeled.step(1.0, 0.05, 0.1)
        b = bicycle.step(1.0, 0.05, 0.1)
    assert math.hypot(w.x - b.x, w.y - b.y) < 0.25
    assert abs(angle_diff(w.yaw, b.yaw)) < 0.01
    assert w.speed == pytest.approx(b.speed, abs=0.05)
    assert w.yaw_rate == pytest.approx(b.yaw_rate, abs=0.005)
    assert abs(angle_diff(b.yaw, 0.5)) > 0.3  # the manoeuvre did turn the car


def test_bullet_body_is_in_the_client_where_the_state_says(client):
    flat_road(client, 0.9)
    model = start(client, "bullet", EgoState(-2.0, 4.0, -1.0, 8.0), 0.9)
    for _ in range(10):
        state = model.step(0.5, 0.1, 0.1)
    assert model.body_id in bodies(client)
    assert client.getNumJoints(model.body_id) == 6
    (x, y, z), quat = client.getBasePositionAndOrientation(model.body_id)  # the centre of mass, below the box centre
    assert math.hypot(x - state.x, y - state.y) < 0.02
    assert 0.0 < z < PARAMS.height
    assert client.getEulerFromQuaternion(quat)[2] == pytest.approx(state.yaw, abs=1e-9)
    # the wheels touch the road: the car is on it, not floating or sunk
    touching = {c[3] for c in client.getContactPoints(bodyA=model.body_id) if c[8] < 1e-3}
    assert {1, 3, 4, 5} <= touching


def test_bullet_sets_gravity_only_when_the_client_has_none(client):
    start(client, "bullet", EgoState(0.0, 0.0, 0.0, 0.0), 0.9)
    assert client.getPhysicsEngineParameters()["gravityAccelerationZ"] == pytest.approx(-GRAVITY)
    client.setGravity(0.0, 0.0, -9.0)
    start(client, "bullet", EgoState(0.0, 0.0, 0.0, 0.0), 0.9)
    assert client.getPhysicsEngineParameters()["gravityAccelerationZ"] == pytest.approx(-9.0)


def test_bullet_holds_at_rest_and_does_not_reverse(client):
    flat_road(client, 0.9)
    model = start(client, "bullet", EgoState(0.0, 0.0, 0.0, 3.0), 0.9)
    for _ in range(30):
        state = model.step(-4.0, 0.0, 0.1)
    assert abs(state.speed) < 0.02
    x_stop = state.x
    for _ in range(20):
        state = model.step(-4.0, 0.0, 0.1)
    assert abs(state.x - x_stop) < 0.01 and abs(state.speed) < 0.02
