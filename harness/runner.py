"""Run a suite: resolve its scenarios, make its variants, run them in parallel, stream the results.

The run directory (``runs/<run-id>/`` or ``--out``) is a ``harness.rundir.RunDirectory``:
manifest, tasks, streamed parts (a valid partial dataset if the run stops; ``--resume`` finishes
what is missing) and, when the run ends, the summary, metrics and series tables.

Determinism: every variant's seed comes from the run seed, its scenario and its sweep; results
are sorted by variant id; so a run's tables are identical whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.config import ConfigError, PolicyConfig, SuiteConfig
from harness.executor import ClusterUnreachable, Executor, make_executor, prepend_paths
from harness.rundir import MANIFEST, RESULT_FILES, RunDirectory, RunError
from harness.worker import (
    STATUS_ERROR,
    STATUS_REJECTED,
    ShippedTask,
    VariantOutcome,
    VariantTask,
    VariantWorker,
    params_json,
    ship_scenario,
    task_identity,
)

#: The longest [s] finished results wait in memory before they are written.
FLUSH_EVERY_S = 2.0
_PACKAGES = ("drivetwin", "numpy", "pybullet", "gymnasium", "ray", "pandas", "pyarrow", "shapely")


class PolicyCheckError(RunError):
    """The suite's policy cannot be imported, constructed or reset: the run stops before it starts."""


@dataclass(slots=True)
class RunResult:
    """What ``run_suite`` did."""

    run_dir: Path
    summary: pd.DataFrame
    num_variants: int
    num_errors: int
    num_skipped: int
    rejected: dict[str, int]
    wall_s: float
    manifest: dict[str, Any] = field(default_factory=dict)


def _seed(*parts: object) -> int:
    """A 31-bit seed from any mix of ints and strings (stable across processes and platforms)."""
    digest = hashlib.blake2b(repr(tuple(int(p) if isinstance(p, np.integer) else p for p in parts)).encode(), digest_size=4)
    return int.from_bytes(digest.digest(), "little") & 0x7FFFFFFF


def default_run_dir(config: SuiteConfig, root: Path | str = "runs") -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{config.name}-{stamp}"


# --- scenarios -------------------------------------------------------------------------------


