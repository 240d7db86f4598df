"""Every vehicle controllable: a PettingZoo ``ParallelEnv`` over one scenario.

``MultiAgentTwinEnv(scenario, config, controlled="vehicles")`` drives a chosen set of vehicles by
actions, the rest replay their logs or react (``config.agents_mode``, as in the single-agent
env). ``controlled``: ``"ego"`` (the scenario's ego alone), ``"vehicles"`` (the ego and every
vehicle observed at the ego's first step) or a list of agent ids (the ego and those). PettingZoo
agent names are the track's agent ids.

Each controlled vehicle is an ego of its own: the plan of the scenario with it as the ego
(``sim.plan.compile_plan``: its route, its vehicle, its latency FIFO prefilled with its logged
commands), its own dynamics model (``config.dynamics``, kinematic models only), its own action
handler and ``state`` observation (``sim.sensors.Sensors``, the same layout and spaces as
``DriveTwinEnv``), and the same reward terms (``sim.env.reward_terms``). Every controlled vehicle
sees the others where they drive now.

One step: every live agent's action becomes a command (latency FIFO), reactive agents choose
their accelerations (the controlled vehicles are bodies they brake for), every controlled vehicle's
dynamics advances, then everything moves to the next step. Collisions are box overlaps (``scenarios.geometry.boxes_overlap``)
with any present road user; off-road is corners outside the drivable surface (at least
``config.offroad_min_corners``). An agent is terminated on a new collision, on leaving the road or
at its goal (as the config's ``terminate_on_*`` say) and truncated at the log's end; a terminated
vehicle stays where it stopped, standing. Observations are ``state`` only (the engine-backed
parts, lidar and cameras, and the bird's-eye view are refused with a ``ConfigError``).
Deterministic: same seed and actions, same results.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium
import numpy as np
import shapely
from pettingzoo import ParallelEnv

from scenarios.geometry import boxes_overlap
from scenarios.model import AgentType, Scenario
from sim import bullet
from sim import dynamics as dynamics_registry
from sim.actions import EgoContext, make_handler
from sim.agents import ReactiveAgents, traffic_rules
from sim.config import ConfigError, EnvConfig, ObservationPart
from sim.context import TwinState
from sim.dynamics.base import EgoState
from sim.env import reward_terms
from sim.observations import observation_space
from sim.plan import ROUTE_SPACING_M, Plan, PlanCache
from sim.sensors import Sensors

__all__ = ["MultiAgentTwinEnv"]


class _Driver:
    """One controlled vehicle: its plan (it is the ego), dynamics, actions, sensors and episode state."""

    def __init__(self, plan: Plan, config: EnvConfig, shift: np.ndarray, client: Any) -> None:
        self.plan = plan
        self.client = client
        self.row = plan.ego_row
        self.shift = shift  # the master frame minus this plan's local frame [m]
        self.dynamics = dynamics_registry.make(config.dynamics)
        self.actions = make_handler(config)
        self.sensors = Sensors(config, None)  # type: ignore[arg-type]  # ``state`` needs no engine
        self.sensors.reset(plan)

    def reset(self) -> None:
        plan = self.plan
        self.dynamics.reset(self.client, plan.ego0, plan.params, float(plan.scenario.conditions.road_friction))
        self.ego: EgoState = self.dynamics.state
        self.fifo = deque(plan.prefill)
        self.s, self.lat, self.hint = plan.route.project(np.array([self.ego.x, self.ego.y]))
        self.touching: set[int] = set()
        self.was_on_road = True

    def context(self, agents: np.ndarray, present: np.ndarray) -> EgoContext:
        p = self.plan
        return EgoContext(self.ego, p.params, p.dt_s, p.route, p.geometry, p.offset, p.speed_limit, agents, present, p.lw)


class MultiAgentTwinEnv(ParallelEnv):
    """Several controlled vehicles in one scenario (see the module docstring)."""

    metadata = {"name": "drivetwin_multi_v0", "render_modes": []}

    def __init__(
        self,
        scenario: Scenario,
        config: EnvConfig | Mapping[str, Any] | None = None,
        controlled: str | Sequence[str] = "vehicles",
    ) -> None:
        self.config = config if isinstance(config, EnvConfig) else EnvConfig.from_mapping(dict(config or {}), "multi-agent env config")
        cfg = self.config
        extra = [p.value for p in cfg.observation if p is not ObservationPart.STATE]
        if extra:
            raise ConfigError("MultiAgentTwinEnv", "observation", f"only 'state' is supported, got {extra}")
        if dynamics_registry.make(cfg.dynamics).steps_physics:
            raise ConfigError("MultiAgentTwinEnv", "dynamics", f"{cfg.dynamics!r} steps the physics: use a kinematic model")
        self.scenario = scenario
        plans = PlanCache(cfg)
        master = plans.plan(scenario)
        self._master = master
        tr = scenario.tracks
        ids = [str(a) for a in tr.agent_ids]
        rows = self._controlled_rows(controlled, master, ids)
        self._drivers: dict[str, _Driver] = {}
        # one engine client holds every controlled vehicle's box (each in its own plan's frame;
        # contacts are box overlaps in the master frame, not engine queries)
        self._client = bullet.connect()
        for row in rows:
            plan = master if row == scenario.ego_index else plans.plan(scenario.replace(ego_index=row))
            if plan.start_step != master.start_step or plan.num_steps != master.num_steps:
                raise ConfigError("MultiAgentTwinEnv", "controlled",
                                  f"agent {ids[row]!r} is not observed from the ego's first step")
            self._drivers[ids[row]] = _Driver(plan, cfg, plan.origin - master.origin, self._client)
        self.possible_agents = list(self._drivers)
        self._rows = np.array([d.row for d in self._drivers.values()], np.int64)
        reactive_rows = np.setdiff1d(master.reactive_rows, self._rows)
        self._reactive = None
        if reactive_rows.size:
            self._reactive = ReactiveAgents(master.log, reactive_rows, master.sizes[:, 0], master.sizes[:, 1], master.dt_s,
                                            master.scenario.tracks.agent_types, master.ego_row)
            self._reactive.rules = traffic_rules(master, self._reactive)
        self._obs_space = observation_space(cfg)
        self._act_space = next(iter(self._drivers.values())).actions.space
        self.agents: list[str] = []
        self.np_random = np.random.default_rng()

    @staticmethod
    def _controlled_rows(controlled: str | Sequence[str], plan: Plan, ids: list[str]) -> list[int]:
        tr = plan.scenario.tracks
        ego = plan.scenario.ego_index
        if controlled == "ego":
            return [ego]
        if controlled == "vehicles":
            first = np.argmax(tr.valid, axis=1)
            vehicles = (tr.agent_types == int(AgentType.VEHICLE)) & tr.valid.any(axis=1) & (first == plan.start_step)
            return [ego] + [int(r) for r in np.flatnonzero(vehicles) if r != ego]
        if isinstance(controlled, str):
            raise ConfigError("MultiAgentTwinEnv", "controlled", f"must be 'ego', 'vehicles' or a list of agent ids, got {controlled!r}")
        unknown = [a for a in controlled if a not in ids]
        if unknown:
            raise ConfigError("MultiAgentTwinEnv", "controlled", f"unknown agent ids {unknown}; known: {ids[:10]}...")
        return [ego] + [ids.index(a) for a in controlled if ids.index(a) != ego]

    # ------------------------------------------------------------------ PettingZoo API
    def observation_space(self, agent: str) -> gymnasium.Space:
        return self._obs_space

    def action_space(self, agent: str) -> gymnasium.Space:
        return self._act_space

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, Any], dict[str, dict]]:
        if seed is not None or not hasattr(self, "_seeded"):
            self.np_random = np.random.default_rng(seed)
            self._seeded = True
        self.k = 0
        self.agents = list(self.possible_agents)
        self._standing: set[str] = set()
        for d in self._drivers.values():
            d.reset()
        if self._reactive is not None:
            self._reactive.reset(0)
        self._state, self._present = self._state_at(0)
        for d in self._drivers.values():
            d.actions.reset(d.context(*self._local(d, self._state, self._present)))
        obs = {a: self._observe(self._drivers[a]) for a in self.agents}
        return obs, {a: self._info(self._drivers[a], False, False, "") for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if not self.agents:
            raise RuntimeError("every agent is done: call reset() before step()")
        cfg, master = self.config, self._master
        commands = {}
        for a in self.agents:
            d = self._drivers[a]
            if a not in actions:
                raise ValueError(f"no action for agent {a!r}")
            d.fifo.append(d.actions.command(actions[a], d.context(*self._local(d, self._state, self._present))))
            commands[a] = d.fifo.popleft()
        if self._reactive is not None:
            self._reactive.step(self.k, self._bodies())
        for a in self.agents:
            d = self._drivers[a]
            d.ego = d.dynamics.step(*commands[a], master.dt_s)
        self.k += 1
        self._state, self._present = self._state_at(self.k)
        obs, rewards, terms, truncs, infos = {}, {}, {}, {}, {}
        truncated = self.k >= master.num_steps - 1
        for a in list(self.agents):
            d = self._drivers[a]
            ego = d.ego
            ahead = int(abs(ego.speed) * master.dt_s / ROUTE_SPACING_M) + 2
            s, d.lat, d.hint = d.plan.route.track(ego.x, ego.y, d.hint, ahead)
            progress, d.s = s - d.s, s
            touching = self._touching(d)
            collision = bool(touching - d.touching)
            d.touching = touching
            offroad = self._corners_off(d) >= cfg.offroad_min_corners
            left_road = offroad and d.was_on_road
            d.was_on_road = d.was_on_road or not offroad
            goal = d.plan.has_goal and s >= d.plan.goal_s - cfg.goal_tolerance_m
            terms_ = reward_terms(cfg.reward, progress, collision, offroad, goal, ego)
            reason = ("collision" if collision and cfg.terminate_on_collision else "offroad" if left_road and cfg.terminate_on_offroad
                      else "goal" if goal and cfg.terminate_on_goal else "")
            obs[a] = self._observe(d)
            rewards[a] = float(sum(terms_.values()))
            terms[a], truncs[a] = bool(reason), truncated and not reason
            infos[a] = self._info(d, collision, offroad, reason or ("log_end" if truncated else ""))
            infos[a]["reward_terms"] = terms_
            if reason:
                self._standing.add(a)
                d.ego = EgoState(ego.x, ego.y, ego.yaw, 0.0)
        self.agents = [a for a in self.agents if not (terms[a] or truncs[a])]
        return obs, rewards, terms, truncs, infos

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.disconnect()
            except Exception:  # already gone
                pass
            self._client = None

    # ------------------------------------------------------------------ internals
    def _state_at(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(5, N) every road user now in the master frame and (N,) which are present."""
        master = self._master
        state = master.stack[k].copy()
        present = master.log.valid[:, k].copy()
        r = self._reactive
        if r is not None:
            state[:, r.rows] = r.state()
            present[r.rows] = r.alive
        for d in self._drivers.values():
            e = d.ego
            state[:, d.row] = (e.x + d.shift[0], e.y + d.shift[1], e.yaw, e.vx, e.vy)
            present[d.row] = True
        return state, present

    def _local(self, d: _Driver, state: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``state`` in ``d``'s local frame and ``present`` without ``d`` itself."""
        local = state.copy()
        local[0] -= d.shift[0]
        local[1] -= d.shift[1]
        mine = present.copy()
        mine[d.row] = False
        return local, mine

    def _observe(self, d: _Driver) -> dict[str, np.ndarray]:
        agents, present = self._local(d, self._state, self._present)
        agents.flags.writeable = False
        present.flags.writeable = False
        twin = TwinState(self.k, d.ego, agents, present, d.s, d.lat, d.hint)
        return d.sensors.observe(twin, self.np_random)

    def _bodies(self) -> dict[str, np.ndarray]:
        master, state = self._master, self._state
        rows = np.flatnonzero(self._present)
        return {
            "x": state[0, rows], "y": state[1, rows], "yaw": state[2, rows], "vx": state[3, rows], "vy": state[4, rows],
            "length": master.sizes[rows, 0], "width": master.sizes[rows, 1], "row": rows,
        }

    def _touching(self, d: _Driver) -> set[int]:
        """Rows of the present road users whose boxes overlap ``d``'s now."""
        state, sizes = self._state, self._master.sizes
        rows = np.flatnonzero(self._present)
        rows = rows[rows != d.row]
        me = d.row
        dx, dy = state[0, rows] - state[0, me], state[1, rows] - state[1, me]
        reach = 0.5 * (np.hypot(sizes[rows, 0], sizes[rows, 1]) + math.hypot(sizes[me, 0], sizes[me, 1]))
        rows = rows[dx * dx + dy * dy < reach * reach]  # only boxes whose circumscribed circles meet
        if not rows.size:
            return set()
        hit = boxes_overlap(state[0, me], state[1, me], state[2, me], sizes[me, 0], sizes[me, 1],
                            state[0, rows], state[1, rows], state[2, rows], sizes[rows, 0], sizes[rows, 1])
        return {int(r) for r in rows[hit]}

    def _corners_off(self, d: _Driver) -> int:
        ego, p = d.ego, d.plan.params
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        fx, fy, lx, ly = 0.5 * p.length * c, 0.5 * p.length * s, -0.5 * p.width * s, 0.5 * p.width * c
        xs = np.array([ego.x + fx + lx, ego.x + fx - lx, ego.x - fx - lx, ego.x - fx + lx]) - d.plan.offset[0]
        ys = np.array([ego.y + fy + ly, ego.y + fy - ly, ego.y - fy - ly, ego.y - fy + ly]) - d.plan.offset[1]
        return int(4 - shapely.contains_xy(d.plan.geometry.surface, xs, ys).sum())

    def _info(self, d: _Driver, collision: bool, offroad: bool, reason: str) -> dict[str, Any]:
        ego, origin = d.ego, d.plan.origin
        return {
            "step": self.k, "t_us": int(self._master.log.t_us[self.k]),
            "ego": {"x": ego.x + origin[0], "y": ego.y + origin[1], "yaw": ego.yaw, "speed": ego.speed},
            "collision": collision, "offroad": offroad, "termination": reason,
        }
