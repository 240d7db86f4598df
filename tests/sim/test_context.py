"""What policies get: the typed PolicyContext, the published TwinState and the PrivilegedView on it;
the env's Gymnasium spec with a library; registries and the physics-stepping property."""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import scenarios
import sim
from scenarios.errors import SourcedError
from scenarios.synthetic import AgentSpec, scene
from sim.config import ActionType, ConfigError, EnvConfig
from sim.context import PolicyContext, PrivilegedView, TwinState
from sim.dynamics.base import EgoState
from sim.plan import compile_plan

SAMPLE = Path(__file__).resolve().parents[2] / "scenarios" / "sample" / "ngsim_us101"


def two_cars() -> object:
    """``two_cars``: the ego at 10 m/s, a car 20 m ahead at 10 m/s (both in lane 0); 21 steps."""
    return scene([AgentSpec("ego", x=0.0, speed=10.0), AgentSpec("lead", x=20.0, speed=10.0)], num_steps=21, scenario_id="two_cars")


def test_policy_context_is_typed_and_reads_like_the_former_dict(make_env) -> None:
    env = make_env(two_cars(), action="trajectory")
    env.reset(seed=11)
    ctx = env.policy_context()
    assert isinstance(ctx, PolicyContext) and isinstance(sim.PolicyContext, type)
    assert ctx.scenario_id == "two_cars" and ctx.ego_id == "ego" and ctx.dt_s == 0.1 and ctx.seed == 11
    assert ctx.action_type is ActionType.TRAJECTORY and ctx.action_space is env.action_space
    assert ctx.observation_space is env.observation_space and ctx.config is env.config
    assert ctx.vehicle.length == 4.5 and ctx.speed_limit == 20.0
    assert isinstance(ctx.view, PrivilegedView)
    for key in ctx.keys():
        assert ctx[key] is getattr(ctx, key)
    assert "dt_s" in ctx and "nope" not in ctx and ctx.get("nope", 7) == 7
    with pytest.raises(KeyError):
        ctx["nope"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.dt_s = 1.0  # type: ignore[misc]
    assert env.scenario_info() is ctx  # the former name, the same object
    env.reset()
    assert env.policy_context() is not ctx and env.policy_context().seed is None


def test_the_env_publishes_a_read_only_twin_state_the_view_reads(make_env) -> None:
    env = make_env(two_cars())
    env.reset(seed=0)
    view = env.policy_context().view
    for k in range(1, 4):
        env.step(np.zeros(2, np.float32))
        twin = env.twin_state
        assert isinstance(twin, TwinState) and twin.step == k and view.step_index == k  # live
        assert twin.ego is env.ego and view.ego is twin.ego
        assert twin.route_s == pytest.approx(1.0 * k, abs=1e-6) and view.route_s == twin.route_s
        with pytest.raises(ValueError):
            twin.agents[0, 1] = 0.0
        with pytest.raises(ValueError):
            twin.present[1] = False
        with pytest.raises(dataclasses.FrozenInstanceError):
            twin.step = 0  # type: ignore[misc]
        agents = view.agents()
        assert agents["row"].tolist() == [1] and agents["x"][0] == pytest.approx(20.0 + 1.0 * k)


def test_the_privileged_view_reads_only_the_plan_and_the_published_state() -> None:
    """A view on a hand-made state: no env at all."""
    plan = compile_plan(two_cars(), EnvConfig())
    agents = np.zeros((5, 2))
    agents[:, 1] = (7.0, -1.0, 0.5, 3.0, 0.0)
    state = TwinState(step=4, ego=EgoState(1.0, 2.0, 0.0, 5.0), agents=agents, present=np.array([False, True]),
                      route_s=3.0, route_lateral=0.0, route_segment=6)
    view = PrivilegedView(plan, lambda: state)
    assert view.step_index == 4 and view.ego.speed == 5.0 and view.route_s == 3.0 and view.route is plan.route
    seen = view.agents()
    assert seen["row"].tolist() == [1] and seen["x"].tolist() == [7.0] and seen["yaw"].tolist() == [0.5]
    assert seen["length"].tolist() == [4.5] and view.logged_ego is plan.ego_log and view.params is plan.params


def _check(env: gymnasium.Env) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=False)


