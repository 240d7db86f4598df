"""A wheeled pybullet vehicle: the ego whose tyres obey the road's friction.

The body (built procedurally with ``createMultiBody``, no URDF):

* base: the chassis, a box of the vehicle's length and width from ``clearance`` up to
  ``height``; its centre is the reference point reported as (x, y). Its centre of mass is lowered
  to ``COM_HEIGHT_FRACTION * height`` above the road, as in a real car.
* links 0, 2: front-left and front-right steering knuckles, revolute about z, at
  (+wheelbase/2, +-track/2); driven by position control to Ackermann angles.
* links 1, 3: the front-left and front-right wheels, revolute about the knuckle's y axis.
* links 4, 5: the rear-left and rear-right wheels, revolute about the chassis' y axis at
  (-wheelbase/2, +-track/2).

(pybullet numbers links depth first, so the list is given in that order.)

The axles sit symmetrically about the box centre (the same geometry as the kinematic bicycle).

Tyres: the wheels collide as spheres of the wheel radius (drawn as cylinders), with the track
``width - 2 * radius`` so they stay inside the vehicle's box. A sphere touches the road at one
point under the axle; cylinders pick up contacts on a triangle mesh's internal edges (coasting
from 10 m/s for 5 s on a constrained-Delaunay road mesh, cylinders lost 4.4 m/s, spheres 0.03).
Each tyre has ``lateralFriction`` 1.0; pybullet multiplies it by the road body's
``lateralFriction`` (set by the world to the surface's mu), so grip, braking and cornering limits
follow the road. The contact is made slightly compliant (``TYRE_STIFFNESS``): a rigid four-point
stance is statically indeterminate, loaded the wheels diagonally and locked two of them early.
There is no suspension and no tyre slip model beyond Coulomb friction: below the friction limit
the wheels roll without slipping, above it they slide.

Commands (signed longitudinal acceleration ``a`` [m/s2]):

* ABS and traction control: ``|a|`` is held to ``GRIP_MARGIN * mu * g``, with ``mu`` the road
  friction the model was reset with, and each axle gets its share of the torque in proportion to
  its load (``0.5 -+ a * h_com / (g * wheelbase)``), so no wheel locks or spins on that road;
  on a more slippery surface than announced the wheels do lock or spin and the contacts decide;
* ``a`` along the motion (or ``a > 0`` at rest): drive torques on all four wheels (open
  differentials: torques set, speeds free) summing to ``m_eff * a * r``, with
  ``m_eff = mass + 4 * I_wheel / r^2`` so that the car accelerates at ``a`` without slip;
* ``a`` against the motion (or ``a < 0`` at rest): brakes, velocity motors toward zero wheel speed
  whose torque limits sum to ``m_eff * |a| * r`` -- a Coulomb brake that decelerates the rolling car
  at ``|a|`` and holds it at rest. No reverse gear: braking stops at rest;
* ``a == 0``: the wheels roll freely.

Steering follows the command at most at ``max_steer_rate``; the knuckles track the Ackermann
angles of the bicycle-equivalent angle, which is the reported ``steer``.

Simulation: ``_reset`` sets the client's ``fixedTimeStep`` to ``SUBSTEP_S`` and
``enableConeFriction=0`` and, only if the client has no gravity yet, sets gravity to
(0, 0, -9.81). Each ``step`` calls ``stepSimulation`` ``round(dt_s / SUBSTEP_S)`` times, which
advances the whole world: with this model the world must not step the simulation itself.

Limits of pybullet that shape the model (measured; see the tests):

* Friction directions are fixed world axes (bullet3 issue 2590). With the default cone friction
  the multibody solver saturates wheel contacts at headings off the axes from about half the
  grip, so braking distances and drift depended on the map's orientation; the pyramid model
  (each axis limited to mu N) is exact and heading-independent below the limit, and ABS keeps
  braking below it. Beyond the grip (locked wheels on an unexpected surface, cornering past
  mu g) the sliding force leans toward the world axes: up to 41 % more grip at 45 degrees.
* Contacts with the internal edges of a triangle mesh still cost rolling wheels speed where the
  edges are dense across the path: coasting at 10 m/s over a strip of 1 m x 12 m triangles loses
  3.1 m/s in 5 s. A plane, boxes or large triangles cost nothing.
"""

