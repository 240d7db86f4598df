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

from sim.config import ActionType, EnvConfig
from sim.dynamics.base import EgoState, VehicleParams
from sim.road import Polyline, RoadGeometry

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


def pure_pursuit(path: np.ndarray, lookahead: float, wheelbase: float) -> float:
    """Road-wheel angle [rad] steering the rear axle towards ``path``'s point ``lookahead`` [m] away.

    ``path``: (P, 2) points in the ego frame with the origin at the vehicle's centre; the rear
    axle is taken half a wheelbase behind the centre. Beyond its end the path goes on straight.
    """
    rear = np.array([-0.5 * wheelbase, 0.0])
    rel = np.vstack([[0.0, 0.0], path]) - rear
    d = np.hypot(rel[:, 0], rel[:, 1])
    beyond = np.flatnonzero(d >= lookahead)
    if beyond.size and beyond[0] > 0:
        i = int(beyond[0])
        a, b = rel[i - 1], rel[i]
        # the point between a and b at distance ``lookahead`` from the rear axle
        ab = b - a
        qa, qb, qc = ab @ ab, 2 * a @ ab, a @ a - lookahead**2
        disc = max(qb * qb - 4 * qa * qc, 0.0)
        t = (-qb + math.sqrt(disc)) / (2 * qa) if qa > 0 else 0.0
        target = a + min(max(t, 0.0), 1.0) * ab
    elif beyond.size:
        target = rel[beyond[0]]
    else:
        if len(rel) >= 2 and np.hypot(*(rel[-1] - rel[-2])) > 1e-6:
            u = (rel[-1] - rel[-2]) / np.hypot(*(rel[-1] - rel[-2]))
        else:
            u = np.array([1.0, 0.0])
        # go on straight from the last point until the lookahead circle
        a = rel[-1]
        qb = 2 * a @ u
        qc = a @ a - lookahead**2
        t = (-qb + math.sqrt(max(qb * qb - 4 * qc, 0.0))) / 2
        target = a + t * u
    dist2 = float(target @ target)
    if dist2 < 1e-9:
        return 0.0
    curvature = 2.0 * target[1] / dist2
    return math.atan(wheelbase * curvature)


