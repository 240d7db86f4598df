"""Run a suite: resolve its scenarios, make its variants, run them in parallel, stream the results.

The run directory (``runs/<run-id>/`` or ``--out``) is a ``harness.rundir.RunDirectory``:
manifest, tasks, streamed parts (a valid partial dataset if the run stops; ``--resume`` finishes
what is missing) and, when the run ends, the summary, metrics and series tables.

The driver streams: variants are planned lazily (``plan_variants``, a generator over scenarios x
sweeps x samples), each written to ``tasks.jsonl`` as it is planned and drawn by the executor only
as workers free up; results are written as they arrive and consolidated batch by batch. What the
driver keeps per variant is only what a resume needs: the finished ids, as 16-byte digests
(``harness.rundir.IdSet``).

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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.parquet as pq

from harness.config import ConfigError, PolicyConfig, RunConfig, SuiteConfig
from harness.executor import ClusterUnreachable, Executor, WorkerStartupError, make_executor, prepend_paths
from harness.rundir import MANIFEST, RESULT_FILES, IdSet, RunDirectory, RunError, TaskLog
from harness.search import adaptive_rounds
from harness.worker import (
    STATUS_ERROR,
    STATUS_REJECTED,
    ShippedTask,
    VariantOutcome,
    VariantTask,
    VariantWorker,
    may_react,
    params_json,
    ship_scenario,
    task_identity,
)
from scenarios.common import LRU

#: The longest [s] finished results wait in memory before they are written.
FLUSH_EVERY_S = 2.0
#: The most variants in one part file (a small run writes a part per variant).
PART_ROWS = 2048
_PACKAGES = ("drivetwin", "numpy", "pybullet", "gymnasium", "ray", "pandas", "pyarrow", "shapely")


class PolicyCheckError(RunError):
    """The suite's policy cannot be imported, constructed or reset: the run stops before it starts."""


@dataclass(slots=True)
class RunResult:
    """What ``run_suite`` did: counts, and the summary table read on first use (``summary``).

    Attributes:
        run_dir: the run directory.
        num_variants: variants with a result row (rejected ones have none).
        num_errors: of which status "error".
        num_skipped: variants a resume found finished and did not run again.
        rejected: rejected variants by "sweep:reason".
        wall_s: the run's wall time [s].
        manifest: what ``manifest.json`` holds.
    """

    run_dir: Path
    num_variants: int
    num_errors: int
    num_skipped: int
    rejected: dict[str, int]
    wall_s: float
    manifest: dict[str, Any] = field(default_factory=dict)
    _summary: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def summary(self) -> pd.DataFrame:
        """The summary table, one row per variant sorted by id (read from the run directory on
        first use: a run of a million variants never needs it in memory)."""
        if self._summary is None:
            self._summary = RunDirectory(self.run_dir).read_summary()
        return self._summary


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

    #: Handles kept for the scenarios shared last (variants are planned scenario by scenario;
    #: a task in flight holds its own handle, so Ray frees a scenario once its tasks are done).
    KEEP = 256

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.enabled = True
        self.handles: LRU[tuple[str, str], tuple[str, Any]] = LRU(self.KEEP)
        self.shipped = 0  # scenarios put in the object store
        self._libraries: dict[str, Any] = {}

    def add(self, root: str, scenario_id: str, scenario: Any) -> None:
        """Share ``scenario`` (already read by the caller) unless it is shared already."""
        key = (root, scenario_id)
        if not self.enabled or self.handles.get(key) is not None:  # (a get makes it the most recent)
            return
        digest, data = ship_scenario(scenario)
        handle = self.executor.share(data)
        if handle is None:
            self.enabled = False
            return
        self.handles.put(key, (digest, handle))
        self.shipped += 1

    def ship(self, tasks: Iterable[VariantTask]) -> Iterator[VariantTask | ShippedTask]:
        """``tasks`` with their base scenarios attached, one by one (a scenario the driver cannot
        read goes unshipped: its worker reports the error in the variant's row)."""
        from scenarios.library import ScenarioLibrary

        for task in tasks:
            key = (task.library, task.scenario_id)
            if self.enabled and key not in self.handles:
                try:
                    library = self._libraries.setdefault(task.library, ScenarioLibrary(task.library))
                    self.add(*key, library.load(task.scenario_id))
                except Exception:  # noqa: BLE001 - the worker meets the same error and reports it
                    pass
            shared = self.handles.get(key) if self.enabled else None
            yield ShippedTask(task, *shared) if shared else task


