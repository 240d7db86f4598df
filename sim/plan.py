"""A scenario compiled for the twin: ``compile_plan(scenario, config) -> Plan``, a pure function.

The plan holds everything an episode needs that does not change while it runs, in the env's local
frame (the scenario's frame minus ``origin``, the ego's first logged position): the log
resampled to the env step, the logged ego, the route and the goal, the vehicle, the speed
limit, which agents react, the latency and the commands that fill its FIFO. It needs no
pybullet client, so it can be built and checked on its own; the env caches plans by content
(``PlanCache``) and reuses them across resets.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from scenarios.common import LRU, wrap_angle
from scenarios.errors import ScenarioError
from scenarios.model import RoadMap, Scenario
from sim.agents import SimTracks, resample
from sim.config import AgentsMode, EnvConfig
from sim.dynamics.base import EgoState, VehicleParams
from sim.road import Polyline, RoadGeometry, build_route, default_shoulder, logged_path, map_digest

#: Route extension beyond the logged ego path [m].
ROUTE_EXTENSION_M = 150.0
#: Spacing of the route's points [m].
ROUTE_SPACING_M = 0.5
#: A logged ego path shorter than this has no goal [m].
MIN_GOAL_PATH_M = 5.0
#: A logged ego whose box heads further than this [rad] (10 deg) off its own direction of
#: motion throughout its first ``START_SLIP_WINDOW_S`` [s], at this speed or faster [m/s], beyond
#: the slip its turning explains, starts heading along its motion (``start_heading``).
START_SLIP_MAX_RAD = math.radians(10.0)
START_SLIP_WINDOW_S = 0.3
START_SLIP_MIN_SPEED_MPS = 2.0
#: Plans and road geometries kept for reuse.
PLAN_CACHE_SIZE = 16
GEOMETRY_CACHE_SIZE = 4


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """Everything precomputed for one scenario (local frame; arrays read-only).

    Attributes:
        scenario: the scenario (its own frame).
        origin: (2,) the local frame's origin in the scenario frame [m].
        start_step: the scenario step the episode starts at (the ego's first valid one).
        dt_us, dt_s: the env step [us], [s].
        log: every agent's log at the env steps, local frame.
        geometry: the road (map-local frame); ``offset`` = ``geometry.anchor - origin`` maps
            map-local to local (local = map_local + offset).
        route: the ego's route (local frame): its logged path, extended along the lanes.
        goal_s: arc length of the logged end along the route [m]; ``has_goal``: the logged path
            is at least ``MIN_GOAL_PATH_M`` long.
        speed_limit: where the ego starts [m/s], NaN when the map has none.
        ego_row: the ego's track row; ``ego0`` its initial state; ``params`` its vehicle.
        ego_log: (S, 4) the logged ego's x, y, yaw, speed at every env step (gaps interpolated).
        ego_end: the env steps the ego's log covers (its last valid step + 1): past it the log
            shows nothing of the ego, nor of what the ego's sensors would have seen, so episodes
            end there (``log_end``).
        sizes: (N, 3) length, width, height [m]; ``lw`` (2, N) length and width; ``half_diag``
            (N,) half diagonals [m]; ``types`` (N,) ``AgentType`` codes.
        reactive_rows: the rows that react (IDM); ``agents_mode`` "replay", "reactive" or "mixed".
        latency_steps: the ego's command latency [env steps]; ``prefill`` the logged ego's own
            (accel, steer) commands that fill the latency FIFO at reset.
        stack: (S, 5, N) the log's x, y, yaw, vx, vy per env step.
        others: (S, N) the log's valid mask with the ego's row cleared.
    """

    scenario: Scenario
    origin: np.ndarray
    start_step: int
    dt_us: int
    dt_s: float
    log: SimTracks
    geometry: RoadGeometry
    offset: np.ndarray
    route: Polyline
    goal_s: float
    has_goal: bool
    speed_limit: float
    ego_row: int
    ego0: EgoState
    params: VehicleParams
    ego_log: np.ndarray
    ego_end: int
    sizes: np.ndarray
    types: np.ndarray
    half_diag: np.ndarray
    reactive_rows: np.ndarray
    agents_mode: str
    latency_steps: int
    prefill: tuple[tuple[float, float], ...]
    stack: np.ndarray
    others: np.ndarray
    lw: np.ndarray

    @property
    def num_steps(self) -> int:
        """S, the env steps of the log from the start step on."""
        return self.log.num_steps


def shoulder_of(scenario: Scenario, config: EnvConfig) -> float:
    """The paved margin the road gets [m]: the config's, else the map's default."""
    return config.road_shoulder_m if config.road_shoulder_m is not None else default_shoulder(scenario.road_map)


def compile_plan(scenario: Scenario, config: EnvConfig, geometry: RoadGeometry | None = None) -> Plan:
    """The ``Plan`` of ``scenario`` under ``config`` (pure: same inputs, same plan).

    Args:
        scenario: the scenario to compile.
        config: the env's configuration (``sim_dt_s``, ``agents_mode``, ``road_shoulder_m``).
        geometry: the scenario's road geometry if already built (``PlanCache`` shares them
            between scenarios of one map), else it is built here.

    Raises:
        ScenarioError: no usable ego (never valid, or observed for less than one env step) or
            no drivable surface.
    """
    src = scenario.source
    tr = scenario.tracks
    e = scenario.ego_index
    ego_steps = np.flatnonzero(tr.valid[e])
    if ego_steps.size == 0:
        raise ScenarioError(src, "ego", f"the ego {scenario.ego_id!r} is never valid")
    start = int(ego_steps[0])
    dt_us = scenario.dt_us if config.sim_dt_s is None else int(round(config.sim_dt_s * 1e6))
    if dt_us <= 0 or int(scenario.t_us[-1]) - int(scenario.t_us[start]) < dt_us:
        raise ScenarioError(src, "ego", "the ego is not observed for at least one env step (no usable ego)")
    if geometry is None:
        geometry = RoadGeometry(scenario.road_map, map_digest(scenario.road_map), shoulder_of(scenario, config))
    if geometry.surface.is_empty or geometry.surface.area < 1.0 or not len(geometry.indices):
        raise ScenarioError(src, "road_map", "no drivable surface: the map has no lanes or drivable-area polygons (no usable map)")
    origin = np.array([tr.x[e, start], tr.y[e, start]])
    log = resample(scenario, origin, dt_us, start)
    dt_s = dt_us / 1e6
    ev = log.valid[e]
    if not ev.any():
        raise ScenarioError(src, "ego", "the ego is not valid at any env step (no usable ego)")
    ego_log, vs = _logged_ego(log, e)
    ex, ey, eyaw, espeed = ego_log.T
    params = _vehicle(tr.length[e], tr.width[e], tr.height[e])
    # the initial steering angle is the logged ego's (inverse bicycle kinematics), so a log that
    # starts in a curve does not start with the wheels straight
    steer0 = logged_commands(ego_log, 1, dt_s, params)[0][1] if len(ego_log) > 1 else 0.0
    ks = np.arange(len(ego_log))
    yaw0, yaw_rate0 = start_heading(eyaw, np.interp(ks, vs, log.vx[e, vs]), np.interp(ks, vs, log.vy[e, vs]), dt_s, 0.5 * params.wheelbase)
    if yaw0 != float(eyaw[0]):  # heading along its motion: steering as its motion turns
        steer0 = logged_commands(np.array([[0, 0, yaw0, espeed[0]], [0, 0, yaw0 + yaw_rate0 * dt_s, espeed[1]]]), 1, dt_s, params)[0][1]
    ego0 = EgoState(0.0, 0.0, yaw0, float(espeed[0]), steer=steer0)
    offset = geometry.anchor - origin
    path = logged_path(ex[vs] - offset[0], ey[vs] - offset[1], float(eyaw[-1]))
    route_map = build_route(geometry, path, float(eyaw[vs[-1]]), ROUTE_EXTENSION_M, ROUTE_SPACING_M)
    route = Polyline(route_map.xy + offset, float(eyaw[0]))
    goal_s, _, _ = route.project(np.array([ex[vs[-1]], ey[vs[-1]]]))
    reactive, agents_mode = _reactive_rows(scenario, config, log)
    latency = int(round(scenario.conditions.ego_latency_s / dt_s))
    others = np.ascontiguousarray(log.valid.T)
    others[:, e] = False
    return Plan(
        scenario=scenario,
        origin=_frozen(origin),
        start_step=start,
        dt_us=dt_us,
        dt_s=dt_s,
        log=log,
        geometry=geometry,
        offset=_frozen(offset),
        route=route,
        goal_s=float(goal_s),
        has_goal=path.length >= MIN_GOAL_PATH_M,
        speed_limit=_speed_limit(geometry, offset, float(eyaw[0])),
        ego_row=e,
        ego0=ego0,
        params=params,
        ego_log=_frozen(ego_log),
        ego_end=int(vs[-1]) + 1,
        sizes=_frozen(np.column_stack([tr.length, tr.width, tr.height])),
        types=_frozen(tr.agent_types.astype(np.int64)),
        half_diag=_frozen(0.5 * np.hypot(tr.length, tr.width)),
        reactive_rows=_frozen(np.flatnonzero(reactive)),
        agents_mode=agents_mode,
        latency_steps=latency,
        prefill=tuple(logged_commands(ego_log, latency, dt_s, params)),
        stack=_frozen(np.ascontiguousarray(np.stack([log.x, log.y, log.yaw, log.vx, log.vy]).transpose(2, 0, 1))),
        others=_frozen(others),
        lw=_frozen(np.stack([tr.length, tr.width])),
    )


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _logged_ego(log: SimTracks, e: int) -> tuple[np.ndarray, np.ndarray]:
    """((S, 4) the logged ego's x, y, yaw, speed at every env step, gaps interpolated; its valid steps).

    The speed is signed: negative when the logged velocity points backwards.
    """
    ks = np.arange(log.num_steps)
    vs = np.flatnonzero(log.valid[e])
    ex = np.interp(ks, vs, log.x[e, vs])
    ey = np.interp(ks, vs, log.y[e, vs])
    eyaw = np.interp(ks, vs, np.unwrap(log.yaw[e, vs]))
    evx, evy = np.interp(ks, vs, log.vx[e, vs]), np.interp(ks, vs, log.vy[e, vs])
    espeed = np.hypot(evx, evy) * np.where(evx * np.cos(eyaw) + evy * np.sin(eyaw) < 0, -1.0, 1.0)
    return np.column_stack([ex, ey, eyaw, espeed]), vs


def _vehicle(length: float, width: float, height: float) -> VehicleParams:
    """The ego's vehicle: the logged box, with the defaults where the log's sizes are implausible."""
    defaults = VehicleParams()
    length, width, height = float(length), float(width), float(height)
    return VehicleParams(
        length=length if length > 0.5 else defaults.length,
        width=width if width > 0.3 else defaults.width,
        height=height if height > 0.3 else defaults.height,
    )


def _speed_limit(geometry: RoadGeometry, offset: np.ndarray, yaw0: float) -> float:
    """The speed limit of the lane the ego starts on [m/s], else the map's median, else NaN."""
    near = geometry.nearest_lane(np.array([0.0, 0.0]) - offset, yaw0, max_dist=6.0)
    if near is not None and math.isfinite(geometry.lanes[near[0]].speed_limit):
        return geometry.lanes[near[0]].speed_limit
    limits = [ln.speed_limit for ln in geometry.lanes if math.isfinite(ln.speed_limit)]
    return float(np.median(limits)) if limits else float("nan")


def _reactive_rows(scenario: Scenario, config: EnvConfig, log: SimTracks) -> tuple[np.ndarray, str]:
    """((N,) bool: which agents react, the agents mode "replay", "reactive" or "mixed").

    The scenario's conditions override the config's mode; ``reactive_agents`` add rows; staged
    manoeuvres (a mutation's braking lead or cut-in, ``replay_agents``) replay whatever the mode.
    """
    tr, e, cond = scenario.tracks, scenario.ego_index, scenario.conditions
    mode = cond.agents_mode or config.agents_mode.value
    n = tr.num_agents
    reactive = np.zeros(n, bool)
    if mode == AgentsMode.REACTIVE.value:
        reactive[:] = True
    reactive[np.isin(tr.agent_ids, list(cond.reactive_agents))] = True
    reactive[np.isin(tr.agent_ids, list(getattr(cond, "replay_agents", ())))] = False
    reactive[e] = False
    seen = log.valid.any(axis=1)
    reactive &= seen
    others = np.ones(n, bool)
    others[e] = False
    if reactive.any() and not reactive[others & seen].all():
        return reactive, "mixed"
    return reactive, "reactive" if reactive.any() else "replay"


def start_heading(yaw: np.ndarray, vx: np.ndarray, vy: np.ndarray, dt_s: float, rear_axle_m: float) -> tuple[float, float]:
    """(the ego's initial heading [rad], its heading's rate then [rad/s]) from the logged ego's
    heading ``yaw`` [rad] and velocity [m/s] at the env steps, (S,) each; ``rear_axle_m`` is how
    far the rear axle is behind the box centre [m] (half the wheelbase, ``sim.dynamics.bicycle``).

    The logged heading, unless at every step of its first ``START_SLIP_WINDOW_S``, at
    ``START_SLIP_MIN_SPEED_MPS`` or faster, the logged box heads more than ``START_SLIP_MAX_RAD``
    off the direction it moves in (forwards or backwards), and as far off it beyond the slip its
    turning explains: label noise (AV2 sensor boxes 17-43 deg off their motion at 3-8 m/s), since
    no car slides sideways like that. The kinematic ego cannot either: started along the box it
    would have to swerve onto the logged path in its first second, and every planner would be
    flagged uncomfortable for the log's label. It then starts heading along its logged motion
    less the slip its turn explains there (below), turning as its motion turns. (A heading a
    sample or two off, or a velocity held between 2 Hz labels in a turn, is kept.)

    The slip a turn explains: the rear wheels roll without slipping, so the centre of a car
    turning at yaw rate w moves sideways at w * ``rear_axle_m`` and heads asin(w * rear_axle_m / v)
    off the box at speed v (atan(rear_axle_m / R) on a circle of radius R of the rear axle:
    12.7 deg at R = 6 m with a 2.7 m wheelbase), a tight turn at the start being no label
    noise. w is the turn both the box and its motion make (the smaller rate of the two when
    they turn the same way, else 0): a label whose heading swings while the car moves straight
    explains no slip. The turn may excuse a slip, never add one: real labels of turning cars
    often put the centre nearer the rear axle (an AV2 car turning at 0.35 rad/s and 2.4 m/s
    moves 3 deg off its box, where a rigid box's centre would 12 deg), and a box heading along
    its motion is no label noise either.
    """
    n = min(len(yaw), max(2, int(round(START_SLIP_WINDOW_S / dt_s)) + 1))
    yaw0 = float(yaw[0])
    rate = (float(yaw[1]) - yaw0) / dt_s if len(yaw) > 1 else 0.0
    speed = np.hypot(vx[:n], vy[:n])
    if len(yaw) < 2 or speed.min() < START_SLIP_MIN_SPEED_MPS:
        return yaw0, rate
    motion = np.arctan2(vy[:n], vx[:n])
    slip = wrap_angle(motion - yaw[:n])
    back = np.abs(slip) > 0.5 * np.pi  # moving backwards: the motion's heading is the reverse of the velocity
    slip = np.where(back, wrap_angle(slip + np.pi), slip)
    # the turn at each step [rad/s]: forward differences, the last step's the one before it
    yaw_rate, motion_rate = (np.r_[d, d[-1]] / dt_s for d in (np.diff(np.unwrap(yaw[:n])), np.diff(np.unwrap(motion))))
    w = np.where(yaw_rate * motion_rate > 0, np.sign(yaw_rate) * np.minimum(np.abs(yaw_rate), np.abs(motion_rate)), 0.0)
    explained = np.arcsin(np.clip(w * rear_axle_m / speed, -1.0, 1.0)) * np.where(back, -1.0, 1.0)
    off = np.minimum(np.abs(slip), np.abs(wrap_angle(slip - explained)))  # the turn may excuse a slip, never add one
    if not (off > START_SLIP_MAX_RAD).all():
        return yaw0, rate
    turn = float(wrap_angle(motion[1] - motion[0]))
    # along its motion, less the part of the slip its turn explains (a turning car heads off its motion)
    return math.remainder(yaw0 + float(slip[0]) - float(explained[0]), 2 * math.pi), turn / dt_s


def logged_commands(ego_log: np.ndarray, count: int, dt: float, params: VehicleParams) -> list[tuple[float, float]]:
    """The logged ego's first ``count`` (accel [m/s2], steer [rad]) commands, by inverse bicycle kinematics."""
    out = []
    s_total = len(ego_log)
    for k in range(count):
        k0, k1 = min(k, s_total - 1), min(k + 1, s_total - 1)
        v0, v1 = ego_log[k0, 3], ego_log[k1, 3]
        accel = (v1 - v0) / dt if k1 > k0 else 0.0
        yaw_rate = (ego_log[k1, 2] - ego_log[k0, 2]) / dt if k1 > k0 else 0.0
        v = 0.5 * (v0 + v1)
        steer = math.atan(params.wheelbase * yaw_rate / v) if abs(v) > 0.5 else 0.0
        accel = min(max(accel, -params.max_decel), params.max_accel)
        steer = min(max(steer, -params.max_steer), params.max_steer)
        out.append((float(accel), float(steer)))
    return out


def content_key(scenario: Scenario, digest: str) -> str:
    """A hash of everything in ``scenario`` a plan depends on (``digest``: its map's ``map_digest``)."""
    tr = scenario.tracks
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((scenario.id, scenario.ego_index, scenario.conditions, digest)).encode())
    for a in (scenario.t_us, tr.x, tr.y, tr.yaw, tr.vx, tr.vy, tr.valid, tr.length, tr.width, tr.height, tr.agent_types):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update("|".join(tr.agent_ids.tolist()).encode())
    return h.hexdigest()