class TrajectoryTracker:
    """Tracks ego-frame waypoints at the env step: pure pursuit + speed PI (see the module docstring).

    Speed: the target is the waypoints' speed at the end of this step, the mean of their first
    two segments' speeds; the first segment is measured from the ego itself, so an along-track
    position error shows up as a speed error and is corrected. ``a = (v_target - v) / TAU +
    K_I * integral(v_target - v)``, the integral clamped to +-2 m/s. Steering: pure pursuit from
    the rear axle (half a wheelbase behind the centre) with lookahead
    ``clip(LOOKAHEAD_S * v, LOOKAHEAD_MIN_M, LOOKAHEAD_MAX_M)``; wheels straight when the
    waypoints stand still. Waypoints behind the ego (first one at x < 0) mean reversing.
    """

    TAU = 0.25  # [s] speed error time constant
    K_I = 0.2  # [1/s2] integral gain
    LOOKAHEAD_S, LOOKAHEAD_MIN_M, LOOKAHEAD_MAX_M = 0.6, 2.5, 25.0

    def __init__(self) -> None:
        self.integral = 0.0

    def reset(self) -> None:
        self.integral = 0.0

    def command(self, waypoints: np.ndarray, speed: float, params: VehicleParams, dt: float) -> tuple[float, float]:
        """(accel [m/s2], steer [rad]) tracking ``waypoints`` (K, 2) from the current ``speed`` [m/s]."""
        wp = np.asarray(waypoints, dtype=np.float64)
        seg = np.diff(np.vstack([[0.0, 0.0], wp]), axis=0)
        seg_len = np.hypot(seg[:, 0], seg[:, 1])
        forward = 1.0 if wp[0, 0] >= -1e-6 else -1.0
        # speed at the end of this step: mean of the first two segments' speeds
        v_end = forward * (seg_len[0] + (seg_len[1] if len(seg_len) > 1 else seg_len[0])) / (2 * dt)
        err = v_end - speed
        self.integral = min(max(self.integral + err * dt, -2.0), 2.0)
        accel = err / self.TAU + self.K_I * self.integral
        accel = min(max(accel, -params.max_decel), params.max_accel)
        if seg_len.sum() < 0.05 * len(seg_len) * dt:  # (nearly) standing: keep the wheels straight
            return accel, 0.0
        look = min(max(self.LOOKAHEAD_S * abs(speed), self.LOOKAHEAD_MIN_M), self.LOOKAHEAD_MAX_M)
        steer = pure_pursuit(wp, look, params.wheelbase)
        if forward < 0:
            steer = -steer
        return accel, steer


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
    ``A_MAX * (1 - (s* / gap)^2)``, ``s* = S0 + v T + v dv / (2 sqrt(A_MAX B_COMF))`` (the ``idm``
    baseline's constants), for the leader: the nearest present road user ahead (ego frame x > 0)
    within ``LEADER_LOOKAHEAD_M`` whose box reaches into the corridor along the followed lane
    (the ``idm`` baseline's corridor test); during a lane change the lane being left counts too.
    The leader is ground truth (``EgoContext.agents``), so perception noise does not reach it.
    """

    action_type = ActionType.DISCRETE
    SPEED_STEP = 2.0
    SPEED_MAX = 30.0
    K_SPEED = 1.0  # [1/s]
    PATH_LENGTH_M = 200.0
    CORRIDOR_STEP_M = 5.0  # spacing of the corridor's centerline samples [m]

    def __init__(self, config: EnvConfig) -> None:
        # the leader search and IDM of the ``idm`` baseline (imported here: sim.policies imports this module)
        from sim.policies import IDMPolicy, _distance_to_path

        self._distance_to_path = _distance_to_path
        self.A_MAX, self.B_COMF, self.S0, self.T_HEADWAY = IDMPolicy.A_MAX, IDMPolicy.B_COMF, IDMPolicy.S0, IDMPolicy.T_HEADWAY
        self.CORRIDOR_MARGIN_M = IDMPolicy.CORRIDOR_MARGIN_M
        self.LEADER_LOOKAHEAD_M = IDMPolicy.LOOKAHEAD_M
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
            v = max(st.speed, 0.0)
            s_star = self.S0 + v * self.T_HEADWAY + st.speed * closing / (2 * math.sqrt(self.A_MAX * self.B_COMF))
            accel = min(accel, self.A_MAX * (1.0 - (max(s_star, 0.0) / max(gap, 0.1)) ** 2))
        accel = min(max(accel, -p.max_decel), p.max_accel)
        ahead = self.path.interpolate(s + np.linspace(1.0, 30.0, 30))
        c, sn = math.cos(st.yaw), math.sin(st.yaw)
        rel = ahead - pos
        local = np.column_stack([rel[:, 0] * c + rel[:, 1] * sn, -rel[:, 0] * sn + rel[:, 1] * c])
        look = min(max(0.8 * abs(st.speed), 4.0), 25.0)
        return accel, pure_pursuit(local, look, p.wheelbase)

    def _corridor(self, path: Polyline, s: float, pos: np.ndarray, c: float, sn: float) -> np.ndarray:
        """(P, 2) ``path`` from the ego (origin) over ``LEADER_LOOKAHEAD_M`` ahead of ``s``, ego frame."""
        pts = path.interpolate(s + np.arange(0.0, self.LEADER_LOOKAHEAD_M + 1e-9, self.CORRIDOR_STEP_M)) - pos
        local = np.column_stack([pts[:, 0] * c + pts[:, 1] * sn, -pts[:, 0] * sn + pts[:, 1] * c])
        return np.vstack([[0.0, 0.0], local])

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
        c, sn = math.cos(st.yaw), math.sin(st.yaw)
        x = dx[rows] * c + dy[rows] * sn
        y = -dx[rows] * sn + dy[rows] * c
        fwd = x > 0
        if not fwd.any():
            return math.inf, 0.0
        rows, x, y = rows[fwd], x[fwd], y[fwd]
        lateral = self._distance_to_path(x, y, self._corridor(self.path, s, pos, c, sn), self.LEADER_LOOKAHEAD_M)
        if self._prev_path is not None:
            prev = self._corridor(self._prev_path, self._prev_path.project(pos)[0], pos, c, sn)
            lateral = np.minimum(lateral, self._distance_to_path(x, y, prev, self.LEADER_LOOKAHEAD_M))
        inside = lateral < 0.5 * lw[1, rows] + 0.5 * p.width + self.CORRIDOR_MARGIN_M
        if not inside.any():
            return math.inf, 0.0
        rows, x = rows[inside], x[inside]
        g = x - 0.5 * lw[0, rows] - 0.5 * p.length
        i = int(np.argmin(g))
        r = int(rows[i])
        v_lead = float(agents[3, r]) * c + float(agents[4, r]) * sn
        return float(g[i]), st.speed - v_lead


def make_handler(config: EnvConfig) -> ActionHandler:
    """The handler of ``config.action``."""
    return {
        ActionType.CONTINUOUS: ContinuousActions,
        ActionType.TRAJECTORY: TrajectoryActions,
        ActionType.DISCRETE: DiscreteActions,
    }[config.action](config)
