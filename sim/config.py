"""The env's configuration: a frozen, validated dataclass with enums for every choice.

``EnvConfig()`` is the default twin (state observations, continuous actions, kinematic bicycle,
log-replay agents, the log's own rate). ``EnvConfig.from_mapping`` builds one from a plain
mapping (a TOML table) and rejects unknown keys, naming the key and the source.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scenarios.common import dataclass_from_mapping
from scenarios.errors import SourcedError


class ConfigError(SourcedError):
    """A bad env configuration value: names the config (or file), the field and what was wrong."""


class ObservationPart(enum.StrEnum):
    """A part of the ``Dict`` observation (see ``sim.observations``)."""

    STATE = "state"
    LIDAR = "lidar"
    BEV = "bev"
    CAMERA = "camera"


class ActionType(enum.StrEnum):
    """How the policy's action is interpreted (see ``sim.actions``)."""

    CONTINUOUS = "continuous"
    TRAJECTORY = "trajectory"
    DISCRETE = "discrete"


class AgentsMode(enum.StrEnum):
    """How the other road users move: replay the log, or IDM along their logged paths."""

    REPLAY = "replay"
    REACTIVE = "reactive"


def _enum(cls: type[enum.Enum], value: Any, name: str) -> Any:
    if isinstance(value, cls):
        return value
    try:
        return cls(str(value).lower())
    except ValueError:
        raise ConfigError("EnvConfig", name, f"unknown value {value!r}; choose one of {[m.value for m in cls]}") from None


@dataclass(frozen=True, slots=True)
class RewardWeights:
    """Weights of the reward terms; the step reward is their weighted sum.

    Attributes:
        progress: per metre of progress along the ego's route [1/m].
        collision: once per step with a contact with another road user.
        offroad: once per step with an ego corner off the road.
        comfort: per (m/s2)^2 of longitudinal plus lateral acceleration.
        goal: once, when the ego reaches the end of its logged path.
    """

    progress: float = 0.1
    collision: float = -5.0
    offroad: float = -5.0
    comfort: float = -0.002
    goal: float = 1.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError("RewardWeights", f.name, f"must be a finite number, got {value!r}")
            object.__setattr__(self, f.name, float(value))


