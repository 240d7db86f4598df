"""Replay one variant of a run exactly, check it against the stored result, and picture it.

A run does not store trajectories; it stores what is needed to make them again: the resolved
suite config in ``manifest.json`` (env, policy, evaluators) and every variant's task in
``tasks.jsonl`` (library, base scenario, mutation spec, seed). ``Replayer`` rebuilds the
variant's scenario with ``VariantWorker.build_scenario``, drives it with the run's policy and
the task's seed in a twin made from the run's ``[env]`` table, scores it, and compares the fresh
summary row with the stored one column by column (exact equality, NaN equal to NaN). Columns
that describe how the run went rather than what the driving was (``run_id``, ``attempts``,
``worker_s``, ``traceback``) are not compared.

Usage::

    replayer = Replayer("runs/smoke-20260101-120000")
    result = replayer.replay("commonroad-USA_US101-4_1_T-1.ego-381")
    result.exact, result.mismatches
    result.picture("out.png")
"""

from __future__ import annotations

import difflib
import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.rundir import REPLAYS_DIR, RunDirectory, RunError
from harness.config import ConfigError
from harness.plugins import load_plugins
from harness.worker import (
    VariantFailed,
    VariantTask,
    VariantWorker,
    episode_summary,
    failure_summary,
)

#: Summary columns that say how the run went, not what the driving was: never compared (a
#: traceback names the files of the machine that ran it; the error message itself is compared).
RUN_ONLY_COLUMNS = (
    "run_id", "attempts", "worker_s", "traceback", "planner_latency_p50_ms", "planner_latency_p99_ms", "planner_latency_max_ms",
)  # fmt: skip
#: The scores ``drivetwin replay`` prints.
KEY_COLUMNS = (
    "status", "termination", "closed_loop_score", "driving_score", "collisions", "at_fault_collisions",
    "min_ttc_s", "progress_ratio", "drivable_area_max_distance_m", "ade_m",
)  # fmt: skip


class ReplayError(RuntimeError):
    """A variant cannot be replayed (unknown id, not a run, policy not importable, library gone)."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A summary column whose replayed value differs from the stored one."""

    column: str
    stored: Any
    replayed: Any

    def __str__(self) -> str:
        return f"{self.column}: stored {self.stored!r}, replayed {self.replayed!r}"


@dataclass(slots=True)
class ReplayResult:
    """One replayed variant.

    Attributes:
        run_dir: the run it came from.
        task: the variant's task (from ``tasks.jsonl``).
        row: the fresh summary row (the worker's columns, without ``RUN_ONLY_COLUMNS``).
        stored: the run's summary row for the variant (None when the run holds none).
        mismatches: columns that differ; empty when the replay is exact.
        scenario: the variant's scenario (None when it could not be built).
        rollout: the episode (None when none ran; cut short when the policy failed midway).
        eval_config: the evaluators' config of the run.
    """

    run_dir: Path
    task: VariantTask
    row: dict[str, Any]
    stored: dict[str, Any] | None
    mismatches: list[Mismatch] = field(default_factory=list)
    scenario: Any = None
    rollout: Any = None
    eval_config: Any = None

    @property
    def variant_id(self) -> str:
        return self.task.variant_id

    @property
    def exact(self) -> bool:
        """The fresh row equals the stored one in every compared column."""
        return self.stored is not None and not self.mismatches

    def picture(self, path: str | Path | None = None, fmt: str | None = None, **options: Any) -> bytes:
        """The bird's-eye picture (PNG or GIF bytes, from ``fmt`` or ``path``'s suffix; default PNG).

        Raises ``ReplayError`` when there is no episode to draw (the variant failed before driving).
        """
        from harness import plots

        fmt = (fmt or (Path(path).suffix.lstrip(".") if path else "png")).lower()
        if fmt not in ("png", "gif"):
            raise ReplayError(f"{path}: pictures are .png or .gif, not .{fmt}")
        if self.rollout is None or self.scenario is None:
            raise ReplayError(f"{self.variant_id}: no episode to draw ({self.row.get('error') or 'it did not run'})")
        if fmt == "gif":
            return plots.render_gif(self.scenario, self.rollout, summary=self.row, path=path, **options)
        return plots.render_png(self.scenario, self.rollout, summary=self.row, eval_config=self.eval_config, path=path, **options)


