"""The Parquet reports: a wide summary table, a tidy metrics table and optional per-step series.

A report is a directory holding one Parquet dataset per table::

    <report>/summary/part-*.parquet   one row per (run, variant): identity, status, error, metrics
    <report>/metrics/part-*.parquet   one row per (run, variant, metric): value, unit, passed
    <report>/series/part-*.parquet    one row per (run, variant, step), for the variants asked for

Many writers (one per worker) add rows concurrently: each flush writes its own part file under a
name no other writer uses, first to ``<report>/_tmp/`` and then renamed into place, so a reader
never sees half a file and a run that stops midway keeps every batch it flushed. Each part file
carries the table's name, the schema version and every column's unit in its Parquet metadata
(and each field's unit in the field metadata). The directories read back with
``pandas.read_parquet``, ``pyarrow.parquet.read_table`` / ``pyarrow.dataset`` and
``ray.data.read_parquet``.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from evaluators.base import metric_specs
from evaluators.errors import EvaluatorError
from evaluators.summary import (
    IDENTITY_COLUMNS,
    SERIES_UNITS,
    STATUS_ERROR,
    TEXT_COLUMNS,
    VERDICT_COLUMNS,
    Evaluation,
    error_summary,
)

#: Version of the three table schemas; bump on any incompatible change.
SCHEMA_VERSION = 2

#: Parquet key-value metadata keys.
META_TABLE = "drivetwin.table"
META_VERSION = "drivetwin.schema_version"
META_UNITS = "drivetwin.units"

#: Table names (and their sub-directories).
SUMMARY = "summary"
METRICS = "metrics"
SERIES = "series"
TABLES = (SUMMARY, METRICS, SERIES)

# --- column names ------------------------------------------------------------------------
RUN_ID = "run_id"
VARIANT_ID = "variant_id"
SCENARIO_ID = "scenario_id"
EGO_ID = "ego_id"
DATASET = "dataset"
POLICY = "policy"
DYNAMICS = "dynamics"
AGENTS_MODE = "agents_mode"
TERMINATION = "termination"
NUM_STEPS = "num_steps"
DURATION_S = "duration_s"
STATUS = "status"
ERROR = "error"
TRACEBACK = "traceback"
# run columns: filled by the harness runner (null when rows come from elsewhere)
MUTATION = "mutation"
PARAMS = "params"
SEED = "seed"
ATTEMPTS = "attempts"
WORKER_S = "worker_s"
#: Columns the runner adds to each summary row: the mutation sweep, its sampled parameters
#: (JSON), the env seed, how many times the variant was started and its wall time in the worker.
RUN_COLUMNS = (MUTATION, PARAMS, SEED, ATTEMPTS, WORKER_S)
# planner columns: a planner in another process (harness.remote); null for in-process policies
PLANNER_LATENCY_P50_MS = "planner_latency_p50_ms"
PLANNER_LATENCY_P99_MS = "planner_latency_p99_ms"
PLANNER_LATENCY_MAX_MS = "planner_latency_max_ms"
DEADLINE_MISSES = "deadline_misses"
#: The planner's reply latency over the episode's steps (replies that arrived) and, in real-time
#: mode, the steps whose reply came after its deadline (the twin executed the fallback).
PLANNER_COLUMNS = (PLANNER_LATENCY_P50_MS, PLANNER_LATENCY_P99_MS, PLANNER_LATENCY_MAX_MS, DEADLINE_MISSES)
COLLISIONS = "collisions"
AT_FAULT_COLLISIONS = "at_fault_collisions"
DRIVABLE_AREA_COMPLIANCE = "drivable_area_compliance"
DRIVING_DIRECTION_COMPLIANCE = "driving_direction_compliance"
PROGRESS_RATIO = "progress_ratio"
MIN_TTC_S = "min_ttc_s"
SPEED_LIMIT_COMPLIANCE = "speed_limit_compliance"
COMFORTABLE = "comfortable"
ADE_M = "ade_m"
FDE_M = "fde_m"
CLOSED_LOOP_SCORE = "closed_loop_score"
DRIVING_SCORE = "driving_score"
# tidy table
METRIC = "metric"
VALUE = "value"
UNIT = "unit"
PASSED = "passed"
# series table
STEP = "step"
T_S = "t_s"
SPEED_MPS = "speed_mps"
LON_ACCEL_MPS2 = "lon_accel_mps2"
LAT_ACCEL_MPS2 = "lat_accel_mps2"
TTC_S = "ttc_s"
ROAD_EDGE_DISTANCE_M = "road_edge_distance_m"

#: Summary columns that CI scripts and dashboards rely on (issue 4); always present.
REQUIRED_SUMMARY_COLUMNS = (
    VARIANT_ID, SCENARIO_ID, EGO_ID, STATUS, ERROR, COLLISIONS, AT_FAULT_COLLISIONS, DRIVABLE_AREA_COMPLIANCE,
    DRIVING_DIRECTION_COMPLIANCE, PROGRESS_RATIO, MIN_TTC_S, SPEED_LIMIT_COMPLIANCE, COMFORTABLE, ADE_M, FDE_M,
    CLOSED_LOOP_SCORE, DRIVING_SCORE,
)  # fmt: skip

_IDENTITY_TYPES: dict[str, tuple[pa.DataType, str]] = {
    RUN_ID: (pa.string(), ""),
    VARIANT_ID: (pa.string(), ""),
    SCENARIO_ID: (pa.string(), ""),
    EGO_ID: (pa.string(), ""),
    DATASET: (pa.string(), ""),
    POLICY: (pa.string(), ""),
    DYNAMICS: (pa.string(), ""),
    AGENTS_MODE: (pa.string(), ""),
    TERMINATION: (pa.string(), ""),
    NUM_STEPS: (pa.int64(), "count"),
    DURATION_S: (pa.float64(), "s"),
    STATUS: (pa.string(), ""),
    ERROR: (pa.string(), ""),
    TRACEBACK: (pa.string(), ""),
    MUTATION: (pa.string(), ""),
    PARAMS: (pa.string(), "json"),
    SEED: (pa.int64(), ""),
    ATTEMPTS: (pa.int64(), "count"),
    WORKER_S: (pa.float64(), "s"),
    PLANNER_LATENCY_P50_MS: (pa.float64(), "ms"),
    PLANNER_LATENCY_P99_MS: (pa.float64(), "ms"),
    PLANNER_LATENCY_MAX_MS: (pa.float64(), "ms"),
    DEADLINE_MISSES: (pa.int64(), "count"),
}
_UNIT_TYPES = {"bool": pa.bool_(), "count": pa.int64()}


def _field(name: str, dtype: pa.DataType, unit: str, description: str = "") -> pa.Field:
    meta = {"unit": unit} | ({"description": description} if description else {})
    return pa.field(name, dtype, nullable=True, metadata=meta)


def _with_metadata(fields: list[pa.Field], table: str) -> pa.Schema:
    units = {f.name: f.metadata[b"unit"].decode() for f in fields}
    meta = {META_TABLE: table, META_VERSION: str(SCHEMA_VERSION), META_UNITS: json.dumps(units, sort_keys=True)}
    return pa.schema(fields, metadata=meta)


def summary_schema() -> pa.Schema:
    """The summary table's schema: run_id, the identity columns, then every registered metric.

    Units: "" for text, "count", "bool", "1" for ratios and scores, else SI.
    """
    assert set(IDENTITY_COLUMNS) <= set(_IDENTITY_TYPES)
    fields = [_field(name, *_IDENTITY_TYPES[name]) for name in (RUN_ID, *IDENTITY_COLUMNS, *RUN_COLUMNS, *PLANNER_COLUMNS)]
    for spec in metric_specs():
        fields.append(_field(spec.name, _UNIT_TYPES.get(spec.unit, pa.float64()), spec.unit, spec.description))
    fields += [_field(name, pa.string(), "", TEXT_COLUMNS[name]) for name in VERDICT_COLUMNS]
    return _with_metadata(fields, SUMMARY)


#: The tidy table: one row per (run, variant, metric).
METRICS_SCHEMA = _with_metadata(
    [
        _field(RUN_ID, pa.string(), ""),
        _field(VARIANT_ID, pa.string(), ""),
        _field(SCENARIO_ID, pa.string(), ""),
        _field(EGO_ID, pa.string(), ""),
        _field(METRIC, pa.string(), ""),
        _field(VALUE, pa.float64(), "see the unit column", "bools are 1/0; NaN when undefined"),
        _field(UNIT, pa.string(), ""),
        _field(PASSED, pa.bool_(), "bool", "null when the metric has no threshold"),
    ],
    METRICS,
)

#: The per-step series: one row per (run, variant, step).
SERIES_SCHEMA = _with_metadata(
    [_field(RUN_ID, pa.string(), ""), _field(VARIANT_ID, pa.string(), "")]
    + [_field(name, pa.int64() if name == STEP else pa.float64(), unit) for name, unit in SERIES_UNITS.items()],
    SERIES,
)

SUMMARY_SCHEMA = summary_schema()
#: The summary schema by the registered metrics' names (``SUMMARY_SCHEMA`` is the built-in one).
_SUMMARY_SCHEMAS = {tuple(spec.name for spec in metric_specs()): SUMMARY_SCHEMA}
assert all(c in SUMMARY_SCHEMA.names for c in REQUIRED_SUMMARY_COLUMNS)

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _schema(table: str) -> pa.Schema:
    if table == SUMMARY:  # metrics registered after import (plug-ins) get their columns too
        names = tuple(spec.name for spec in metric_specs())
        if names not in _SUMMARY_SCHEMAS:
            _SUMMARY_SCHEMAS[names] = summary_schema()
        return _SUMMARY_SCHEMAS[names]
    return {METRICS: METRICS_SCHEMA, SERIES: SERIES_SCHEMA}[table]


def _utf8(value: Any) -> Any:
    """A string UTF-8 can hold: lone surrogates (a policy's message about an undecodable file
    name, say) become their ``\\udcff`` escapes instead of failing the whole part."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value


