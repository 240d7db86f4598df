"""The Gymnasium environment: a scenario's pybullet twin, the ego driven by the policy's actions.

``DriveTwinEnv(scenario=..., config=..., library=...)``; ``reset(seed=, options={"scenario": s})``
picks a ``Scenario`` (or an id resolved through ``library``: any object with ``.load(id)`` and
``.ids()``, or a list of scenarios). Without one it replays the env's own scenario, else one of
the library's drawn with ``self.np_random``, else a built-in synthetic highway scene.

Frame: the env works in a local frame, the scenario's frame minus an origin (the ego's first
logged position), so float32 physics stays precise at city coordinates; ``info`` and the rollout
record are back in the scenario's frame.

An episode starts at the ego's first logged step (usually the scenario's first) with the ego in
its logged state, and ends at the log's end at the latest. One step (env dt = the log's step
unless ``config.sim_dt_s`` says otherwise):

1. the action becomes an (accel, steer) command (``sim.actions``; bad actions raise ``ValueError``);
2. the command enters the latency FIFO of ``round(ego_latency_s / dt)`` steps and the oldest
   command leaves it and is executed. The FIFO starts full of the logged ego's own commands for
   its first steps (inferred by inverse bicycle kinematics), so until the policy's first command
   takes effect the ego does what the recorded driver did;
3. reactive agents choose their accelerations (from the state at this step), the ego dynamics
   model advances, then every agent moves to the next step (log replay or IDM);
4. agent boxes near the ego are moved in the engine (the others wait parked far below);
   contacts come from the engine: its narrowphase (``getClosestPoints``) against the boxes whose
   bounding circles reach the ego's for the kinematic ego, the contacts of every physics
   substep for a simulated one; off-road from rays cast down at the ego's four corners;
5. reward, termination (collision, off-road, goal) and truncation (the log's end, ``max_steps``).

Reuse: the client lives as long as the env. With the kinematic ego the road and the agent boxes
are kept across resets (rebuilt only for another map or other box sizes), since the engine is
only queried and its history cannot change a result. A physical ego (``bullet``) steps the
physics, whose solver keeps state across episodes; its world is rebuilt at every reset
(``resetSimulation``) so that a rollout is the same whatever ran before it.

``info``: ``t_us``, ``step``, ``scenario_id``, ``ego`` (x, y, yaw, speed, accel, steer, yaw_rate in
the scenario frame), ``contacts`` (list of ``{"agent_id", "impulse", "penetration"}``),
``collision``, ``offroad``, ``offroad_corners``, ``progress_m``, ``route_completion``,
``command`` (executed accel, steer), ``reward_terms``, ``termination`` and ``agents_mode``.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np

from scenarios.errors import ScenarioError
from scenarios.model import AgentType, Scenario
from sim import dynamics as dynamics_registry
from sim.actions import EgoContext, make_handler
from sim.agents import ReactiveAgents, SimTracks, resample
from sim.config import AgentsMode, ConfigError, EnvConfig, ObservationPart
from sim.context import PolicyContext, PrivilegedView, TwinState
from sim.dynamics.base import EgoState, VehicleParams
from sim.observations import BevRasteriser, lidar_directions, observation_space, state_vector
from sim.road import Polyline, RoadGeometry, build_route, default_shoulder, logged_path, map_digest
from scenarios.rollout import Rollout
from sim.world import World

#: Route extension beyond the logged ego path [m].
ROUTE_EXTENSION_M = 150.0
#: Spacing of the route's points [m].
ROUTE_SPACING_M = 0.5
#: A logged ego path shorter than this has no goal [m].
MIN_GOAL_PATH_M = 5.0
#: Engine margin around the ego within which agent boxes are kept up to date [m].
SYNC_MARGIN_M = 3.0
#: Scenarios and maps prepared for reuse.
PLAN_CACHE_SIZE = 16
GEOMETRY_CACHE_SIZE = 4


@dataclass(slots=True, eq=False)
class Plan:
    """Everything precomputed for one scenario (reused across resets)."""

    scenario: Scenario
    origin: np.ndarray  # (2,) scenario frame [m]
    start_step: int
    dt_us: int
    dt_s: float
    log: SimTracks
    geometry: RoadGeometry
    offset: np.ndarray  # geometry.anchor - origin
    route: Polyline
    goal_s: float
    has_goal: bool
    speed_limit: float
    ego_row: int
    ego0: EgoState
    params: VehicleParams
    ego_log: np.ndarray  # (S, 4) logged ego x, y, yaw, speed at sim steps (local, gaps filled)
    sizes: np.ndarray  # (N, 3)
    types: np.ndarray  # (N,)
    half_diag: np.ndarray  # (N,)
    reactive_rows: np.ndarray
    agents_mode: str
    latency_steps: int
    prefill: list[tuple[float, float]]
    stack: np.ndarray  # (S, 5, N) the log's x, y, yaw, vx, vy per env step (local frame)
    others: np.ndarray  # (S, N) bool: the log's valid mask with the ego's row cleared
    lw: np.ndarray  # (2, N) length, width [m]
    bev: BevRasteriser | None = None
    render_bev: BevRasteriser | None = None
    extra: dict = field(default_factory=dict)


def default_scenario() -> Scenario:
    """The built-in scene: a 3-lane road, the ego at 12 m/s among four vehicles."""
    from scenarios.synthetic import AgentSpec, scene, straight_road

    agents = [
        AgentSpec("ego", x=0.0, y=3.5, speed=12.0),
        AgentSpec("lead", x=30.0, y=3.5, speed=10.0),
        AgentSpec("left", x=-10.0, y=7.0, speed=14.0),
        AgentSpec("right", x=15.0, y=0.0, speed=11.0, accel=0.3),
        AgentSpec("slow", x=70.0, y=0.0, speed=6.0),
    ]
    return scene(agents, road=straight_road(3, length=400.0), num_steps=91, scenario_id="builtin-highway")


class DriveTwinEnv(gymnasium.Env):
    """A scenario's twin as a Gymnasium env (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        scenario: Scenario | str | None = None,
        config: EnvConfig | Mapping[str, Any] | None = None,
        library: Any = None,
        render_mode: str | None = None,
        preset: Mapping[str, Any] | None = None,
    ) -> None:
        """Args:
            scenario: the scenario to replay by default (or its id in ``library``).
            config: an ``EnvConfig``, or a mapping of its fields applied over ``preset``.
            library: resolves ids: an object with ``.load(id)`` and ``.ids()``, or scenarios.
            render_mode: None or ``"rgb_array"`` (a bird's-eye picture).
            preset: config fields set by a registered id (an ``EnvConfig`` given as ``config`` wins).
        """
        if isinstance(config, EnvConfig):
            self.config = config
        else:
            merged = dict(preset or {})
            merged.update(config or {})
            self.config = EnvConfig.from_mapping(merged, "env config")
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.library = _as_library(library)
        self._default = scenario
        cfg = self.config
        self.dynamics = dynamics_registry.make(cfg.dynamics)
        self.physical = self.dynamics.steps_physics
        self.actions = make_handler(cfg)
        self.action_space = self.actions.space
        self.observation_space = observation_space(cfg)
        self.world = World(edge_walls=cfg.has(ObservationPart.LIDAR))
        self._plans: OrderedDict[Any, Plan] = OrderedDict()
        self._geometries: OrderedDict[str, RoadGeometry] = OrderedDict()
        self._digests: dict[int, tuple[Any, str]] = {}
        self._bevs: OrderedDict[tuple, BevRasteriser] = OrderedDict()
        self._lidar_dirs = lidar_directions(cfg.lidar_beams)
        self._route_offsets = cfg.route_spacing_m * np.arange(1, cfg.route_points + 1)
        ratio = cfg.route_spacing_m / ROUTE_SPACING_M
        self._route_stride = int(round(ratio)) if abs(ratio - round(ratio)) < 1e-9 else 0
        self._want_state = cfg.has(ObservationPart.STATE)
        self._want_lidar = cfg.has(ObservationPart.LIDAR)
        self._want_bev = cfg.has(ObservationPart.BEV)
        self._want_camera = cfg.has(ObservationPart.CAMERA)
        radius = SYNC_MARGIN_M
        if self._want_lidar:
            radius = max(radius, cfg.lidar_range_m)
        if self._want_camera:
            radius = max(radius, cfg.camera_far_m)
        self._sync_radius = radius
        self.plan: Plan | None = None
        self._loaded: Plan | None = None
        self._reactive: ReactiveAgents | None = None
        self._done = True
        self.k = 0

    # ------------------------------------------------------------ scenarios
    def _resolve(self, options: Mapping[str, Any] | None) -> Scenario:
        choice = (options or {}).get("scenario")
        if choice is None:
            choice = self._default
        if choice is None and self.library is not None:
            ids = list(self.library.ids())
            if not ids:
                raise ScenarioError("library", "ids", "the scenario library is empty")
            choice = ids[int(self.np_random.integers(len(ids)))]
        if choice is None:
            choice = self._builtin()
        if isinstance(choice, Scenario):
            return choice
        if isinstance(choice, str):
            if self.library is None:
                raise ScenarioError(choice, "scenario", "a scenario id was given but the env has no library to load it from")
            scenario = self.library.load(choice)
            if not isinstance(scenario, Scenario):
                raise ScenarioError(choice, "scenario", f"the library returned {type(scenario).__name__}, not a Scenario")
            return scenario
        raise ScenarioError(str(choice), "scenario", f"expected a Scenario or a scenario id, got {type(choice).__name__}")

    def _builtin(self) -> Scenario:
        if not hasattr(self, "_builtin_scenario"):
            self._builtin_scenario = default_scenario()
        return self._builtin_scenario

    def _plan_for(self, scenario: Scenario) -> Plan:
        key: Any = id(scenario)
        plan = self._plans.get(key)
        if plan is not None and plan.scenario is scenario:
            self._plans.move_to_end(key)
            return plan
        content = self._content_key(scenario)
        for k2, p2 in self._plans.items():
            if p2.extra.get("content") == content:
                self._plans.move_to_end(k2)
                return p2
        plan = self._build_plan(scenario)
        plan.extra["content"] = content
        self._plans[key] = plan
        while len(self._plans) > PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return plan

    def _digest(self, scenario: Scenario) -> str:
        cached = self._digests.get(id(scenario.road_map))
        if cached is not None and cached[0] is scenario.road_map:
            return cached[1]
        digest = map_digest(scenario.road_map)
        if len(self._digests) > 64:
            self._digests.clear()
        self._digests[id(scenario.road_map)] = (scenario.road_map, digest)
        return digest

    def _content_key(self, scenario: Scenario) -> str:
        tr = scenario.tracks
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((scenario.id, scenario.ego_index, scenario.conditions, self._digest(scenario))).encode())
        for a in (scenario.t_us, tr.x, tr.y, tr.yaw, tr.vx, tr.vy, tr.valid, tr.length, tr.width, tr.height, tr.agent_types):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update("|".join(tr.agent_ids.tolist()).encode())
        return h.hexdigest()

    def _geometry(self, scenario: Scenario) -> RoadGeometry:
        shoulder = self.config.road_shoulder_m
        if shoulder is None:
            shoulder = default_shoulder(scenario.road_map)
        key = f"{self._digest(scenario)}|{shoulder:g}"
        geom = self._geometries.get(key)
        if geom is None:
            geom = RoadGeometry(scenario.road_map, self._digest(scenario), shoulder)
            self._geometries[key] = geom
            while len(self._geometries) > GEOMETRY_CACHE_SIZE:
                self._geometries.popitem(last=False)
        self._geometries.move_to_end(key)
        return geom

    def _build_plan(self, scenario: Scenario) -> Plan:
        cfg = self.config
        src = scenario.source
        tr = scenario.tracks
        e = scenario.ego_index
        ego_steps = np.flatnonzero(tr.valid[e])
        if ego_steps.size == 0:
            raise ScenarioError(src, "ego", f"the ego {scenario.ego_id!r} is never valid")
        start = int(ego_steps[0])
        if cfg.sim_dt_s is None:
            dt_us = scenario.dt_us
        else:
            dt_us = int(round(cfg.sim_dt_s * 1e6))
        if dt_us <= 0 or int(scenario.t_us[-1]) - int(scenario.t_us[start]) < dt_us:
            raise ScenarioError(src, "ego", "the ego is not observed for at least one env step (no usable ego)")
        geometry = self._geometry(scenario)
        if geometry.surface.is_empty or geometry.surface.area < 1.0 or not len(geometry.indices):
            raise ScenarioError(src, "road_map", "no drivable surface: the map has no lanes or drivable-area polygons (no usable map)")
        origin = np.array([tr.x[e, start], tr.y[e, start]])
        log = resample(scenario, origin, dt_us, start)
        dt_s = dt_us / 1e6
        s_steps = log.num_steps
        # the logged ego at sim steps, gaps filled by interpolation
        ev = log.valid[e]
        if not ev.any():
            raise ScenarioError(src, "ego", "the ego is not valid at any env step (no usable ego)")
        ks = np.arange(s_steps)
        vs = np.flatnonzero(ev)
        ex = np.interp(ks, vs, log.x[e, vs])
        ey = np.interp(ks, vs, log.y[e, vs])
        eyaw = np.interp(ks, vs, np.unwrap(log.yaw[e, vs]))
        evx, evy = np.interp(ks, vs, log.vx[e, vs]), np.interp(ks, vs, log.vy[e, vs])
        espeed = np.hypot(evx, evy) * np.where(evx * np.cos(eyaw) + evy * np.sin(eyaw) < 0, -1.0, 1.0)
        ego_log = np.column_stack([ex, ey, eyaw, espeed])
        length, width, height = (float(v) for v in (tr.length[e], tr.width[e], tr.height[e]))
        defaults = VehicleParams()
        params = VehicleParams(
            length=length if length > 0.5 else defaults.length,
            width=width if width > 0.3 else defaults.width,
            height=height if height > 0.3 else defaults.height,
        )
        # the initial steering angle is the logged ego's (inverse bicycle kinematics), so a log that
        # starts in a curve does not start with the wheels straight
        steer0 = _logged_commands(ego_log, 1, dt_s, params)[0][1] if len(ego_log) > 1 else 0.0
        ego0 = EgoState(0.0, 0.0, float(log.yaw[e, 0]), float(espeed[0]), steer=steer0)
        offset = geometry.anchor - origin
        path = logged_path(ex[vs] - offset[0], ey[vs] - offset[1], float(eyaw[-1]))
        route_map = build_route(geometry, path, float(eyaw[vs[-1]]), ROUTE_EXTENSION_M, ROUTE_SPACING_M)
        route = Polyline(route_map.xy + offset, float(eyaw[0]))
        goal_s, _, _ = route.project(np.array([ex[vs[-1]], ey[vs[-1]]]))
        has_goal = path.length >= MIN_GOAL_PATH_M
        limits = [ln.speed_limit for ln in geometry.lanes if math.isfinite(ln.speed_limit)]
        near = geometry.nearest_lane(np.array([0.0, 0.0]) - offset, float(eyaw[0]), max_dist=6.0)
        speed_limit = float("nan")
        if near is not None and math.isfinite(geometry.lanes[near[0]].speed_limit):
            speed_limit = geometry.lanes[near[0]].speed_limit
        elif limits:
            speed_limit = float(np.median(limits))
        # agents mode: the scenario's conditions override the env config; "mixed" when only some react
        cond = scenario.conditions
        mode = cond.agents_mode or cfg.agents_mode.value
        n = tr.num_agents
        reactive = np.zeros(n, bool)
        if mode == AgentsMode.REACTIVE.value:
            reactive[:] = True
        reactive[np.isin(tr.agent_ids, list(cond.reactive_agents))] = True
        # staged manoeuvres (a mutation's braking lead or cut-in) replay whatever the mode says
        reactive[np.isin(tr.agent_ids, list(getattr(cond, "replay_agents", ())))] = False
        reactive[e] = False
        reactive &= log.valid.any(axis=1)
        others = np.ones(n, bool)
        others[e] = False
        if reactive.any() and not reactive[others & log.valid.any(axis=1)].all():
            agents_mode = "mixed"
        else:
            agents_mode = "reactive" if reactive.any() else "replay"
        sizes = np.column_stack([tr.length, tr.width, tr.height])
        latency = int(round(cond.ego_latency_s / dt_s))
        prefill = _logged_commands(ego_log, latency, dt_s, params)
        plan = Plan(
            scenario=scenario, origin=origin, start_step=start, dt_us=dt_us, dt_s=dt_s, log=log,
            geometry=geometry, offset=offset, route=route, goal_s=float(goal_s), has_goal=has_goal,
            speed_limit=speed_limit, ego_row=e, ego0=ego0, params=params, ego_log=ego_log, sizes=sizes,
            types=tr.agent_types.astype(np.int64), half_diag=0.5 * np.hypot(tr.length, tr.width),
            reactive_rows=np.flatnonzero(reactive), agents_mode=agents_mode, latency_steps=latency, prefill=prefill,
            stack=np.ascontiguousarray(np.stack([log.x, log.y, log.yaw, log.vx, log.vy]).transpose(2, 0, 1)),
            lw=np.stack([tr.length, tr.width]),
            others=np.ascontiguousarray(log.valid.T),
        )
        plan.others[:, e] = False
        plan.stack.flags.writeable = False
        plan.others.flags.writeable = False
        if self._want_bev:
            plan.bev = self._rasteriser(plan, cfg.bev_resolution_m, cfg.bev_size)
        return plan

    def _rasteriser(self, plan: Plan, res: float, size: tuple[int, int]) -> BevRasteriser:
        g = plan.geometry
        margin = 0.5 * math.hypot(*size) * res + 60.0
        xy = plan.ego_log[:, :2] - plan.offset
        lo = xy.min(axis=0) - margin
        hi = xy.max(axis=0) + margin
        if not g.surface.is_empty:
            bx0, by0, bx1, by1 = g.surface.bounds
            lo = np.maximum(lo, [bx0 - 10, by0 - 10])
            hi = np.minimum(hi, [bx1 + 10, by1 + 10])
            hi = np.maximum(hi, lo + res)
        region = (float(np.floor(lo[0])), float(np.floor(lo[1])), float(np.ceil(hi[0])), float(np.ceil(hi[1])))
        key = (g.key, region, res, size)
        bev = self._bevs.get(key)
        if bev is None:
            bev = BevRasteriser(g, region, res, size)
            self._bevs[key] = bev
            while len(self._bevs) > 8:
                self._bevs.popitem(last=False)
        return bev

    # --------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self._seed = seed
        scenario = self._resolve(options)
        plan = self._plan_for(scenario)
        cfg = self.config
        world = self.world
        friction = float(scenario.conditions.road_friction)
        if self.physical:  # a simulated ego is reproducible only in a freshly built world
            world.clear()
            self._loaded = None
        world.set_road(plan.geometry, plan.origin, friction, cfg.ground_friction)
        if plan is not self._loaded:
            world.set_agents(plan.sizes, plan.types, plan.ego_row)
            world.set_types(plan.types)
            self._loaded = plan
            self._reactive = (
                ReactiveAgents(plan.log, plan.reactive_rows, plan.sizes[:, 0], plan.sizes[:, 1], plan.dt_s)
                if plan.reactive_rows.size else None
            )
            ego_half = 0.5 * math.hypot(plan.params.length, plan.params.width)
            self._sync_reach2 = (self._sync_radius + plan.half_diag + ego_half) ** 2
            self._contact_reach2 = (plan.half_diag + ego_half + 0.5) ** 2
        self.plan = plan
        body = self.dynamics.reset(world.recorder, plan.ego0, plan.params, friction)
        world.set_ego(body, self.physical, plan.params.mass)
        self.ego = self.dynamics.state
        self.k = 0
        self._fifo = deque(plan.prefill)
        n, s_total = plan.log.valid.shape
        limit = s_total if cfg.max_steps is None else min(s_total, cfg.max_steps + 1)
        self._last_step = limit - 1
        self._truncate_reason = "log_end" if limit == s_total else "truncated"
        if self._reactive is not None:
            self._reactive.reset(0)
        self._agents_at(0)
        self._s, self._lat, self._route_hint = plan.route.project(np.array([self.ego.x, self.ego.y]))
        self._s0 = self._s
        self._ctx = EgoContext(
            self.ego, plan.params, plan.dt_s, plan.route, plan.geometry, plan.offset, plan.speed_limit,
            self._state, self._present, plan.lw,
        )
        self.actions.reset(self._ctx)
        # the episode record (local frame), index 0 = after reset
        self._rec = np.zeros((s_total, 5, n))
        self._rec_impulse = np.zeros((s_total, n))
        self._rec_valid = np.zeros((s_total, n), bool)
        self._rec_contact = np.zeros((s_total, n), bool)
        self._rec_cmd = np.zeros((s_total, 2))
        self._rec_offroad = np.zeros(s_total, bool)
        self._termination = ""
        contacts = self._sync_and_contacts((self.ego.vx, self.ego.vy))
        corners_off = self._corners_off()
        offroad = corners_off >= cfg.offroad_min_corners
        self._record(0, contacts, offroad, (0.0, 0.0))
        # what the log itself starts with is not the policy's doing (see ``_new_collisions``)
        self._touching = {c.row for c in contacts}
        self._prev_present = self._present.copy()
        self._was_on_road = not offroad
        self._done = False
        self._publish()
        obs = self._observe()
        info = self._info(contacts, offroad, corners_off, (0.0, 0.0), {}, "")
        return obs, info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("the episode is over: call reset() before step()")
        plan, cfg = self.plan, self.config
        assert plan is not None
        self._ctx.state = self.ego
        self._ctx.agents, self._ctx.present = self._state, self._present
        cmd = self.actions.command(action, self._ctx)
        self._fifo.append(cmd)
        accel, steer = self._fifo.popleft()
        k = self.k
        if self._reactive is not None:
            self._reactive.step(k, self._leader_bodies())
        prev = self.ego
        self.ego = self.dynamics.step(accel, steer, plan.dt_s)
        k += 1
        self.k = k
        self._agents_at(k)
        ego = self.ego
        contacts = self._sync_and_contacts((prev.vx, prev.vy))
        corners_off = self._corners_off()
        offroad = corners_off >= cfg.offroad_min_corners
        executed = (float(accel), float(steer))
        self._record(k, contacts, offroad, executed)
        # progress along the route
        ahead = int(abs(ego.speed) * plan.dt_s / ROUTE_SPACING_M) + 2
        s, lat, self._route_hint = plan.route.track(ego.x, ego.y, self._route_hint, ahead)
        progress = s - self._s
        self._s, self._lat = s, lat
        goal = plan.has_goal and s >= plan.goal_s - cfg.goal_tolerance_m
        collision = self._new_collisions(contacts)
        left_road = offroad and self._was_on_road
        self._was_on_road = self._was_on_road or not offroad
        a_lat = ego.speed * ego.yaw_rate
        w = cfg.reward
        terms = {
            "progress": w.progress * progress,
            "collision": w.collision * collision,
            "offroad": w.offroad * offroad,
            "comfort": w.comfort * (ego.accel * ego.accel + a_lat * a_lat),
            "goal": w.goal * goal,
        }
        reward = float(sum(terms.values()))
        reason = ""
        if collision and cfg.terminate_on_collision:
            reason = "collision"
        elif left_road and cfg.terminate_on_offroad:
            reason = "offroad"
        elif goal and cfg.terminate_on_goal:
            reason = "goal"
        terminated = bool(reason)
        truncated = k >= self._last_step
        if truncated and not reason:
            reason = self._truncate_reason
        self._termination = reason
        self._done = terminated or truncated
        self._publish()
        obs = self._observe()
        info = self._info(contacts, offroad, corners_off, executed, terms, reason)
        return obs, reward, terminated, truncated, info

    # ------------------------------------------------------------ internals
    def _new_collisions(self, contacts: list) -> bool:
        """Whether a collision *begins* this step: a contact with an agent that was not touching the
        ego at the previous step and that was already present then.

        An agent that appears inside the ego's box (a track born there: label noise) or that
        touches it from the episode's start is no collision until it has separated once; the same
        rule as the evaluators' ``initial_overlaps``. Every contact is still recorded.
        """
        rows = {c.row for c in contacts}
        new = any(row not in self._touching and self._prev_present[row] for row in rows)
        self._touching = rows
        self._prev_present = self._present.copy()
        return new

    def _agents_at(self, k: int) -> None:
        """Set the other road users' state at step ``k`` (local frame): the log, then reactive rows."""
        plan = self.plan
        state = plan.stack[k]
        present = plan.others[k]
        r = self._reactive
        if r is not None:
            state = state.copy()
            present = present.copy()
            rows = r.rows
            alive = r.alive
            state[:, rows] = np.stack(r.state()) * alive
            present[rows] = alive
            state.flags.writeable = False
            present.flags.writeable = False
        self._state = state
        self._present = present

    def _sync_and_contacts(self, ego_vel: tuple[float, float]) -> list:
        """Move the agent boxes near the ego in the engine and ask it for the ego's contacts.

        ``ego_vel``: the ego's velocity at the start of the step (for the impact) [m/s].
        """
        ego, state = self.ego, self._state
        dx = state[0] - ego.x
        dy = state[1] - ego.y
        d2 = dx * dx + dy * dy
        present = self._present
        self.world.sync(state, present & (d2 < self._sync_reach2))
        candidates = np.flatnonzero(present & (d2 < self._contact_reach2))
        return self.world.contacts(candidates, ego_vel, state)

    def _corners_off(self) -> int:
        ego, p = self.ego, self.plan.params
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        fx, fy = 0.5 * p.length * c, 0.5 * p.length * s
        lx, ly = -0.5 * p.width * s, 0.5 * p.width * c
        x, y = ego.x, ego.y
        on = self.world.ground_under([
            (x + fx + lx, y + fy + ly), (x + fx - lx, y + fy - ly), (x - fx - lx, y - fy - ly), (x - fx + lx, y - fy + ly),
        ])
        self._corner_on_road = on
        return 4 - sum(on)

    def _leader_bodies(self) -> dict[str, np.ndarray]:
        plan, ego, state = self.plan, self.ego, self._state
        rows = np.flatnonzero(self._present)
        sub = state[:, rows]
        return {
            "x": np.append(sub[0], ego.x),
            "y": np.append(sub[1], ego.y),
            "yaw": np.append(sub[2], ego.yaw),
            "vx": np.append(sub[3], ego.vx),
            "vy": np.append(sub[4], ego.vy),
            "length": np.append(plan.sizes[rows, 0], plan.params.length),
            "width": np.append(plan.sizes[rows, 1], plan.params.width),
            "row": np.append(rows, plan.ego_row),
        }

    def _record(self, k: int, contacts: list, offroad: bool, cmd: tuple[float, float]) -> None:
        e, ego = self.plan.ego_row, self.ego
        row = self._rec[k]
        np.multiply(self._state, self._present, out=row)
        row[:, e] = (ego.x, ego.y, ego.yaw, ego.vx, ego.vy)
        valid = self._rec_valid[k]
        valid[:] = self._present
        valid[e] = True
        for c in contacts:
            self._rec_contact[k, c.row] = True
            self._rec_impulse[k, c.row] = c.impulse
        self._rec_cmd[k] = cmd
        self._rec_offroad[k] = offroad

    def _perceived(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The other road users as the ego perceives them (noise, dropout), in the ego frame.

        Returns (features (8, M): x, y, vx, vy, cos yaw, sin yaw, length, width; relative yaw (M,);
        types (M,)), positions and velocities relative to the ego's.
        """
        plan, ego = self.plan, self.ego
        cond = plan.scenario.conditions
        rows = np.flatnonzero(self._present)
        rng = self.np_random
        if cond.detection_dropout > 0 and rows.size:
            rows = rows[rng.random(rows.size) >= cond.detection_dropout]
        sub = self._state[:, rows]
        xy = sub[0:2] - ((ego.x,), (ego.y,))
        yaw = sub[2] - ego.yaw
        if cond.position_noise_m > 0 and rows.size:
            xy += rng.normal(0.0, cond.position_noise_m, (2, rows.size))
        if cond.heading_noise_rad > 0 and rows.size:
            yaw += rng.normal(0.0, cond.heading_noise_rad, rows.size)
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        rot = np.array(((c, s), (-s, c)))
        feat = np.empty((8, rows.size))
        feat[0:2] = rot @ xy
        feat[2:4] = rot @ (sub[3:5] - ((ego.vx,), (ego.vy,)))
        feat[4] = np.cos(yaw)
        feat[5] = np.sin(yaw)
        feat[6:8] = plan.lw[:, rows]
        return feat, yaw, plan.types[rows]

    def _route_ahead(self) -> np.ndarray:
        """(N, 2) route points ahead of the ego's projection, in the ego frame."""
        ego, route = self.ego, self.plan.route
        i0 = self._route_hint
        stride = self._route_stride
        last = i0 + stride * len(self._route_offsets) + 1
        if stride and 0 <= self._s - route.s[i0] <= ROUTE_SPACING_M and last < len(route.s):
            # the points ahead are whole route spacings apart: one interpolation weight for all
            t = (self._s - route.s[i0]) / ROUTE_SPACING_M
            a = route.xy[i0 + stride : last : stride]
            b = route.xy[i0 + stride + 1 : last + 1 : stride]
            pts = a + t * (b - a)
        else:
            pts = route.interpolate(self._s + self._route_offsets)
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        return (pts - (ego.x, ego.y)) @ np.array(((c, -s), (s, c)))

    def _observe(self) -> dict[str, np.ndarray]:
        cfg, ego, plan = self.config, self.ego, self.plan
        obs: dict[str, np.ndarray] = {}
        rel = self._perceived() if (self._want_state or self._want_bev) else None
        if self._want_state:
            heading_err = (plan.route.heading_at_segment(self._route_hint) - ego.yaw + math.pi) % (2 * math.pi) - math.pi
            ego_vec = (ego.speed, ego.accel, ego.steer, ego.yaw_rate, plan.params.length, plan.params.width,
                       self._lat, heading_err)
            obs["state"] = state_vector(cfg, ego_vec, rel[0], rel[2], self._route_ahead())
        if self._want_lidar:
            c, s = math.cos(ego.yaw), math.sin(ego.yaw)
            d = self._lidar_dirs
            dirs = np.column_stack([d[:, 0] * c - d[:, 1] * s, d[:, 0] * s + d[:, 1] * c])
            frac = self.world.lidar(np.array([ego.x, ego.y]), dirs, cfg.lidar_height_m, cfg.lidar_range_m, cfg.lidar_threads)
            obs["lidar"] = frac.astype(np.float32)
        if self._want_bev:
            obs["bev"] = self._bev(plan.bev, rel)
        if self._want_camera:
            p = plan.params
            c, s = math.cos(ego.yaw), math.sin(ego.yaw)
            # at the windscreen's top, just ahead of the body, looking 20 m ahead and slightly down
            ahead = 0.5 * p.length + 0.2
            eye = np.array([ego.x + c * ahead, ego.y + s * ahead, max(1.2, 0.9 * p.height)])
            target = eye + np.array([c * 20.0, s * 20.0, -1.5])
            rgb, depth, seg = self.world.camera(eye, target, cfg.camera_size, cfg.camera_fov_deg, cfg.camera_far_m)
            obs["camera_rgb"], obs["camera_depth"], obs["camera_seg"] = rgb, depth, seg
        return obs

    def _bev(self, bev: BevRasteriser, rel: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        ego, plan = self.ego, self.plan
        h, w = bev.size
        out = np.empty((h, w, 4), np.uint8)
        out[:, :, :2] = bev.static_layers(ego.x - plan.offset[0], ego.y - plan.offset[1], ego.yaw)
        hx, hy = bev._half_hw
        feat, yaw, _ = rel
        reach = 0.5 * (feat[6] + feat[7])
        sel = (np.abs(feat[0]) < hx + reach) & (np.abs(feat[1]) < hy + reach)
        out[:, :, 2] = bev.boxes(feat[0, sel], feat[1, sel], yaw[sel], feat[6, sel], feat[7, sel])
        out[:, :, 3] = bev.polyline(self._route_local(bev.half_extent, 0.4 * bev.res), dense=True)
        return out

    def _route_local(self, length: float, step: float = 1.0) -> np.ndarray:
        """Route points from the ego's projection on for ``length`` [m], every ``step`` [m], ego frame."""
        ego, route = self.ego, self.plan.route
        s = self._s + np.arange(0.0, length, step)
        pts = route.interpolate(s)
        c, sn = math.cos(ego.yaw), math.sin(ego.yaw)
        dx, dy = pts[:, 0] - ego.x, pts[:, 1] - ego.y
        return np.column_stack([dx * c + dy * sn, -dx * sn + dy * c])

    def _info(self, contacts: list, offroad: bool, corners_off: int, cmd: tuple[float, float], terms: dict, reason: str) -> dict[str, Any]:
        plan, ego = self.plan, self.ego
        ids = plan.scenario.tracks.agent_ids
        completion = (self._s - self._s0) / max(plan.goal_s - self._s0, 1e-6) if plan.has_goal else 0.0
        return {
            "t_us": int(plan.log.t_us[self.k]),
            "step": self.k,
            "scenario_id": plan.scenario.id,
            "ego": {
                "x": ego.x + plan.origin[0], "y": ego.y + plan.origin[1], "yaw": ego.yaw, "speed": ego.speed,
                "accel": ego.accel, "steer": ego.steer, "yaw_rate": ego.yaw_rate,
            },
            "contacts": [{"agent_id": str(ids[c.row]), "impulse": c.impulse, "penetration": c.penetration} for c in contacts]
            if contacts else [],
            "collision": bool(contacts),
            "offroad": bool(offroad),
            "offroad_corners": corners_off,
            "progress_m": self._s - self._s0,
            "route_completion": float(completion),
            "command": cmd,
            "reward_terms": terms,
            "termination": reason,
            "agents_mode": plan.agents_mode,
        }

    # ------------------------------------------------------------- outputs
    def render(self) -> np.ndarray | None:
        """A bird's-eye picture (H, W, 3) uint8 of the scene around the ego (``render_mode="rgb_array"``)."""
        if self.render_mode != "rgb_array":
            return None
        plan, cfg, ego = self.plan, self.config, self.ego
        if plan is None:
            h, w = cfg.render_size
            return np.zeros((h, w, 3), np.uint8)
        if plan.render_bev is None:
            plan.render_bev = self._rasteriser(plan, cfg.render_resolution_m, cfg.render_size)
        bev = plan.render_bev
        h, w = bev.size
        static = bev.static_layers(ego.x - plan.offset[0], ego.y - plan.offset[1], ego.yaw)
        img = np.empty((h, w, 3), np.uint8)
        img[:] = (46, 74, 40)
        img[static[:, :, 0] > 0] = (92, 92, 98)
        img[static[:, :, 1] > 0] = (235, 235, 235)
        img[bev.polyline(self._route_local(bev.half_extent, 0.4 * bev.res), dense=True) > 0] = (70, 140, 235)
        rows = np.flatnonzero(self._present)
        sub = self._state[:, rows]
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        dx, dy = sub[0] - ego.x, sub[1] - ego.y
        labels = np.append(plan.types[rows] + 1, 0)
        xs = np.append(dx * c + dy * s, 0.0)
        ys = np.append(-dx * s + dy * c, 0.0)
        yaws = np.append(sub[2] - ego.yaw, 0.0)
        lengths = np.append(plan.sizes[rows, 0], plan.params.length)
        widths = np.append(plan.sizes[rows, 1], plan.params.width)
        label_img = bev.boxes(xs, ys, yaws, lengths, widths, labels=labels + 1)
        colours = {1: (220, 40, 40), 2 + AgentType.VEHICLE: (40, 90, 220), 2 + AgentType.PEDESTRIAN: (240, 190, 30),
                   2 + AgentType.CYCLIST: (30, 190, 90), 2 + AgentType.OTHER: (160, 160, 160)}
        for label, colour in colours.items():
            img[label_img == label] = colour
        return img

    def rollout_record(self, policy: str = "") -> Rollout:
        """The episode so far as a ``Rollout`` (scenario frame, every agent, the ego in its row)."""
        plan = self.plan
        if plan is None:
            raise RuntimeError("no episode: call reset() first")
        n = self.k + 1
        ox, oy = plan.origin
        valid = self._rec_valid[:n].T.copy()
        rec = self._rec[:n]
        x = np.where(valid, rec[:, 0].T + ox, 0.0)
        y = np.where(valid, rec[:, 1].T + oy, 0.0)
        tr = plan.scenario.tracks
        ego_p = plan.params
        length, width = tr.length.copy(), tr.width.copy()
        length[plan.ego_row], width[plan.ego_row] = ego_p.length, ego_p.width
        return Rollout(
            scenario_id=plan.scenario.id,
            ego_index=plan.ego_row,
            t_us=plan.log.t_us[:n].copy(),
            agent_ids=tr.agent_ids.copy(),
            length=length,
            width=width,
            x=x,
            y=y,
            yaw=rec[:, 2].T.copy(),
            vx=rec[:, 3].T.copy(),
            vy=rec[:, 4].T.copy(),
            valid=valid,
            accel_cmd=self._rec_cmd[:n, 0].copy(),
            steer_cmd=self._rec_cmd[:n, 1].copy(),
            contact=self._rec_contact[:n].T.copy(),
            contact_impulse=self._rec_impulse[:n].T.copy(),
            offroad=self._rec_offroad[:n].copy(),
            dynamics=self.config.dynamics,
            agents_mode=plan.agents_mode,
            policy=policy,
            termination=self._termination,
        )

    def policy_context(self) -> PolicyContext:
        """What a policy's ``reset`` gets: the scenario, the env's settings, the seed and a privileged view."""
        plan = self.plan
        if plan is None:
            raise RuntimeError("no episode: call reset() first")
        return PolicyContext(
            scenario=plan.scenario,
            scenario_id=plan.scenario.id,
            ego_id=plan.scenario.ego_id,
            dt_s=plan.dt_s,
            config=self.config,
            action_type=self.config.action,
            action_space=self.action_space,
            observation_space=self.observation_space,
            vehicle=plan.params,
            speed_limit=plan.speed_limit,
            view=PrivilegedView(plan, self._published),
            seed=self._seed,
        )

    #: The former name of ``policy_context`` (the same object).
    scenario_info = policy_context

    @property
    def twin_state(self) -> TwinState:
        """The state published after the last reset or step (read-only)."""
        return self._twin

    def _published(self) -> TwinState:
        return self._twin

    def _publish(self) -> None:
        self._twin = TwinState(self.k, self.ego, self._state, self._present, self._s, self._lat)

    @property
    def scenario(self) -> Scenario | None:
        """The current episode's scenario."""
        return self.plan.scenario if self.plan else None

    def close(self) -> None:
        self.world.close()
        super().close()

    def __del__(self) -> None:
        try:
            self.world.close()
        except Exception:
            pass


def _logged_commands(ego_log: np.ndarray, count: int, dt: float, params: VehicleParams) -> list[tuple[float, float]]:
    """The logged ego's first ``count`` (accel, steer) commands, by inverse bicycle kinematics."""
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


def _as_library(library: Any) -> Any:
    if library is None:
        return None
    if hasattr(library, "load") and hasattr(library, "ids"):
        return library
    if isinstance(library, Sequence) and all(isinstance(s, Scenario) for s in library):
        return _ListLibrary(library)
    raise ConfigError("library must have .load(id) and .ids(), or be a list of Scenarios")


class _ListLibrary:
    """A list of scenarios behind the library interface."""

    def __init__(self, scenarios: Sequence[Scenario]) -> None:
        self._by_id = {s.id: s for s in scenarios}

    def ids(self) -> list[str]:
        return list(self._by_id)

    def load(self, scenario_id: str) -> Scenario:
        try:
            return self._by_id[scenario_id]
        except KeyError:
            raise ScenarioError(scenario_id, "scenario", f"not in the library (known: {sorted(self._by_id)[:5]}...)") from None
