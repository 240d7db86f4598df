"""The kinematic bicycle: the fast default ego model.

Geometry: the axles sit symmetrically in the body box, so the rear axle is ``wheelbase / 2``
behind the box centre along the heading. The model integrates the *rear-axle* form of the
kinematic bicycle (the rear wheel does not slip sideways, so the rear axle moves along the
heading) and reports the box centre:

    d(x_r, y_r)/dt = v (cos yaw, sin yaw)      yaw_rate = v * kappa,  kappa = tan(steer) / L
    (x, y) = (x_r, y_r) + L/2 (cos yaw, sin yaw)

``v`` is the longitudinal speed, which is the same at every point of the centreline of a rigid
body (the centre's extra velocity ``yaw_rate * L/2`` is purely lateral), so it is both the rear
axle's speed and the box centre's speed along the heading, as ``EgoState.speed`` says.

Integration is exact for each step: within a step the acceleration and the curvature are
constant, the path depends on the arc length only, and a constant-curvature arc of length ``s``
is a chord of length ``s * sin(h) / h`` (``h = kappa * s / 2``) at heading ``yaw + h``. When the
steering moves during a step (rate limit) the step uses the mean of the start and end curvatures
(second-order accurate); with the steering held it is exact.

Limits, beyond the base class's clipping of the commands:

* steering rate: the steering state moves toward the command by at most ``max_steer_rate * dt``;
* longitudinal friction: ``|accel| <= mu * g``;
* lateral friction: ``v^2 * |kappa| <= mu * g`` with ``v`` the larger of the step's start and
  end speeds; it is enforced by limiting the curvature actually driven (the tyres slide: the car
  understeers), while the reported ``steer`` stays the steering actuator's angle;
* no reversing from standstill: the speed never crosses zero within a step (braking from forward
  motion stops at 0 at the exact instant ``v0 / |a|`` and the vehicle stays put under a negative
  command). A negative initial speed (a logged ego backing up) is kept and integrated as signed
  motion until a positive command brings it to rest.

Reported: ``yaw_rate`` is the end speed times the step's (friction-limited) curvature, ``accel``
the mean over the step (so a stop inside a step shows less than the command), ``steer`` the
actuator angle. The body is a static (mass 0) box of the vehicle's size, its base at
``z = height / 2``, placed with ``resetBasePositionAndOrientation`` every step; finding its
contacts is the world's job.
"""

from __future__ import annotations

import math
from typing import Any

from sim.dynamics.base import GRAVITY, EgoDynamics, EgoState, register

_TWO_PI = 2.0 * math.pi