def _to_table(rows: list[Mapping[str, Any]], schema: pa.Schema, source: str) -> pa.Table:
    names = set(schema.names)
    for row in rows:
        if not row.keys() <= names:
            extra = set(row) - names
            raise EvaluatorError(source, min(extra), f"not a column of the {schema.metadata[META_TABLE.encode()].decode()} table")
    try:  # all rows at once in Arrow's C++ converter (missing keys are nulls)
        struct = pa.array(rows, type=pa.struct(list(schema)))
        return pa.Table.from_arrays(struct.flatten(), schema=schema)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        pass  # a value Arrow does not convert itself (e.g. a numeric string): column by column below
    columns = {}
    for f in schema:
        values = [row.get(f.name) for row in rows]
        if pa.types.is_floating(f.type):
            values = [None if v is None else float(v) for v in values]
        elif pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            values = [_utf8(v) for v in values]
        columns[f.name] = pa.array(values, type=f.type)
    return pa.Table.from_pydict(columns, schema=schema)


def write_part(directory: str | Path, table: str, rows: list[Mapping[str, Any]], *, part_name: str) -> Path | None:
    """Write ``rows`` as one new part file of ``table`` under the report ``directory``, atomically.

    The file is written to ``<directory>/_tmp/`` and renamed to ``<directory>/<table>/<part_name>.parquet``;
    nothing is written for no rows. Returns the part's path (None when empty).
    """
    if table not in TABLES:
        raise EvaluatorError(directory, "table", f"unknown table {table!r}; known: {TABLES}")
    if not rows:
        return None
    root = Path(directory)
    final_dir = root / table
    tmp_dir = root / "_tmp"
    final_dir.mkdir(parents=True, exist_ok=True)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    data = _to_table(rows, _schema(table), str(root))
    final = final_dir / f"{part_name}.parquet"
    if final.exists():
        raise EvaluatorError(root, "part", f"{final.name} already exists; every writer needs its own writer_id")
    tmp = tmp_dir / f"{table}-{part_name}.parquet.tmp"
    pq.write_table(data, tmp)
    os.replace(tmp, final)
    return final


