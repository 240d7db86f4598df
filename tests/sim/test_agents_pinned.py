"""Reactive rollouts pinned bit for bit: the compiled agent kernels against the plain-numpy reference.

Each rollout hashes every road user's pose and velocity (the env's ``(5, N)`` state, float64, and
which are present) and the ego's state at every step. The compiled path (``sim.agent_kernels``)
must give the same digests as the numpy reference (``ReactiveAgents.compiled = False``), on real
scenes where the ego leaves its log (zero actions: it coasts) or follows the ``idm`` baseline, in
the single-agent env and the multi-agent one.

Why a comparison and not digests written into the test: the rollouts use numpy's ``hypot``,
``arctan2`` and powers, whose float64 loops on AVX-512 machines (SVML) round differently from
the scalar libm ones on other CPUs, so a digest recorded here would not hold on a machine with
another SIMD width. The kernels use only IEEE-exact arithmetic and libm's ``cos``/``sin`` (which
numpy's float64 loops call too); where that stops holding, this test says so.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from sim import agent_kernels
from sim.agents import ReactiveAgents

BUSIEST = "waymo_json/tfrecord-00000-of-01000_222.json"  # the bench's scene (81 agents)
OTHER = "waymo_json/tfrecord-00000-of-01000_4.json"


def env_digests(env, policy: str | None, steps: int) -> list[str]:
    """Per step, sha256 of the agents' (5, N) state, presence and the ego's state, over one episode."""
    from sim.policies import make_policy

    base = env.unwrapped
    obs, _ = env.reset(seed=0)
    pol = None
    if policy is not None:
        pol = make_policy(policy)
        pol.reset(base.policy_context())
    zero = np.zeros(env.action_space.shape, np.float32)
    out = []
    for _ in range(steps):
        e = base.ego
        h = hashlib.sha256(np.ascontiguousarray(base._state, np.float64).tobytes())
        h.update(np.ascontiguousarray(base._present).tobytes())
        h.update(np.array([e.x, e.y, e.yaw, e.vx, e.vy], np.float64).tobytes())
        out.append(h.hexdigest())
        obs, _, terminated, truncated, _ = env.step(zero if pol is None else pol.act(obs))
        if terminated or truncated:
            break
    return out


def multi_digests(env, steps: int) -> list[str]:
    """Per step, sha256 of the multi-agent env's (5, N) state and presence, every vehicle given zero actions."""
    env.reset(seed=0)
    zero = np.zeros(2, np.float32)
    out = []
    for _ in range(steps):
        h = hashlib.sha256(np.ascontiguousarray(env._state, np.float64).tobytes())
        h.update(np.ascontiguousarray(env._present).tobytes())
        out.append(h.hexdigest())
        if not env.agents:
            break
        env.step({a: zero for a in env.agents})
    return out


@pytest.fixture
def reference(monkeypatch):
    """``use(compiled)``: switch every ``ReactiveAgents`` to the compiled kernels or the numpy reference."""
    def use(compiled: bool) -> None:
        monkeypatch.setattr(ReactiveAgents, "compiled", compiled)
    return use


def load(data_dir: Path, name: str):
    import scenarios

    path = data_dir / name
    if not path.exists():
        pytest.skip(f"{name} not in the data directory")
    return scenarios.load(path)[0]


@pytest.mark.skipif(not agent_kernels.AVAILABLE, reason="numba is not installed: only the reference path exists")
@pytest.mark.parametrize(("name", "policy", "mode"), [
    (BUSIEST, None, "reactive"),     # the bench: the ego coasts off its log, ~10 agents react to it
    (OTHER, "idm", "reactive"),      # the idm baseline's ego
    (BUSIEST, "idm", "reactive"),
])
def test_compiled_reactive_rollouts_equal_the_reference_bit_for_bit(make_env, data_dir, reference, name, policy, mode) -> None:
    s = load(data_dir, name)
    digests = {}
    for compiled in (False, True):
        reference(compiled)
        cfg = {"agents_mode": mode, "terminate_on_collision": False, "terminate_on_offroad": False, "terminate_on_goal": False}
        env = make_env(s, **cfg)
        digests[compiled] = env_digests(env, policy, 200)
        assert isinstance(env._reactive, ReactiveAgents) and env._reactive.compiled is compiled
    assert len(digests[True]) == len(digests[False]) > 80
    first = next((k for k, (a, b) in enumerate(zip(digests[False], digests[True])) if a != b), None)
    assert first is None, f"the compiled rollout leaves the reference at step {first}"


@pytest.mark.skipif(not agent_kernels.AVAILABLE, reason="numba is not installed: only the reference path exists")
def test_compiled_multi_agent_rollout_equals_the_reference_bit_for_bit(data_dir, reference) -> None:
    pytest.importorskip("pettingzoo")
    from sim.multi import MultiAgentTwinEnv

    s = load(data_dir, OTHER)
    digests = {}
    for compiled in (False, True):
        reference(compiled)
        env = MultiAgentTwinEnv(s, {"agents_mode": "reactive", "terminate_on_collision": False,
                                    "terminate_on_offroad": False, "terminate_on_goal": False}, controlled="vehicles")
        digests[compiled] = multi_digests(env, 200)
        env.close()
    assert len(digests[True]) == len(digests[False]) > 80
    first = next((k for k, (a, b) in enumerate(zip(digests[False], digests[True])) if a != b), None)
    assert first is None, f"the compiled rollout leaves the reference at step {first}"