class _Sweep:
    """One non-adaptive sweep, prepared once for every scenario: its points (the sampler is
    seeded from the plan, not the scenario, so every scenario gets the same points), their
    canonical chains and parameter JSON."""

    __slots__ = ("name", "plan", "chains", "params", "chain_json")

    def __init__(self, name: str, plan: Any) -> None:
        from scenarios.mutations import VariantSpec
        from scenarios.mutations.base import get

        self.name, self.plan = name, plan
        points = plan.make_sampler().propose(plan.variants)
        self.chains = [tuple((str(n), get(str(n)).canonical(p)) for n, p in plan.space.chain(point)) for point in points]
        self.params = [params_json(chain) for chain in self.chains]
        canonical = {"sort_keys": True, "separators": (",", ":"), "allow_nan": False}
        self.chain_json = [json.dumps(VariantSpec("", "", chain, 0).to_dict()["chain"], **canonical) for chain in self.chains]

    def tasks(self, scenario: Any, root: str) -> Iterator[VariantTask]:
        """The sweep's variants of ``scenario`` (in ``root``), seeded from the plan and the scenario.

        Each spec's canonical JSON is ``VariantSpec.to_json()`` put together from its parts (the
        chain's JSON is the same for every scenario): the first variant of each scenario is
        checked against ``to_json`` itself, and on any difference every one is made by it.
        """
        from scenarios.mutations import VariantSpec, variant_seeds
        from scenarios.mutations.variants import SPEC_VERSION, variant_id_of

        seeds = variant_seeds(_seed(self.plan.seed, scenario.id), len(self.chains))
        head = f',"ego_id":{json.dumps(scenario.ego_id)},"scenario_id":{json.dumps(scenario.id)},"seed":'
        fast = True
        for i, (chain, params, seed) in enumerate(zip(self.chains, self.params, seeds)):
            spec_json = f'{{"chain":{self.chain_json[i]}{head}{seed},"version":{SPEC_VERSION}}}' if fast else ""
            if i == 0 or not fast:
                exact = VariantSpec(scenario.id, scenario.ego_id, chain, seed).to_json()
                fast, spec_json = fast and exact == spec_json, exact
            yield VariantTask(variant_id_of(scenario.id, spec_json), scenario.id, root, spec_json, seed, self.name, params)


def plan_sweeps(config: SuiteConfig) -> list[_Sweep]:
    """The suite's non-adaptive sweeps, each prepared once (its points made once)."""
    return [_Sweep(*_sweep(config, i)) for i, m in enumerate(config.mutations) if not m.adaptive]


def plan_variants(
    config: SuiteConfig,
    scenarios: Sequence[tuple[str, str]],
    shipper: ScenarioShipper | None = None,
    sweeps: Sequence[_Sweep] | None = None,
) -> Iterator[VariantTask]:
    """Every non-adaptive variant of the suite, lazily: scenario by scenario, sweep by sweep,
    sample by sample (always in this order, so a resume plans them again in the same order).

    Mutations are applied and checked for plausibility on the workers: an implausible or
    inapplicable one comes back as a "rejected" row, counted, never simulated (``_execute``).
    A base scenario is read when its first mutated variant is planned and goes to ``shipper``
    then (so it is read once). ``sweeps``: ``plan_sweeps(config)``, when made already.
    """
    from scenarios.library import ScenarioLibrary

    sweeps = plan_sweeps(config) if sweeps is None else sweeps
    libraries: dict[str, Any] = {}
    for root, scenario_id in scenarios:
        if config.run.include_original:
            yield VariantTask(scenario_id, scenario_id, root, "", _seed(config.run.seed, scenario_id))
        if not sweeps:
            continue
        scenario = libraries.setdefault(root, ScenarioLibrary(root)).load(scenario_id)
        if shipper is not None:
            shipper.add(root, scenario_id, scenario)
        for sweep in sweeps:
            yield from sweep.tasks(scenario, root)


def count_planned(config: SuiteConfig, scenarios: Sequence[tuple[str, str]], sweeps: Sequence[_Sweep] | None = None) -> int:
    """How many variants ``plan_variants`` plans (without planning them); ``sweeps`` as there."""
    sweeps = plan_sweeps(config) if sweeps is None else sweeps
    return (int(config.run.include_original) + sum(len(sweep.chains) for sweep in sweeps)) * len(scenarios)


