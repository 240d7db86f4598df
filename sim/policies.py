"""Policies: the protocol, a registry by name, the built-in baselines, loading by import path.

A policy is any object with ``reset(context)`` and ``act(observation) -> action``. ``context``
is a ``sim.context.PolicyContext`` (``DriveTwinEnv.policy_context()``): the scenario, ``dt_s``,
the action type and space, the vehicle, the speed limit, the seed and a ``view`` of the twin's
ground truth; ``context["dt_s"]`` works too.

Baselines:

- ``expert``: drives the logged ego's trajectory. Its reference speed is the logged one when the
  logged speeds describe the logged motion, else the positions' own (starting at the ego's
  speed and meeting theirs at 1.5 m/s2: the twin starts the ego at the logged speed), smoothed
  (a 5-step median, then an 11-step least-squares line: 2 Hz label steps and 0.5 m/s jitter
  are driven as the motion they stand for). The reference's acceleration plus a gentle
  correction of the speed and along-track errors (at most 2 m/s2, changing at most 3 m/s3: the
  expert's own doing) sets the acceleration: with ``continuous`` actions directly (the tracker
  steers, forwards or backwards as the reference drives), with ``trajectory`` actions as
  waypoints along the logged path spaced so that the env's tracker drives that acceleration
  (the logged positions themselves would make it chase their label noise). With
  ``trajectory`` actions and speeds that do not describe the motion (a jumping box) or a
  reversing log, the logged ego's next K positions are the waypoints. The sanity reference: it
  reproduces the log. It does not anticipate the ego's latency.
- ``idm``: follows its route (pure pursuit on the observed route points) at the speed limit and
  brakes with IDM for the nearest observed road user in its corridor; needs ``state`` observations.
- ``constant_velocity``: no acceleration and no steering (``trajectory``: straight ahead at the
  current speed; ``discrete``: keep lane).

``make_policy("expert")`` or ``make_policy("package.module:Name", **kwargs)`` (a class is
instantiated with ``kwargs``, an instance is used as is).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from scenarios.common import Registry
from sim.actions import WAYPOINT_LIMIT_M, MetaAction, encode_continuous
from sim.config import ActionType
from sim.context import PolicyContext
from sim.control import (
    BASELINE_CORRIDOR_MARGIN_M,
    BASELINE_IDM,
    BASELINE_LEADER_LOOKAHEAD_M,
    TrajectoryTracker,
    corridor_leader,
    idm_acceleration,
    pure_pursuit,
)
from sim.observations import AGENT_FEATURES, EGO_FEATURES, state_layout


@runtime_checkable
class Policy(Protocol):
    """What the env's rollout drives."""

    def reset(self, context: PolicyContext) -> None:
        """Start of an episode."""

    def act(self, observation: Any) -> Any:
        """The action for ``observation``."""


#: The built-in and registered policies by name.
REGISTRY: Registry[Callable[..., Policy]] = Registry("policy", unknown=lambda name, message: ValueError(message))


def register_policy(name: str) -> Callable[[type], type]:
    """Class decorator: register a policy under ``name``; duplicates are an error."""

    def decorate(cls: type) -> type:
        REGISTRY.add(name, cls)
        cls.name = name
        return cls

    return decorate


def policy_names() -> list[str]:
    """The registered policy names, sorted."""
    return REGISTRY.names()


def make_policy(spec: str | Policy | type, **kwargs: Any) -> Policy:
    """A policy from a registered name, a ``"package.module:Name"`` path, a class or an instance."""
    if isinstance(spec, str):
        if spec in REGISTRY:
            return REGISTRY.get(spec)(**kwargs)
        if ":" not in spec:
            raise ValueError(f"unknown policy {spec!r}; built-in: {policy_names()}, or give 'package.module:Name'")
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"policy {spec!r}: cannot import module {module_name!r}: {exc}") from exc
        try:
            target = getattr(module, attr)
        except AttributeError:
            raise ValueError(f"policy {spec!r}: module {module_name!r} has no attribute {attr!r}") from None
        policy = target(**kwargs) if isinstance(target, type) else target
        if not hasattr(policy, "name"):
            try:
                policy.name = spec
            except AttributeError:
                pass
    elif isinstance(spec, type):
        policy = spec(**kwargs)
    else:
        policy = spec
    if not (callable(getattr(policy, "reset", None)) and callable(getattr(policy, "act", None))):
        raise ValueError(f"policy {spec!r} does not have reset(context) and act(observation)")
    return policy


