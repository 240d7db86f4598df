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

BUSIEST = "waymo_json/tfrecord-00000-of-01000_4.json"  # the bench's scene (81 agents)
OTHER = "waymo_json/tfrecord-00000-of-01000_222.json"  # 25 agents


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


def named_scenes() -> dict:
    """Hand-built scenes with each traffic rule (as in ``test_agents.py``): a red light, a crossing of
    two reactive cars, a stop sign's right of way, the ego (off its log) crossing a reactive car's path,
    an object that must wait to appear where a car pushed off its log stands."""
    from scenarios.model import AgentType, FeatureKind, Lane, MapFeature, RoadMap, Signals, SignalState
    from scenarios.synthetic import AgentSpec, scene, straight_road

    red = scene([AgentSpec("ego", x=-40.0, y=3.5), AgentSpec("car", x=0.0, speed=10.0)], num_steps=141, scenario_id="red_light")
    states = np.full((1, 141), int(SignalState.GO), np.int8)
    states[0, :80] = int(SignalState.STOP)
    red = red.replace(signals=Signals(np.array(["lane0"]), states, np.array([[40.0, 0.0, 0.0]])))
    crossing = scene([AgentSpec("ego", x=-45.0, y=3.5), AgentSpec("a", x=-30.0, speed=10.0),
                      AgentSpec("b", x=20.0, y=-54.0, speed=10.0, yaw=np.pi / 2)], num_steps=101, scenario_id="crossing")
    road = straight_road()
    ys = np.linspace(-60.0, 60.0, 121)
    cross = Lane("cross", np.column_stack([np.full_like(ys, 20.0), ys]), speed_limit=20.0)
    sign = MapFeature("stop", FeatureKind.STOP_SIGN, [[21.5, -17.0, 0.0]], lane_ids=("cross",))
    sign_road = RoadMap((*road.lanes, cross), (*road.features, sign))
    right_of_way = scene([AgentSpec("ego", x=-40.0, y=3.5), AgentSpec("b", x=20.0, y=-16.0, speed=8.0, yaw=np.pi / 2),
                          AgentSpec("c", x=-5.0, speed=10.0)], num_steps=81, road=sign_road, scenario_id="stop_sign_right_of_way")
    to_ego = scene([AgentSpec("ego", x=-30.0, speed=10.0, accel=-3.0), AgentSpec("b", x=20.0, y=-54.0, speed=10.0, yaw=np.pi / 2)],
                   num_steps=101, road=RoadMap((*road.lanes, cross), road.features), scenario_id="yield_to_ego")
    spawn = scene([AgentSpec("ego", x=30.0), AgentSpec("car", x=0.0, speed=10.0),
                   AgentSpec("object", x=22.0, length=1.0, width=1.0, agent_type=AgentType.OTHER, valid_from=40)],
                  num_steps=81, scenario_id="spawn_on_pushed_car")
    return {"red_light": red, "crossing": crossing, "stop_sign_right_of_way": right_of_way, "yield_to_ego": to_ego,
            "spawn_on_pushed_car": spawn}


@pytest.mark.skipif(not agent_kernels.AVAILABLE, reason="numba is not installed: only the reference path exists")
def test_compiled_rollouts_equal_the_reference_on_the_named_rule_scenes(make_env, reference) -> None:
    """The ego keeps its speed (``constant_velocity``), so it leaves its log where the log brakes."""
    for name, s in named_scenes().items():
        digests = {}
        for compiled in (False, True):
            reference(compiled)
            env = make_env(s, agents_mode="reactive", terminate_on_collision=False, terminate_on_goal=False)
            digests[compiled] = env_digests(env, "constant_velocity", 200)
        assert len(digests[True]) == len(digests[False]) > 60, name
        assert digests[True] == digests[False], name


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


def test_physical_dynamics_builds_the_reactive_agents_once_per_plan(make_env) -> None:
    """The wheeled pybullet ego rebuilds the engine's world at every reset; the reactive agents (and
    their traffic rules) are built once per plan all the same, and the second episode on the same
    env equals the first and a fresh env's, bit for bit."""
    s = named_scenes()["crossing"]
    cfg = {"agents_mode": "reactive", "dynamics": "bullet", "terminate_on_collision": False, "terminate_on_goal": False}
    env = make_env(s, **cfg)
    first = env_digests(env, "constant_velocity", 60)
    agents = env._reactive
    again = env_digests(env, "constant_velocity", 60)
    assert env._reactive is agents and env._reactive.rules is agents.rules
    fresh = env_digests(make_env(s, **cfg), "constant_velocity", 60)
    assert len(first) == 60 and first == again == fresh
