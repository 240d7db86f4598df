"""What runs one scenario variant: rebuild it, drive it in the twin, score it.

A ``VariantWorker`` lives once per worker process and keeps its env (its pybullet world), its
open libraries and its policy between variants. ``run(task)`` never raises for a variant's own
failure (a rejected mutation, a policy that crashes or returns NaN, an evaluator error): it
returns an outcome with status "error" and the message, so the run goes on.
"""

from __future__ import annotations

import json
import pickle
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from harness.config import MutationConfig

STATUS_OK = "ok"
STATUS_ERROR = "error"
#: The status of a variant whose mutation is implausible or inapplicable: counted, never simulated
#: and never a row of the result tables.
STATUS_REJECTED = "rejected"
#: Base scenarios a worker keeps decoded, by content hash, of those the driver shipped.
SHIPPED_CACHE = 32


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


@dataclass(frozen=True, slots=True)
class ShippedTask:
    """A variant with its base scenario as the driver shared it: the worker opens no library.

    Attributes:
        task: the variant.
        digest: the content hash of the pickled base scenario (the worker's cache key).
        handle: what ``Executor.share`` returned for those bytes (a Ray object reference).
    """

    task: VariantTask
    digest: str
    handle: Any


def ship_scenario(scenario: Any) -> tuple[str, bytes]:
    """The content hash and the bytes by which a base scenario travels to workers."""
    import hashlib

    data = pickle.dumps(scenario, protocol=5)
    return hashlib.blake2b(data, digest_size=16).hexdigest(), data


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
    """A variant failed at some stage; carries what was built before the failure and the traceback."""

    def __init__(self, message: str, scenario: Any = None, rollout: Any = None, traceback: str = "") -> None:
        super().__init__(message)
        self.scenario = scenario
        self.rollout = rollout
        self.traceback = traceback


class PolicyUnusable(RuntimeError):
    """The suite's policy cannot be imported, constructed with its options, or reset (``preflight``).

    Attributes:
        stage: "construct" (import and constructor) or "reset".
        traceback: the formatted traceback of the cause.
    """

    def __init__(self, message: str, stage: str, traceback: str) -> None:
        super().__init__(message)
        self.stage, self.traceback = stage, traceback


