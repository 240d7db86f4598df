"""Action types: how a policy's action becomes the ego's (acceleration, steering) command.

- ``continuous``: ``Box(-1, 1, (2,))`` = (acceleration, steering), normalised: +1 is the vehicle's
  ``max_accel``, -1 its ``max_decel`` braking, and +-1 steering is +-``max_steer`` (left +).
- ``trajectory``: ``Box(-WAYPOINT_LIMIT_M, WAYPOINT_LIMIT_M, (K, 2))`` = future positions of the
  ego's centre in the current ego frame (x ahead, y left) [m], waypoint k at ``(k + 1) * dt``.
  A ``TrajectoryTracker`` turns them into commands: pure pursuit for steering, and for speed a
  PI controller on the waypoints' speed with the along-track position error fed forward.
- ``discrete``: ``Discrete(5)`` meta-actions (``MetaAction``) for a lane follower that keeps a
  target lane and a target speed: pure pursuit on the lane's centerline, P control on speed,
  capped by IDM braking for the nearest road user ahead in the lane corridor (keeps a safe gap).

Bad actions are refused, not clipped: a NaN, an infinite value, a wrong shape or a value outside
the space raises ``ActionError`` (a ``ValueError``) naming the action type and the offending
value. Silently clipping would hide a planner's bug from the test that exists to find it.
"""

from __future__ import annotations

import abc
import enum
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from scenarios.common import to_ego_frame
from sim.config import ActionType, EnvConfig
from sim.control import (
    BASELINE_CORRIDOR_MARGIN_M,
    BASELINE_IDM,
    BASELINE_LEADER_LOOKAHEAD_M,
    TrajectoryTracker,
    corridor_leader,
    idm_acceleration,
    pure_pursuit,
)
from sim.dynamics.base import EgoState, VehicleParams
from sim.road import Polyline, RoadGeometry

__all__ = ["ActionError", "ActionHandler", "EgoContext", "MetaAction", "TrajectoryTracker", "WAYPOINT_LIMIT_M",
           "decode_continuous", "encode_continuous", "make_handler", "pure_pursuit"]

#: Bound of trajectory waypoints' coordinates [m].
WAYPOINT_LIMIT_M = 250.0


class MetaAction(enum.IntEnum):
    """The ``discrete`` action's meta-actions."""

    KEEP_LANE = 0
    CHANGE_LEFT = 1
    CHANGE_RIGHT = 2
    FASTER = 3
    SLOWER = 4


@dataclass(slots=True)
class EgoContext:
    """What an action handler needs to know about the ego and its road (local frame).

    Attributes:
        state: the ego now (local frame).
        params: size and limits.
        dt_s: env step [s].
        route: the ego's route (local frame).
        road: the map geometry (map-local frame), or None; ``offset`` maps local to map-local
            (map_local = local - offset).
        speed_limit: along the route [m/s], NaN when unknown.
        agents: (5, N) the other road users' x, y, yaw, vx, vy now (local frame, ground truth),
            or None when unknown; only columns where ``present`` is True are meaningful.
        present: (N,) bool, which road users exist now (the ego's own row is False).
        agent_lw: (2, N) their length and width [m].
    """

    state: EgoState
    params: VehicleParams
    dt_s: float
    route: Polyline
    road: RoadGeometry | None
    offset: np.ndarray
    speed_limit: float
    agents: np.ndarray | None = None
    present: np.ndarray | None = None
    agent_lw: np.ndarray | None = None


class ActionError(ValueError):
    """An action outside the action space (NaN, infinite, wrong shape or out of bounds)."""


def _as_array(action: Any, kind: str) -> np.ndarray:
    try:
        arr = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ActionError(f"{kind} action must be numeric, got {action!r}: {exc}") from None
    return arr


