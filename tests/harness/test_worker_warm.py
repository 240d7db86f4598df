"""The variant worker compiles the reactive agents' kernels when it builds a twin whose agents
react (``VariantWorker``), before its first episode's steps; a replay-only worker leaves them (and
numba) alone, and the first reactive agents of a process warm them at their reset."""

from __future__ import annotations

import pytest

from harness.config import MutationConfig
from harness.worker import VariantWorker, may_react
from sim import agent_kernels


@pytest.mark.parametrize("env, warmed", [({"agents_mode": "reactive"}, True), ({}, False), ({"agents_mode": "replay"}, False)])
def test_the_worker_warms_the_kernels_only_when_its_agents_react(monkeypatch, env, warmed) -> None:
    calls = []
    monkeypatch.setattr(agent_kernels, "warm", lambda: calls.append(1))
    worker = VariantWorker(env, "constant_velocity")
    try:
        assert calls == []  # nothing at construction (the factory runs in the driver too)
        worker.warm()  # what the Ray actor calls at its start; the sequential worker's first episode does the same
        assert calls == ([1] if warmed else []) and worker._env is not None
        worker.warm()  # the env is built: no second warm-up
        assert calls == ([1] if warmed else [])
    finally:
        worker.close()


def test_may_react_reads_the_env_and_the_mutations() -> None:
    sweep = MutationConfig({"operator": "agents_mode", "params": {"mode": "reactive"}, "variants": 1})
    some = MutationConfig({"operator": "reactive_agents", "params": {"fraction": 0.5}, "variants": 1})
    other = MutationConfig({"operator": "ego_speed_offset", "params": {"delta": 1.0}, "variants": 1})
    assert not may_react({}) and not may_react({"agents_mode": "replay"}, [other])
    assert may_react({"agents_mode": "reactive"}) and may_react({"agents_mode": "REACTIVE"})
    assert may_react({}, [other, sweep]) and may_react({}, [some])


def test_the_first_reactive_agents_warm_the_kernels(monkeypatch) -> None:
    import numpy as np

    from sim.agents import ReactiveAgents, SimTracks

    if not agent_kernels.AVAILABLE:
        pytest.skip("numba is not installed: the agents run their numpy reference path")
    calls = []
    monkeypatch.setattr(agent_kernels, "warm", lambda: calls.append(1) or agent_kernels.load())
    s = 5
    zero = np.zeros((1, s))
    log = SimTracks(t_us=np.arange(s, dtype=np.int64) * 100_000, x=np.arange(s, dtype=float)[None], y=zero.copy(),
                    yaw=zero.copy(), vx=np.ones((1, s)), vy=zero.copy(), valid=np.ones((1, s), bool))
    agents = ReactiveAgents(log, np.array([0]), np.array([4.5]), np.array([1.8]), 0.1)
    assert calls == [1] and agents.compiled
