"""The ego dynamics interface: a model turns (acceleration, steering) commands into motion.

``EgoDynamics.step`` is what callers use: it checks the command, clips it to the vehicle's
limits and calls the model's ``_step``. Models own the ego's body in the pybullet client they are
given, so contacts and ray tests see the ego wherever the model put it.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from scenarios.common import Registry

#: Standard gravity [m/s2].
GRAVITY = 9.81


@dataclass(frozen=True, slots=True)
class EgoState:
    """The ego's planar state in the world (twin) frame.

    Attributes:
        x, y: centre of the vehicle's box [m].
        yaw: heading [rad], counter-clockwise from +x.
        speed: signed speed along the heading [m/s].
        yaw_rate: [rad/s].
        accel: longitudinal acceleration over the last step [m/s2].
        steer: road-wheel steering angle [rad], positive to the left.
    """

    x: float
    y: float
    yaw: float
    speed: float
    yaw_rate: float = 0.0
    accel: float = 0.0
    steer: float = 0.0

    @property
    def vx(self) -> float:
        return self.speed * math.cos(self.yaw)

    @property
    def vy(self) -> float:
        return self.speed * math.sin(self.yaw)


@dataclass(frozen=True, slots=True)
class VehicleParams:
    """Size and limits of the ego vehicle.

    Attributes:
        length, width, height: body box [m].
        wheelbase: front to rear axle [m]; 0 means 0.6 x length.
        max_accel: largest forward acceleration command [m/s2].
        max_decel: largest braking deceleration command [m/s2] (positive).
        max_steer: largest road-wheel angle [rad].
        max_steer_rate: fastest steering change [rad/s].
        mass: [kg].
    """

    length: float = 4.6
    width: float = 1.9
    height: float = 1.6
    wheelbase: float = 0.0
    max_accel: float = 4.0
    max_decel: float = 9.0
    max_steer: float = 0.6
    max_steer_rate: float = 1.2
    mass: float = 1500.0

    def __post_init__(self) -> None:
        if self.wheelbase <= 0:
            object.__setattr__(self, "wheelbase", 0.6 * self.length)
        for name in ("length", "width", "height", "wheelbase", "max_accel", "max_decel", "max_steer", "max_steer_rate", "mass"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"VehicleParams.{name} must be positive and finite, got {value!r}")


class EgoDynamics(abc.ABC):
    """Base of every ego dynamics model; subclasses write ``_reset`` and ``_step``."""

    #: Registry name.
    name: ClassVar[str] = ""
    #: Whether ``step`` advances the pybullet simulation itself (then the world must not, contacts
    #: come from its substeps, and the env rebuilds the world at every reset for reproducibility).
    steps_physics: ClassVar[bool] = False

    def __init__(self) -> None:
        self.client: Any = None
        self.params = VehicleParams()
        self.friction = 0.9
        self.body_id = -1
        self._state = EgoState(0.0, 0.0, 0.0, 0.0)

    @property
    def state(self) -> EgoState:
        return self._state

    def reset(self, client: Any, state: EgoState, params: VehicleParams, friction: float) -> int:
        """Place the ego at ``state`` in ``client`` (a ``BulletClient``); returns its body id.

        The road surface is the plane z = 0 with friction coefficient ``friction``. Called on
        every env reset; a model may reuse its body between resets of the same client.
        """
        if not all(math.isfinite(v) for v in (state.x, state.y, state.yaw, state.speed)):
            raise ValueError(f"{self.name}: initial state is not finite: {state}")
        if not friction > 0:
            raise ValueError(f"{self.name}: friction must be positive, got {friction}")
        self.client, self.params, self.friction = client, params, float(friction)
        self.body_id = self._reset(state)
        self._state = state
        return self.body_id

    def step(self, accel_cmd: float, steer_cmd: float, dt_s: float) -> EgoState:
        """Advance ``dt_s`` [s] with acceleration ``accel_cmd`` [m/s2] and steering ``steer_cmd`` [rad].

        Commands are clipped to the vehicle's limits; NaN or infinite commands raise ValueError.
        """
        if not (math.isfinite(accel_cmd) and math.isfinite(steer_cmd)):
            raise ValueError(f"{self.name}: command must be finite, got accel={accel_cmd}, steer={steer_cmd}")
        if not dt_s > 0:
            raise ValueError(f"{self.name}: dt_s must be positive, got {dt_s}")
        p = self.params
        accel = min(max(float(accel_cmd), -p.max_decel), p.max_accel)
        steer = min(max(float(steer_cmd), -p.max_steer), p.max_steer)
        self._state = self._step(accel, steer, float(dt_s))
        return self._state

    @abc.abstractmethod
    def _reset(self, state: EgoState) -> int:
        """Create or move the ego body to ``state``; return its body id."""

    @abc.abstractmethod
    def _step(self, accel: float, steer: float, dt_s: float) -> EgoState:
        """Advance by ``dt_s`` with clipped commands; return the new state."""


def _unknown(name: str, message: str) -> Exception:
    return ValueError(message)


#: The dynamics models by name.
REGISTRY: Registry[type[EgoDynamics]] = Registry("dynamics", unknown=_unknown)


def register(name: str):
    """Class decorator: register an ``EgoDynamics`` under ``name``; duplicates are an error."""

    def decorate(cls: type[EgoDynamics]) -> type[EgoDynamics]:
        REGISTRY.add(name, cls)
        cls.name = name
        return cls

    return decorate


def make(name: str) -> EgoDynamics:
    """A new instance of the dynamics model registered as ``name`` (``ValueError`` listing the known ones)."""
    return REGISTRY.get(name)()


def names() -> list[str]:
    """The registered dynamics models, sorted."""
    return REGISTRY.names()