from __future__ import annotations

import math
from typing import Any

from sim.dynamics.base import GRAVITY, EgoDynamics, EgoState, VehicleParams, register

#: Physics substep [s].
SUBSTEP_S = 1.0 / 240.0
#: Wheel radius as a fraction of the vehicle height, and its bounds [m].
WHEEL_RADIUS_FRACTION = 0.2
WHEEL_RADIUS_BOUNDS_M = (0.15, 0.6)
#: Tyre width as a fraction of the vehicle width (drawing only: the wheels collide as spheres).
TYRE_WIDTH_FRACTION = 0.12
#: Mass of each wheel / each steering knuckle as a fraction of the vehicle mass.
WHEEL_MASS_FRACTION = 0.015
KNUCKLE_MASS_FRACTION = 0.002
#: Height of the centre of mass above the road as a fraction of the vehicle height.
COM_HEIGHT_FRACTION = 0.35
#: Tyre friction coefficient; the contact's mu is this times the road's.
TYRE_FRICTION = 1.0
#: Tyre contact stiffness [N/m] and damping ratio (of a quarter of the vehicle on one tyre): stiff
#: (0.4 mm deflection) but not rigid, so the load spreads over the four wheels.
TYRE_STIFFNESS = 1.0e7
TYRE_DAMPING_RATIO = 0.5
#: Steering servo: torque limit per kg of vehicle [N m/kg] and position gain (pybullet's ``positionGains``).
STEER_SERVO_TORQUE_PER_KG = 1.0e3
STEER_SERVO_GAIN = 0.5
#: ABS and traction control hold the drive and brake acceleration to this fraction of mu * g.
GRIP_MARGIN = 0.95
#: Below this speed [m/s] the vehicle counts as at rest (a negative command holds it).
REST_SPEED = 0.05

_STEER_JOINTS = (0, 2)  # front-left, front-right knuckles
_WHEEL_JOINTS = (1, 3, 4, 5)  # front-left, front-right, rear-left, rear-right
_PARENTS = (-1, 0, -1, 2, -1, -1)  # each joint's parent link as pybullet reports it (-1: chassis)
_IDENTITY = (0.0, 0.0, 0.0, 1.0)


