"""The episode recorder: every step's state of every agent, the commands, contacts and off-road
flags, accumulated in preallocated arrays and turned into a ``Rollout`` (the scenario frame)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scenarios.rollout import Rollout
from sim.dynamics.base import EgoState
from sim.plan import Plan
from sim.world import Contact


class EpisodeRecorder:
    """Per-step arrays of one episode of ``plan`` (local frame); index 0 is the state after reset.

    Args:
        plan: the episode's plan (its step count and agents size the arrays).
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        n, s_total = plan.log.valid.shape
        self.states = np.zeros((s_total, 5, n))  # x, y, yaw, vx, vy per step and row
        self.impulse = np.zeros((s_total, n))
        self.valid = np.zeros((s_total, n), bool)
        self.contact = np.zeros((s_total, n), bool)
        self.command = np.zeros((s_total, 2))
        self.offroad = np.zeros(s_total, bool)
        self.steps = 0

    def record(self, k: int, ego: EgoState, agents: np.ndarray, present: np.ndarray, contacts: Sequence[Contact],
               offroad: bool, command: tuple[float, float]) -> None:
        """Step ``k``: the ego, the present agents' (5, N) state, the ego's contacts, off-road and the executed command."""
        e = self.plan.ego_row
        row = self.states[k]
        np.multiply(agents, present, out=row)
        row[:, e] = (ego.x, ego.y, ego.yaw, ego.vx, ego.vy)
        valid = self.valid[k]
        valid[:] = present
        valid[e] = True
        for c in contacts:
            self.contact[k, c.row] = True
            self.impulse[k, c.row] = c.impulse
        self.command[k] = command
        self.offroad[k] = offroad
        self.steps = max(self.steps, k + 1)

    def rollout(self, dynamics: str, policy: str, termination: str) -> Rollout:
        """The steps recorded so far as a ``Rollout`` (scenario frame, every agent, the ego in its row)."""
        plan = self.plan
        n = self.steps
        ox, oy = plan.origin
        valid = self.valid[:n].T.copy()
        rec = self.states[:n]
        x = np.where(valid, rec[:, 0].T + ox, 0.0)
        y = np.where(valid, rec[:, 1].T + oy, 0.0)
        tr = plan.scenario.tracks
        length, width = tr.length.copy(), tr.width.copy()
        length[plan.ego_row], width[plan.ego_row] = plan.params.length, plan.params.width
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
            accel_cmd=self.command[:n, 0].copy(),
            steer_cmd=self.command[:n, 1].copy(),
            contact=self.contact[:n].T.copy(),
            contact_impulse=self.impulse[:n].T.copy(),
            offroad=self.offroad[:n].copy(),
            dynamics=dynamics,
            agents_mode=plan.agents_mode,
            policy=policy,
            termination=termination,
        )