def test_check_env_passes_with_a_library_as_the_readme_shows() -> None:
    library = scenarios.ScenarioLibrary(SAMPLE)
    env = gymnasium.make("drivetwin/Replay-v0", library=library, config={"observation": ["state", "bev"]}, render_mode="rgb_array")
    try:
        _check(env.unwrapped)
        spec = env.unwrapped.spec
        assert spec.id == "drivetwin/Replay-v0"
        assert copy.deepcopy(spec).kwargs["library"] is spec.kwargs["library"]  # shared, not copied
        obs, info = env.reset(seed=0, options={"scenario": library.ids()[0]})
        assert info["scenario_id"] == library.ids()[0]
    finally:
        env.close()


def test_an_env_built_directly_has_a_spec(make_env) -> None:
    from sim.env import DriveTwinEnv

    library = [two_cars()]
    env = make_env(library=library, render_mode="rgb_array", observation=["state"])
    assert env.spec is not None and env.spec.id == "drivetwin/Replay-v0" and env.spec.entry_point == "sim.env:DriveTwinEnv"
    _check(env)
    remade = env.spec.make()
    try:
        assert remade.unwrapped.config == env.config
        assert remade.unwrapped.reset(seed=0)[1]["scenario_id"] == "two_cars"
    finally:
        remade.close()
    discrete = DriveTwinEnv(preset=sim.ENV_IDS["drivetwin/Discrete-v0"])
    try:
        assert discrete.spec.id == "drivetwin/Discrete-v0"
    finally:
        discrete.close()


def test_render_mode_human_is_refused_with_the_reason() -> None:
    from sim.env import DriveTwinEnv

    with pytest.raises(ConfigError, match="render_mode.*'human'.*display.*rgb_array"):
        DriveTwinEnv(render_mode="human")
    with pytest.raises(ConfigError, match="render_mode"):
        DriveTwinEnv(render_mode="ansi")


def test_stepping_the_physics_is_a_property_of_the_dynamics_model(make_env) -> None:
    from sim import dynamics
    from sim.dynamics.bicycle import KinematicBicycle

    assert dynamics.make("bicycle").steps_physics is False and dynamics.make("bullet").steps_physics is True

    class SteppingBicycle(KinematicBicycle):
        steps_physics = True

    dynamics.register("test_stepping_bicycle")(SteppingBicycle)
    try:
        assert "test_stepping_bicycle" in dynamics.names()
        assert make_env(dynamics="test_stepping_bicycle").physical is True
        assert make_env(dynamics="bicycle").physical is False
        with pytest.raises(ValueError, match="already registered"):
            dynamics.register("test_stepping_bicycle")(SteppingBicycle)
    finally:
        dynamics.base.REGISTRY.remove("test_stepping_bicycle")
    with pytest.raises(ValueError, match=r"unknown dynamics 'hovercraft'; known: \['bicycle', 'bullet'\]"):
        dynamics.make("hovercraft")


def test_config_errors_name_the_source_and_the_key() -> None:
    with pytest.raises(ConfigError) as bad:
        EnvConfig.from_mapping({"reward": {"speed": 1.0}}, "suite.toml")
    assert isinstance(bad.value, SourcedError) and (bad.value.source, bad.value.field) == ("suite.toml", "reward.speed")
    with pytest.raises(ConfigError) as bad:
        EnvConfig.from_mapping({"lidar_beams": 0}, "suite.toml")
    assert (bad.value.source, bad.value.field) == ("suite.toml", "lidar_beams") and ">= 1" in bad.value.problem
    with pytest.raises(ConfigError) as bad:
        EnvConfig(route_spacing_m=math.nan)
    assert (bad.value.source, bad.value.field) == ("EnvConfig", "route_spacing_m")
    with pytest.raises(ConfigError, match="suite.toml: must be a table"):
        EnvConfig.from_mapping([1, 2], "suite.toml")  # type: ignore[arg-type]