def resolve_sources(config: SuiteConfig, run_dir: Path) -> list[str]:
    """Library directories (or URIs) of the suite's sources; raw log files are imported into ``run_dir/library``."""
    from harness.sources import iter_sources, resolve_library
    from scenarios import load_many
    from scenarios.library import MARKER_FILE, ScenarioLibrary, is_uri

    base = Path(config.source).parent if config.source != "<memory>" else Path.cwd()
    libraries: list[str] = []
    raw: list[Path] = []
    for source in config.scenarios.sources:
        if is_uri(source):  # s3://, gs://, hdfs://, file://: opened through pyarrow.fs where it is read
            libraries.append(source)
            continue
        path = resolve_library(source)
        if not path.is_absolute() and not path.exists() and (base / path).exists():
            path = base / path
        if (path / MARKER_FILE).exists():
            libraries.append(str(path.resolve()))
        elif path.exists():
            raw.append(path)
        else:
            raise ConfigError(config.source, "scenarios.sources", f"{source!r}: no such library or log file")
    if raw:
        target = RunDirectory(run_dir).library
        library = ScenarioLibrary.create(target, exist_ok=True)
        options = {
            "egos": config.scenarios.egos.value,
            "window_s": config.scenarios.window_s or None,
            "min_ego_duration_s": config.scenarios.min_ego_duration_s,
            "min_ego_travel_m": config.scenarios.min_ego_travel_m,
        }
        files = list(iter_sources([str(p) for p in raw]))
        for outcome in load_many(files, **options):
            if outcome.ok:
                try:
                    library.append(outcome.scenarios)
                except Exception as exc:  # noqa: BLE001 - one file's scenarios not stored; the others are
                    print(f"drivetwin: skipped {outcome.path}: not stored: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
            else:
                print(f"drivetwin: skipped {outcome.error}", file=sys.stderr)
        libraries.append(str(target.resolve()))
    return libraries


def select_scenarios(config: SuiteConfig, libraries: Sequence[str]) -> list[tuple[str, str]]:
    """(library, scenario id) pairs the suite runs, sorted by id, filtered and limited."""
    from scenarios.library import ScenarioLibrary

    chosen: dict[str, str] = {}
    sc = config.scenarios
    for root in libraries:
        table = ScenarioLibrary(root).summaries()
        if sc.datasets:
            table = table[table["dataset"].isin(sc.datasets)]
        if sc.tags:
            table = table[table["tags"].map(lambda tags: bool(set(tags or ()) & set(sc.tags)))]
        if sc.ids:
            table = table[table["id"].isin(sc.ids)]
        for scenario_id in table["id"]:
            chosen.setdefault(str(scenario_id), root)
    pairs = sorted((sid, root) for sid, root in chosen.items())
    if sc.limit:
        pairs = pairs[: sc.limit]
    return [(root, sid) for sid, root in pairs]


# --- variants --------------------------------------------------------------------------------


def _sweep(config: SuiteConfig, index: int) -> tuple[str, Any]:
    """The label and the plan of mutation sweep ``index``, its sampler seeded from the run seed."""
    mutation = config.mutations[index]
    plan = mutation.plan(config.source)
    return mutation.label(index), dataclasses.replace(plan, seed=_seed(config.run.seed, index, plan.seed))


def _variant_task(scenario: Any, root: str, plan: Any, point: Any, seed: int, name: str) -> VariantTask:
    """The task of one sampled variant (its mutation and plausibility checks run on the worker)."""
    from scenarios.mutations import VariantSpec

    spec = VariantSpec.create(scenario, plan.space.chain(point), seed)
    return VariantTask(spec.id, scenario.id, root, spec.to_json(), seed, name, params_json(spec.chain))


class ScenarioShipper:
    """Shares each base scenario with the workers once, through ``Executor.share`` (Ray's object
    store), so that workers need no access to the libraries: the driver reads a scenario once,
    puts its bytes once, and every task of it carries the handle and the content hash workers
    cache it by. With an executor that shares nothing (sequential) tasks go as they are.
    """

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.enabled = True
        self.handles: dict[tuple[str, str], tuple[str, Any]] = {}
        self._libraries: dict[str, Any] = {}

    def add(self, root: str, scenario_id: str, scenario: Any) -> None:
        """Share ``scenario`` (already read by the caller) unless it is shared already."""
        if not self.enabled or (root, scenario_id) in self.handles:
            return
        digest, data = ship_scenario(scenario)
        handle = self.executor.share(data)
        if handle is None:
            self.enabled = False
            return
        self.handles[(root, scenario_id)] = (digest, handle)

    def ship(self, tasks: Sequence[VariantTask]) -> Sequence[VariantTask | ShippedTask]:
        """``tasks`` with their base scenarios attached (a scenario the driver cannot read goes
        unshipped: its worker reports the error in the variant's row)."""
        from scenarios.library import ScenarioLibrary

        out: list[VariantTask | ShippedTask] = []
        for task in tasks:
            key = (task.library, task.scenario_id)
            if self.enabled and key not in self.handles:
                try:
                    library = self._libraries.setdefault(task.library, ScenarioLibrary(task.library))
                    self.add(*key, library.load(task.scenario_id))
                except Exception:  # noqa: BLE001 - the worker meets the same error and reports it
                    pass
            if not self.enabled:
                return tasks
            shared = self.handles.get(key)
            out.append(ShippedTask(task, *shared) if shared else task)
        return out


def make_tasks(
    config: SuiteConfig, scenarios: Sequence[tuple[str, str]], shipper: ScenarioShipper | None = None
) -> tuple[list[VariantTask], Counter[str]]:
    """Every non-adaptive variant of the suite, and a counter for the rejected ones by reason.

    Mutations are applied and checked for plausibility on the workers: an implausible or
    inapplicable one comes back as a "rejected" row, counted, never simulated (``_execute``).
    Each scenario read goes to ``shipper`` too (so it is read once).
    """
    from scenarios.library import ScenarioLibrary
    from scenarios.mutations import variant_seeds

    tasks: list[VariantTask] = []
    rejected: Counter[str] = Counter()
    sweeps = [_sweep(config, i) for i, m in enumerate(config.mutations) if not m.adaptive]
    libraries: dict[str, Any] = {}
    for root, scenario_id in scenarios:
        if config.run.include_original:
            tasks.append(VariantTask(scenario_id, scenario_id, root, "", _seed(config.run.seed, scenario_id)))
        if not sweeps:
            continue
        scenario = libraries.setdefault(root, ScenarioLibrary(root)).load(scenario_id)
        if shipper is not None:
            shipper.add(root, scenario_id, scenario)
        for name, plan in sweeps:
            points = plan.make_sampler().propose(plan.variants)
            for point, seed in zip(points, variant_seeds(_seed(plan.seed, scenario_id), len(points))):
                tasks.append(_variant_task(scenario, root, plan, point, seed, name))
    return tasks, rejected


# --- the run ---------------------------------------------------------------------------------


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def read_tasks(run_dir: str | Path) -> dict[str, VariantTask]:
    """The run's variants by id (from ``tasks.jsonl``)."""
    return RunDirectory(run_dir).read_tasks()


def _worker_factory(config: SuiteConfig, run_dir: Path | None = None) -> Callable[[], VariantWorker]:
    return partial(
        VariantWorker,
        dict(config.env),
        config.policy.name,
        dict(config.policy.options),
        dict(config.evaluators),
        config.run.save_steps,
        remote=remote_options(config, run_dir),
        plugins=config.plugins,
    )


def remote_options(config: SuiteConfig, run_dir: Path | None) -> dict[str, Any] | None:
    """``RemotePolicy`` arguments of a suite whose planner is in another process (None otherwise).

    Planner logs and address claims go to ``<run_dir>/planners``. A reply may take at most a
    share of the variant's timeout (at most 60 s) such that every attempt of a hung planner fits
    in the variant's timeout: the hang fails (and retries) the episode, not the task.
    """
    p = config.policy
    if not p.remote:
        return None
    where = {"command": p.command} if p.command else (
        {"address": p.address} if isinstance(p.address, str) else {"addresses": list(p.address)}
    )
    return {
        **where,
        "realtime_factor": p.realtime_factor,
        "fallback": p.fallback,
        "step_timeout_s": min(60.0, config.run.timeout_s / (2.0 * (config.run.retries + 1))),
        "log_dir": str(Path(run_dir, "planners").resolve()) if run_dir is not None else "",
        "retries": config.run.retries,
    }


def _error_outcome(task: VariantTask, message: str, traceback: str = "") -> VariantOutcome:
    from evaluators import error_summary

    summary = error_summary(task.variant_id, task.scenario_id, "", message, traceback=traceback or None)
    summary.update(task_identity(task))
    return VariantOutcome(summary)


class _Progress:
    """Progress with ETA and a live failure count: a bar on a terminal; elsewhere (CI logs) a
    plain line at every 10% of the variants (at most one per ``MIN_GAP_S``), at least every
    ``LOG_EVERY_S``, and at the end. Failures are errors and driving failures: variants that fail
    their own verdict (``evaluators.verdicts.verdict_failures``, with the gate's
    ``min_variant_score``)."""

    LOG_EVERY_S = 30.0
    MIN_GAP_S = 5.0

    def __init__(self, total: int, interactive: bool, quiet: bool = False, min_variant_score: float = 0.0) -> None:
        from tqdm import tqdm

        self.total, self.done, self.failures, self.errors = total, 0, 0, 0
        self.min_variant_score = min_variant_score or None
        self.interactive, self.quiet = interactive, quiet
        self.started = self.last_log = time.monotonic()
        self.next_share = 0.1
        self.bar = tqdm(total=total, unit="variant", disable=not interactive or quiet, file=sys.stderr, dynamic_ncols=True)

    def update(self, summary: Mapping[str, Any]) -> None:
        """Count one finished variant from its summary row (a rejected one neither fails nor errs)."""
        from evaluators.verdicts import verdict_failures

        self.done += 1
        judged = summary.get("status") != STATUS_REJECTED
        if summary.get("status") == STATUS_ERROR:
            self.errors += 1
        if judged and verdict_failures(summary, self.min_variant_score):
            self.failures += 1
            self.bar.set_postfix(failing=self.failures, errors=self.errors, refresh=False)
        self.bar.update(1)
        if self.interactive or self.quiet or not self.total:
            return
        now = time.monotonic()
        milestone = self.done / self.total >= self.next_share and now - self.last_log >= self.MIN_GAP_S
        if milestone or now - self.last_log >= self.LOG_EVERY_S or self.done == self.total:
            elapsed = now - self.started
            eta = elapsed / self.done * (self.total - self.done)
            print(
                f"drivetwin: {self.done}/{self.total} variants, {self.failures} failing "
                f"({self.errors} errors, {self.failures - self.errors} driving), "
                f"{elapsed:.0f} s elapsed, ETA {eta:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            self.last_log = now
            while self.next_share <= self.done / self.total:
                self.next_share += 0.1

    def close(self) -> None:
        self.bar.close()


def _execute(
    executor: Executor,
    factory: Callable[[], VariantWorker],
    tasks: Sequence[VariantTask],
    writer: Any,
    progress: _Progress,
    shipper: ScenarioShipper | None = None,
    rejected: Counter[str] | None = None,
) -> Iterator[tuple[VariantTask, VariantOutcome]]:
    """Run ``tasks``; write and yield each outcome as it arrives (a rejected variant is counted
    in ``rejected`` by "sweep:reason" and written nowhere).

    The writer flushes every few variants, and at least every ``FLUSH_EVERY_S``: a run killed
    outright loses at most that much finished work (an interrupt loses none: it flushes on exit).
    """
    last_flush = time.monotonic()
    for result in executor.map(factory, shipper.ship(tasks) if shipper is not None else tasks):
        task = tasks[result.index]
        outcome = result.value if result.ok else _error_outcome(task, result.error, result.traceback)
        if outcome.summary.get("status") == STATUS_REJECTED:
            if rejected is not None:
                rejected[f"{task.mutation}:{outcome.summary.get('error')}"] += 1
            progress.update(outcome.summary)
            yield task, outcome
            continue
        outcome.summary["attempts"] = result.attempts
        outcome.summary["worker_s"] = result.elapsed_s
        writer.add_rows(outcome.summary, outcome.metrics, outcome.series)
        progress.update(outcome.summary)
        if time.monotonic() - last_flush > FLUSH_EVERY_S:
            writer.flush()
            last_flush = time.monotonic()
        yield task, outcome


def _adaptive_rounds(
    config: SuiteConfig,
    scenarios: Sequence[tuple[str, str]],
    run: Callable[[list[VariantTask]], list[tuple[VariantTask, VariantOutcome]]],
    rejected: Counter[str],
    stored: dict[str, dict[str, Any]],
    shipper: ScenarioShipper | None = None,
) -> int:
    """Returns the number of variants proposed; ``stored`` holds the summary rows of a resumed run."""
    """The adaptive (cross-entropy) sweeps: propose a batch per scenario, run it, update, repeat."""
    from scenarios.library import ScenarioLibrary
    from scenarios.mutations import variant_seeds

    count = 0
    for i, mutation in enumerate(config.mutations):
        if not mutation.adaptive:
            continue
        name, plan = _sweep(config, i)
        states = {}
        libraries: dict[str, Any] = {}
        for root, scenario_id in scenarios:
            scenario = libraries.setdefault(root, ScenarioLibrary(root)).load(scenario_id)
            if shipper is not None:
                shipper.add(root, scenario_id, scenario)
            states[scenario_id] = (root, scenario, plan.make_sampler())
        for round_ in range(mutation.rounds):
            batch: list[VariantTask] = []
            points_of: dict[str, list[tuple[dict, VariantTask]]] = {}
            for scenario_id, (root, scenario, sampler) in states.items():
                points = sampler.propose(plan.variants)
                seeds = variant_seeds(_seed(plan.seed, scenario_id, round_), len(points))
                entries = []
                for point, seed in zip(points, seeds):
                    task = _variant_task(scenario, root, plan, point, seed, name)
                    entries.append((point, task))
                    batch.append(task)
                points_of[scenario_id] = entries
            scores_of = {vid: row.get(mutation.objective) for vid, row in stored.items()}
            rejected_ids: set[str] = set()
            for task, outcome in run([t for t in batch if t.variant_id not in stored]):
                if outcome.summary.get("status") == STATUS_REJECTED:
                    rejected_ids.add(task.variant_id)  # no score, not a sample of the failure region
                    continue
                scores_of[task.variant_id] = outcome.summary.get(mutation.objective)
            for scenario_id, entries in points_of.items():
                sampler = states[scenario_id][2]
                points, scores = [], []
                for point, task in entries:
                    if task.variant_id in rejected_ids:
                        continue
                    score = scores_of.get(task.variant_id)
                    points.append(point)
                    scores.append(float(score) if score is not None else 0.0)  # an error counts as a failure
                if points:
                    sampler.update(points, scores)
            count += len(batch) - len(rejected_ids)
    return count


def run_suite(
    config: SuiteConfig,
    *,
    out: str | Path | None = None,
    workers: int | None = None,
    address: str | None = None,
    executor: str | None = None,
    resume: bool = False,
    progress: bool | None = None,
    policy: str | None = None,
) -> RunResult:
    """Run every variant of ``config``; results stream to ``out`` (default ``runs/<suite>-<time>``).

    Args:
        out: the run directory.
        workers, address, executor: override the suite's ``[run]`` table.
        policy: run this policy (a registered name or ``package.module:Name``, no options)
            instead of the suite's; the manifest records it as ``policy_override``.
        resume: ``out`` holds an interrupted run of the same suite: run only what is missing.
        progress: True: a progress bar; False: silent; None (default): a bar on a terminal,
            else a plain progress line every 10% (for CI logs).
    """
    from evaluators.report import ReportWriter

    started = time.time()
    if policy:
        config = config.replace(policy=PolicyConfig(name=policy))
    run_cfg = config.run
    overrides = {
        k: v for k, v in (("workers", workers), ("address", address), ("executor", executor)) if v is not None
    }
    if overrides:
        run_cfg = dataclasses.replace(run_cfg, **{k: (type(getattr(run_cfg, k))(v)) for k, v in overrides.items()})
        config = config.replace(run=run_cfg)
    rd = RunDirectory(out if out else default_run_dir(config))
    run_dir = rd.path
    if resume:
        if not rd.manifest.exists():
            raise RunError(f"{run_dir}: nothing to resume (no {MANIFEST})")
        previous = rd.read_manifest()
        changed = _config_changes(previous.get("config", {}), config.to_dict())
        if changed:
            raise RunError(f"{run_dir}: the suite changed since this run started ({'; '.join(changed)}); resume needs the same config")
    elif rd.manifest.exists():
        raise RunError(f"{run_dir}: a run is already there (use --resume to finish it, or another --out)")
    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = run_dir.name

    libraries = resolve_sources(config, run_dir)
    paths = (os.getcwd(),)  # the same modules import here and under every executor
    prepend_paths(paths)
    exe = make_executor(
        run_cfg.executor,
        run_cfg.workers,
        address=run_cfg.address,
        chunk_size=run_cfg.chunk_size,
        timeout_s=run_cfg.timeout_s,
        retries=run_cfg.retries,
        paths=paths,
        **{k: v for k in ("max_variants_per_worker", "max_worker_memory_mb") if (v := getattr(run_cfg, k))},
    )
    factory = _worker_factory(config, run_dir)
    shipper = ScenarioShipper(exe)
    try:
        try:
            exe.start(factory)  # workers start while the variants are made
        except ClusterUnreachable as exc:
            raise ConfigError(config.source, "run.address", str(exc)) from None
        scenarios = select_scenarios(config, libraries)
        if not scenarios:
            raise RunError(f"{config.source}: the suite selects no scenarios from {list(config.scenarios.sources)}")
        tasks, rejected = make_tasks(config, scenarios, shipper)
        (root, first_id) = scenarios[0]
        # on the first base scenario: a mutated first variant may be rejected (on the worker), and
        # a rejected scenario would leave the policy unchecked
        _check_policy(config, factory, VariantTask(first_id, first_id, root, "", _seed(run_cfg.seed, first_id)))
    except BaseException:
        exe.close()
        raise
    stored = rd.stored_rows() if resume else {}
    done = set(stored)
    if not resume:
        rd.tasks.write_text("")
    known = set(rd.read_tasks()) if resume else set()
    rd.append_tasks([t for t in tasks if t.variant_id not in known])

    manifest = {
        "run_id": run_id,
        "suite": config.name,
        "config": config.to_dict(),
        "started_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": run_cfg.seed,
        "executor": run_cfg.executor,
        "workers": exe.num_workers,
        "address": run_cfg.address,
        "host": {"hostname": socket.gethostname(), "platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count()},
        "packages": _package_versions(),
        "libraries": libraries,
        "num_scenarios": len(scenarios),
        "status": "running",
        "command": " ".join(sys.argv),
        "policy_override": policy or None,
    }
    rd.write_manifest(manifest)

    pending = [t for t in tasks if t.variant_id not in done]
    adaptive_budget = sum(m.rounds * m.variants_per_round(config.source) for m in config.mutations if m.adaptive) * len(scenarios)
    bar = _Progress(
        len(pending) + adaptive_budget, sys.stderr.isatty() if progress is None else progress, quiet=progress is False,
        min_variant_score=config.gate.min_variant_score,
    )
    ran = 0
    try:
        with ReportWriter(rd.parts, run_id, flush_every=max(1, min(16, len(pending) // 20 or 1))) as writer:
            for _ in _execute(exe, factory, pending, writer, bar, shipper, rejected):
                ran += 1

            def run_batch(batch: list[VariantTask]) -> list[tuple[VariantTask, VariantOutcome]]:
                rd.append_tasks(batch)
                results = list(_execute(exe, factory, batch, writer, bar, shipper, rejected))
                writer.flush()
                return results

            ran += _adaptive_rounds(config, scenarios, run_batch, rejected, stored, shipper)
    finally:
        bar.close()
        exe.close()

    summary = consolidate(run_dir)
    wall = time.time() - started
    errors = int((summary["status"] == STATUS_ERROR).sum()) if len(summary) else 0
    manifest.update(
        status="complete",
        finished_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        wall_s=round(wall, 3),
        num_variants=int(len(summary)),
        num_errors=errors,
        num_resumed=len(done),
        scenarios_shipped=len(shipper.handles),  # base scenarios sent through the object store
        rejected=dict(sorted(rejected.items())),
        num_rejected=int(sum(rejected.values())),
    )
    rd.write_manifest(manifest)
    return RunResult(run_dir, summary, len(summary), errors, len(done), dict(rejected), wall, manifest)


def _check_policy(config: SuiteConfig, factory: Callable[[], VariantWorker], task: VariantTask) -> None:
    """Import, construct and reset the suite's policy on ``task`` (the first variant) here, before any variant runs.

    Raises:
        PolicyCheckError: with the cause's traceback (so ``drivetwin run`` exits 2 at once
            instead of running every variant to the same failure).
    """
    from harness.worker import PolicyUnusable

    worker = factory()
    try:
        worker.preflight(task)
    except PolicyUnusable as exc:
        raise PolicyCheckError(f"{config.source}: policy.name: {exc}; no variant ran.\n{exc.traceback.rstrip()}") from None
    finally:
        worker.close()


#: ``[run]`` keys that say how a run is executed, not what it computes: a resume may change them.
EXECUTION_KEYS = ("workers", "executor", "address", "chunk_size", "timeout_s", "retries", "max_variants_per_worker", "max_worker_memory_mb")


def _config_key(config: dict[str, Any]) -> str:
    """What must not change between a run and its resume (everything but how it is executed)."""
    config = json.loads(json.dumps(config, default=str))
    run = config.get("run", {})
    for key in EXECUTION_KEYS:
        run.pop(key, None)
    config.pop("source", None)
    return json.dumps(config, sort_keys=True)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"run.seed": 2, "mutations[0].rounds": 4, ...}`` from nested plain data."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        name = f"{prefix}{key}" if str(key).startswith("[") or not prefix else f"{prefix}.{key}"
        flat.update(_flatten(item, name) if item not in ({}, []) else {name: item})
    return flat


def _config_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The keys whose values differ between two configs (``EXECUTION_KEYS`` aside): "run.seed: 2 -> 3"."""
    old, new = (_flatten(json.loads(_config_key(c))) for c in (before, after))
    missing = object()
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, missing), new.get(key, missing)
        if a != b:
            changes.append(f"{key}: {'(unset)' if a is missing else json.dumps(a)} -> {'(unset)' if b is missing else json.dumps(b)}")
    return changes


def consolidate(run_dir: str | Path) -> pd.DataFrame:
    """Write ``summary.parquet`` and friends from the parts, sorted by variant id; return the summary.

    The last row of a variant wins (a resumed run may hold an earlier error row for it).
    """
    from evaluators.report import read_table

    rd = RunDirectory(run_dir)
    summary_df = pd.DataFrame()
    for table in RESULT_FILES:
        data = read_table(rd.parts, table)
        if table == "series" and data.num_rows == 0:
            continue
        keys = ["variant_id", "step"] if table == "series" else (["variant_id", "metric"] if table == "metrics" else ["variant_id"])
        frame = data.to_pandas()
        frame = frame.drop_duplicates(subset=keys, keep="last").sort_values(keys, kind="stable").reset_index(drop=True)
        out = pa.Table.from_pandas(frame, schema=data.schema, preserve_index=False)
        target = rd.table(table)
        tmp = target.with_name(target.name + ".tmp")
        pq.write_table(out, tmp)
        os.replace(tmp, target)
        if table == "summary":
            summary_df = frame
    return summary_df
