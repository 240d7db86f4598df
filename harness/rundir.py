"""One run directory: where each of its files lives, and reading them back.

The runner writes a run through it; replay, report, compare and gate read it. Layout::

    manifest.json      the resolved config, package versions, seeds, counts, timings, host
    tasks.jsonl        every variant: id, base scenario, library, mutation spec, seed (replay reads it),
                       one line per variant, appended as variants are planned (``TaskLog``)
    parts/             results as they arrive: summary/, metrics/, series/ part files
    summary.parquet    one row per variant, sorted by variant id (written when the run ends)
    metrics.parquet    one row per (variant, metric)
    series.parquet     per-step series (``save_steps``)
    report.html        ``drivetwin report``'s page
    library/           raw log files named as sources, imported once
    replays/           ``drivetwin replay``'s pictures
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
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


class IdSet:
    """A compact set of variant ids: 16-byte BLAKE2b digests in a sorted numpy array.

    A million ids take 16 MB (a ``set`` of the strings takes over 100 MB); two ids share a digest
    with a probability of about 1e-27 for a million of them. Membership is a binary search.
    """

    __slots__ = ("_digests",)

    def __init__(self, ids: Iterable[str] = ()) -> None:
        digests = np.fromiter((id_digest(i) for i in ids), dtype="S16")
        self._digests = np.unique(digests)

    @classmethod
    def from_batches(cls, batches: Iterable[Iterable[str]]) -> IdSet:
        """The set of the ids in ``batches`` (each batch digested and merged in turn)."""
        out = cls()
        parts = [out._digests]
        for batch in batches:
            parts.append(np.unique(np.fromiter((id_digest(i) for i in batch), dtype="S16")))
            if len(parts) > 16:
                parts = [np.unique(np.concatenate(parts))]
        out._digests = np.unique(np.concatenate(parts))
        return out

    def __contains__(self, variant_id: object) -> bool:
        if not isinstance(variant_id, str) or not len(self._digests):
            return False
        key = np.bytes_(id_digest(variant_id))
        i = int(np.searchsorted(self._digests, key))
        return i < len(self._digests) and self._digests[i] == key

    def __len__(self) -> int:
        return len(self._digests)

    @property
    def nbytes(self) -> int:
        """Memory held [bytes]."""
        return int(self._digests.nbytes)


def id_digest(variant_id: str) -> bytes:
    """The 16-byte digest by which ``IdSet`` knows a variant id."""
    return hashlib.blake2b(variant_id.encode(), digest_size=16).digest()


class TaskLog:
    """``tasks.jsonl`` written as variants are planned: one JSON line per task, appended.

    Lines are buffered; ``flush`` (the runner calls it before every flush of the result parts)
    puts them on disk, so every variant with a stored result has its line. A run killed
    outright may leave a last line cut short: ``RunDirectory.iter_tasks`` skips it and
    ``TaskLog`` starts its first line on a fresh one.
    """

    BUFFER_BYTES = 1 << 20

    def __init__(self, path: str | os.PathLike[str], *, truncate: bool = False) -> None:
        self.path = Path(path)
        if truncate or not self.path.exists():
            self.path.write_text("")
        _drop_cut_line(self.path)
        self._fh: IO[str] | None = open(self.path, "a", buffering=self.BUFFER_BYTES)

    def add(self, task: VariantTask) -> None:
        """Append ``task``'s line (buffered)."""
        assert self._fh is not None, "TaskLog closed"
        self._fh.write(task_line(task))

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> TaskLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_TASK_FIELDS = tuple(sorted(VariantTask.__slots__))
_KEY_PREFIXES = tuple(("{" if i == 0 else ", ") + json.dumps(name) + ": " for i, name in enumerate(_TASK_FIELDS))