@dataclass(frozen=True, slots=True)
class EnvConfig:
    """Everything that shapes an env, besides the scenario.

    Attributes:
        observation: the parts of the ``Dict`` observation.
        num_agents_obs: K, the nearest road users in the ``state`` observation.
        route_points: N, route points ahead in the ``state`` observation.
        route_spacing_m: spacing of those points [m].
        lidar_beams: number of horizontal rays.
        lidar_range_m: ray length [m]; distances are divided by it.
        lidar_height_m: height of the rays above the road [m].
        lidar_threads: threads for ``rayTestBatch`` (0: Bullet decides); the result does not
            depend on it, only the speed: more help when cores are idle (1024 beams: 2.9 ms with
            1, 1.7 ms with 2 on an idle 2-core machine), not in a busy Ray worker.
        bev_size: (H, W) of the bird's-eye raster [px].
        bev_resolution_m: size of a raster pixel [m].
        camera_size: (H, W) of the camera images [px].
        camera_fov_deg: vertical field of view [deg].
        camera_far_m: far clipping plane [m]; depth is clipped to it.
        action: how actions are read.
        trajectory_points: K waypoints of a ``trajectory`` action (one per env step).
        dynamics: ego dynamics model name (``sim.dynamics``).
        agents_mode: replay or reactive; a scenario's ``conditions.agents_mode`` overrides it.
        reward: reward weights.
        sim_dt_s: env step [s]; None uses the log's own rate.
        ground_friction: friction coefficient of the ground beyond the road.
        road_shoulder_m: paved margin around the drivable area [m] (road friction, not off-road);
            None: 1.0 m for maps whose drivable area is derived from lane centerlines, else 0.5 m
            (``sim.road.default_shoulder``).
        offroad_min_corners: how many of the four ego corners must be off the road to count.
        terminate_on_collision, terminate_on_offroad, terminate_on_goal: end the episode then.
        goal_tolerance_m: the goal is reached this close [m] (along the route) to the logged end.
        max_steps: cut episodes after this many steps (truncated); None runs to the log's end.
        render_size: (H, W) of ``render()``'s picture [px].
        render_resolution_m: its pixel size [m].
    """

    observation: tuple[ObservationPart, ...] = (ObservationPart.STATE,)
    num_agents_obs: int = 8
    route_points: int = 10
    route_spacing_m: float = 2.0
    lidar_beams: int = 64
    lidar_range_m: float = 50.0
    lidar_height_m: float = 1.0
    lidar_threads: int = 1
    bev_size: tuple[int, int] = (84, 84)
    bev_resolution_m: float = 0.5
    camera_size: tuple[int, int] = (48, 64)
    camera_fov_deg: float = 70.0
    camera_far_m: float = 100.0
    action: ActionType = ActionType.CONTINUOUS
    trajectory_points: int = 10
    dynamics: str = "bicycle"
    agents_mode: AgentsMode = AgentsMode.REPLAY
    reward: RewardWeights = field(default_factory=RewardWeights)
    sim_dt_s: float | None = None
    ground_friction: float = 0.6
    road_shoulder_m: float | None = None
    offroad_min_corners: int = 1
    terminate_on_collision: bool = True
    terminate_on_offroad: bool = True
    terminate_on_goal: bool = True
    goal_tolerance_m: float = 1.0
    max_steps: int | None = None
    render_size: tuple[int, int] = (256, 256)
    render_resolution_m: float = 0.25

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        parts = self.observation
        if isinstance(parts, (str, ObservationPart)):
            parts = (parts,)
        try:
            parts = tuple(_enum(ObservationPart, p, "observation") for p in parts)
        except TypeError:
            raise ConfigError("EnvConfig", "observation", f"must be a list of parts, got {self.observation!r}") from None
        if not parts:
            raise ConfigError("EnvConfig", "observation", "choose at least one part")
        if len(set(parts)) != len(parts):
            raise ConfigError("EnvConfig", "observation", f"repeated parts in {[p.value for p in parts]}")
        set_(self, "observation", parts)
        set_(self, "action", _enum(ActionType, self.action, "action"))
        set_(self, "agents_mode", _enum(AgentsMode, self.agents_mode, "agents_mode"))
        if isinstance(self.reward, Mapping):
            set_(self, "reward", dataclass_from_mapping(RewardWeights, self.reward, "EnvConfig", ConfigError, prefix="reward"))
        elif not isinstance(self.reward, RewardWeights):
            raise ConfigError("EnvConfig", "reward", f"must be RewardWeights or a mapping, got {type(self.reward).__name__}")
        for name in ("bev_size", "camera_size", "render_size"):
            set_(self, name, _size(getattr(self, name), name))
        for name, low in (("num_agents_obs", 0), ("route_points", 1), ("lidar_beams", 1), ("trajectory_points", 1),
                          ("lidar_threads", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError("EnvConfig", name, f"must be an integer >= {low}, got {value!r}")
        for name in ("route_spacing_m", "lidar_range_m", "lidar_height_m", "bev_resolution_m", "camera_fov_deg",
                     "camera_far_m", "ground_friction", "goal_tolerance_m", "render_resolution_m"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ConfigError("EnvConfig", name, f"must be a positive finite number, got {value!r}")
            set_(self, name, float(value))
        if not self.camera_fov_deg < 180:
            raise ConfigError("EnvConfig", "camera_fov_deg", f"must be below 180, got {self.camera_fov_deg}")
        if self.sim_dt_s is not None:
            dt = self.sim_dt_s
            if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not (math.isfinite(dt) and 1e-3 <= dt <= 1.0):
                raise ConfigError("EnvConfig", "sim_dt_s", f"must be None (the log's rate) or in [0.001, 1] s, got {dt!r}")
            set_(self, "sim_dt_s", float(dt))
        if not isinstance(self.dynamics, str) or not self.dynamics:
            raise ConfigError("EnvConfig", "dynamics", f"must be a dynamics model name, got {self.dynamics!r}")
        if self.road_shoulder_m is not None:
            v = self.road_shoulder_m
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and 0 <= v <= 10):
                raise ConfigError("EnvConfig", "road_shoulder_m", f"must be None or in [0, 10] m, got {v!r}")
            set_(self, "road_shoulder_m", float(v))
        if not (isinstance(self.offroad_min_corners, int) and 1 <= self.offroad_min_corners <= 4):
            raise ConfigError("EnvConfig", "offroad_min_corners", f"must be 1..4, got {self.offroad_min_corners!r}")
        if self.max_steps is not None and not (isinstance(self.max_steps, int) and self.max_steps >= 1):
            raise ConfigError("EnvConfig", "max_steps", f"must be None or a positive integer, got {self.max_steps!r}")
        for name in ("terminate_on_collision", "terminate_on_offroad", "terminate_on_goal"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError("EnvConfig", name, f"must be true or false, got {getattr(self, name)!r}")

    def has(self, part: ObservationPart | str) -> bool:
        """Whether the observation includes ``part``."""
        return _enum(ObservationPart, part, "observation") in self.observation

    def replace(self, **changes: Any) -> EnvConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "env config") -> EnvConfig:
        """An ``EnvConfig`` from a mapping (e.g. a TOML table); a bad or unknown key is a
        ``ConfigError`` naming ``source`` and the key (``reward.progress`` for a nested one)."""
        try:
            return dataclass_from_mapping(cls, values, source, ConfigError, nested={"reward": RewardWeights})
        except ConfigError as exc:
            if exc.source == source:
                raise
            field = f"reward.{exc.field}" if exc.source == "RewardWeights" else exc.field
            raise ConfigError(source, field, exc.problem) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain values (enums as strings), the inverse of ``from_mapping``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "observation":
                value = [p.value for p in value]
            elif isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, RewardWeights):
                value = dataclasses.asdict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def _size(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    try:
        h, w = value
    except (TypeError, ValueError):
        raise ConfigError("EnvConfig", name, f"must be (H, W) or one integer, got {value!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 2048 for v in (h, w)):
        raise ConfigError("EnvConfig", name, f"sizes must be integers in [8, 2048], got {value!r}")
    return int(h), int(w)
