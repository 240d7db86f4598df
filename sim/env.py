"""The Gymnasium environment: a scenario's pybullet twin, the ego driven by the policy's actions.

``DriveTwinEnv(scenario=..., config=..., library=...)``; ``reset(seed=, options={"scenario": s})``
picks a ``Scenario`` (or an id resolved through ``library``: any object with ``.load(id)`` and
``.ids()``, or a list of scenarios). Without one it replays the env's own scenario, else one of
the library's drawn with ``self.np_random``, else a built-in synthetic highway scene.

The env composes: the scenario's ``Plan`` (``sim.plan``, compiled once per scenario and cached),
the ``World`` (``sim.world``, one pybullet client for the env's life), the ego's dynamics model,
the action handler, the reactive agents, the ``Sensors`` (``sim.sensors``) and the
``EpisodeRecorder`` (``sim.recorder``). After every reset and step it publishes a ``TwinState``
(``twin_state``), which is all the sensors and a policy's ``PrivilegedView`` read.

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
   substep for a model that steps the physics (``EgoDynamics.steps_physics``); off-road from
   rays cast down at the ego's four corners;
5. reward, termination (collision, off-road where the logged ego stayed on the road, goal) and
   truncation (the end of the ego's log, ``max_steps``).

Reuse: the client lives as long as the env. With a kinematic ego the road and the agent boxes
are kept across resets (rebuilt only for another map or other box sizes), since the engine is
only queried and its history cannot change a result. A model that steps the physics
(``bullet``) leaves solver state behind; its world is rebuilt at every reset
(``resetSimulation``) so that a rollout is the same whatever ran before it.

``render_mode``: None or ``"rgb_array"`` (a bird's-eye picture, ``render()``); ``"human"`` is
refused (it would need a display; show the ``rgb_array`` frames instead).

``info``: ``t_us``, ``step``, ``scenario_id``, ``ego`` (x, y, yaw, speed, accel, steer, yaw_rate in
the scenario frame), ``contacts`` (list of ``{"agent_id", "impulse", "penetration"}``),
``collision``, ``offroad``, ``offroad_corners``, ``progress_m``, ``route_completion``,
``command`` (executed accel, steer), ``reward_terms``, ``termination`` and ``agents_mode``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import gymnasium
import numpy as np

from scenarios.model import Scenario
from scenarios.rollout import Rollout
from sim import dynamics as dynamics_registry
from sim.actions import EgoContext, make_handler
from sim.agents import ReactiveAgents
from sim.config import ConfigError, EnvConfig, ObservationPart, RewardWeights
from sim.context import PolicyContext, PrivilegedView, TwinState
from sim.dynamics.base import EgoState
from sim.observations import observation_space
from sim.plan import ROUTE_SPACING_M, Plan, PlanCache
from sim.recorder import EpisodeRecorder
from sim.sensors import Sensors
from sim.sources import ScenarioSource, as_library, default_scenario
from sim.world import Contact, World

__all__ = ["DriveTwinEnv", "default_scenario", "reward_terms"]

#: The render modes ``render()`` supports.
RENDER_MODES = ("rgb_array",)


class DriveTwinEnv(gymnasium.Env):
    """A scenario's twin as a Gymnasium env (see the module docstring)."""

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 10}

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
        if render_mode == "human":
            raise ConfigError("DriveTwinEnv", "render_mode", "'human' is not supported (it needs a display): use "
                              "'rgb_array' and show the frames render() returns")
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ConfigError("DriveTwinEnv", "render_mode", f"must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.library = as_library(library)
        self._source = ScenarioSource(scenario, self.library)
        cfg = self.config
        self.dynamics = dynamics_registry.make(cfg.dynamics)
        self.physical = self.dynamics.steps_physics
        self.actions = make_handler(cfg)
        self.action_space = self.actions.space
        self.observation_space = observation_space(cfg)
        self.world = World(edge_walls=cfg.has(ObservationPart.LIDAR))
        self.sensors = Sensors(cfg, self.world)
        self.plans = PlanCache(cfg)
        self.spec = _direct_spec(scenario, config, self.library, preset)
        self.plan: Plan | None = None
        self.ego: EgoState | None = None
        self.k = 0
        self._loaded: Plan | None = None  # the plan whose bodies the engine's world holds
        self._agents_of: Plan | None = None  # the plan of the reactive agents (kept when the world is rebuilt)
        self._reactive: ReactiveAgents | None = None
        self._recorder: EpisodeRecorder | None = None
        self._twin: TwinState | None = None
        self._seed: int | None = None
        self._context: PolicyContext | None = None
        self._done = True

    @property
    def spec(self) -> gymnasium.envs.registration.EnvSpec | None:
        """The env's spec (set by ``gymnasium.make``, or describing a direct construction)."""
        return self._spec

    @spec.setter
    def spec(self, value: gymnasium.envs.registration.EnvSpec | None) -> None:
        # a library in the spec's arguments is shared by copies of the spec, not copied
        if value is not None and value.kwargs.get("library") is not None:
            value = dataclasses.replace(value, kwargs={**value.kwargs, "library": as_library(value.kwargs["library"])})
        self._spec = value

    # --------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self._seed = seed
        self._context = None
        scenario = self._source.resolve(options, self.np_random)
        plan = self.plans.plan(scenario)
        cfg, world = self.config, self.world
        friction = float(scenario.conditions.road_friction)
        if self.physical:  # a model that steps the physics is reproducible only in a freshly built world
            world.clear()
            self._loaded = None
        world.set_road(plan.geometry, plan.origin, friction, cfg.ground_friction)
        if plan is not self._loaded:
            world.set_agents(plan.sizes, plan.types, plan.ego_row)
            world.set_types(plan.types)
            self._loaded = plan
        if plan is not self._agents_of:  # built once per plan, also where the world is rebuilt at every reset
            self._agents_of = plan
            self._reactive = ReactiveAgents.from_plan(plan) if plan.reactive_rows.size else None
            self._log_off: np.ndarray | None = None  # where the logged ego left the road (``_log_off_road_near``)
            ego_half = 0.5 * math.hypot(plan.params.length, plan.params.width)
            self._sync_reach2 = (self.sensors.sync_radius + plan.half_diag + ego_half) ** 2
            self._contact_reach2 = (plan.half_diag + ego_half + 0.5) ** 2
        self.plan = plan
        self.sensors.reset(plan)
        body = self.dynamics.reset(world.recorder, plan.ego0, plan.params, friction)
        world.set_ego(body, self.physical, plan.params.mass)
        self.ego = self.dynamics.state
        self.k = 0
        self._fifo = deque(plan.prefill)
        s_total = plan.ego_end  # a vehicle ego whose track ends before the log does ends there
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
        self._recorder = EpisodeRecorder(plan)
        self._termination = ""
        contacts = self._sync_and_contacts((self.ego.vx, self.ego.vy))
        corners_off = self._corners_off()
        offroad = corners_off >= cfg.offroad_min_corners
        self._recorder.record(0, self.ego, self._state, self._present, contacts, offroad, (0.0, 0.0))
        # what the log itself starts with is not the policy's doing (see ``_new_collisions``)
        self._touching = {c.row for c in contacts}
        self._prev_present = self._present.copy()
        self._was_on_road = not offroad
        self._done = False
        self._publish()
        obs = self.sensors.observe(self._twin, self.np_random)
        return obs, self._info(contacts, offroad, corners_off, (0.0, 0.0), {}, "")

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
        self.ego = ego = self.dynamics.step(accel, steer, plan.dt_s)
        self.k = k = k + 1
        self._agents_at(k)
        contacts = self._sync_and_contacts((prev.vx, prev.vy))
        corners_off = self._corners_off()
        offroad = corners_off >= cfg.offroad_min_corners
        executed = (float(accel), float(steer))
        self._recorder.record(k, ego, self._state, self._present, contacts, offroad, executed)
        # progress along the route
        ahead = int(abs(ego.speed) * plan.dt_s / ROUTE_SPACING_M) + 2
        s, lat, self._route_hint = plan.route.track(ego.x, ego.y, self._route_hint, ahead)
        progress = s - self._s
        self._s, self._lat = s, lat
        goal = plan.has_goal and s >= plan.goal_s - cfg.goal_tolerance_m
        collision = self._new_collisions(contacts)
        left_road = offroad and self._was_on_road and not self._log_off_road_near(ego.x, ego.y)
        self._was_on_road = self._was_on_road or not offroad
        terms = reward_terms(cfg.reward, progress, collision, offroad, goal, ego)
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
        obs = self.sensors.observe(self._twin, self.np_random)
        return obs, reward, terminated, truncated, self._info(contacts, offroad, corners_off, executed, terms, reason)

    def render(self) -> np.ndarray | None:
        """A bird's-eye picture (H, W, 3) uint8 of the scene around the ego (``render_mode="rgb_array"``)."""
        if self.render_mode != "rgb_array":
            return None
        if self._twin is None:
            h, w = self.config.render_size
            return np.zeros((h, w, 3), np.uint8)
        return self.sensors.render(self._twin)

    # ------------------------------------------------------------ what others read
    @property
    def twin_state(self) -> TwinState | None:
        """The state published after the last reset or step (read-only), None before the first reset."""
        return self._twin

    @property
    def scenario(self) -> Scenario | None:
        """The current episode's scenario."""
        return self.plan.scenario if self.plan else None

    def policy_context(self) -> PolicyContext:
        """What a policy's ``reset`` gets: the scenario, the env's settings, the seed and a privileged
        view; one object per episode (``scenario_info()`` returns the same)."""
        plan = self.plan
        if plan is None:
            raise RuntimeError("no episode: call reset() first")
        if self._context is None:
            self._context = self._make_context(plan)
        return self._context

    def _make_context(self, plan: Plan) -> PolicyContext:
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

    def rollout_record(self, policy: str = "") -> Rollout:
        """The episode so far as a ``Rollout`` (scenario frame, every agent, the ego in its row)."""
        if self._recorder is None:
            raise RuntimeError("no episode: call reset() first")
        return self._recorder.rollout(self.config.dynamics, policy, self._termination)

    def close(self) -> None:
        self.world.close()
        super().close()

    def __del__(self) -> None:
        try:
            self.world.close()
        except Exception:
            pass

    # ------------------------------------------------------------ internals
    def _published(self) -> TwinState:
        return self._twin

    def _publish(self) -> None:
        self._twin = TwinState(self.k, self.ego, self._state, self._present, self._s, self._lat, self._route_hint)

    def _agents_at(self, k: int) -> None:
        """Set the other road users' state at step ``k`` (local frame, read-only): the log, then reactive rows."""
        plan = self.plan
        state = plan.stack[k]
        present = plan.others[k]
        r = self._reactive
        if r is not None:
            state = state.copy()
            present = present.copy()
            state[:, r.rows] = r.state()
            present[r.rows] = r.alive
            state.flags.writeable = False
            present.flags.writeable = False
        self._state = state
        self._present = present

    def _new_collisions(self, contacts: list[Contact]) -> bool:
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

    def _sync_and_contacts(self, ego_vel: tuple[float, float]) -> list[Contact]:
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

    def _log_off_road_near(self, x: float, y: float) -> bool:
        """Whether the logged ego itself had a corner off the road within one ego length of
        (x, y) (local frame) [m]: leaving the road where the log did (a corner cut in a turn, a
        parking lot the map does not cover) ends no episode; the evaluators judge it against the
        log. The log's corners are ray-cast once per plan, the first time an episode leaves the road."""
        plan = self.plan
        if self._log_off is None:
            log = plan.ego_log[: plan.ego_end]
            p = plan.params
            c, s = np.cos(log[:, 2]), np.sin(log[:, 2])
            fx, fy, lx, ly = 0.5 * p.length * c, 0.5 * p.length * s, -0.5 * p.width * s, 0.5 * p.width * c
            corners = np.stack([
                np.column_stack([log[:, 0] + sx * fx + sl * lx, log[:, 1] + sx * fy + sl * ly])
                for sx, sl in ((1, 1), (1, -1), (-1, -1), (-1, 1))
            ], axis=1)  # (S, 4, 2)
            on = np.concatenate([
                self.world.ground_under([tuple(q) for q in chunk])
                for chunk in np.array_split(corners.reshape(-1, 2), len(corners) * 4 // 4096 + 1)
            ]).reshape(-1, 4)
            off = (4 - on.sum(axis=1)) >= self.config.offroad_min_corners
            self._log_off = log[off, :2]
        if not len(self._log_off):
            return False
        d2 = (self._log_off[:, 0] - x) ** 2 + (self._log_off[:, 1] - y) ** 2
        return bool(d2.min() <= plan.params.length ** 2)

    def _corners_off(self) -> int:
        """How many of the ego's four corners are off the road (rays cast down)."""
        ego, p = self.ego, self.plan.params
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        fx, fy = 0.5 * p.length * c, 0.5 * p.length * s
        lx, ly = -0.5 * p.width * s, 0.5 * p.width * c
        x, y = ego.x, ego.y
        on = self.world.ground_under([
            (x + fx + lx, y + fy + ly), (x + fx - lx, y + fy - ly), (x - fx - lx, y - fy - ly), (x - fx + lx, y - fy + ly),
        ])
        return 4 - sum(on)

    def _leader_bodies(self) -> dict[str, np.ndarray]:
        """Everything a reactive agent can follow: the present agents and the ego."""
        plan, ego, state = self.plan, self.ego, self._state
        rows = np.flatnonzero(self._present)
        n = len(rows)
        b = np.empty((7, n + 1))
        b[:5, :n] = state[:, rows]
        b[:5, n] = ego.x, ego.y, ego.yaw, ego.vx, ego.vy
        b[5:, :n] = plan.sizes[rows, :2].T
        b[5:, n] = plan.params.length, plan.params.width
        return {
            "x": b[0], "y": b[1], "yaw": b[2], "vx": b[3], "vy": b[4], "length": b[5], "width": b[6],
            "row": np.append(rows, plan.ego_row),
        }

    def _info(self, contacts: list[Contact], offroad: bool, corners_off: int, cmd: tuple[float, float], terms: dict,
              reason: str) -> dict[str, Any]:
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


def reward_terms(weights: RewardWeights, progress: float, collision: bool, offroad: bool, goal: bool, ego: EgoState) -> dict[str, float]:
    """The step's weighted reward terms: progress [m], a new collision, off-road, comfort (squared
    longitudinal plus lateral acceleration of ``ego``), reaching the goal."""
    a_lat = ego.speed * ego.yaw_rate
    return {
        "progress": weights.progress * progress,
        "collision": weights.collision * collision,
        "offroad": weights.offroad * offroad,
        "comfort": weights.comfort * (ego.accel * ego.accel + a_lat * a_lat),
        "goal": weights.goal * goal,
    }


def _direct_spec(scenario: Any, config: Any, library: Any, preset: Mapping[str, Any] | None) -> gymnasium.envs.registration.EnvSpec:
    """The spec of an env built directly: the registered id whose preset the arguments match, and
    the arguments (``gymnasium.make`` replaces it with its own)."""
    from sim import ENV_IDS

    env_id = next((i for i, p in ENV_IDS.items() if dict(p) == dict(preset or {})), "drivetwin/Replay-v0")
    kwargs: dict[str, Any] = {"preset": dict(preset or {})}
    if scenario is not None:
        kwargs["scenario"] = scenario
    if config is not None:
        kwargs["config"] = config
    if library is not None:
        kwargs["library"] = library
    return gymnasium.envs.registration.EnvSpec(id=env_id, entry_point="sim.env:DriveTwinEnv", kwargs=kwargs)