@register("bullet")
class BulletVehicle(EgoDynamics):
    """Four-wheeled articulated pybullet vehicle with Ackermann steering and wheel-torque control."""

    steps_physics = True

    def __init__(self) -> None:
        super().__init__()
        self._body_client: Any = None
        self._body_key: tuple[float, ...] | None = None
        self._steer = 0.0  # bicycle-equivalent steering angle [rad]
        self._radius = 0.3  # wheel radius [m]
        self._half_track = 0.8  # [m]
        self._com_dz = 0.0  # COM height above the box centre [m] (negative: below)
        self._com_height = 0.5  # COM height above the road [m]
        self._grip = 0.95 * 0.9 * GRAVITY  # largest drive or brake acceleration [m/s2]
        self._m_eff = 1500.0  # translating mass plus the wheels' rotational inertia [kg]
        self._servo = 1.0  # steering servo torque limit [N m]
        self._motors: Any = None  # the client's setJointMotorControlArray
        self._simulate: Any = None  # the client's stepSimulation

    # -- building --------------------------------------------------------------------------------

    def _geometry(self, p: VehicleParams) -> dict[str, float]:
        """Derived dimensions [m] and masses [kg] of the body."""
        r = min(max(WHEEL_RADIUS_FRACTION * p.height, WHEEL_RADIUS_BOUNDS_M[0]), WHEEL_RADIUS_BOUNDS_M[1])
        r = min(r, 0.45 * p.height)
        tyre_w = TYRE_WIDTH_FRACTION * p.width
        clearance = 0.5 * r
        m_wheel = WHEEL_MASS_FRACTION * p.mass
        m_knuckle = KNUCKLE_MASS_FRACTION * p.mass
        m_chassis = p.mass - 4 * m_wheel - 2 * m_knuckle
        box_z = 0.5 * (clearance + p.height)
        return {
            "r": r,
            "tyre_w": tyre_w,
            "half_track": max(0.5 * p.width - r, 0.25 * p.width),
            "clearance": clearance,
            "box_z": box_z,
            "box_h": p.height - clearance,
            "com_dz": COM_HEIGHT_FRACTION * p.height - box_z,
            "m_wheel": m_wheel,
            "m_knuckle": m_knuckle,
            "m_chassis": m_chassis,
            # solid disc about its axle
            "i_wheel": 0.5 * m_wheel * r * r,
        }

    def _build(self, g: dict[str, float]) -> int:
        """Create the vehicle at the origin, its box centre at ``box_z`` [m]."""
        c, p = self.client, self.params
        half_wb = 0.5 * p.wheelbase
        chassis_half = [0.5 * p.length, 0.5 * p.width, 0.5 * g["box_h"]]
        chassis_col = c.createCollisionShape(c.GEOM_BOX, halfExtents=chassis_half)
        chassis_vis = c.createVisualShape(c.GEOM_BOX, halfExtents=chassis_half, rgbaColor=[0.1, 0.4, 0.9, 1.0])
        axle_to_y = c.getQuaternionFromEuler([math.pi / 2, 0.0, 0.0])  # cylinder axis z -> y
        wheel_col = c.createCollisionShape(c.GEOM_SPHERE, radius=g["r"])
        wheel_vis = c.createVisualShape(c.GEOM_CYLINDER, radius=g["r"], length=g["tyre_w"], visualFrameOrientation=axle_to_y, rgbaColor=[0.1, 0.1, 0.1, 1.0])
        wz = g["r"] - g["box_z"]  # wheel centre height relative to the box centre
        ht = g["half_track"]
        mk, mw = g["m_knuckle"], g["m_wheel"]
        body = c.createMultiBody(
            baseMass=g["m_chassis"],
            baseCollisionShapeIndex=chassis_col,
            baseVisualShapeIndex=chassis_vis,
            basePosition=[0.0, 0.0, g["box_z"] + g["com_dz"]],
            baseInertialFramePosition=[0.0, 0.0, g["com_dz"]],
            linkMasses=[mk, mw, mk, mw, mw, mw],
            linkCollisionShapeIndices=[-1, wheel_col, -1, wheel_col, wheel_col, wheel_col],
            linkVisualShapeIndices=[-1, wheel_vis, -1, wheel_vis, wheel_vis, wheel_vis],
            linkPositions=[[half_wb, ht, wz], [0, 0, 0], [half_wb, -ht, wz], [0, 0, 0], [-half_wb, ht, wz], [-half_wb, -ht, wz]],
            linkOrientations=[_IDENTITY] * 6,
            linkInertialFramePositions=[[0, 0, 0]] * 6,
            linkInertialFrameOrientations=[_IDENTITY] * 6,
            linkParentIndices=[0, 1, 0, 3, 0, 0],  # 1-based (0: the base)
            linkJointTypes=[c.JOINT_REVOLUTE] * 6,
            linkJointAxis=[[0, 0, 1], [0, 1, 0], [0, 0, 1], [0, 1, 0], [0, 1, 0], [0, 1, 0]],
        )
        if tuple(c.getJointInfo(body, j)[16] for j in range(6)) != _PARENTS:
            raise RuntimeError("bullet vehicle: pybullet numbered the links in an unexpected order")
        r = g["r"]
        i_axle = g["i_wheel"]
        i_other = mw * (3 * r * r + g["tyre_w"] ** 2) / 12.0
        for j in (-1, *_STEER_JOINTS, *_WHEEL_JOINTS):
            c.changeDynamics(body, j, linearDamping=0.0, angularDamping=0.0, jointDamping=0.0, restitution=0.0)
        for j in _STEER_JOINTS:
            c.changeDynamics(body, j, localInertiaDiagonal=[1e-3 * mk, 1e-3 * mk, 1e-3 * mk])
        # compliant tyres spread the load over the four wheels (a rigid four-point stance does not)
        damping = TYRE_DAMPING_RATIO * 2.0 * math.sqrt(TYRE_STIFFNESS * p.mass / 4.0)
        for j in _WHEEL_JOINTS:
            c.changeDynamics(body, j, lateralFriction=TYRE_FRICTION, rollingFriction=0.0, spinningFriction=0.0,
                             localInertiaDiagonal=[i_other, i_axle, i_other], contactStiffness=TYRE_STIFFNESS, contactDamping=damping)
        return body

    def _ensure_body(self, g: dict[str, float]) -> int:
        """The vehicle in ``self.client``: reused when the client and the parameters are unchanged."""
        c, p = self.client, self.params
        key = (p.length, p.width, p.height, p.wheelbase, p.mass)
        alive = c is self._body_client and _body_exists(c, self.body_id) and c.getNumJoints(self.body_id) == 6
        if alive and key == self._body_key:
            return self.body_id
        if alive:  # same client, new size: do not leave the old vehicle behind
            c.removeBody(self.body_id)
        body = self._build(g)
        self._body_client, self._body_key = c, key
        return body

    # -- the model -------------------------------------------------------------------------------

    def _reset(self, state: EgoState) -> int:
        c, p = self.client, self.params
        params = c.getPhysicsEngineParameters()
        if params.get("gravityAccelerationZ", 0.0) == 0.0:
            c.setGravity(0.0, 0.0, -GRAVITY)
        c.setPhysicsEngineParameter(fixedTimeStep=SUBSTEP_S, enableConeFriction=0)

        g = self._geometry(p)
        body = self._ensure_body(g)
        self._radius = g["r"]
        self._half_track = g["half_track"]
        self._com_dz = g["com_dz"]
        self._com_height = COM_HEIGHT_FRACTION * p.height
        self._grip = GRIP_MARGIN * self.friction * GRAVITY
        self._m_eff = p.mass + 4.0 * g["i_wheel"] / (g["r"] * g["r"])

        yaw = state.yaw
        qz, qw = math.sin(0.5 * yaw), math.cos(0.5 * yaw)
        c.resetBasePositionAndOrientation(body, [state.x, state.y, g["box_z"] + g["com_dz"]], [0.0, 0.0, qz, qw])
        c.resetBaseVelocity(body, [state.speed * math.cos(yaw), state.speed * math.sin(yaw), 0.0], [0.0, 0.0, 0.0])
        self._steer = min(max(float(state.steer), -p.max_steer), p.max_steer)
        left, right = self._ackermann(self._steer)
        c.resetJointState(body, _STEER_JOINTS[0], left, 0.0)
        c.resetJointState(body, _STEER_JOINTS[1], right, 0.0)
        for j in _WHEEL_JOINTS:
            c.resetJointState(body, j, 0.0, state.speed / self._radius)
        self._servo = STEER_SERVO_TORQUE_PER_KG * p.mass
        self._motors, self._simulate = c.setJointMotorControlArray, c.stepSimulation
        self._set_steer(body, left, right)
        c.setJointMotorControlArray(body, list(_WHEEL_JOINTS), c.VELOCITY_CONTROL, targetVelocities=[0.0] * 4, forces=[0.0] * 4)
        return body

    def _set_steer(self, body: int, left: float, right: float) -> None:
        """Steering servo targets [rad] for the left and right knuckles."""
        f = self._servo
        self.client.setJointMotorControlArray(body, list(_STEER_JOINTS), self.client.POSITION_CONTROL, targetPositions=[left, right],
                                              forces=[f, f], positionGains=[STEER_SERVO_GAIN, STEER_SERVO_GAIN])

    def _ackermann(self, steer: float) -> tuple[float, float]:
        """Left and right road-wheel angles [rad] whose axes meet on the rear axle line."""
        if steer == 0.0:
            return 0.0, 0.0
        wb = self.params.wheelbase
        k = math.tan(steer) / wb  # curvature of the rear axle's path [1/m]
        k = math.copysign(min(abs(k), 0.9 / self._half_track), k)  # the turn centre stays outside the track
        return math.atan(wb * k / (1.0 - self._half_track * k)), math.atan(wb * k / (1.0 + self._half_track * k))

    def _step(self, accel: float, steer: float, dt_s: float) -> EgoState:
        c, p, body = self.client, self.params, self.body_id
        motors, simulate = self._motors, self._simulate
        n = max(1, round(dt_s / SUBSTEP_S))
        h = dt_s / n
        v0 = self._state.speed
        wheels = list(_WHEEL_JOINTS)
        moving = v0 > REST_SPEED or v0 < -REST_SPEED
        braking = accel != 0.0 and ((moving and (accel > 0.0) != (v0 > 0.0)) or (not moving and accel < 0.0))
        # ABS and traction control: no more than the grip of the road; each axle's share of the
        # torque is its share of the load (shifted forward when decelerating)
        a = min(max(accel, -self._grip), self._grip)
        front = min(max(0.5 - a * self._com_height / (GRAVITY * p.wheelbase), 0.1), 0.9)
        t = self._m_eff * abs(a) * self._radius / 4.0  # mean torque per wheel [N m]
        torques = [2.0 * front * t, 2.0 * front * t, 2.0 * (1.0 - front) * t, 2.0 * (1.0 - front) * t]
        if braking:  # brakes: velocity motors toward zero wheel speed, at most the brake torque
            motors(body, wheels, c.VELOCITY_CONTROL, targetVelocities=[0.0] * 4, forces=torques)
            drives = None
        else:  # free wheels plus the drive torque (re-applied every substep: pybullet clears it)
            motors(body, wheels, c.VELOCITY_CONTROL, targetVelocities=[0.0] * 4, forces=[0.0] * 4)
            drives = [math.copysign(q, a) for q in torques] if a != 0.0 else None
        torque_control = c.TORQUE_CONTROL
        d_max = p.max_steer_rate * h
        steer_now = self._steer
        for _ in range(n):
            ds = min(max(steer - steer_now, -d_max), d_max)
            if ds != 0.0:
                steer_now += ds
                self._set_steer(body, *self._ackermann(steer_now))
            if drives is not None:
                motors(body, wheels, torque_control, forces=drives)
            simulate()
        self._steer = steer_now
        return self._read_state(v0, dt_s)

    def _read_state(self, v0: float, dt_s: float) -> EgoState:
        """The chassis' planar state: the box centre projected to the road plane."""
        c = self.client
        (px, py, _), (qx, qy, qz, qw) = c.getBasePositionAndOrientation(self.body_id)
        (vx, vy, _), (_, _, wz) = c.getBaseVelocity(self.body_id)
        dz = self._com_dz  # box centre = COM - R @ (0, 0, dz)
        x = px - dz * 2.0 * (qx * qz + qw * qy)
        y = py - dz * 2.0 * (qy * qz - qw * qx)
        yaw = math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
        speed = vx * math.cos(yaw) + vy * math.sin(yaw)
        return EgoState(x, y, yaw, speed, wz, (speed - v0) / dt_s, self._steer)


def _body_exists(client: Any, body_id: int) -> bool:
    """Whether ``body_id`` is a body of ``client`` (asking pybullet about a missing body prints warnings)."""
    return body_id >= 0 and body_id in {client.getBodyUniqueId(i) for i in range(client.getNumBodies())}