def make_tasks(
    config: SuiteConfig, scenarios: Sequence[tuple[str, str]], shipper: ScenarioShipper | None = None
) -> tuple[list[VariantTask], Counter[str]]:
    """Every non-adaptive variant of the suite as a list (``plan_variants``, all at once: for
    small suites and benchmarks), and an empty counter for the rejected ones."""
    return list(plan_variants(config, scenarios, shipper)), Counter()


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

    def __init__(self, total: int, interactive: bool, quiet: bool = False, score_floor: float | None = None) -> None:
        from tqdm import tqdm

        self.total, self.done, self.failures, self.errors = total, 0, 0, 0
        self.score_floor = score_floor
        self.interactive, self.quiet = interactive, quiet
        self.started = self.last_log = time.monotonic()
        self.next_share = 0.1
        self.logged = 0  # ``done`` at the last plain line
        self.bar = tqdm(total=total, unit="variant", disable=not interactive or quiet, file=sys.stderr, dynamic_ncols=True)

    def update(self, summary: Mapping[str, Any]) -> None:
        """Count one finished variant from its summary row (a rejected one neither fails nor errs)."""
        from evaluators.verdicts import verdict_failures

        self.done += 1
        judged = summary.get("status") != STATUS_REJECTED
        if summary.get("status") == STATUS_ERROR:
            self.errors += 1
        if judged and verdict_failures(summary, self.score_floor):
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
            self._line(f"{self.done}/{self.total} variants", f"{elapsed:.0f} s elapsed, ETA {eta:.0f} s")
            self.last_log = now
            while self.next_share <= self.done / self.total:
                self.next_share += 0.1

    def _line(self, count: str, timing: str) -> None:
        print(
            f"drivetwin: {count}, {self.failures} failing ({self.errors} errors, {self.failures - self.errors} driving), {timing}",
            file=sys.stderr,
            flush=True,
        )
        self.logged = self.done

    def close(self) -> None:
        """End the bar; in plain mode, a last line when the run ended short of ``total`` (an
        adaptive search that gave up on some scenarios proposes fewer variants than its budget)."""
        self.bar.close()
        if not (self.interactive or self.quiet or not self.total) and self.done != self.logged:
            elapsed = time.monotonic() - self.started
            self._line(f"{self.done} variants (of at most {self.total})", f"{elapsed:.0f} s elapsed, done")


