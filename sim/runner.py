"""``rollout``: run one episode of a policy in an env and return its ``Rollout`` record."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from scenarios.model import Scenario
from sim.actions import ActionError
from sim.policies import Policy, make_policy, policy_name
from scenarios.rollout import Rollout


class PolicyError(RuntimeError):
    """The policy raised, or returned an action the env refused; names the scenario and the step."""

    def __init__(self, scenario_id: str, step: int, problem: str) -> None:
        self.scenario_id, self.step, self.problem = scenario_id, step, problem
        super().__init__(f"scenario {scenario_id}: step {step}: {problem}")

    def __reduce__(self):  # keep the parts across pickling (Ray, multiprocessing)
        return (type(self), (self.scenario_id, self.step, self.problem))


def rollout(
    env: Any,
    policy: Policy | str,
    scenario: Scenario | str | None = None,
    seed: int | None = None,
) -> Rollout:
    """Run one episode from ``reset(seed=seed, options={"scenario": scenario})`` to its end.

    Args:
        env: a ``DriveTwinEnv``, possibly wrapped (``gymnasium.make``).
        policy: a policy, or a name / ``"package.module:Name"`` for ``make_policy``.
        scenario: a ``Scenario`` or an id in the env's library; None uses the env's default.
        seed: the reset seed.

    Returns:
        The ``Rollout``: every step's state of every agent (ego included), commands, contacts,
        off-road flags, the names of the dynamics, agents mode and policy, and the termination.

    Raises:
        PolicyError: the policy raised or its action was refused (NaN, outside the space).
    """
    base = env.unwrapped
    if isinstance(policy, str):
        policy = make_policy(policy)
    name = policy_name(policy)
    options = {"scenario": scenario} if scenario is not None else None
    obs, _ = env.reset(seed=seed, options=options)
    scenario_id = base.scenario.id
    try:
        policy.reset(base.policy_context())
    except Exception as exc:
        raise PolicyError(scenario_id, 0, f"policy {name!r} failed to reset: {type(exc).__name__}: {exc}") from exc
    while True:
        step = base.k
        try:
            action = policy.act(obs)
        except Exception as exc:
            raise PolicyError(scenario_id, step, f"policy {name!r} raised {type(exc).__name__}: {exc}") from exc
        if action is None or (isinstance(action, float) and math.isnan(action)):
            raise PolicyError(scenario_id, step, f"policy {name!r} returned {action!r}")
        try:
            obs, _, terminated, truncated, _ = env.step(action)
        except ActionError as exc:
            raise PolicyError(scenario_id, step, f"policy {name!r} returned a refused action: {exc}") from exc
        if terminated or truncated:
            break
    record = base.rollout_record(policy=name)
    record.validate()
    return record


def rollouts_equal(a: Rollout, b: Rollout) -> bool:
    """Whether two rollouts are identical, array for array (bit for bit)."""
    for field in ("t_us", "x", "y", "yaw", "vx", "vy", "valid", "accel_cmd", "steer_cmd", "contact", "contact_impulse", "offroad"):
        if not np.array_equal(getattr(a, field), getattr(b, field)):
            return False
    return (a.scenario_id, a.termination, a.agents_mode, a.dynamics) == (b.scenario_id, b.termination, b.agents_mode, b.dynamics)