@register("bicycle")
class KinematicBicycle(EgoDynamics):
    """Kinematic bicycle with exact arc integration; a static box body moved every step."""

    def __init__(self) -> None:
        super().__init__()
        self._xr = 0.0  # rear axle x [m]
        self._yr = 0.0  # rear axle y [m]
        self._yaw = 0.0  # [rad]
        self._v = 0.0  # longitudinal speed [m/s]
        self._steer = 0.0  # steering actuator angle [rad]
        self._wheelbase = 1.0  # [m]
        self._half_wb = 0.5  # [m]
        self._mu_g = 0.9 * GRAVITY  # friction-limited acceleration [m/s2]
        self._steer_rate = 1.0  # [rad/s]
        self._z = 0.8  # body centre height [m]
        self._move: Any = None  # the client's resetBasePositionAndOrientation
        self._body_client: Any = None
        self._body_size: tuple[float, float, float] | None = None

    def _reset(self, state: EgoState) -> int:
        p = self.params
        self._wheelbase = p.wheelbase
        self._half_wb = 0.5 * p.wheelbase
        self._mu_g = self.friction * GRAVITY
        self._steer_rate = p.max_steer_rate
        self._z = 0.5 * p.height
        self._yaw = math.remainder(state.yaw, _TWO_PI)
        self._v = float(state.speed)
        self._steer = min(max(float(state.steer), -p.max_steer), p.max_steer)
        self._xr = state.x - self._half_wb * math.cos(self._yaw)
        self._yr = state.y - self._half_wb * math.sin(self._yaw)
        body = self._ensure_body()
        self._move = self.client.resetBasePositionAndOrientation
        self._move(body, (state.x, state.y, self._z), (0.0, 0.0, math.sin(0.5 * self._yaw), math.cos(0.5 * self._yaw)))
        return body

    def _ensure_body(self) -> int:
        """The ego box in ``self.client``: reused when the client and the size are unchanged."""
        client, p = self.client, self.params
        size = (p.length, p.width, p.height)
        alive = client is self._body_client and _body_is_box(client, self.body_id, self._body_size)
        if alive and size == self._body_size:
            return self.body_id
        if alive:  # same client, new size: do not leave the old box behind
            client.removeBody(self.body_id)
        half = [0.5 * s for s in size]
        col = client.createCollisionShape(client.GEOM_BOX, halfExtents=half)
        vis = client.createVisualShape(client.GEOM_BOX, halfExtents=half, rgbaColor=[0.1, 0.4, 0.9, 1.0])
        body = client.createMultiBody(baseMass=0, baseCollisionShapeIndex=col, baseVisualShapeIndex=vis, basePosition=[0.0, 0.0, half[2]])
        self._body_client, self._body_size = client, size
        return body

    def _step(self, accel: float, steer: float, dt_s: float) -> EgoState:
        mu_g = self._mu_g
        if accel > mu_g:
            accel = mu_g
        elif accel < -mu_g:
            accel = -mu_g

        d_max = self._steer_rate * dt_s
        s0 = self._steer
        ds = steer - s0
        if ds > d_max:
            ds = d_max
        elif ds < -d_max:
            ds = -d_max
        s1 = s0 + ds
        self._steer = s1

        v0 = self._v
        v1 = v0 + accel * dt_s
        if v1 < 0.0 <= v0 or v0 < 0.0 < v1:  # stops within the step (accel != 0 here)
            dist = -0.5 * v0 * v0 / accel
            v1 = 0.0
        else:
            dist = 0.5 * (v0 + v1) * dt_s

        kappa = (math.tan(s0) + math.tan(s1)) * 0.5 / self._wheelbase
        v_max2 = v0 * v0 if abs(v0) > abs(v1) else v1 * v1
        if v_max2 * abs(kappa) > mu_g:
            kappa = math.copysign(mu_g / v_max2, kappa)

        yaw0 = self._yaw
        h = 0.5 * kappa * dist
        chord = dist * math.sin(h) / h if abs(h) > 1e-4 else dist * (1.0 - h * h / 6.0)
        mid = yaw0 + h
        xr = self._xr + chord * math.cos(mid)
        yr = self._yr + chord * math.sin(mid)
        yaw = yaw0 + 2.0 * h
        if yaw > math.pi or yaw <= -math.pi:
            yaw = math.remainder(yaw, _TWO_PI)
        self._xr, self._yr, self._yaw, self._v = xr, yr, yaw, v1

        c, s = math.cos(yaw), math.sin(yaw)
        x = xr + self._half_wb * c
        y = yr + self._half_wb * s
        self._move(self.body_id, (x, y, self._z), (0.0, 0.0, math.sin(0.5 * yaw), math.cos(0.5 * yaw)))
        return EgoState(x, y, yaw, v1, v1 * kappa, (v1 - v0) / dt_s, s1)


def _body_is_box(client: Any, body_id: int, size: tuple[float, float, float] | None) -> bool:
    """Whether ``body_id`` still exists in ``client`` as a box of ``size`` [m] (not replaced after a resetSimulation)."""
    if size is None or body_id < 0 or body_id not in {client.getBodyUniqueId(i) for i in range(client.getNumBodies())}:
        return False
    shapes = client.getCollisionShapeData(body_id, -1)
    return len(shapes) == 1 and shapes[0][2] == client.GEOM_BOX and all(abs(a - b) < 1e-9 for a, b in zip(shapes[0][3], size))