class _ResetProbe:
    """Wraps a policy for ``VariantWorker.preflight``: reset passes through, the first ``act`` stops the episode."""

    class Stop(Exception):
        """Raised by ``act``: the probe has seen what it needed."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.name = getattr(policy, "name", type(policy).__name__)
        self.called = self.done = False

    def reset(self, scenario_info: Any) -> None:
        self.called = True
        self.policy.reset(scenario_info)
        self.done = True

    def act(self, observation: Any) -> Any:
        raise self.Stop()


def task_identity(task: VariantTask) -> dict[str, Any]:
    """The columns every row of a variant carries, whatever happened to it."""
    return {"mutation": task.mutation, "params": task.params_json, "seed": int(task.seed)}


#: Mutation operators that make other agents react.
_REACTING_OPERATORS = ("agents_mode", "reactive_agents")


def may_react(env_config: Mapping[str, Any], mutations: Sequence[MutationConfig] = ()) -> bool:
    """Whether a suite's variants may run reactive agents: its ``[env] agents_mode`` is not
    replay, or one of its ``mutations`` (``MutationConfig``) uses an operator that makes agents
    react (``agents_mode``, ``reactive_agents``). (A scenario's own conditions can still ask for
    them: their kernels then compile or load at its first reset, ``sim.agents.ReactiveAgents``.)"""
    if str(env_config.get("agents_mode", "replay")).lower() != "replay":
        return True
    return any(name in _REACTING_OPERATORS for m in mutations for name, _ in m.plan().space.steps)


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
        plugins: the suite's plug-in modules, imported (with the installed entry points) before
            the twin, the policy or the evaluators are made.
    """

    def __init__(
        self,
        env_config: Mapping[str, Any],
        policy: str,
        policy_options: Mapping[str, Any] | None = None,
        evaluator_config: Mapping[str, Any] | None = None,
        save_steps: bool = False,
        remote: Mapping[str, Any] | None = None,
        plugins: tuple[str, ...] = (),
    ) -> None:
        self.env_config = dict(env_config)
        self.plugins = tuple(plugins)
        self._plugins_loaded = False
        self.policy_name = policy
        self.policy_options = dict(policy_options or {})
        self.evaluator_config = dict(evaluator_config or {})
        self.save_steps = save_steps
        self.remote = dict(remote) if remote else None
        self._env: Any = None
        self._policy: Any = None
        self._eval_config: Any = None
        self._libraries: dict[str, Any] = {}
        self._shipped: Any = None  # LRU of shipped base scenarios by digest, made on first use

    def _setup(self) -> None:
        import sim
        from evaluators import EvaluatorConfig
        from sim import agent_kernels
        from sim.env import DriveTwinEnv

        self._load_plugins()
        if self._env is None:
            self._env = DriveTwinEnv(config=sim.EnvConfig.from_mapping(self.env_config, "suite [env]"))
            self._eval_config = EvaluatorConfig.from_mapping(self.evaluator_config, "suite [evaluators]")
            if may_react(self.env_config):  # else the first reactive agents warm them, at their reset
                agent_kernels.warm()  # the reactive agents' kernels compiled (or loaded) now, not in an episode's steps

    def _load_plugins(self) -> None:
        if not self._plugins_loaded:
            from harness.plugins import load_plugins

            load_plugins(self.plugins, "suite [suite] plugins")
            self._plugins_loaded = True

    def library(self, root: str) -> Any:
        from scenarios.library import ScenarioLibrary

        if root not in self._libraries:
            self._libraries[root] = ScenarioLibrary(root)
        return self._libraries[root]

    def base_scenario(self, task: VariantTask | ShippedTask) -> Any:
        """The variant's base scenario: fetched once per content hash when shipped, else from its library."""
        if isinstance(task, ShippedTask):
            from harness.executor import fetch
            from scenarios.common import LRU

            if self._shipped is None:
                self._shipped = LRU(SHIPPED_CACHE)
            return self._shipped.get_or_make(task.digest, lambda: pickle.loads(fetch(task.handle)))
        return self.library(task.library).load(task.scenario_id)

    def build_scenario(self, task: VariantTask | ShippedTask) -> Any:
        """The variant's scenario: the base scenario, mutated as its spec says."""
        return self._build(task)[0]

    def _build(self, task: VariantTask | ShippedTask) -> tuple[Any, Any]:
        """(the variant's scenario, its unmutated base), the base loaded once."""
        base = self.base_scenario(task)
        if isinstance(task, ShippedTask):
            task = task.task
        if not task.spec_json:
            return base, base
        from scenarios.mutations import reproduce

        return reproduce(base, task.spec_json), base

    def policy(self) -> Any:
        """The policy, made once per worker (``reset`` starts each episode)."""
        if self._policy is None and self.remote is not None:
            from harness.remote import RemotePolicy

            options = {k: v for k, v in self.remote.items() if k != "retries"}
            self._policy = RemotePolicy(name=self.policy_name, **options)
        if self._policy is None:
            from sim.policies import make_policy

            self._load_plugins()
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

    def episode(self, task: VariantTask | ShippedTask, timings: dict[str, float] | None = None) -> Episode:
        """Rebuild, drive and score one variant; raises ``VariantFailed`` naming the stage that failed."""
        from evaluators import evaluate_all

        timings = {} if timings is None else timings
        stage, scenario, record = "setup", None, None
        shipped, task = task, (task.task if isinstance(task, ShippedTask) else task)
        try:
            start = time.perf_counter()
            self._setup()
            stage = "scenario"
            scenario, log = self._build(shipped)  # a variant is judged against its source's log
            timings["build_s"] = time.perf_counter() - start
            stage = "rollout"
            start = time.perf_counter()
            record = self._rollout(scenario, task.seed)
            timings["sim_s"] = time.perf_counter() - start
            stage = "evaluation"
            start = time.perf_counter()
            evaluation = evaluate_all(
                record, scenario, self._eval_config, variant_id=task.variant_id, scenario_id=task.scenario_id, series=self.save_steps, log=log
            )
            timings["eval_s"] = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - wrapped with its stage, the cause kept
            if stage == "scenario" and _is_rejection(exc):
                raise  # not a failure: the variant must not be simulated (``run`` reports it)
            message = f"{stage}: {''.join(traceback.format_exception_only(exc)).strip()}"
            raise VariantFailed(message, scenario, record, "".join(traceback.format_exception(exc))) from exc
        return Episode(scenario, record, evaluation)

    def preflight(self, task: VariantTask) -> None:
        """Make the policy (import, constructor with its options) and reset it on ``task``'s scenario.

        A suite calls this once, before any variant runs, so that a policy that cannot work stops
        the run instead of failing every variant. A scenario or twin that fails here is not the
        policy's fault: it is left to the variant's own error row.

        Raises:
            PolicyUnusable: the policy could not be made or reset; with the traceback.
        """
        from sim.runner import rollout

        if self.remote is not None:  # a planner in another process: its client reports its own failures
            return
        try:
            self._setup()
            scenario = self.build_scenario(task)
        except Exception:  # noqa: BLE001 - reported by the variant itself
            return
        try:
            policy = self.policy()
        except Exception as exc:  # noqa: BLE001
            options = f" with options {self.policy_options}" if self.policy_options else ""
            raise PolicyUnusable(
                f"policy {self.policy_name!r} cannot be made{options}: {type(exc).__name__}: {exc}",
                "construct", "".join(traceback.format_exception(exc)),
            ) from exc  # fmt: skip
        probe = _ResetProbe(policy)
        try:
            rollout(self._env, probe, scenario, seed=task.seed)
        except Exception as exc:  # noqa: BLE001 - the probe's Stop, a failed reset, or the twin's own failure
            if probe.called and not probe.done:
                cause = exc.__cause__ or exc
                raise PolicyUnusable(
                    f"policy {self.policy_name!r} failed to reset on scenario {task.scenario_id}: {type(cause).__name__}: {cause}",
                    "reset", "".join(traceback.format_exception(cause)),
                ) from cause  # fmt: skip
        finally:
            self._policy = None  # the variants get a policy that has not seen this episode

    def run(self, task: VariantTask | ShippedTask) -> VariantOutcome:
        """One variant's outcome: its rows, or an error row with the failed stage and message."""
        timings: dict[str, float] = {}
        shipped, task = task, (task.task if isinstance(task, ShippedTask) else task)
        from scenarios.mutations.base import RejectedVariant

        try:
            episode = self.episode(shipped, timings)
        except RejectedVariant as exc:
            return VariantOutcome(rejected_summary(task, exc.reason), timings=timings)
        except VariantFailed as exc:
            return VariantOutcome({**failure_summary(task, exc), **self.planner_columns()}, timings=timings)
        evaluation = episode.evaluation
        summary = {**episode_summary(task, episode), **self.planner_columns()}
        return VariantOutcome(summary, evaluation.metrics, evaluation.series, timings)