class PlanCache:
    """Plans by scenario content and road geometries by map, least recently used first out.

    A scenario object seen before is recognised by identity; another object with the same
    content (a variant rebuilt on a worker) gets the same plan. Scenarios of one map share its
    ``RoadGeometry`` (and so the engine's road mesh).
    """

    def __init__(self, config: EnvConfig, plans: int = PLAN_CACHE_SIZE, geometries: int = GEOMETRY_CACHE_SIZE) -> None:
        self.config = config
        self._plans: LRU[str, Plan] = LRU(plans)
        self._geometries: LRU[str, RoadGeometry] = LRU(geometries)
        self._keys: LRU[int, tuple[Scenario, str]] = LRU(plans)  # id(scenario) -> (scenario, content key)
        self._digests: LRU[int, tuple[RoadMap, str]] = LRU(64)  # id(road_map) -> (road_map, map digest)

    def plan(self, scenario: Scenario) -> Plan:
        """The plan of ``scenario``, compiled on first use."""
        known = self._keys.get(id(scenario))
        if known is not None and known[0] is scenario:
            key = known[1]
        else:
            key = content_key(scenario, self.digest(scenario.road_map))
            self._keys.put(id(scenario), (scenario, key))
        return self._plans.get_or_make(key, lambda: compile_plan(scenario, self.config, self.geometry(scenario)))

    def geometry(self, scenario: Scenario) -> RoadGeometry:
        """The road geometry of ``scenario``'s map with the configured shoulder."""
        digest = self.digest(scenario.road_map)
        shoulder = shoulder_of(scenario, self.config)
        return self._geometries.get_or_make(f"{digest}|{shoulder:g}", lambda: RoadGeometry(scenario.road_map, digest, shoulder))

    def digest(self, road_map: RoadMap) -> str:
        """``map_digest(road_map)``, remembered by identity."""
        known = self._digests.get(id(road_map))
        if known is not None and known[0] is road_map:
            return known[1]
        digest = map_digest(road_map)
        self._digests.put(id(road_map), (road_map, digest))
        return digest