def _execute(
    executor: Executor,
    factory: Callable[[], VariantWorker],
    tasks: Iterable[VariantTask],
    writer: Any,
    progress: _Progress,
    shipper: ScenarioShipper | None = None,
    rejected: Counter[str] | None = None,
    total: int | None = None,
) -> Iterator[tuple[VariantTask, VariantOutcome]]:
    """Run ``tasks`` (drawn lazily, as the executor's workers free up); write and yield each
    outcome as it arrives (a rejected variant is counted in ``rejected`` by "sweep:reason" and
    written nowhere). Only the tasks in flight are held here.

    The writer flushes every few variants, and at least every ``FLUSH_EVERY_S``: a run killed
    outright loses at most that much finished work (an interrupt loses none: it flushes on exit).
    """
    in_flight: dict[int, VariantTask] = {}

    def feed() -> Iterator[VariantTask]:
        for index, task in enumerate(tasks):
            in_flight[index] = task
            yield task

    last_flush = time.monotonic()
    for result in executor.map(factory, shipper.ship(feed()) if shipper is not None else feed(), total=total):
        task = in_flight.pop(result.index)
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
    consolidate_tables: bool = True,
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
        consolidate_tables: when the run ends, also write summary.parquet and friends, sorted
            by variant id (``consolidate``, batch by batch); False leaves the partitioned
            dataset under ``parts/`` only (every reader takes it as it is).
    """
    from evaluators.report import ReportWriter
    from sim import agent_kernels

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
        **({"startup_timeout_s": run_cfg.startup_timeout_s} if run_cfg.startup_timeout_s != RunConfig().startup_timeout_s else {}),
    )
    factory = _worker_factory(config, run_dir)
    shipper = ScenarioShipper(exe)
    try:
        try:
            if not run_cfg.address and may_react(config.env, config.mutations):
                agent_kernels.warm()  # compiled once here, the workers on this machine load them from numba's cache
            exe.start(factory)  # workers start while the variants are made
        except ClusterUnreachable as exc:
            raise ConfigError(config.source, "run.address", str(exc)) from None
        scenarios = select_scenarios(config, libraries)
        if not scenarios:
            raise RunError(f"{config.source}: the suite selects no scenarios from {list(config.scenarios.sources)}")
        rejected: Counter[str] = Counter()
        (root, first_id) = scenarios[0]
        # on the first base scenario: a mutated first variant may be rejected (on the worker), and
        # a rejected scenario would leave the policy unchecked
        _check_policy(config, factory, VariantTask(first_id, first_id, root, "", _seed(run_cfg.seed, first_id)))
    except BaseException:
        exe.close()
        raise
    # What a resume needs, and only that: the ids finished (digests, 16 bytes each) and planned
    # (so that tasks.jsonl gets each variant once); the rows of adaptive sweeps (their scores
    # steer the next rounds).
    done = rd.finished_ids() if resume else IdSet()
    known = rd.task_ids() if resume else IdSet()
    adaptive = [m.label(i) for i, m in enumerate(config.mutations) if m.adaptive]
    stored = rd.stored_rows(mutations=adaptive) if resume and adaptive else {}

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

    sweeps = plan_sweeps(config)
    planned = count_planned(config, scenarios, sweeps)
    adaptive_budget = sum(m.rounds * m.variants_per_round(config.source) for m in config.mutations if m.adaptive) * len(scenarios)
    to_run = max(0, planned + adaptive_budget - len(done))
    bar = _Progress(
        to_run, sys.stderr.isatty() if progress is None else progress, quiet=progress is False,
        score_floor=config.gate.score_floor,
    )
    tasklog = TaskLog(rd.tasks, truncate=not resume)

    def logged(tasks: Iterable[VariantTask]) -> Iterator[VariantTask]:
        """``tasks`` each written to tasks.jsonl (once per run) and passed on unless finished."""
        for task in tasks:
            if task.variant_id not in known:
                tasklog.add(task)
            if task.variant_id not in done:
                yield task

    flush_every = max(1, min(PART_ROWS, to_run // 20 or 1))
    try:
        with ReportWriter(rd.parts, run_id, flush_every=flush_every, on_flush=tasklog.flush) as writer:
            for _ in _execute(exe, factory, logged(plan_variants(config, scenarios, shipper, sweeps)), writer, bar, shipper, rejected, total=planned):
                pass

            def run_batch(batch: list[VariantTask]) -> Iterator[tuple[VariantTask, VariantOutcome]]:
                yield from _execute(exe, factory, logged(batch), writer, bar, shipper, rejected, total=len(batch))
                writer.flush()

            adaptive_rounds(config, scenarios, run_batch, rejected, stored, shipper)
    except WorkerStartupError as exc:
        raise RunError(f"{config.source}: {exc}") from None
    finally:
        tasklog.close()
        bar.close()
        exe.close()

    counts = consolidate(run_dir) if consolidate_tables else count_rows(run_dir)
    wall = time.time() - started
    manifest.update(
        status="complete",
        finished_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        wall_s=round(wall, 3),
        num_variants=counts.rows,
        num_errors=counts.errors,
        num_resumed=len(done),
        scenarios_shipped=shipper.shipped,  # base scenarios sent through the object store
        rejected=dict(sorted(rejected.items())),
        num_rejected=int(sum(rejected.values())),
        consolidated=consolidate_tables,
    )
    rd.write_manifest(manifest)
    return RunResult(run_dir, counts.rows, counts.errors, len(done), dict(rejected), wall, manifest)


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
EXECUTION_KEYS = (
    "workers", "executor", "address", "chunk_size", "timeout_s", "retries", "max_variants_per_worker", "max_worker_memory_mb",
    "startup_timeout_s",
)


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


@dataclass(frozen=True, slots=True)
class RowCounts:
    """Rows of a run's summary table, and of those the ones with status "error"."""

    rows: int
    errors: int


#: Rows of a table sorted in memory at a time by ``consolidate`` (one key range of it).
CONSOLIDATE_ROWS = 16_384
_KEYS = {"summary": ["variant_id"], "metrics": ["variant_id", "metric"], "series": ["variant_id", "step"]}