class ReportWriter:
    """Adds rows to a report directory; one writer per worker, many writers per report.

    Rows are buffered and written as one part file per table every ``flush_every`` variants (1:
    after each variant, so a crash loses nothing already added), at ``flush()`` and at ``close()``.
    ``on_flush`` is called before each flush writes (the runner puts its task log on disk
    first, so that every stored result has its task).

    Args:
        directory: the report directory (created when missing).
        run_id: stamped on every row.
        writer_id: unique among the report's writers (default: process id plus a random suffix);
            it names the part files, never the data.
        flush_every: variants per part file.
    """

    def __init__(
        self, directory: str | Path, run_id: str, *, writer_id: str | None = None, flush_every: int = 1,
        on_flush: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        if flush_every < 1:
            raise EvaluatorError(directory, "flush_every", f"must be >= 1, got {flush_every}")
        self.directory = Path(directory)
        self.run_id = str(run_id)
        self.writer_id = _SAFE.sub("_", writer_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self.flush_every = int(flush_every)
        self._buffers: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
        self._pending = 0
        self._seq = 0
        self.on_flush = on_flush
        self.parts: list[Path] = []

    def add(self, evaluation: Evaluation) -> None:
        """Add one variant's evaluation (its summary row, tidy rows and series if any)."""
        self.add_rows(evaluation.summary, evaluation.metrics, evaluation.series)

    def add_rows(
        self,
        summary: Mapping[str, Any],
        metrics: Iterable[Mapping[str, Any]] = (),
        series: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Add one variant's summary row, its tidy rows and (optionally) its per-step series."""
        stamp = {RUN_ID: self.run_id}
        self._buffers[SUMMARY].append({**summary, **stamp})
        self._buffers[METRICS].extend({**row, **stamp} for row in metrics)
        if series is not None:
            n = len(series[STEP])
            cols = {k: np.asarray(v) for k, v in series.items()}
            self._buffers[SERIES].extend(
                {**stamp, VARIANT_ID: summary[VARIANT_ID], **{k: cols[k][i].item() for k in cols}} for i in range(n)
            )
        self._pending += 1
        if self._pending >= self.flush_every:
            self.flush()

    def add_error(self, variant_id: str, scenario_id: str, ego_id: str, message: str, **identity: Any) -> None:
        """Add the error row of a variant that failed (status "error", the message, metrics null)."""
        self.add_rows(error_summary(variant_id, scenario_id, ego_id, message, **identity))

    def flush(self) -> list[Path]:
        """Write what is buffered, one part file per table; returns the new parts.

        Safe against an interrupt (Ctrl-C, a signal) at any point: each part name is used once, a
        table's rows leave the buffer only once its part is in place, and the summary part, which
        is what ``--resume`` counts as finished, is written after the metrics and series parts.
        A flush that an interrupt cut short writes what is left at the next flush (or close).
        """
        if not self._pending:
            return []
        if self.on_flush is not None:
            self.on_flush()
        name = f"part-{_SAFE.sub('_', self.run_id)}-{self.writer_id}-{self._seq:06d}"
        self._seq += 1
        new = []
        for table in (METRICS, SERIES, SUMMARY):
            rows, self._buffers[table] = self._buffers[table], []
            if not rows:
                continue
            try:
                path = write_part(self.directory, table, rows, part_name=name)
            except BaseException:
                if not (self.directory / table / f"{name}.parquet").exists():
                    self._buffers[table] = rows + self._buffers[table]  # not written: the next flush takes them
                raise
            if path is not None:
                new.append(path)
                self.parts.append(path)
        self._pending = 0
        return new

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_table(directory: str | Path, table: str = SUMMARY) -> pa.Table:
    """One table of a report as a pyarrow table (empty, with the schema, when nothing was written)."""
    if table not in TABLES:
        raise EvaluatorError(directory, "table", f"unknown table {table!r}; known: {TABLES}")
    path = Path(directory) / table
    if not path.is_dir() or not any(path.glob("*.parquet")):
        return _schema(table).empty_table()
    return pq.read_table(path, schema=_schema(table))


def part_files(directory: str | Path, table: str = SUMMARY) -> list[Path]:
    """The part files of one table of a report, in name order."""
    if table not in TABLES:
        raise EvaluatorError(directory, "table", f"unknown table {table!r}; known: {TABLES}")
    path = Path(directory) / table
    return sorted(path.glob("*.parquet")) if path.is_dir() else []


def scan_table(
    directory: str | Path, table: str = SUMMARY, *, columns: Sequence[str] | None = None,
    mutations: Sequence[str] | None = None, batch_rows: int = 65536,
) -> Iterator[pa.RecordBatch]:
    """One table of a report, batch by batch, one part file after another (never the whole
    table in memory, and no read-ahead of many files at once); only ``columns`` when given,
    only the rows of the sweeps ``mutations`` when given. Each batch has the table's schema (a
    column a part lacks, e.g. a plug-in's metric, is null), or ``columns`` of it."""
    import pyarrow.compute as pc

    schema = _schema(table)
    wanted = list(columns) if columns is not None else schema.names
    read = wanted if mutations is None or MUTATION in wanted else [*wanted, MUTATION]
    for path in part_files(directory, table):
        part = pq.ParquetFile(path)
        present = [c for c in read if c in part.schema_arrow.names]
        for batch in part.iter_batches(batch_size=batch_rows, columns=present, use_threads=False):
            if mutations is not None:
                batch = batch.filter(pc.is_in(batch.column(MUTATION), value_set=pa.array(list(mutations), pa.string())))
            if batch.num_rows:
                yield from conform(pa.Table.from_batches([batch]), schema, wanted).to_batches()


def conform(data: pa.Table, schema: pa.Schema, names: Sequence[str] | None = None) -> pa.Table:
    """``data`` with exactly the columns ``names`` (default: all) of ``schema``, in its order and
    types; a column ``data`` lacks is null."""
    fields = [schema.field(n) for n in (names if names is not None else schema.names)]
    arrays = [
        data.column(f.name).cast(f.type) if f.name in data.column_names else pa.nulls(data.num_rows, f.type)
        for f in fields
    ]  # fmt: skip
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=schema.metadata))


def read_summary(directory: str | Path) -> pd.DataFrame:
    """The summary table as a DataFrame (nullable dtypes: Int64, boolean, string)."""
    return read_table(directory, SUMMARY).to_pandas(types_mapper=_nullable)


def read_metrics(directory: str | Path) -> pd.DataFrame:
    """The tidy metrics table as a DataFrame."""
    return read_table(directory, METRICS).to_pandas(types_mapper=_nullable)


def read_series(directory: str | Path) -> pd.DataFrame:
    """The per-step series as a DataFrame."""
    return read_table(directory, SERIES).to_pandas(types_mapper=_nullable)


def _nullable(dtype: pa.DataType) -> Any:
    if pa.types.is_integer(dtype):
        return pd.Int64Dtype()
    if pa.types.is_boolean(dtype):
        return pd.BooleanDtype()
    return None


def units(schema: pa.Schema) -> dict[str, str]:
    """Column -> unit, from a report table's metadata."""
    meta = schema.metadata or {}
    raw = meta.get(META_UNITS.encode())
    if raw is None:
        raise EvaluatorError("schema", META_UNITS, "no units in the schema metadata (not a drivetwin report table)")
    return json.loads(raw)


def error_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The variants that failed."""
    return summary[summary[STATUS] == STATUS_ERROR]