def policy_name(policy: Any) -> str:
    """The name a rollout records for ``policy``."""
    return str(getattr(policy, "name", "") or type(policy).__name__)


class _Baseline:
    """Shared plumbing: the action type, the vehicle, the view, action encoding."""

    name = ""
    supports = (ActionType.CONTINUOUS, ActionType.TRAJECTORY, ActionType.DISCRETE)

    def reset(self, context: PolicyContext) -> None:
        self.context = context
        self.action_type = ActionType(context.action_type)
        if self.action_type not in self.supports:
            raise ValueError(f"policy {self.name!r} does not support {self.action_type.value!r} actions")
        self.view = context.view
        self.params = context.vehicle
        self.dt = float(context.dt_s)
        space = context.action_space
        self.k_points = int(space.shape[0]) if self.action_type is ActionType.TRAJECTORY else 10
        self.tracker = TrajectoryTracker()

    def _from_trajectory(self, waypoints: np.ndarray, speed: float) -> Any:
        """The action following ego-frame ``waypoints`` (K, 2) in the env's action type."""
        if self.action_type is ActionType.TRAJECTORY:
            return np.clip(waypoints, -WAYPOINT_LIMIT_M, WAYPOINT_LIMIT_M).astype(np.float32)
        accel, steer = self.tracker.command(waypoints, speed, self.params, self.dt)
        if self.action_type is ActionType.CONTINUOUS:
            return encode_continuous(accel, steer, self.params)
        return _meta(accel)


def _meta(accel: float) -> int:
    if accel > 0.5:
        return int(MetaAction.FASTER)
    if accel < -0.5:
        return int(MetaAction.SLOWER)
    return int(MetaAction.KEEP_LANE)


