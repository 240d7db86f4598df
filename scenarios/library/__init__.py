"""The scenario library: scenarios stored as a Parquet dataset of four tables.

A library is a directory::

    <root>/
      _drivetwin_library.json        marker: format name and schema version
      _append.lock                   held (flock) while an append runs
      scenarios/part-<n>-<uid>.parquet     one row per scenario (the index)
      tracks/part-<n>-<uid>.parquet        one row per (tracks key, agent, step) where valid
      map_features/part-<n>-<uid>.parquet  one row per lane or map feature of a map key
      signals/part-<n>-<uid>.parquet       one row per traffic signal of a signals key

Each table directory is a plain Parquet dataset (``pyarrow.dataset.dataset(<root>/tracks)``,
``ray.data.read_parquet(<root>/tracks)``). Tracks, maps and signals are content-addressed: a key
is a hash of the content, and scenario rows reference a key plus the part file and row group that
hold it. Ego variants and windows of one log therefore share one copy of what they share.
In the data tables every key is exactly one row group, so loading a scenario reads one row
group per table and nothing else.

An append is all or nothing. It writes data parts (one per table per ``scenarios_per_part``
scenarios) as the scenarios stream in, then one scenarios part that references them; every file
is written under a hidden temporary name, fsynced and renamed into place, and the scenarios part
is renamed last: that rename is the commit. A data part no index row references is uncommitted:
readers never look at it and the next append deletes it. So an interrupted append leaves the
library as it was (plus, after a hard kill, such leftovers); re-running it is safe because ids
already stored are skipped. Many small appends make many small index parts; ``compact_index``
rewrites them as one.

The package: ``schema`` (table and column names, Arrow schemas, the schema version), ``keys``
(content hashes), ``codecs`` (scenario parts to Arrow tables and back) and ``store`` (the
``ScenarioLibrary`` class). Everything public is importable from ``scenarios.library``; ``"sample"`` names the bundled sample
library wherever a library path is taken (``resolve_path``).
"""

from __future__ import annotations

from scenarios.errors import UnknownScenarioError
from scenarios.library.codecs import (
    conditions_from_row,
    conditions_row,
    decode_map,
    decode_scenario,
    decode_signals,
    decode_tracks,
    encode_map,
    encode_signals,
    encode_tracks,
    scenario_row,
)
from scenarios.library.keys import map_key, signals_key, tracks_key
from scenarios.library.schema import *  # noqa: F403  (column and table names, schemas: see schema.__all__)
from scenarios.library.schema import __all__ as _schema_names
from scenarios.library.store import (
    DEFAULT_DECODED_CACHE,
    DEFAULT_OPEN_FILES,
    DEFAULT_SCENARIOS_PER_PART,
    DEFAULT_TRACK_ROWS_PER_PART,
    SAMPLE_NAME,
    AppendResult,
    ScenarioLibrary,
    open_library,
    is_uri,
    resolve_path,
    sample_path,
    write_library,
)

__all__ = [
    *_schema_names,
    "DEFAULT_DECODED_CACHE",
    "DEFAULT_OPEN_FILES",
    "DEFAULT_SCENARIOS_PER_PART",
    "DEFAULT_TRACK_ROWS_PER_PART",
    "SAMPLE_NAME",
    "AppendResult",
    "ScenarioLibrary",
    "UnknownScenarioError",
    "conditions_from_row",
    "conditions_row",
    "decode_map",
    "decode_scenario",
    "decode_signals",
    "decode_tracks",
    "encode_map",
    "encode_signals",
    "encode_tracks",
    "map_key",
    "open_library",
    "is_uri",
    "resolve_path",
    "sample_path",
    "scenario_row",
    "signals_key",
    "tracks_key",
    "write_library",
]
