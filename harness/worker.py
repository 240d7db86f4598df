"""What runs one scenario variant: rebuild it, drive it in the twin, score it.

A ``VariantWorker`` lives once per worker process and keeps its env (its pybullet world), its
open libraries and its policy between variants. ``run(task)`` never raises for a variant's own
failure (a rejected mutation, a policy that crashes or returns NaN, an evaluator error): it
returns an outcome with status "error" and the message, so the run goes on.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STATUS_OK = "ok"
STATUS_ERROR = "error"


@dataclass(frozen=True, slots=True)
class VariantTask:
    """One variant to run; everything needed to reproduce it exactly.

    Attributes:
        variant_id: the id results are stored under (the base scenario id for an unmutated run).
        scenario_id: the base scenario's id in ``library``.
        library: the scenario library directory.
        spec_json: the mutation's ``VariantSpec`` as JSON ("" for the unmutated scenario).
        seed: the env's reset seed [-].
        mutation: the name of the suite's mutation sweep ("" for the unmutated scenario).
        params_json: the sampled parameters, as JSON, for the report.
    """

    variant_id: str
    scenario_id: str
    library: str
    spec_json: str = ""
    seed: int = 0
    mutation: str = ""
    params_json: str = "{}"

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


@dataclass(slots=True)
class VariantOutcome:
    """What one variant produced: its summary row, tidy metric rows, per-step series, timings."""

    summary: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, np.ndarray] | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Episode:
    """One variant driven and scored: its scenario, its rollout and its evaluation."""

    scenario: Any
    rollout: Any
    evaluation: Any


class VariantFailed(RuntimeError):
    """A variant failed at some stage; carries what was built before the failure."""

    def __init__(self, message: str, scenario: Any = None, rollout: Any = None) -> None:
        super().__init__(message)
        self.scenario = scenario
        self.rollout = rollout


def task_identity(task: VariantTask) -> dict[str, Any]:
    """The columns every row of a variant carries, whatever happened to it."""
    return {"mutation": task.mutation, "params": task.params_json, "seed": int(task.seed)}


class VariantWorker:
    """Runs variants in one process.

    Args:
        env_config: the suite's ``[env]`` table (``sim.EnvConfig`` fields).
        policy: the policy's name or ``"package.module:Name"``.
        policy_options: keyword arguments of the policy's constructor.
        evaluator_config: the suite's ``[evaluators]`` table (``evaluators.EvaluatorConfig`` fields).
        save_steps: also return per-step series.
        remote: ``harness.remote.RemotePolicy`` arguments when the policy is a planner in another
            process (``address``/``addresses``/``command``, ...), plus ``retries``: how often an
            episode whose planner was lost is run again on a restarted planner.
    """

    def __init__(
        self,
        env_config: Mapping[str, Any],
        policy: str,
        policy_options: Mapping[str, Any] | None = None,
        evaluator_config: Mapping[str, Any] | None = None,
        save_steps: bool = False,
        remote: Mapping[str, Any] | None = None,
    ) -> None:
        self.env_config = dict(env_config)
        self.policy_name = policy
        self.policy_options = dict(policy_options or {})
        self.evaluator_config = dict(evaluator_config or {})
        self.save_steps = save_steps
        self.remote = dict(remote) if remote else None
        self._env: Any = None
        self._policy: Any = None
        self._eval_config: Any = None
        self._libraries: dict[str, Any] = {}

    def _setup(self) -> None:
        import sim
        from evaluators import EvaluatorConfig
        from sim.env import DriveTwinEnv

        if self._env is None:
            self._env = DriveTwinEnv(config=sim.EnvConfig.from_mapping(self.env_config, "suite [env]"))
            self._eval_config = EvaluatorConfig.from_mapping(self.evaluator_config, "suite [evaluators]")

    def library(self, root: str) -> Any:
        from scenarios.library import ScenarioLibrary

        if root not in self._libraries:
            self._libraries[root] = ScenarioLibrary(root)
        return self._libraries[root]

    def build_scenario(self, task: VariantTask) -> Any:
        """The variant's scenario: the base scenario, mutated as its spec says."""
        base = self.library(task.library).load(task.scenario_id)
        if not task.spec_json:
            return base
        from scenarios.mutations import reproduce

        return reproduce(base, task.spec_json)

    def policy(self) -> Any:
        """The policy, made once per worker (``reset`` starts each episode)."""
        if self._policy is None and self.remote is not None:
            from harness.remote import RemotePolicy

            options = {k: v for k, v in self.remote.items() if k != "retries"}
            self._policy = RemotePolicy(name=self.policy_name, **options)
        if self._policy is None:
            from sim.policies import make_policy

            self._policy = make_policy(self.policy_name, **self.policy_options)
        return self._policy

    def _rollout(self, scenario: Any, seed: int) -> Any:
        from sim.runner import rollout

        if self.remote is None:
            return rollout(self._env, self.policy(), scenario, seed=seed)
        from harness.remote import rollout_retrying

        return rollout_retrying(self._env, self.policy(), scenario, seed, int(self.remote.get("retries", 1)))

    def planner_columns(self) -> dict[str, Any]:
        """A remote planner's summary columns for the last episode (latency, deadline misses); {} in process."""
        stats = getattr(self._policy, "episode_stats", None)
        return stats() if self.remote is not None and callable(stats) else {}

    def close(self) -> None:
        """Close the env's pybullet world (a later variant opens a new one) and a remote planner."""
        closer = getattr(self._policy, "close", None) if self.remote is not None else None
        if callable(closer):
            closer()
        if self._env is not None:
            self._env.close()
            self._env = None

    def warm(self) -> None:
        """Import the twin and the evaluators and open the pybullet world now (Ray's actors call
        this while the driver is still making variants)."""
        self._setup()

    @property
    def env(self) -> Any:
        """The worker's env (its pybullet world), made on first use."""
        self._setup()
        return self._env

    @property
    def eval_config(self) -> Any:
        self._setup()
        return self._eval_config

    def episode(self, task: VariantTask, timings: dict[str, float] | None = None) -> Episode:
        """Rebuild, drive and score one variant; raises ``VariantFailed`` naming the stage that failed."""
        from evaluators import evaluate_all

        timings = {} if timings is None else timings
        stage, scenario, record = "setup", None, None
        try:
            start = time.perf_counter()
            self._setup()
            stage = "scenario"
            scenario = self.build_scenario(task)
            timings["build_s"] = time.perf_counter() - start
            stage = "rollout"
            start = time.perf_counter()
            record = self._rollout(scenario, task.seed)
            timings["sim_s"] = time.perf_counter() - start
            stage = "evaluation"
            start = time.perf_counter()
            evaluation = evaluate_all(
                record, scenario, self._eval_config, variant_id=task.variant_id, scenario_id=task.scenario_id, series=self.save_steps
            )
            timings["eval_s"] = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - wrapped with its stage, the cause kept
            message = f"{stage}: {''.join(traceback.format_exception_only(exc)).strip()}"
            raise VariantFailed(message, scenario, record) from exc
        return Episode(scenario, record, evaluation)

    def run(self, task: VariantTask) -> VariantOutcome:
        """One variant's outcome: its rows, or an error row with the failed stage and message."""
        timings: dict[str, float] = {}
        try:
            episode = self.episode(task, timings)
        except VariantFailed as exc:
            return VariantOutcome({**failure_summary(task, exc), **self.planner_columns()}, timings=timings)
        evaluation = episode.evaluation
        summary = {**episode_summary(task, episode), **self.planner_columns()}
        return VariantOutcome(summary, evaluation.metrics, evaluation.series, timings)


def episode_summary(task: VariantTask, episode: Episode) -> dict[str, Any]:
    """The summary row of a variant that ran."""
    return {**episode.evaluation.summary, **task_identity(task)}


def failure_summary(task: VariantTask, failure: VariantFailed) -> dict[str, Any]:
    """The summary row of a variant that failed: status "error", the stage and message, metrics null."""
    from evaluators import error_summary

    ego_id = failure.scenario.ego_id if failure.scenario is not None else ""
    summary = error_summary(task.variant_id, task.scenario_id, ego_id, str(failure))
    summary.update(task_identity(task))
    return summary


def params_json(chain: Any) -> str:
    """The parameters of an operator chain as compact JSON, for the report."""
    flat: dict[str, Any] = {}
    for name, params in chain:
        for key, value in params.items():
            flat[f"{name}.{key}"] = value.item() if isinstance(value, np.generic) else value
    return json.dumps(flat, sort_keys=True, default=str)