@register_policy("expert")
class ExpertPolicy(_Baseline):
    """Drives the logged ego's trajectory (see the module docstring)."""

    supports = (ActionType.CONTINUOUS, ActionType.TRAJECTORY)

    #: With continuous actions the speed and along-track errors decay as a critically damped
    #: second-order system of this natural frequency [rad/s] (about 2 s to settle).
    TRACKING_OMEGA = 1.0
    #: The logged speeds describe the logged motion when, over every window of this length [s],
    #: their integral matches the logged path's length within this share of it plus
    #: ``VELOCITY_MATCH_M`` [m].
    VELOCITY_MATCH_WINDOW_S = 1.0
    VELOCITY_MATCH_RATIO = 0.1
    VELOCITY_MATCH_M = 0.5
    #: The reference speed is the log's (or the positions') smoothed over this many steps
    #: (a least-squares line per window): a speed that jumps at 2 Hz labels or jitters by 0.5 m/s from
    #: step to step is driven as the smooth motion it stands for, not reproduced jump for jump.
    REFERENCE_WINDOW = 11
    #: ... after a running median over this many steps (one sample whose velocity points
    #: backwards, a nuScenes glitch, is not a stop and a reversal).
    MEDIAN_WINDOW = 5
    #: The expert's own correction of the reference's acceleration: at most this large [m/s2]
    #: and changing at most this fast [m/s3] (a log whose speed disagrees with its positions
    #: at the start is caught up with gently, not with full braking).
    CORRECTION_MAX_MPS2 = 2.0
    CORRECTION_JERK_MPS3 = 3.0
    #: Where the ego starts faster or slower than the reference, the reference starts at the
    #: ego's speed and changes at this rate [m/s2] until it meets the log's.
    START_ACCEL_MPS2 = 1.5

    def reset(self, context: PolicyContext) -> None:
        super().reset(context)
        log = self.view.logged_ego
        # the ego's last logged step: the plan holds its last position after it. Past it the logged
        # ego drives on at its last speed and heading (waypoints clamped to the last position would
        # make the tracker brake to a stop in the episode's last steps)
        moved = np.flatnonzero(np.any(log[:, :2] != log[-1, :2], axis=1))
        self._last = int(moved[-1]) + 1 if moved.size else len(log) - 1
        self._feed_forward = self._velocities_match_positions(log[: self._last + 1])
        self._integral = 0.0  # the env's trajectory tracker's speed-error integral, as it keeps it [m]
        self._v_ref, self._a_ref = self._reference(log)
        self._correction = 0.0  # the last step's correction of the reference's acceleration [m/s2]

    def act(self, observation: Any) -> Any:
        view = self.view
        log = view.logged_ego
        k = view.step_index
        last = self._last
        want = np.arange(k, k + 1 + self.k_points)  # the logged ego now and at the next K steps
        idx = np.minimum(want, last)
        beyond = np.maximum(want - last, 0) * self.dt * log[last, 3]
        ego = view.ego
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        dx = log[idx, 0] + beyond * math.cos(log[last, 2]) - ego.x
        dy = log[idx, 1] + beyond * math.sin(log[last, 2]) - ego.y
        points = np.column_stack([dx * c + dy * s, -dx * s + dy * c])  # the ego frame, per step: the fast form
        waypoints = points[1:]
        v_ref, a_ref = float(self._v_ref[idx[0]]), float(self._a_ref[idx[0]])
        continuous = self.action_type is ActionType.CONTINUOUS
        reverse = bool((self._v_ref[idx[1]] if continuous else log[idx[1], 3]) < 0)
        if not continuous and (not self._feed_forward or reverse):
            return self._from_trajectory(waypoints, ego.speed)
        # acceleration: the reference's own (fed forward, so the drive is as smooth as the log's)
        # plus a gentle correction of the speed error and of the along-track lag behind the logged
        # ego, forwards or backwards as the log drives there (an ego a little ahead of a crawling
        # log has its next waypoint behind it, and is still driving forwards); the correction is
        # the expert's own doing, so it stays within a comfortable size and rate
        w = self.TRACKING_OMEGA
        desired = 2 * w * (v_ref - ego.speed) + w * w * float(points[0, 0])
        step = self.CORRECTION_JERK_MPS3 * self.dt
        bound = self.CORRECTION_MAX_MPS2
        self._correction = min(max(desired, self._correction - step, -bound), self._correction + step, bound)
        accel = a_ref + self._correction
        if not continuous:
            return self._from_trajectory(self._retimed(points, ego.speed, accel), ego.speed)
        _, steer = self.tracker.command(waypoints, ego.speed, self.params, self.dt, reverse=reverse)
        return encode_continuous(accel, steer, self.params)

    def _retimed(self, points: np.ndarray, speed: float, accel: float) -> np.ndarray:
        """The waypoints that make the env's tracker drive the continuous law's ``accel`` [m/s2] from
        ``speed`` [m/s], laid along the logged path ``points`` (1 + K, 2) (the logged ego now and at
        the next K steps, ego frame) from the ego's place on it.

        The logged positions themselves as waypoints make the tracker chase their label noise (its
        speed target is measured from the ego to the first waypoint: a few centimetres of jitter
        are a few m/s2); these carry the log's path and the law's smooth speeds instead. A path too
        short to lie along (a standing log) keeps the logged positions.
        """
        seg = np.hypot(*np.diff(points, axis=0).T)
        if seg.sum() < 1e-3:
            return points[1:]
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        first = int(np.argmax(seg > 1e-9))
        t0 = (points[first + 1] - points[first]) / seg[first]
        here = float(-(points[0] @ t0))  # the ego's arc length along the path, from the logged ego now [m]
        # the tracker accelerates by err / TAU + K_I * its integral of err, err its speed target (the
        # mean speed over the first two waypoints) minus the speed: both waypoints at the speed + the
        # err that makes that ``accel`` (its integral followed here as the tracker keeps it), then
        # ``accel`` on from there
        tracker = TrajectoryTracker
        err = (accel - tracker.K_I * self._integral) / (1.0 / tracker.TAU + tracker.K_I * self.dt)
        self._integral = min(max(self._integral + err * self.dt, -2.0), 2.0)
        k = np.maximum(np.arange(1, len(points)) - 2, 0)
        v = np.maximum(speed + err + accel * k * self.dt, 0.0)
        at = here + np.cumsum(v) * self.dt
        last = len(seg) - 1 - int(np.argmax(seg[::-1] > 1e-9))  # the last segment of nonzero length
        u = (points[last + 1] - points[last]) / seg[last]
        out = np.column_stack([np.interp(at, arc, points[:, 0]), np.interp(at, arc, points[:, 1])])
        before, beyond = at < 0.0, at > arc[-1]
        out[before] = points[0] + np.outer(at[before], t0)
        out[beyond] = points[-1] + np.outer(at[beyond] - arc[-1], u)
        return out

    def _reference(self, log: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(S,) the reference signed speed [m/s] and acceleration [m/s2] at each env step: the
        logged speeds when they describe the logged motion, else the positions' own (signed by
        the logged heading, from the ego's own speed at the start), after a ``MEDIAN_WINDOW``
        median, smoothed over ``REFERENCE_WINDOW`` steps; after the ego's last logged step, its
        last speed and no acceleration."""
        last = self._last
        if self._feed_forward or last < 1:
            v = log[: last + 1, 3].astype(np.float64)
        else:
            step = np.diff(log[: last + 1, :2], axis=0)
            along = step[:, 0] * np.cos(log[:last, 2]) + step[:, 1] * np.sin(log[:last, 2])
            ds = np.hypot(step[:, 0], step[:, 1]) * np.where(along < 0, -1.0, 1.0)
            s = np.concatenate([[0.0], np.cumsum(ds)])
            v = np.gradient(s, self.dt)
        v = _running_median(v, self.MEDIAN_WINDOW)
        if not self._feed_forward:
            # the twin starts the ego at the logged speed, which may run ahead of (or behind) the
            # positions' own: the reference starts there and meets theirs at a comfortable rate
            smooth, v0 = _local_line(v, self.REFERENCE_WINDOW, 0, self.dt), float(self.view.ego.speed)
            t = np.arange(len(v)) * self.dt
            if v0 > smooth[0]:
                v = np.maximum(smooth, v0 - self.START_ACCEL_MPS2 * t)
            elif v0 < smooth[0]:
                v = np.minimum(smooth, v0 + self.START_ACCEL_MPS2 * t)
        v_ref = _local_line(v, self.REFERENCE_WINDOW, 0, self.dt)
        a_ref = _local_line(v, self.REFERENCE_WINDOW, 1, self.dt)
        n = len(log)
        v_out = np.full(n, v_ref[-1])
        a_out = np.zeros(n)
        v_out[: last + 1], a_out[: last + 1] = v_ref, a_ref
        return v_out, a_out

    def _velocities_match_positions(self, log: np.ndarray) -> bool:
        """Whether, over every second of the log, the logged speeds integrate to the logged path
        and the path runs along the logged heading: else (a parked car's box jumping while its
        velocity says 0, speeds that disagree with the positions, a heading turned round) the
        positions' own speeds are the reference."""
        if len(log) < 2:
            return True
        step = np.diff(log[:, :2], axis=0)
        length = np.hypot(step[:, 0], step[:, 1])
        along = step[:, 0] * np.cos(log[:-1, 2]) + step[:, 1] * np.sin(log[:-1, 2])
        travelled = log[:-1, 3] * self.dt  # signed: reversing counts backwards
        w = min(len(step), max(1, round(self.VELOCITY_MATCH_WINDOW_S / self.dt)))

        def window(x: np.ndarray) -> np.ndarray:
            c = np.r_[0.0, np.cumsum(x)]
            return c[w:] - c[:-w]

        path = window(length)
        tolerance = self.VELOCITY_MATCH_RATIO * path + self.VELOCITY_MATCH_M
        return bool(np.all(np.abs(window(travelled) - path) <= tolerance) and np.all(np.abs(window(along) - path) <= tolerance))


def _running_median(y: np.ndarray, window: int) -> np.ndarray:
    """The median of each sample's centred ``window`` of ``y`` (N,), the window shrinking
    symmetrically at the ends (the end samples are kept)."""
    n, h = len(y), window // 2
    out = np.asarray(y, dtype=np.float64).copy()
    if n < 3 or h < 1:
        return out
    padded = np.pad(out, h, mode="edge")
    med = np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * h + 1), axis=1)
    for i in range(min(h, n)):  # near the ends: the largest centred window that fits
        for j in (i, n - 1 - i):
            r = min(j, n - 1 - j)
            med[j] = np.median(out[j - r : j + r + 1])
    return med