def check_box(space: spaces.Box, action: Any, kind: str) -> np.ndarray:
    """``action`` as float64 if it lies in ``space``, else ``ValueError`` with what is wrong."""
    arr = _as_array(action, kind)
    if arr.shape != space.shape:
        raise ActionError(f"{kind} action must have shape {space.shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ActionError(f"{kind} action contains NaN or infinite values: {arr.tolist()}")
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    bad = (arr < low) | (arr > high)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ActionError(
            f"{kind} action is outside the action space at index {where}: {arr[where]!r} not in "
            f"[{low[where]}, {high[where]}] (actions are refused, not clipped)"
        )
    return arr


class ActionHandler(abc.ABC):
    """Turns actions into (acceleration [m/s2], steering [rad]) commands."""

    action_type: ActionType
    space: spaces.Space

    def reset(self, ctx: EgoContext) -> None:
        """Start of an episode."""

    def command(self, action: Any, ctx: EgoContext) -> tuple[float, float]:
        """Validate ``action`` and return the (accel, steer) command."""
        return self._command(self.validate(action), ctx)

    @abc.abstractmethod
    def validate(self, action: Any) -> Any:
        """The action in canonical form; ``ValueError`` when it is not in the space."""

    @abc.abstractmethod
    def _command(self, action: Any, ctx: EgoContext) -> tuple[float, float]:
        """The command for a validated action."""


class ContinuousActions(ActionHandler):
    action_type = ActionType.CONTINUOUS

    def __init__(self, config: EnvConfig) -> None:
        self.space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def validate(self, action: Any) -> np.ndarray:
        if type(action) is np.ndarray and action.shape == (2,) and action.dtype.kind == "f":
            a0, a1 = action.tolist()  # the common case, checked in plain Python
            if -1.0 <= a0 <= 1.0 and -1.0 <= a1 <= 1.0:  # False for NaN
                return action
        return check_box(self.space, action, "continuous")

    def _command(self, action: np.ndarray, ctx: EgoContext) -> tuple[float, float]:
        return decode_continuous(action, ctx.params)


def decode_continuous(action: np.ndarray, params: VehicleParams) -> tuple[float, float]:
    """(accel [m/s2], steer [rad]) of a normalised continuous action."""
    a, s = float(action[0]), float(action[1])
    return (a * params.max_accel if a >= 0 else a * params.max_decel), s * params.max_steer


def encode_continuous(accel: float, steer: float, params: VehicleParams) -> np.ndarray:
    """The normalised continuous action for (accel [m/s2], steer [rad]), clipped to [-1, 1]."""
    a = accel / params.max_accel if accel >= 0 else accel / params.max_decel
    return np.clip(np.array([a, steer / params.max_steer], np.float32), -1.0, 1.0)


class TrajectoryActions(ActionHandler):
    action_type = ActionType.TRAJECTORY

    def __init__(self, config: EnvConfig) -> None:
        k = config.trajectory_points
        self.space = spaces.Box(-WAYPOINT_LIMIT_M, WAYPOINT_LIMIT_M, (k, 2), np.float32)
        self.tracker = TrajectoryTracker()

    def reset(self, ctx: EgoContext) -> None:
        self.tracker.reset()

    def validate(self, action: Any) -> np.ndarray:
        return check_box(self.space, action, "trajectory")

    def _command(self, action: np.ndarray, ctx: EgoContext) -> tuple[float, float]:
        return self.tracker.command(action, ctx.state.speed, ctx.params, ctx.dt_s)


class DiscreteActions(ActionHandler):
    """Meta-actions on a lane follower (see the module docstring).

    The follower starts on the lane nearest the ego (heading within 60 degrees) at the ego's
    speed; where no lane is near it follows the route. A lane change with no lane on that side,
    or a lane change already under way, is a no-op. ``FASTER``/``SLOWER`` change the target speed
    by ``SPEED_STEP`` [m/s], between 0 and ``max(1.2 x speed limit, 5)`` (or ``SPEED_MAX``).

    Safe gap: the speed command ``K_SPEED * (target - v)`` is capped by IDM's interaction term
    (``sim.control.idm_acceleration`` without the free-road term, ``BASELINE_IDM``'s constants),
    for the leader: the nearest present road user ahead (ego frame x > 0) within
    ``LEADER_LOOKAHEAD_M`` whose box reaches into the corridor along the followed lane
    (``sim.control.corridor_leader``, as the ``idm`` baseline); during a lane change the lane
    being left counts too.
    The leader is ground truth (``EgoContext.agents``), so perception noise does not reach it.
    """

    action_type = ActionType.DISCRETE
    SPEED_STEP = 2.0
    SPEED_MAX = 30.0
    K_SPEED = 1.0  # [1/s]
    PATH_LENGTH_M = 200.0
    CORRIDOR_STEP_M = 5.0  # spacing of the corridor's centerline samples [m]
    IDM = BASELINE_IDM
    CORRIDOR_MARGIN_M = BASELINE_CORRIDOR_MARGIN_M
    LEADER_LOOKAHEAD_M = BASELINE_LEADER_LOOKAHEAD_M

    def __init__(self, config: EnvConfig) -> None:
        self.space = spaces.Discrete(len(MetaAction))
        self.lane = -1
        self.path: Polyline | None = None
        self.target_speed = 0.0
        self._hint: int | None = None
        self._prev_path: Polyline | None = None  # the lane being left while a change is under way

    def validate(self, action: Any) -> int:
        if isinstance(action, (bool, np.bool_)):
            raise ActionError(f"discrete action must be an integer in [0, {self.space.n}), got {action!r}")
        arr = np.asarray(action)
        if arr.size != 1 or arr.dtype.kind not in "iu":
            raise ActionError(f"discrete action must be one integer in [0, {self.space.n}), got {action!r}")
        value = int(arr.reshape(()))
        if not 0 <= value < self.space.n:
            raise ActionError(f"discrete action {value} is outside [0, {self.space.n}) (actions are refused, not clipped)")
        return value

    def reset(self, ctx: EgoContext) -> None:
        self.target_speed = max(ctx.state.speed, 0.0)
        self.lane = -1
        self._follow(ctx, None)

    def _local(self, ctx: EgoContext) -> np.ndarray:
        return np.array([ctx.state.x, ctx.state.y]) - ctx.offset

    def _follow(self, ctx: EgoContext, lane_s: tuple[int, float] | None) -> None:
        """Follow ``lane_s`` (lane, s) or, when None, the lane nearest the ego, else the route."""
        road = ctx.road
        if lane_s is None and road is not None:
            lane_s = road.nearest_lane(self._local(ctx), ctx.state.yaw, max_dist=6.0)
        if lane_s is None or road is None:
            self.lane = -1
            self.path = ctx.route
        else:
            self.lane = lane_s[0]
            pts = road.lane_path(lane_s[0], lane_s[1], self.PATH_LENGTH_M) + ctx.offset
            self.path = Polyline(pts)
        self._hint = None
        self._prev_path = None

    def _command(self, action: int, ctx: EgoContext) -> tuple[float, float]:
        st, p = ctx.state, ctx.params
        pos = np.array([st.x, st.y])
        assert self.path is not None
        s, _, self._hint = self.path.project(pos, self._hint)
        if self.lane >= 0 and self.path.length - s < 60.0:
            self._follow(ctx, None)
            s, _, self._hint = self.path.project(pos, None)
        limit = self.SPEED_MAX if not math.isfinite(ctx.speed_limit) else max(1.2 * ctx.speed_limit, 5.0)
        if action == MetaAction.FASTER:
            self.target_speed = min(self.target_speed + self.SPEED_STEP, limit)
        elif action == MetaAction.SLOWER:
            self.target_speed = max(self.target_speed - self.SPEED_STEP, 0.0)
        elif action in (MetaAction.CHANGE_LEFT, MetaAction.CHANGE_RIGHT) and self.lane >= 0 and ctx.road is not None:
            lane_s = self.path.project(pos, self._hint)
            local_s = ctx.road.lanes[self.lane].path.project(self._local(ctx))[0]
            side = 1 if action == MetaAction.CHANGE_LEFT else -1
            nb = ctx.road.neighbour(self.lane, local_s, side)
            if nb is not None and abs(lane_s[1]) < 1.0:  # not already changing
                left = self.path
                self._follow(ctx, nb)
                self._prev_path = left
                s, _, self._hint = self.path.project(pos, None)
        accel = self.K_SPEED * (self.target_speed - st.speed)
        gap, closing = self._leader(ctx, pos, s)
        if math.isfinite(gap):
            accel = min(accel, float(idm_acceleration(st.speed, gap, closing, self.IDM)))
        accel = min(max(accel, -p.max_decel), p.max_accel)
        local = to_ego_frame(self.path.interpolate(s + np.linspace(1.0, 30.0, 30)), pos, st.yaw)
        look = min(max(0.8 * abs(st.speed), 4.0), 25.0)
        return accel, pure_pursuit(local, look, p.wheelbase)

    def _corridor(self, path: Polyline, s: float, pos: np.ndarray, yaw: float) -> np.ndarray:
        """(P, 2) ``path`` from the ego (origin) over ``LEADER_LOOKAHEAD_M`` ahead of ``s``, ego frame."""
        pts = path.interpolate(s + np.arange(0.0, self.LEADER_LOOKAHEAD_M + 1e-9, self.CORRIDOR_STEP_M))
        return np.vstack([[0.0, 0.0], to_ego_frame(pts, pos, yaw)])

    def _leader(self, ctx: EgoContext, pos: np.ndarray, s: float) -> tuple[float, float]:
        """(bumper-to-bumper gap [m], closing speed [m/s]) to the leader, ``(inf, 0)`` when none."""
        if self._prev_path is not None and abs(self.path.project(pos, self._hint)[1]) < 1.0:
            self._prev_path = None  # the change is done: the lane left behind no longer counts
        agents, present, lw = ctx.agents, ctx.present, ctx.agent_lw
        if agents is None or present is None or lw is None:
            return math.inf, 0.0
        st, p = ctx.state, ctx.params
        dx, dy = agents[0] - st.x, agents[1] - st.y
        reach = self.LEADER_LOOKAHEAD_M + 0.5 * p.length + 10.0
        rows = np.flatnonzero(present & (dx * dx + dy * dy < reach * reach))
        if not rows.size:
            return math.inf, 0.0
        local = to_ego_frame(agents[:2, rows].T, pos, st.yaw)
        corridors = [self._corridor(self.path, s, pos, st.yaw)]
        if self._prev_path is not None:
            corridors.append(self._corridor(self._prev_path, self._prev_path.project(pos)[0], pos, st.yaw))
        i, gap = corridor_leader(local[:, 0], local[:, 1], lw[0, rows], lw[1, rows], corridors, p.length, p.width,
                                 self.CORRIDOR_MARGIN_M, self.LEADER_LOOKAHEAD_M)
        if i < 0:
            return math.inf, 0.0
        r = int(rows[i])
        c, sn = math.cos(st.yaw), math.sin(st.yaw)
        v_lead = float(agents[3, r]) * c + float(agents[4, r]) * sn
        return gap, st.speed - v_lead


def make_handler(config: EnvConfig) -> ActionHandler:
    """The handler of ``config.action``."""
    return {
        ActionType.CONTINUOUS: ContinuousActions,
        ActionType.TRAJECTORY: TrajectoryActions,
        ActionType.DISCRETE: DiscreteActions,
    }[config.action](config)
