"""What a policy sees besides its observations: the published twin state, a privileged view of it,
and the typed ``PolicyContext`` a policy's ``reset`` receives.

The env publishes a ``TwinState`` after every reset and step (a frozen snapshot whose arrays are
read-only); ``PrivilegedView`` reads only that snapshot and the episode's ``Plan``, never the
env's internals, so a baseline cannot depend on how the env is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.dynamics.base import EgoState, VehicleParams

if TYPE_CHECKING:
    from gymnasium import spaces

    from scenarios.model import Scenario
    from sim.config import ActionType, EnvConfig
    from sim.plan import Plan
    from sim.road import Polyline


@dataclass(frozen=True, slots=True)
class TwinState:
    """The twin at one env step, as the env publishes it (local frame).

    Attributes:
        step: env step index (0 after reset).
        ego: the ego's state.
        agents: (5, N) read-only x, y [m], yaw [rad], vx, vy [m/s] of every track row; only
            columns where ``present`` is True are meaningful.
        present: (N,) read-only bool, which other road users exist now (the ego's row is False).
        route_s: the ego's arc length along its route [m].
        route_lateral: its offset from the route [m], left positive.
        route_segment: the route segment the ego projects onto.
    """

    step: int
    ego: EgoState
    agents: np.ndarray
    present: np.ndarray
    route_s: float
    route_lateral: float
    route_segment: int


class PrivilegedView:
    """Read-only ground truth for baseline policies (local frame): the published state and the plan.

    Attributes are live: they describe the state published last (the env's current step).

    Args:
        plan: the episode's plan.
        read: returns the state published last.
    """

    __slots__ = ("_plan", "_read")

    def __init__(self, plan: Plan, read: Callable[[], TwinState]) -> None:
        self._plan = plan
        self._read = read

    @property
    def state(self) -> TwinState:
        """The published state now."""
        return self._read()

    @property
    def step_index(self) -> int:
        return self._read().step

    @property
    def ego(self) -> EgoState:
        """The ego's state now (local frame)."""
        return self._read().ego

    @property
    def logged_ego(self) -> np.ndarray:
        """(S, 4) the logged ego's x, y, yaw, speed at every env step (local frame)."""
        return self._plan.ego_log

    @property
    def route(self) -> Polyline:
        """The ego's route (local frame)."""
        return self._plan.route

    @property
    def route_s(self) -> float:
        """The ego's arc length along its route now [m]."""
        return self._read().route_s

    @property
    def params(self) -> VehicleParams:
        return self._plan.params

    def agents(self) -> dict[str, np.ndarray]:
        """Present other road users now (ground truth, local frame): x, y, yaw, vx, vy, length, width, type, row."""
        state, plan = self._read(), self._plan
        rows = np.flatnonzero(state.present)
        sub = state.agents[:, rows]
        return {
            "x": sub[0], "y": sub[1], "yaw": sub[2], "vx": sub[3], "vy": sub[4],
            "length": plan.sizes[rows, 0], "width": plan.sizes[rows, 1], "type": plan.types[rows], "row": rows,
        }


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What a policy's ``reset`` gets at the start of an episode (``DriveTwinEnv.policy_context()``).

    ``context["dt_s"]`` reads a field too (``KeyError`` for an unknown key), so planners written
    against the former dict keep working.

    Attributes:
        scenario: the episode's scenario (its own frame).
        scenario_id: its id.
        ego_id: the ego's track id.
        dt_s: env step [s].
        config: the env's configuration.
        action_type: how actions are read.
        action_space: the env's action space.
        observation_space: the env's observation space.
        vehicle: the ego's size and limits.
        speed_limit: the speed limit where the ego starts [m/s], NaN when the map has none.
        view: ground truth of the twin (local frame), for baselines.
        seed: the seed the episode was reset with, None when none was given.
    """

    scenario: Scenario
    scenario_id: str
    ego_id: str
    dt_s: float
    config: EnvConfig
    action_type: ActionType
    action_space: spaces.Space
    observation_space: spaces.Space
    vehicle: VehicleParams
    speed_limit: float
    view: PrivilegedView
    seed: int | None

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) or key not in _CONTEXT_FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """``context[key]``, or ``default`` for an unknown key."""
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in _CONTEXT_FIELDS

    def keys(self) -> tuple[str, ...]:
        """The field names (the former dict's keys, plus ``seed``)."""
        return _CONTEXT_FIELDS

    def __iter__(self) -> Iterator[str]:
        return iter(_CONTEXT_FIELDS)

    def __len__(self) -> int:
        return len(_CONTEXT_FIELDS)


_CONTEXT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PolicyContext))
