"""drivetwin's twin: a pybullet world built from a scenario, exposed as a Gymnasium env.

Importing ``sim`` registers the Gymnasium ids (quietly, idempotently):

- ``drivetwin/Replay-v0``: log-replay agents, continuous actions (the default ``EnvConfig``);
- ``drivetwin/Reactive-v0``: IDM agents along their logged paths;
- ``drivetwin/Trajectory-v0``: log-replay agents, ``trajectory`` actions (how planners hand over);
- ``drivetwin/Discrete-v0``: log-replay agents, lane-level meta-actions.

``gymnasium.make("drivetwin/Replay-v0", scenario=..., config={...})``; a ``config`` mapping is
applied over the id's preset, an ``EnvConfig`` replaces it. The public API (``DriveTwinEnv``,
``EnvConfig``, ``PolicyContext``, ``make_policy``, ...) is imported on first use;
``sim.runner.rollout`` runs an episode (the ``Rollout`` record lives in ``scenarios.rollout``,
below the simulator). pybullet itself is imported, quietly (``sim.bullet``), when the first
world is made, so compiling plans (``sim.plan``) or reading configs needs no engine.
"""

from __future__ import annotations

from typing import Any

#: Registered env ids and the config fields each one presets.
ENV_IDS: dict[str, dict[str, Any]] = {
    "drivetwin/Replay-v0": {},
    "drivetwin/Reactive-v0": {"agents_mode": "reactive"},
    "drivetwin/Trajectory-v0": {"action": "trajectory"},
    "drivetwin/Discrete-v0": {"action": "discrete"},
}


def register_envs() -> None:
    """Register ``ENV_IDS`` with Gymnasium; ids already registered are left alone."""
    from gymnasium.envs.registration import register, registry

    for env_id, preset in ENV_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point="sim.env:DriveTwinEnv", kwargs={"preset": dict(preset)})


register_envs()

_LAZY = {
    "DriveTwinEnv": "sim.env",
    "default_scenario": "sim.env",
    "EnvConfig": "sim.config",
    "RewardWeights": "sim.config",
    "ObservationPart": "sim.config",
    "ActionType": "sim.config",
    "AgentsMode": "sim.config",
    "ConfigError": "sim.config",
    "MetaAction": "sim.actions",
    "Policy": "sim.policies",
    "PolicyContext": "sim.context",
    "PrivilegedView": "sim.context",
    "TwinState": "sim.context",
    "make_policy": "sim.policies",
    "register_policy": "sim.policies",
    "policy_names": "sim.policies",
    "PolicyError": "sim.runner",
    "Rollout": "scenarios.rollout",
}

__all__ = ["ENV_IDS", "register_envs", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