def _drop_cut_line(path: Path) -> None:
    """Truncate ``path`` after its last newline (a last line cut short goes)."""
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        end = size
        while end > 0:
            start = max(0, end - 65536)
            fh.seek(start)
            newline = fh.read(end - start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end != size:
            fh.truncate(end)


def task_line(task: VariantTask) -> str:
    """The ``tasks.jsonl`` line of ``task``: ``json.dumps(task.to_dict(), sort_keys=True)`` and a
    newline, its text and int fields encoded by ``json``'s own C string encoder (without the
    generic encoder's cost per call)."""
    parts = []
    for prefix, name in zip(_KEY_PREFIXES, _TASK_FIELDS):
        value = getattr(task, name)
        if type(value) is str:
            parts.append(prefix + _encode_str(value))
        elif type(value) is int:
            parts.append(prefix + int.__repr__(value))
        else:
            return json.dumps(task.to_dict(), sort_keys=True) + "\n"
    return "".join(parts) + "}\n"


_encode_str = json.encoder.encode_basestring_ascii


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
        """The run's variants by id (from ``tasks.jsonl``); all in memory: for small runs and
        tests (``iter_tasks`` and ``find_task`` stream)."""
        return {task.variant_id: task for task in self.iter_tasks()}

    def iter_tasks(self) -> Iterator[VariantTask]:
        """The run's variants in the order they were planned, read line by line (a line cut
        short by a run killed mid-write is skipped)."""
        if not self.tasks.exists():
            raise RunError(f"{self.path}: not a run directory (no {TASKS})")
        with open(self.tasks) as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield VariantTask(**json.loads(line))
                except (json.JSONDecodeError, TypeError) as exc:
                    if line.endswith("\n"):
                        raise RunError(f"{self.tasks}: line {number}: not a task ({exc})") from None
                    # the last line, cut short: its variant never ran (it is planned again on resume)

    def task_ids(self) -> IdSet:
        """The ids of every variant in ``tasks.jsonl`` (streamed, held compactly)."""
        return IdSet.from_batches(_batched((t.variant_id for t in self.iter_tasks()), 65536))

    def find_task(self, variant_id: str) -> VariantTask | None:
        """The task of ``variant_id`` (streamed from ``tasks.jsonl``; None when it is not there)."""
        needle = json.dumps(variant_id)
        for line in self._lines():
            if needle in line:
                task = VariantTask(**json.loads(line))
                if task.variant_id == variant_id:
                    return task
        return None

    def _lines(self) -> Iterator[str]:
        if not self.tasks.exists():
            raise RunError(f"{self.path}: not a run directory (no {TASKS})")
        with open(self.tasks) as fh:
            for line in fh:
                if line.endswith("\n") and line.strip():
                    yield line

    # --- the results --------------------------------------------------------------------------

    def read_summary(self) -> pd.DataFrame:
        """The summary table (the consolidated file, or the parts of an unfinished run)."""
        from evaluators.report import read_table

        if self.summary.exists():
            return pd.read_parquet(self.summary)
        if self.parts.exists():
            return read_table(self.parts, "summary").to_pandas()
        raise RunError(f"{self.path}: not a run directory (no {RESULT_FILES['summary']} and no {PARTS}/)")

    def stored_rows(self, mutations: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Summary rows already in the parts, by variant id (the last row of a variant wins);
        with ``mutations``, only the rows of those sweeps (read with a filter, never all rows)."""
        from evaluators.report import scan_table

        if mutations is not None and not mutations:
            return {}
        rows: dict[str, dict[str, Any]] = {}
        for batch in scan_table(self.parts, "summary", mutations=mutations):
            rows.update((row["variant_id"], row) for row in batch.to_pylist())
        return rows

    def finished_ids(self) -> IdSet:
        """The ids of the variants with a row in the parts (the ``variant_id`` column only, streamed)."""
        from evaluators.report import scan_table

        return IdSet.from_batches(b.column("variant_id").to_pylist() for b in scan_table(self.parts, "summary", columns=["variant_id"]))

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"


def _batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


__all__ = [
    "IdSet", "TaskLog", "IMPORTED_LIBRARY", "MANIFEST", "PARTS", "REPLAYS_DIR", "REPORT_FILE", "RESULT_FILES", "RunDirectory", "RunError", "TASKS",
]  # fmt: skip