def load_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``manifest.json``; ``ReplayError`` when it is missing or unreadable."""
    try:
        return RunDirectory(run_dir).read_manifest()
    except RunError as exc:
        raise ReplayError(str(exc)) from None


def check_policy_importable(name: str, where: str) -> None:
    """Raise ``ReplayError`` when a ``package.module:Name`` policy cannot be imported here."""
    if ":" not in name:
        return
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - ImportError, or the module failing at import
        raise ReplayError(
            f"{where}: the run's policy {name!r} is not importable here ({type(exc).__name__}: {exc}); "
            f"install its package or put it on PYTHONPATH to replay this run"
        ) from None
    if not hasattr(module, attr):
        raise ReplayError(f"{where}: the run's policy {name!r}: module {module_name!r} has no attribute {attr!r}")


def _plain(value: Any) -> Any:
    """A summary cell as a plain Python value; every kind of missing (None, NaN, pd.NA) as None."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    return value


def compare_rows(stored: Mapping[str, Any], fresh: Mapping[str, Any], skip: tuple[str, ...] = RUN_ONLY_COLUMNS) -> list[Mismatch]:
    """Columns of ``stored`` whose value differs in ``fresh`` (exact; NaN and None equal each other).

    A column of ``stored`` absent from ``fresh`` counts as missing (None) there.
    """
    out = []
    for column in stored:
        if column in skip:
            continue
        a, b = _plain(stored[column]), _plain(fresh.get(column))
        if a is None or b is None:
            same = a is None and b is None
        elif isinstance(a, (bool, int, float)) and isinstance(b, (bool, int, float)):
            same = a == b
        else:
            same = type(a) is type(b) and a == b
        if not same:
            out.append(Mismatch(column, a, b))
    return out


def _remote_options(config: Mapping[str, Any], run_dir: Path) -> dict[str, Any] | None:
    """The run's remote planner (``[policy] address/command``) for the replay, or None."""
    from harness.config import parse_suite
    from harness.runner import remote_options

    policy = config.get("policy") or {}
    if not (policy.get("address") or policy.get("command")):
        return None
    keys = ("name", "address", "command", "realtime_factor", "fallback")
    run = config.get("run") or {}
    suite = parse_suite({
        "policy": {k: policy[k] for k in keys if k in policy},
        "run": {k: run[k] for k in ("timeout_s", "retries") if k in run},
    }, str(run_dir / "manifest.json"))
    return remote_options(suite, run_dir / REPLAYS_DIR)


