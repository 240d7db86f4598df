"""Spawning: a road user whose log begins where the ego, off its log, stands waits until the ego
has passed (it never appears inside it); the reference and compiled paths agree on it."""

from __future__ import annotations

import numpy as np
import pytest

from scenarios.geometry import boxes_overlap
from scenarios.model import AgentType
from scenarios.synthetic import AgentSpec, scene
from sim.agents import ReactiveAgents
from sim.runner import rollout


def spawn_in_off_log_ego():
    """``spawn_in_off_log_ego``: the ego's log brakes at 3 m/s2 from 10 m/s at x = -30 m (it stops at
    x = -13.3 m), but the ego keeps its speed and is at x = 10 m at 4 s, where a 1 m object's log
    begins then (step 40)."""
    return scene([AgentSpec("ego", x=-30.0, speed=10.0, accel=-3.0),
                  AgentSpec("object", x=10.0, length=1.0, width=1.0, agent_type=AgentType.OTHER, valid_from=40)],
                 num_steps=81, scenario_id="spawn_in_off_log_ego")


@pytest.mark.parametrize("compiled", [False, True])
def test_a_road_user_does_not_appear_inside_the_ego_off_its_log(make_env, monkeypatch, compiled: bool) -> None:
    from sim import agent_kernels

    if compiled and not agent_kernels.AVAILABLE:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(ReactiveAgents, "compiled", compiled)
    s = spawn_in_off_log_ego()
    rec = rollout(make_env(s, agents_mode="reactive", terminate_on_collision=False, terminate_on_goal=False),
                  "constant_velocity", seed=0)
    assert rec.num_steps == 81 and rec.x[0, 40] == pytest.approx(10.0, abs=0.05)  # the ego over the object's place
    assert not rec.valid[1, 40]  # the object waits at its first logged step
    first = int(np.flatnonzero(rec.valid[1])[0])
    # the check sees the ego one step late (the agents move before it): the ego's rear (centre - 2.25 m)
    # is past the object's front (10.5 m) from step 43 on (10.75 m), not at step 42 (9.75 m)
    assert first == 44
    both = rec.valid[0] & rec.valid[1]
    overlap = boxes_overlap(rec.x[0], rec.y[0], rec.yaw[0], 4.5, 1.9, rec.x[1], rec.y[1], rec.yaw[1], 1.0, 1.0)
    assert not overlap[both].any()
