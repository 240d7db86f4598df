"""The rollout record: every step of one episode, as a struct of arrays; the evaluators' input."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from scenarios.model import Scenario


@dataclass(frozen=True, slots=True, eq=False)
class Rollout:
    """What happened in one episode, sampled at every env step.

    S = number of env steps + 1 (index 0 is the state after ``reset``). N = the scenario's agents,
    in the scenario's order; row ``ego_index`` holds the simulated ego, the other rows what the
    other road users did in the twin (log replay or reactive). Positions are in the scenario's
    world frame [m].

    Attributes:
        scenario_id: the (variant) scenario's id.
        ego_index: the ego's row in the agent arrays (the scenario's ``ego_index``).
        t_us: (S,) int64 simulation time [us] on the scenario's clock; ``t_us[0]`` is the episode's
            start: the ego's first logged step (the scenario's start when the ego is seen from it).
        agent_ids: (N,) str.
        length, width: (N,) [m].
        x, y, yaw, vx, vy: (N, S) float64 [m, m, rad, m/s, m/s]; 0 where not valid.
        valid: (N, S) bool, whether the agent exists in the twin at that step.
        accel_cmd, steer_cmd: (S,) the ego control executed at each step [m/s2, rad] (0 at index 0).
        contact: (N, S) bool, the engine reported ego contact with that agent at that step.
        contact_impulse: (N, S) float64 impact of those contacts [N s]: the ego's mass times the
            closing speed along the contact normal at the step's start, or the solver's normal
            impulse summed over the physics substeps when larger.
        offroad: (S,) bool, the engine found an ego corner off the road surface.
        dynamics: the ego dynamics model's name ("bicycle", "bullet", "log").
        agents_mode: "replay", "reactive", or "mixed" (some agents react, some replay).
        policy: the policy's name.
        termination: why the episode ended ("collision", "offroad", "goal", "log_end", "truncated", "").
    """

    scenario_id: str
    ego_index: int
    t_us: np.ndarray
    agent_ids: np.ndarray
    length: np.ndarray
    width: np.ndarray
    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    valid: np.ndarray
    accel_cmd: np.ndarray
    steer_cmd: np.ndarray
    contact: np.ndarray
    contact_impulse: np.ndarray
    offroad: np.ndarray
    dynamics: str = "bicycle"
    agents_mode: str = "replay"
    policy: str = ""
    termination: str = ""

    @property
    def num_steps(self) -> int:
        """S, the number of recorded states."""
        return int(self.t_us.shape[0])

    @property
    def num_agents(self) -> int:
        return int(self.agent_ids.shape[0])

    @property
    def dt_s(self) -> float:
        """Env step [s]."""
        return float(np.median(np.diff(self.t_us))) / 1e6 if self.num_steps > 1 else 0.0

    @property
    def ego_xy(self) -> np.ndarray:
        """(S, 2) ego centre [m]."""
        return np.column_stack([self.x[self.ego_index], self.y[self.ego_index]])

    @property
    def ego_speed(self) -> np.ndarray:
        """(S,) ego speed [m/s]."""
        return np.hypot(self.vx[self.ego_index], self.vy[self.ego_index])

    def replace(self, **changes: Any) -> Rollout:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Raise ``ValueError`` when shapes disagree."""
        s, n = self.num_steps, self.num_agents
        for name in ("x", "y", "yaw", "vx", "vy", "valid", "contact", "contact_impulse"):
            if getattr(self, name).shape != (n, s):
                raise ValueError(f"rollout {self.scenario_id}: {name} has shape {getattr(self, name).shape}, expected ({n}, {s})")
        for name in ("accel_cmd", "steer_cmd", "offroad"):
            if getattr(self, name).shape != (s,):
                raise ValueError(f"rollout {self.scenario_id}: {name} has shape {getattr(self, name).shape}, expected ({s},)")

    @classmethod
    def from_log(cls, scenario: Scenario, *, policy: str = "log") -> Rollout:
        """The log itself as a rollout: every agent, the ego included, exactly as recorded.

        No physics runs, so ``contact`` and ``offroad`` are all False; evaluators that work from
        geometry still see what the log did. Useful for hand-built test scenes and as a reference.
        """
        tr = scenario.tracks
        n, s = tr.num_agents, scenario.num_steps
        return cls(
            scenario_id=scenario.id,
            ego_index=scenario.ego_index,
            t_us=scenario.t_us.copy(),
            agent_ids=tr.agent_ids.copy(),
            length=tr.length.copy(),
            width=tr.width.copy(),
            x=tr.x.copy(),
            y=tr.y.copy(),
            yaw=tr.yaw.copy(),
            vx=tr.vx.copy(),
            vy=tr.vy.copy(),
            valid=tr.valid.copy(),
            accel_cmd=np.zeros(s),
            steer_cmd=np.zeros(s),
            contact=np.zeros((n, s), bool),
            contact_impulse=np.zeros((n, s)),
            offroad=np.zeros(s, bool),
            dynamics="log",
            agents_mode="replay",
            policy=policy,
            termination="log_end",
        )
