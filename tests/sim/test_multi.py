"""The multi-agent env: PettingZoo's API test, the single-agent env's observations for the ego,
collisions between controlled vehicles, determinism, bad choices of controlled vehicles."""

from __future__ import annotations

import numpy as np
import pytest

pettingzoo = pytest.importorskip("pettingzoo")
from pettingzoo.test import parallel_api_test  # noqa: E402

from scenarios.synthetic import AgentSpec, scene  # noqa: E402
from sim.config import ConfigError  # noqa: E402
from sim.env import DriveTwinEnv  # noqa: E402
from sim.multi import MultiAgentTwinEnv  # noqa: E402


def three_cars():
    """The ego and two cars in lane 0 and 1, all at 10 m/s, 30 m apart."""
    return scene([AgentSpec("ego", x=0.0, speed=10.0), AgentSpec("b", x=30.0, speed=10.0), AgentSpec("c", x=0.0, y=3.5, speed=10.0)],
                 num_steps=61, scenario_id="three_cars")


def test_parallel_api_test_passes_with_every_vehicle_controlled(data_dir) -> None:
    import scenarios

    s = scenarios.load(data_dir / "waymo_json" / "tfrecord-00000-of-01000_4.json")[0]
    env = MultiAgentTwinEnv(s, {"agents_mode": "reactive"}, controlled="vehicles")
    assert len(env.possible_agents) > 20 and env.possible_agents[0] == str(s.ego_id)
    parallel_api_test(env, num_cycles=30)
    env.close()


def test_the_ego_alone_sees_what_the_single_agent_env_shows() -> None:
    s = three_cars()
    multi = MultiAgentTwinEnv(s, {}, controlled="ego")
    single = DriveTwinEnv(s, config={})
    obs_m, _ = multi.reset(seed=0)
    obs_s, _ = single.reset(seed=0)
    assert multi.possible_agents == ["ego"]
    assert np.array_equal(obs_m["ego"]["state"], obs_s["state"])
    for t in range(80):
        action = np.array([0.3 * np.sin(t / 5), 0.2 * np.cos(t / 7)], np.float32)  # weaves into lane 1's car
        obs_m, rew_m, term_m, trunc_m, info_m = multi.step({"ego": action})
        obs_s, rew_s, term_s, trunc_s, info_s = single.step(action)
        assert np.array_equal(obs_m["ego"]["state"], obs_s["state"]), t
        assert rew_m["ego"] == pytest.approx(rew_s, abs=1e-9)
        assert (term_m["ego"], trunc_m["ego"], info_m["ego"]["termination"]) == (term_s, trunc_s, info_s["termination"])
        if term_s or trunc_s:
            break
    assert info_s["termination"] == "collision" and not multi.agents
    multi.close()
    single.close()


def test_controlled_vehicles_see_each_other_and_collide() -> None:
    """c (lane 1) steers right into the ego's lane alongside it: both register the collision."""
    s = three_cars()
    env = MultiAgentTwinEnv(s, {"terminate_on_offroad": False}, controlled=["c"])
    assert env.possible_agents == ["ego", "c"]
    obs, _ = env.reset(seed=0)
    done = {}
    for _ in range(50):
        obs, rew, term, trunc, info = env.step({a: (np.array([0.0, -0.6], np.float32) if a == "c" else np.zeros(2, np.float32))
                                                for a in env.agents})
        done.update({a: info[a]["termination"] for a in term if term[a]})
        if not env.agents:
            break
    assert done == {"ego": "collision", "c": "collision"}
    assert rew["ego"] < 0 and rew["c"] < 0


def test_same_seed_same_rollout() -> None:
    s = three_cars().replace(id="noisy")
    from scenarios.model import Conditions

    s = s.replace(conditions=Conditions(position_noise_m=0.5))

    def run() -> list[np.ndarray]:
        env = MultiAgentTwinEnv(s, {"agents_mode": "reactive"}, controlled="vehicles")
        obs, _ = env.reset(seed=3)
        out = [obs[a]["state"] for a in env.possible_agents]
        while env.agents:
            obs, *_ = env.step({a: np.array([0.2, 0.0], np.float32) for a in env.agents})
            out += [obs[a]["state"] for a in sorted(obs)]
        env.close()
        return out

    a, b = run(), run()
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_bad_controlled_choices_are_refused_with_the_field() -> None:
    s = three_cars()
    with pytest.raises(ConfigError, match="controlled.*nobody"):
        MultiAgentTwinEnv(s, {}, controlled=["nobody"])
    with pytest.raises(ConfigError, match="controlled"):
        MultiAgentTwinEnv(s, {}, controlled="everyone")
    with pytest.raises(ConfigError, match="observation"):
        MultiAgentTwinEnv(s, {"observation": ["state", "lidar"]})