def _is_rejection(exc: BaseException) -> bool:
    from scenarios.mutations.base import RejectedVariant

    return isinstance(exc, RejectedVariant)


def rejected_summary(task: VariantTask, reason: str) -> dict[str, Any]:
    """The row of a variant the mutation's plausibility checks rejected (status "rejected", the reason)."""
    return {"variant_id": task.variant_id, "scenario_id": task.scenario_id, "status": STATUS_REJECTED, "error": reason, **task_identity(task)}


def episode_summary(task: VariantTask, episode: Episode) -> dict[str, Any]:
    """The summary row of a variant that ran."""
    return {**episode.evaluation.summary, **task_identity(task)}


def failure_summary(task: VariantTask, failure: VariantFailed) -> dict[str, Any]:
    """The summary row of a variant that failed: status "error", the stage and message, metrics null."""
    from evaluators import error_summary

    ego_id = failure.scenario.ego_id if failure.scenario is not None else ""
    summary = error_summary(task.variant_id, task.scenario_id, ego_id, str(failure), traceback=failure.traceback or None)
    summary.update(task_identity(task))
    return summary


def params_json(chain: Any) -> str:
    """The parameters of an operator chain as compact JSON, for the report."""
    flat: dict[str, Any] = {}
    for name, params in chain:
        for key, value in params.items():
            flat[f"{name}.{key}"] = value.item() if isinstance(value, np.generic) else value
    return json.dumps(flat, sort_keys=True, default=str)