class Replayer:
    """Replays variants of one run; keeps its twin and policy between variants (like a run's worker).

    Args:
        run_dir: the run directory (``manifest.json``, ``tasks.jsonl``, ``summary.parquet``).

    Raises:
        ReplayError: not a run, or the run's policy is not importable here.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.directory = RunDirectory(run_dir)
        self.run_dir = self.directory.path
        self.manifest = load_manifest(self.run_dir)
        config = self.manifest.get("config") or {}
        policy = config.get("policy") or {}
        self.policy_name = str(policy.get("name", "expert"))
        plugins = tuple(config.get("plugins") or ())
        try:
            load_plugins(plugins, f"run {self.run_dir}")
        except ConfigError as exc:
            raise ReplayError(f"{exc}; install it or put it on PYTHONPATH to replay this run") from None
        remote = _remote_options(config, self.run_dir)
        if remote is None:
            check_policy_importable(self.policy_name, f"run {self.run_dir}")
        self.worker = VariantWorker(
            dict(config.get("env") or {}),
            self.policy_name,
            dict(policy.get("options") or {}),
            dict(config.get("evaluators") or {}),
            remote=remote,
            plugins=plugins,
        )
        if not self.directory.tasks.exists():
            raise ReplayError(str(RunError(f"{self.run_dir}: not a run directory (no {self.directory.tasks.name})")))
        self._stored: dict[str, dict[str, Any] | None] = {}

    def task(self, variant_id: str) -> VariantTask:
        """The variant's task (``tasks.jsonl`` read line by line, never whole); ``ReplayError``
        naming the run (and close ids) when it has none."""
        try:
            task = self.directory.find_task(variant_id)
        except RunError as exc:
            raise ReplayError(str(exc)) from None
        if task is None:
            count, close = self._close_ids(variant_id)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ReplayError(f"run {self.run_dir} has no variant {variant_id!r} ({count} variants in its tasks.jsonl){hint}")
        library = Path(task.library)
        if not library.exists():
            moved = self.directory.library
            if library.name == moved.name and moved.exists():
                return VariantTask(**{**task.to_dict(), "library": str(moved.resolve())})
            raise ReplayError(f"run {self.run_dir}: variant {variant_id!r}: its scenario library {task.library} is gone")
        return task

    def _close_ids(self, variant_id: str) -> tuple[int, list[str]]:
        """(variants in tasks.jsonl, up to three ids close to ``variant_id``), streamed: the
        candidates are the ids of the closest base scenarios, not every variant of the run."""
        scenario = variant_id.partition("~")[0]
        count, scenarios = 0, set()
        for task in self.directory.iter_tasks():
            count += 1
            scenarios.add(task.scenario_id)
        near = set(difflib.get_close_matches(scenario, list(scenarios), n=3)) | ({scenario} & scenarios)
        candidates = [t.variant_id for t in self.directory.iter_tasks() if t.scenario_id in near]
        return count, difflib.get_close_matches(variant_id, candidates, n=3)

    def stored_row(self, variant_id: str) -> dict[str, Any] | None:
        """The run's summary row of the variant (the last one, for an unfinished run's parts),
        read with a filter on its id (never the whole table)."""
        if variant_id not in self._stored:
            self._stored[variant_id] = self._read_row(variant_id)
        return self._stored[variant_id]

    def _read_row(self, variant_id: str) -> dict[str, Any] | None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from evaluators.report import scan_table

        if self.directory.summary.exists():
            table = pq.read_table(self.directory.summary, filters=[("variant_id", "==", variant_id)])
        elif self.directory.parts.exists():
            import pyarrow.compute as pc

            batches = [b.filter(pc.equal(b.column("variant_id"), variant_id)) for b in scan_table(self.directory.parts, "summary")]
            table = pa.Table.from_batches([b for b in batches if b.num_rows]) if any(b.num_rows for b in batches) else None
        else:
            table = None
        if table is None or table.num_rows == 0:
            return None
        return table.to_pandas().to_dict("records")[-1]

    def replay(self, variant_id: str) -> ReplayResult:
        """Run the variant again, exactly as ``VariantWorker.run`` did, and compare its summary row."""
        task = self.task(variant_id)
        try:
            episode = self.worker.episode(task)
            row, scenario, record = episode_summary(task, episode), episode.scenario, episode.rollout
        except VariantFailed as exc:  # the variant fails as it did in the run: draw what it did
            row, scenario, record = failure_summary(task, exc), exc.scenario, self._partial_episode(exc.scenario)
        stored = self.stored_row(variant_id)
        mismatches = compare_rows(stored, row) if stored is not None else []
        return ReplayResult(self.run_dir, task, row, stored, mismatches, scenario, record, self.worker.eval_config)

    def _partial_episode(self, scenario: Any) -> Any:
        """The episode of ``scenario`` up to a failure (a policy that raised midway), or None."""
        env = self.worker.env
        if scenario is None or env.scenario is None or env.scenario.id != scenario.id:
            return None
        try:
            record = env.rollout_record(policy=self.policy_name)
            return record if record.num_steps >= 2 else None
        except Exception:  # noqa: BLE001
            return None

    def close(self) -> None:
        self.worker.close()

    def __enter__(self) -> Replayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def replay_variant(run_dir: str | Path, variant_id: str) -> ReplayResult:
    """Replay one variant of ``run_dir`` (see ``Replayer.replay``)."""
    with Replayer(run_dir) as replayer:
        return replayer.replay(variant_id)


def default_picture_path(run_dir: str | Path, variant_id: str, fmt: str = "png") -> Path:
    """``<run>/replays/<variant_id>.<fmt>``."""
    return RunDirectory(run_dir).replays / f"{variant_id}.{fmt}"


def format_scores(row: Mapping[str, Any]) -> str:
    """The key scores of a summary row, ``name value`` pairs on one line."""
    parts = []
    for column in KEY_COLUMNS:
        value = _plain(row.get(column))
        if value is None:
            continue
        parts.append(f"{column} {value:.3f}" if isinstance(value, float) else f"{column} {value}")
    return "  ".join(parts)


__all__ = [
    "KEY_COLUMNS",
    "Mismatch",
    "REPLAYS_DIR",
    "RUN_ONLY_COLUMNS",
    "ReplayError",
    "ReplayResult",
    "Replayer",
    "check_policy_importable",
    "compare_rows",
    "default_picture_path",
    "format_scores",
    "load_manifest",
    "replay_variant",
]