def consolidate(run_dir: str | Path, max_rows: int = CONSOLIDATE_ROWS) -> RowCounts:
    """Write ``summary.parquet`` and friends from the parts, sorted by variant id, batch by batch.

    Never the whole table in memory: the rows are split into ranges of variant ids of about
    ``max_rows`` rows each (bounds from a sample of the ``variant_id`` column); for each range
    the parts whose id statistics overlap it are read one by one (parts hold variants in plan
    order, so few do), its rows sorted and appended to the file by a ``ParquetWriter``. The last
    row of a variant wins (a resumed run may hold an earlier error row for it). Returns the
    summary's counts.
    """
    from evaluators.report import _schema, conform, part_files

    rd = RunDirectory(run_dir)
    counts = RowCounts(0, 0)
    for table in RESULT_FILES:
        files = [(path, *_id_range(path)) for path in part_files(rd.parts, table)]
        rows = sum(n for _, n, _, _ in files)
        if table == "series" and rows == 0:
            continue
        keys, schema = _KEYS[table], _schema(table)
        target = rd.table(table)
        tmp = target.with_name(target.name + ".tmp")
        written = errors = 0
        with pq.ParquetWriter(tmp, schema) as out:
            for lower, upper in _key_ranges([p for p, *_ in files], rows, max_rows):
                pieces = []
                for path, _, low, high in files:
                    if (upper is not None and low is not None and low >= upper) or (lower is not None and high is not None and high < lower):
                        continue  # the part's ids are all outside the range
                    data = pq.ParquetFile(path).read(use_threads=False)  # (not the datasets API: its readers hold more memory)
                    ids = data.column("variant_id")
                    mask = None
                    if lower is not None:
                        mask = pa.compute.greater_equal(ids, lower)
                    if upper is not None:
                        below = pa.compute.less(ids, upper)
                        mask = below if mask is None else pa.compute.and_(mask, below)
                    pieces.append(conform(data if mask is None else data.filter(mask), schema))
                part = pa.concat_tables(pieces) if pieces else schema.empty_table()
                part = _last_per_key(part, keys).sort_by([(k, "ascending") for k in keys])
                if part.num_rows:
                    out.write_table(part)
                written += part.num_rows
                if table == "summary":
                    errors += int(pa.compute.sum(pa.compute.equal(part.column("status"), STATUS_ERROR)).as_py() or 0)
        os.replace(tmp, target)
        if table == "summary":
            counts = RowCounts(written, errors)
    return counts


def _id_range(path: Path) -> tuple[int, str | None, str | None]:
    """(rows, least and greatest variant id) of a part file, from its footer (None: no statistics)."""
    meta = pq.read_metadata(path)
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    column = names.index("variant_id") if "variant_id" in names else -1
    lows, highs = [], []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(column).statistics if column >= 0 else None
        if stats is None or not stats.has_min_max:
            return meta.num_rows, None, None
        lows.append(stats.min)
        highs.append(stats.max)
    return meta.num_rows, (min(lows) if lows else None), (max(highs) if highs else None)


def count_rows(run_dir: str | Path) -> RowCounts:
    """The summary's counts, from the parts (the ``variant_id`` and ``status`` columns, batch by
    batch; a variant with rows in two parts counts once, with its last row's status)."""
    from evaluators.report import scan_table

    from harness.rundir import id_digest

    digests, failed = [], []
    for batch in scan_table(RunDirectory(run_dir).parts, "summary", columns=["variant_id", "status"]):
        digests.append(np.fromiter((id_digest(v) for v in batch.column("variant_id").to_pylist()), dtype="S16"))
        failed.append(pa.compute.equal(batch.column("status"), STATUS_ERROR).fill_null(False).to_numpy(zero_copy_only=False))
    if not digests:
        return RowCounts(0, 0)
    ids, errors = np.concatenate(digests)[::-1], np.concatenate(failed)[::-1]
    _, last = np.unique(ids, return_index=True)  # the first in reverse: each variant's last row
    return RowCounts(len(last), int(errors[last].sum()))


def _key_ranges(files: Sequence[Path], rows: int, max_rows: int) -> list[tuple[str | None, str | None]]:
    """[lower, upper) ranges of ``variant_id`` (None: unbounded) that split the parts' ``rows``
    into about ``max_rows`` each; one unbounded range for a table that fits. Bounds come from
    every k-th id, read a part at a time."""
    if rows <= max_rows:
        return [(None, None)]
    ranges = rows // max_rows + 1
    step = max(1, rows // (64 * ranges))
    sample: list[str] = []
    for path in files:
        ids = pq.ParquetFile(path).read(columns=["variant_id"], use_threads=False).column("variant_id")
        sample.extend(ids.take(np.arange(0, len(ids), step)).to_pylist())
    sample.sort()
    bounds = sorted({sample[len(sample) * i // ranges] for i in range(1, ranges)})
    edges: list[str | None] = [None, *bounds, None]
    return list(zip(edges[:-1], edges[1:]))


def _last_per_key(table: pa.Table, keys: list[str]) -> pa.Table:
    """``table`` with only the last row of each key (in the order read)."""
    if table.num_rows == 0:
        return table
    rows = table.append_column("__row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    last = rows.group_by(keys, use_threads=False).aggregate([("__row", "max")])
    if last.num_rows == table.num_rows:
        return table
    return table.take(np.sort(last.column("__row_max").to_numpy()))
