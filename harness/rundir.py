"""One run directory: where each of its files lives, and reading them back.

The runner writes a run through it; replay, report, compare and gate read it. Layout::

    manifest.json      the resolved config, package versions, seeds, counts, timings, host
    tasks.jsonl        every variant: id, base scenario, library, mutation spec, seed (replay reads it)
    parts/             results as they arrive: summary/, metrics/, series/ part files
    summary.parquet    one row per variant, sorted by variant id (written when the run ends)
    metrics.parquet    one row per (variant, metric)
    series.parquet     per-step series (``save_steps``)
    report.html        ``drivetwin report``'s page
    library/           raw log files named as sources, imported once
    replays/           ``drivetwin replay``'s pictures
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness.worker import VariantTask

MANIFEST = "manifest.json"
TASKS = "tasks.jsonl"
PARTS = "parts"
IMPORTED_LIBRARY = "library"
REPORT_FILE = "report.html"
REPLAYS_DIR = "replays"
RESULT_FILES = {"summary": "summary.parquet", "metrics": "metrics.parquet", "series": "series.parquet"}


class RunError(RuntimeError):
    """A run cannot start, resume or be read: names the run directory and the problem."""


class RunDirectory:
    """The files of one run under ``path`` (a ``RunDirectory`` or any path-like)."""

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def name(self) -> str:
        """The run id (the directory's name)."""
        return self.path.name

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    @property
    def tasks(self) -> Path:
        return self.path / TASKS

    @property
    def parts(self) -> Path:
        return self.path / PARTS

    @property
    def summary(self) -> Path:
        return self.path / RESULT_FILES["summary"]

    @property
    def metrics(self) -> Path:
        return self.path / RESULT_FILES["metrics"]

    @property
    def series(self) -> Path:
        return self.path / RESULT_FILES["series"]

    @property
    def report(self) -> Path:
        return self.path / REPORT_FILE

    @property
    def library(self) -> Path:
        return self.path / IMPORTED_LIBRARY

    @property
    def replays(self) -> Path:
        return self.path / REPLAYS_DIR

    def table(self, name: str) -> Path:
        """The consolidated file of table ``name`` ("summary", "metrics" or "series")."""
        return self.path / RESULT_FILES[name]

    # --- the manifest -------------------------------------------------------------------------

    def read_manifest(self) -> dict[str, Any]:
        """The run's manifest; ``RunError`` when it is missing or not JSON."""
        try:
            return json.loads(self.manifest.read_text())
        except FileNotFoundError:
            raise RunError(f"{self.path}: not a run directory (no {MANIFEST})") from None
        except json.JSONDecodeError as exc:
            raise RunError(f"{self.manifest}: not valid JSON: {exc}") from None

    def write_manifest(self, data: dict[str, Any]) -> None:
        """Write the manifest atomically (a reader never sees half of it)."""
        tmp = self.manifest.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, self.manifest)

    # --- the tasks ----------------------------------------------------------------------------

    def read_tasks(self) -> dict[str, VariantTask]:
        """The run's variants by id (from ``tasks.jsonl``)."""
        if not self.tasks.exists():
            raise RunError(f"{self.path}: not a run directory (no {TASKS})")
        tasks = {}
        with open(self.tasks) as fh:
            for line in fh:
                if line.strip():
                    task = VariantTask(**json.loads(line))
                    tasks[task.variant_id] = task
        return tasks

    def append_tasks(self, tasks: Sequence[VariantTask]) -> None:
        with open(self.tasks, "a") as fh:
            for task in tasks:
                fh.write(json.dumps(task.to_dict(), sort_keys=True) + "\n")

    # --- the results --------------------------------------------------------------------------

    def read_summary(self) -> pd.DataFrame:
        """The summary table (the consolidated file, or the parts of an unfinished run)."""
        from evaluators.report import read_table

        if self.summary.exists():
            return pd.read_parquet(self.summary)
        if self.parts.exists():
            return read_table(self.parts, "summary").to_pandas()
        raise RunError(f"{self.path}: not a run directory (no {RESULT_FILES['summary']} and no {PARTS}/)")

    def stored_rows(self) -> dict[str, dict[str, Any]]:
        """Summary rows already in the parts, by variant id (the last row of a variant wins)."""
        from evaluators.report import read_table

        if not self.parts.exists():
            return {}
        return {row["variant_id"]: row for row in read_table(self.parts, "summary").to_pylist()}

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"


__all__ = [
    "IMPORTED_LIBRARY", "MANIFEST", "PARTS", "REPLAYS_DIR", "REPORT_FILE", "RESULT_FILES", "RunDirectory", "RunError", "TASKS",
]  # fmt: skip