def _local_line(y: np.ndarray, window: int, deriv: int, dt: float) -> np.ndarray:
    """The least-squares line through each sample's window of ``y`` (N,) at spacing ``dt`` [s]:
    its value (``deriv`` 0) or slope (1) at the sample (Savitzky-Golay of degree 1; the first and
    last ``window // 2`` samples use the first / last window, as scipy's ``mode="interp"``, where
    a line extrapolates far less than a parabola); a window longer than ``y`` shrinks to fit."""
    n = len(y)
    w = min(window, n if n % 2 else n - 1)
    if w < 3:
        return y.astype(np.float64) if deriv == 0 else np.zeros(n)
    pos = np.arange(w, dtype=np.float64) - (w - 1) / 2
    start = np.clip(np.arange(n) - w // 2, 0, n - w)
    windows = np.lib.stride_tricks.sliding_window_view(y.astype(np.float64), w)[start]  # (N, W)
    mean, slope = windows.mean(axis=1), windows @ pos / float(pos @ pos)
    if deriv == 1:
        return slope / dt
    return mean + slope * (np.arange(n) - start - (w - 1) / 2)


@register_policy("constant_velocity")
class ConstantVelocityPolicy(_Baseline):
    """Keeps its speed and heading (see the module docstring)."""

    def act(self, observation: Any) -> Any:
        if self.action_type is ActionType.CONTINUOUS:
            return np.zeros(2, np.float32)
        if self.action_type is ActionType.DISCRETE:
            return int(MetaAction.KEEP_LANE)
        speed = max(self.view.ego.speed, 0.0)
        t = self.dt * np.arange(1, self.k_points + 1)
        return np.column_stack([speed * t, np.zeros_like(t)]).astype(np.float32)


@register_policy("idm")
class IDMPolicy(_Baseline):
    """Route following with IDM braking on ``state`` observations (see the module docstring).

    Args:
        desired_speed: v0 [m/s]; None uses the route's speed limit, else ``DEFAULT_SPEED``.
    """

    DEFAULT_SPEED = 13.9
    IDM = BASELINE_IDM
    CORRIDOR_MARGIN_M = BASELINE_CORRIDOR_MARGIN_M
    LOOKAHEAD_M = BASELINE_LEADER_LOOKAHEAD_M  # the observed route goes on straight this far for the leader search

    def __init__(self, desired_speed: float | None = None) -> None:
        self.desired_speed = desired_speed

    def reset(self, context: PolicyContext) -> None:
        super().reset(context)
        config = context.config
        if not config.has("state"):
            raise ValueError("policy 'idm' needs the 'state' observation part")
        self.layout = state_layout(config)
        self.k_agents = config.num_agents_obs
        limit = float(context.speed_limit)
        self.v0 = self.desired_speed or (limit if math.isfinite(limit) and limit > 0 else self.DEFAULT_SPEED)

    def act(self, observation: Any) -> Any:
        state = np.asarray(observation["state"], dtype=np.float64)
        ego = state[self.layout["ego"]]
        speed = float(ego[EGO_FEATURES.index("speed")])
        length, width = float(ego[EGO_FEATURES.index("length")]), float(ego[EGO_FEATURES.index("width")])
        agents = state[self.layout["agents"]].reshape(self.k_agents, len(AGENT_FEATURES))
        route = state[self.layout["route"]].reshape(-1, 2)
        accel = self._idm(speed, length, width, agents, route)
        if self.action_type is ActionType.CONTINUOUS:
            look = min(max(0.6 * speed, 4.0), 18.0)
            return encode_continuous(accel, pure_pursuit(route, look, self.params.wheelbase), self.params)
        if self.action_type is ActionType.DISCRETE:
            return _meta(accel)
        # trajectory: the speed profile of ``accel`` laid along the route
        t = self.dt * np.arange(1, self.k_points + 1)
        v = np.maximum(speed + accel * t, 0.0)
        s = np.cumsum(v * self.dt)
        path = np.vstack([[0.0, 0.0], route])
        seg = np.hypot(*np.diff(path, axis=0).T)
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        xs = np.interp(s, cum, path[:, 0])
        ys = np.interp(s, cum, path[:, 1])
        beyond = s > cum[-1]
        if beyond.any() and len(path) >= 2:
            d = path[-1] - path[-2]
            u = d / max(np.hypot(*d), 1e-9)
            xs[beyond] = path[-1, 0] + (s[beyond] - cum[-1]) * u[0]
            ys[beyond] = path[-1, 1] + (s[beyond] - cum[-1]) * u[1]
        return self._from_trajectory(np.column_stack([xs, ys]), speed)

    def _idm(self, speed: float, length: float, width: float, agents: np.ndarray, route: np.ndarray) -> float:
        present = agents[:, 0] > 0.5
        gap, closing = math.inf, 0.0
        if present.any():
            a = agents[present]
            corridor = np.vstack([[0.0, 0.0], route])
            i, gap = corridor_leader(a[:, 1], a[:, 2], a[:, 7], a[:, 8], [corridor], length, width, self.CORRIDOR_MARGIN_M,
                                     self.LOOKAHEAD_M)
            if i >= 0:
                closing = -float(a[i, 3])  # relative vx is the other's minus the ego's
        return float(idm_acceleration(speed, gap, closing, self.IDM, self.v0))
