"""The store: ``ScenarioLibrary``, a directory of Parquet parts with atomic appends and loads by id.

Opening reads the scenarios table (the index); loading reads one row group per data table. An
append writes data parts as scenarios stream in, then commits them with one scenarios part,
renamed into place last (see the package docstring for the guarantees).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scenarios.common import LRU
from scenarios.errors import ScenarioError, UnknownScenarioError
from scenarios.library.codecs import (
    decode_map,
    decode_scenario,
    decode_signals,
    decode_tracks,
    empty_signals,
    encode_map,
    encode_signals,
    encode_tracks,
    scenario_row,
)
from scenarios.library.keys import map_key, signals_key, tracks_key
from scenarios.library.schema import (
    DATASET,
    DATA_TABLES,
    DT_US,
    DURATION_S,
    EGO_ID,
    FORMAT_NAME,
    KEY_COLUMN,
    LOCATION_COLUMNS,
    LOCK_FILE,
    MAP_FILE,
    MAP_KEY,
    MAP_ROW_GROUP,
    MAP_TABLE,
    MARKER_FILE,
    META_SUPERSEDES,
    NUM_AGENTS,
    NUM_CYCLISTS,
    NUM_LANES,
    NUM_MAP_FEATURES,
    NUM_OTHERS,
    NUM_PEDESTRIANS,
    NUM_SIGNALS,
    NUM_STEPS,
    NUM_VEHICLES,
    OPTIONAL_COLUMNS,
    PART_SUFFIX,
    SCENARIOS_SCHEMA,
    SCENARIOS_TABLE,
    SCENARIO_ID,
    SCHEMAS,
    SCHEMA_VERSION,
    SIGNALS_FILE,
    SIGNALS_KEY,
    SIGNALS_NUM_STEPS,
    SIGNALS_ROW_GROUP,
    SIGNALS_TABLE,
    SOURCE_FILE,
    SOURCE_LOG_ID,
    TABLES,
    TAGS,
    TMP_SUFFIX,
    TRACKS_FILE,
    TRACKS_KEY,
    TRACKS_ROW_GROUP,
    TRACKS_TABLE,
    WRITE_OPTIONS,
    check_schema,
)
from scenarios.model import RoadMap, Scenario, Tracks

T = TypeVar("T")

#: Default most scenarios per part file (one scenarios part, at most one part per data table).
#: Opening a part parses its footer, whose size and parse time grow with its row groups (one per
#: key): 64 keeps a first read of a part at a few ms and an open part at ~1 MiB of memory.
DEFAULT_SCENARIOS_PER_PART = 64
#: Default most tracks rows per part file; a part is closed early when it would hold more.
DEFAULT_TRACK_ROWS_PER_PART = 4_000_000
#: Parquet files kept open per library instance.
DEFAULT_OPEN_FILES = 128
#: Decoded tracks / maps kept per instance (ego variants and windows share them).
DEFAULT_DECODED_CACHE = 16


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What one ``append`` did.

    Attributes:
        added: ids written, in input order.
        skipped: ids already in the library (or repeated in the input), not written again.
        files: part files written (committed).
        tracks_written, maps_written, signals_written: content keys written.
        tracks_reused, maps_reused, signals_reused: references to content already stored.
        bytes_written: total size of the files written [bytes].
    """

    added: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()
    tracks_written: int = 0
    tracks_reused: int = 0
    maps_written: int = 0
    maps_reused: int = 0
    signals_written: int = 0
    signals_reused: int = 0
    bytes_written: int = 0


#: The name that means the bundled sample library wherever a library path is taken.
SAMPLE_NAME = "sample"


def sample_path() -> Path:
    """The bundled sample library (NGSIM US-101 via CommonRoad), shipped inside the package."""
    return Path(__file__).resolve().parents[1] / "sample" / "ngsim_us101"


def resolve_path(root: str | Path) -> Path:
    """A library directory from a path, or from the string ``"sample"`` (the bundled sample).

    Only the string means the sample: ``Path("sample")`` stays a directory of that name.
    """
    return sample_path() if isinstance(root, str) and root == SAMPLE_NAME else Path(root)


def _close(handle: pq.ParquetFile) -> None:
    handle.close()


def _cached(cache: LRU | None, key: str, make: Callable[[], T]) -> T:
    """``make()``, kept in ``cache`` under ``key`` (no cache: made every time)."""
    return make() if cache is None else cache.get_or_make(key, make)


def _part_name() -> str:
    """A new part file name; names sort in the order they were made."""
    return f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}{PART_SUFFIX}"


def _is_part(name: str) -> bool:
    return name.startswith("part-") and name.endswith(PART_SUFFIX)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) across processes."""
    with open(path, "a+b") as fh:
        try:
            import fcntl
        except ImportError:  # not POSIX: not guarded across processes
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ScenarioLibrary:
    """A directory of scenarios stored as four Parquet tables (see the ``scenarios.library`` docstring).

    Opening reads the scenarios table (the index) only; ``load`` then reads one row group per
    data table. The index, open Parquet files and a few decoded tracks and maps are cached in
    the instance. An instance sees other processes' appends after ``refresh()``. Appends from
    several processes are serialised by a lock file; one instance is not thread-safe.

    Args:
        root: the library directory (made by ``ScenarioLibrary.create``), or ``"sample"`` for the
            bundled NGSIM US-101 sample (``resolve_path``).
        open_files: Parquet files kept open.
        decoded_cache: decoded tracks and maps kept (each); 0 disables the cache.

    Raises:
        ScenarioError: the directory is not a library, or a part file is unreadable or corrupt.
    """

    def __init__(self, root: str | Path, *, open_files: int = DEFAULT_OPEN_FILES, decoded_cache: int = DEFAULT_DECODED_CACHE) -> None:
        self.root = resolve_path(root)
        marker = self.root / MARKER_FILE
        try:
            info = json.loads(marker.read_text())
        except FileNotFoundError:
            raise ScenarioError(self.root, "", f"not a scenario library (no {MARKER_FILE}); make one with ScenarioLibrary.create") from None
        except (OSError, ValueError) as exc:
            raise ScenarioError(marker, "", f"unreadable library marker: {exc}") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT_NAME:
            raise ScenarioError(marker, "format", f"not a {FORMAT_NAME} marker")
        if int(info.get("schema_version", 0)) > SCHEMA_VERSION:
            raise ScenarioError(marker, "schema_version", f"{info.get('schema_version')} is newer than this code's {SCHEMA_VERSION}")
        self._files: LRU[tuple[str, str], pq.ParquetFile] = LRU(max(1, open_files), on_evict=_close)
        self._tracks_cache: LRU[str, Tracks] | None = LRU(decoded_cache) if decoded_cache > 0 else None
        self._map_cache: LRU[str, RoadMap] | None = LRU(decoded_cache) if decoded_cache > 0 else None
        self._parts: dict[str, tuple[pa.Table, frozenset[str]]] = {}  # name -> (rows, parts it supersedes)
        self._live: list[str] = []
        self._index: pa.Table = SCENARIOS_SCHEMA.empty_table()
        self._row_of: dict[str, int] = {}
        self._locations: dict[str, dict[str, tuple[str, int]]] | None = None  # built on the first append
        self.refresh()

    # -- creation and opening --

    @classmethod
    def create(cls, root: str | Path, *, exist_ok: bool = False, **options: Any) -> ScenarioLibrary:
        """Make an empty library at ``root`` (created with its parents) and open it.

        With ``exist_ok`` an existing library is opened instead. A non-empty directory that is
        not a library is refused. ``"sample"`` names the bundled sample, as everywhere.
        """
        root = resolve_path(root)
        if (root / MARKER_FILE).exists():
            if not exist_ok:
                raise ScenarioError(root, "", "a scenario library already exists here")
            return cls(root, **options)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ScenarioError(root, "", f"cannot make the library directory: {exc.strerror or exc}") from None
        # Several processes may create the same library at once (parallel imports): the first to
        # take the lock makes it, the others find its marker and open it.
        with _locked(root / LOCK_FILE):
            if (root / MARKER_FILE).exists():
                if not exist_ok:
                    raise ScenarioError(root, "", "a scenario library already exists here")
                return cls(root, **options)
            if any(name != LOCK_FILE for name in os.listdir(root)):
                raise ScenarioError(root, "", "the directory is not empty and is not a scenario library")
            for table in TABLES:
                (root / table).mkdir(exist_ok=True)
            info = {
                "format": FORMAT_NAME,
                "schema_version": SCHEMA_VERSION,
                "tables": list(TABLES),
                "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            tmp = root / f".{MARKER_FILE}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TMP_SUFFIX}"
            try:
                tmp.write_text(json.dumps(info, indent=2) + "\n")
                os.replace(tmp, root / MARKER_FILE)  # atomic: a reader sees no marker or a whole one
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        return cls(root, **options)

    def refresh(self) -> None:
        """Read index parts written since the last refresh (by this or another process)."""
        directory = self.root / SCENARIOS_TABLE
        try:
            names = sorted(n for n in os.listdir(directory) if _is_part(n))
        except OSError as exc:
            raise ScenarioError(directory, "", f"cannot list the scenarios table: {exc.strerror or exc}") from None
        new = [n for n in names if n not in self._parts]
        for name in new:
            self._parts[name] = self._read_index_part(directory / name)
        for name in set(self._parts) - set(names):  # removed by a compaction
            del self._parts[name]
        superseded = frozenset().union(*(sup for _, sup in self._parts.values()))
        live = [n for n in names if n not in superseded]
        if live == self._live:
            return
        if live[: len(self._live)] == self._live:
            added = [self._parts[n][0] for n in live[len(self._live) :]]
        else:  # a compaction replaced parts this instance had read: start again
            self._index, self._row_of, self._locations = SCENARIOS_SCHEMA.empty_table(), {}, None
            added = [self._parts[n][0] for n in live]
        if added:
            self._add_rows(pa.concat_tables(added))
        self._live = live
        self._index = self._index.combine_chunks()

    @staticmethod
    def _read_index_part(path: Path) -> tuple[pa.Table, frozenset[str]]:
        try:
            with pq.ParquetFile(path, page_checksum_verification=True) as handle:
                schema = handle.schema_arrow
                check_schema(schema, SCENARIOS_TABLE, path)
                present = set(schema.names)
                table = handle.read(columns=[n for n in SCENARIOS_SCHEMA.names if n in present], use_threads=False)
            for name in OPTIONAL_COLUMNS - present:  # a part written before the column existed
                f = SCENARIOS_SCHEMA.field(name)
                table = table.add_column(SCENARIOS_SCHEMA.get_field_index(name), f, pa.nulls(table.num_rows, f.type))
        except (OSError, pa.ArrowException) as exc:
            raise ScenarioError(path, "", f"unreadable Parquet file: {exc}") from None
        try:
            supersedes = frozenset(json.loads((schema.metadata or {}).get(META_SUPERSEDES, b"[]")))
            table = table.select(SCENARIOS_SCHEMA.names).cast(SCENARIOS_SCHEMA)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise ScenarioError(path, "", f"does not match the scenarios schema: {exc}") from None
        return table, supersedes

    def _add_rows(self, table: pa.Table) -> None:
        """Append index rows to the in-memory index (the first row of an id wins)."""
        start = self._index.num_rows
        ids = table.column(SCENARIO_ID).to_pylist()
        self._index = pa.concat_tables([self._index, table]) if start else table
        row_of = dict(zip(reversed(ids), range(start + len(ids) - 1, start - 1, -1)))
        for sid, row in row_of.items():
            self._row_of.setdefault(sid, row)
        if self._locations is not None:
            self._add_locations(table)

    def _add_locations(self, table: pa.Table) -> None:
        assert self._locations is not None
        for data_table, (key_col, file_col, rg_col) in LOCATION_COLUMNS.items():
            locations = self._locations[data_table]
            keys = table.column(key_col).to_pylist()
            files = table.column(file_col).to_pylist()
            groups = table.column(rg_col).to_pylist()
            for key, file, group in zip(keys, files, groups):
                if key is not None:
                    locations.setdefault(key, (file, group))

    def _stored_locations(self) -> dict[str, dict[str, tuple[str, int]]]:
        """Where every stored content key lives, by data table (built from the index when first needed)."""
        if self._locations is None:
            self._locations = {t: {} for t in DATA_TABLES}
            self._add_locations(self._index)
        return self._locations

    def _referenced_parts(self) -> dict[str, set[str]]:
        """Data part files referenced by the index, by data table: the committed ones."""
        out = {}
        for data_table, (_, file_col, _) in LOCATION_COLUMNS.items():
            out[data_table] = {n for n in pc.unique(self._index.column(file_col)).to_pylist() if n is not None}
        return out

    # -- queries --

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, scenario_id: object) -> bool:
        return scenario_id in self._row_of

    def __repr__(self) -> str:
        return f"ScenarioLibrary({str(self.root)!r}, {len(self)} scenarios)"

    def ids(self, *, dataset: str | None = None, tag: str | None = None) -> list[str]:
        """Scenario ids in the order they were added, optionally of one dataset and/or with a tag."""
        index = self._selected(dataset, tag)
        return index.column(SCENARIO_ID).to_pylist()

    def _selected(self, dataset: str | None, tag: str | None) -> pa.Table:
        index = self._index
        if dataset is not None:
            index = index.filter(pc.equal(index.column(DATASET), dataset))
        if tag is not None:
            tags = index.column(TAGS).combine_chunks()
            hits = np.zeros(index.num_rows, bool)
            flat = tags.flatten()
            if len(flat):
                parents = pc.list_parent_indices(tags).to_numpy()
                hits[parents[pc.equal(flat, tag).to_numpy(zero_copy_only=False)]] = True
            index = index.filter(pa.array(hits))
        return index

    def summaries(self, *, dataset: str | None = None, tag: str | None = None) -> pd.DataFrame:
        """One row per scenario with the columns of ``Scenario.summary()`` plus ``tags``, read from the index."""
        index = self._selected(dataset, tag)
        columns = {
            "id": SCENARIO_ID,
            "dataset": DATASET,
            "source_file": SOURCE_FILE,
            "log_id": SOURCE_LOG_ID,
            "ego_id": EGO_ID,
            "num_agents": NUM_AGENTS,
            "num_vehicles": NUM_VEHICLES,
            "num_pedestrians": NUM_PEDESTRIANS,
            "num_cyclists": NUM_CYCLISTS,
            "num_others": NUM_OTHERS,
            "num_steps": NUM_STEPS,
            "dt_s": DT_US,
            "duration_s": DURATION_S,
            "num_lanes": NUM_LANES,
            "num_map_features": NUM_MAP_FEATURES,
            "num_signals": NUM_SIGNALS,
            "tags": TAGS,
        }
        frame = pd.DataFrame({out: index.column(col).to_pandas() for out, col in columns.items()})
        frame["dt_s"] = frame["dt_s"].astype(np.float64) / 1e6
        frame["tags"] = [tuple(t) for t in index.column(TAGS).to_pylist()]
        return frame

    def index_table(self) -> pa.Table:
        """The whole scenarios table (one row per scenario), as read on open."""
        return self._index

    # -- loading --

    def suggest(self, scenario_id: str, n: int = 3) -> list[str]:
        """Up to ``n`` stored ids closest to ``scenario_id`` (``difflib`` ratio >= 0.6), best first."""
        return difflib.get_close_matches(str(scenario_id), list(self._row_of), n=n, cutoff=0.6)

    def _row(self, scenario_id: str) -> dict[str, Any]:
        try:
            row = self._row_of[scenario_id]
        except (KeyError, TypeError):
            close = self.suggest(scenario_id)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownScenarioError(self.root, SCENARIO_ID, f"no scenario {scenario_id!r} in the library{hint}") from None
        return self._index.slice(row, 1).to_pylist()[0]

    def _file(self, table: str, name: str) -> pq.ParquetFile:
        path = self.root / table / name

        def open_() -> pq.ParquetFile:
            try:
                handle = pq.ParquetFile(path, page_checksum_verification=True)
            except FileNotFoundError:
                raise ScenarioError(path, "", "part file is missing") from None
            except (OSError, pa.ArrowException) as exc:
                raise ScenarioError(path, "", f"unreadable Parquet file: {exc}") from None
            try:
                check_schema(handle.schema_arrow, table, path)
            except ScenarioError:
                handle.close()
                raise
            return handle

        return self._files.get_or_make((table, name), open_)

    def _read_group(self, table: str, name: str, group: int, key: str) -> tuple[pa.Table, str]:
        path = self.root / table / name
        handle = self._file(table, name)
        if not 0 <= group < handle.num_row_groups:
            raise ScenarioError(path, "", f"row group {group} does not exist ({handle.num_row_groups} row groups)")
        try:
            data = handle.read_row_group(group, columns=SCHEMAS[table].names, use_threads=False)
        except (OSError, pa.ArrowException) as exc:
            raise ScenarioError(path, "", f"unreadable row group {group}: {exc}") from None
        keys = data.column(KEY_COLUMN[table])
        if data.num_rows == 0 or keys[0].as_py() != key or keys[-1].as_py() != key:
            raise ScenarioError(path, KEY_COLUMN[table], f"row group {group} does not hold key {key}")
        return data, f"{path} (row group {group})"

    def load(self, scenario_id: str) -> Scenario:
        """The scenario ``scenario_id``, reading only its rows.

        Raises:
            UnknownScenarioError: the id is not in the library (a ``KeyError`` too); the message
                names the id, the library and the closest stored ids (``suggest``).
            ScenarioError: a part file is missing, unreadable or inconsistent (names the file).
        """
        r = self._row(scenario_id)
        n_agents, n_steps = r[NUM_AGENTS], r[NUM_STEPS]

        def tracks() -> Tracks:
            data, src = self._read_group(TRACKS_TABLE, r[TRACKS_FILE], r[TRACKS_ROW_GROUP], r[TRACKS_KEY])
            return decode_tracks(data, n_agents, n_steps, src)

        def road_map() -> RoadMap:
            data, src = self._read_group(MAP_TABLE, r[MAP_FILE], r[MAP_ROW_GROUP], r[MAP_KEY])
            return decode_map(data, r[NUM_LANES], r[NUM_MAP_FEATURES], src)

        try:
            track_data = _cached(self._tracks_cache, r[TRACKS_KEY], tracks)
            map_data = _cached(self._map_cache, r[MAP_KEY], road_map)
            if r[SIGNALS_KEY] is not None:
                data, src = self._read_group(SIGNALS_TABLE, r[SIGNALS_FILE], r[SIGNALS_ROW_GROUP], r[SIGNALS_KEY])
                signals = decode_signals(data, r[NUM_SIGNALS], r[SIGNALS_NUM_STEPS], src)
            else:
                signals = empty_signals(r[SIGNALS_NUM_STEPS])
            return decode_scenario(r, track_data, map_data, signals)
        except ScenarioError as exc:
            if str(self.root) in exc.source:
                raise
            # The stored rows do not make a valid scenario: name the library and the scenario.
            raise ScenarioError(
                f"{self.root} (scenario {scenario_id})", exc.field, f"stored data is inconsistent: {exc.problem}"
            ) from None

    def __getitem__(self, scenario_id: str) -> Scenario:
        return self.load(scenario_id)

    def iter_scenarios(
        self, ids: Iterable[str] | None = None, *, dataset: str | None = None, tag: str | None = None
    ) -> Iterator[Scenario]:
        """Load scenarios one by one: ``ids`` in their order, else every (filtered) id in stored order."""
        for scenario_id in self.ids(dataset=dataset, tag=tag) if ids is None else ids:
            yield self.load(scenario_id)

    def close(self) -> None:
        """Close the open Parquet files (the instance stays usable; files reopen on demand)."""
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    def __enter__(self) -> ScenarioLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing --

    def _write_lock(self) -> contextlib.AbstractContextManager[None]:
        return _locked(self.root / LOCK_FILE)

    def _remove_uncommitted(self) -> None:
        """Delete temp files and data parts no index row references (left by a crash; under the lock)."""
        referenced = self._referenced_parts()
        for table in TABLES:
            directory = self.root / table
            for name in os.listdir(directory):
                stale_tmp = name.startswith(".") and name.endswith(TMP_SUFFIX)
                orphan = table != SCENARIOS_TABLE and _is_part(name) and name not in referenced[table]
                if stale_tmp or orphan:
                    with contextlib.suppress(FileNotFoundError):
                        (directory / name).unlink()

    def _commit_index(self, index: pa.Table, supersedes: Sequence[str] = ()) -> Path:
        """Write ``index`` as a new scenarios part: temp file, fsync, rename (the commit point)."""
        name = _part_name()
        if supersedes:
            meta = dict(SCENARIOS_SCHEMA.metadata) | {META_SUPERSEDES: json.dumps(sorted(supersedes)).encode()}
            index = index.replace_schema_metadata(meta)
        tmp = self.root / SCENARIOS_TABLE / f".{name}{TMP_SUFFIX}"
        try:
            pq.write_table(index, tmp, **WRITE_OPTIONS[SCENARIOS_TABLE])
            _fsync(tmp)
            os.replace(tmp, self.root / SCENARIOS_TABLE / name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.root / SCENARIOS_TABLE, os.O_RDONLY)
            os.fsync(dir_fd)
            os.close(dir_fd)
        return self.root / SCENARIOS_TABLE / name

    def append(
        self,
        scenarios: Iterable[Scenario],
        *,
        dedup: bool = True,
        scenarios_per_part: int = DEFAULT_SCENARIOS_PER_PART,
        track_rows_per_part: int = DEFAULT_TRACK_ROWS_PER_PART,
    ) -> AppendResult:
        """Write the scenarios not yet in the library; all or nothing.

        Ids already stored (or repeated in ``scenarios``) are skipped and reported, so appending
        the same import twice changes nothing. ``scenarios`` may be any iterable (a generator
        keeps memory bounded). Data parts are written as the scenarios stream in; one scenarios
        part, renamed into place last, commits them all. If anything fails or the process dies
        before that, the library is unchanged (uncommitted data parts are deleted).

        Args:
            scenarios: the scenarios to add.
            dedup: store content shared with stored scenarios once (False stores a copy per
                scenario; useful only to measure what dedup saves).
            scenarios_per_part: most scenarios per data part file.
            track_rows_per_part: most tracks rows per part file (a single larger tracks key still
                gets its own part).
        """
        added: list[str] = []
        skipped: list[str] = []
        files: list[Path] = []
        counts = dict.fromkeys(("tracks_written", "tracks_reused", "maps_written", "maps_reused", "signals_written", "signals_reused"), 0)
        with self._write_lock():
            self.refresh()
            self._remove_uncommitted()
            stored = self._stored_locations()
            pending: dict[str, dict[str, tuple[str, int]]] = {t: {} for t in DATA_TABLES}
            index_parts: list[pa.Table] = []
            seen: dict[str, tuple[str, str]] = {}  # id -> (dataset, source log id) in this append
            chunk: list[Scenario] = []
            rows = 0
            try:
                for scenario in scenarios:
                    if not isinstance(scenario, Scenario):
                        raise TypeError(f"append takes Scenario objects, got {type(scenario).__name__}")
                    source = (scenario.provenance.dataset, scenario.provenance.source_log_id)
                    if scenario.id in self._row_of or scenario.id in seen:
                        self._check_same_source(scenario, seen.get(scenario.id))
                        skipped.append(scenario.id)
                        continue
                    seen[scenario.id] = source
                    size = int(scenario.tracks.valid.sum())
                    if chunk and (len(chunk) >= scenarios_per_part or rows + size > track_rows_per_part):
                        index_parts.append(self._write_data_part(chunk, dedup, stored, pending, counts, files))
                        chunk, rows = [], 0
                    chunk.append(scenario)
                    rows += size
                    added.append(scenario.id)
                if chunk:
                    index_parts.append(self._write_data_part(chunk, dedup, stored, pending, counts, files))
                if index_parts:
                    index = pa.concat_tables(index_parts)
                    files.append(self._commit_index(index))
            except BaseException:
                for path in files:  # data parts of this append, not committed
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                raise
            if index_parts:
                self._parts[files[-1].name] = (index, frozenset())
                self._live.append(files[-1].name)
                self._add_rows(index)
        return AppendResult(
            added=tuple(added),
            skipped=tuple(skipped),
            files=tuple(files),
            bytes_written=sum(f.stat().st_size for f in files),
            **counts,
        )

    def _check_same_source(self, scenario: Scenario, earlier: tuple[str, str] | None) -> None:
        """An id met again must be the same log's (a re-import): another log's is refused, never dropped."""
        if earlier is None:
            row = self._index.slice(self._row_of[scenario.id], 1).select([DATASET, SOURCE_LOG_ID, SOURCE_FILE]).to_pylist()[0]
            earlier, where = (row[DATASET], row[SOURCE_LOG_ID]), f"stored from {row[SOURCE_FILE]}"
        else:
            where = "earlier in this append"
        mine = (scenario.provenance.dataset, scenario.provenance.source_log_id)
        if mine != earlier:
            raise ScenarioError(
                scenario.provenance.source_file,
                SCENARIO_ID,
                f"scenario id {scenario.id!r} of {mine[0]} log {mine[1]!r} is already the id of {earlier[0]} log "
                f"{earlier[1]!r} ({where}); nothing of this append is stored",
            )

    def _write_data_part(
        self,
        chunk: list[Scenario],
        dedup: bool,
        stored: dict[str, dict[str, tuple[str, int]]],
        pending: dict[str, dict[str, tuple[str, int]]],
        counts: dict[str, int],
        files: list[Path],
    ) -> pa.Table:
        """Write the new content of ``chunk`` as one part per data table; the chunk's index rows."""
        name = _part_name()
        part = _PartWriter(self.root, name)
        key_memo: dict[tuple[str, int, bytes], str] = {}  # by object identity: ego variants share objects
        keep_alive: list[object] = []  # so that the ids in key_memo stay unique
        labels = {TRACKS_TABLE: "tracks", MAP_TABLE: "maps", SIGNALS_TABLE: "signals"}

        def locate(table: str, obj: object, extra: bytes, make_key: Any, encode: Any, salt: str) -> tuple[str, str, int]:
            """The key of ``obj`` and where it is stored, writing it first when it is new."""
            memo = (table, id(obj), extra)
            key = key_memo.get(memo) if dedup else None
            if key is None:
                key = make_key(salt)
                if dedup:
                    key_memo[memo] = key
                    keep_alive.append(obj)
            where = stored[table].get(key) or pending[table].get(key)
            if where is None:
                where = pending[table][key] = (name, part.add(table, encode(key)))
                counts[f"{labels[table]}_written"] += 1
            else:
                counts[f"{labels[table]}_reused"] += 1
            return key, where[0], where[1]

        rows = []
        try:
            for s in chunk:
                salt = "" if dedup else s.id
                row = scenario_row(s)
                tk, tf, tg = locate(
                    TRACKS_TABLE,
                    s.tracks,
                    s.t_us.tobytes(),
                    lambda salt, s=s: tracks_key(s.t_us, s.tracks, salt),
                    lambda key, s=s: encode_tracks(key, s.t_us, s.tracks),
                    salt,
                )
                mk, mf, mg = locate(
                    MAP_TABLE, s.road_map, b"", lambda salt, s=s: map_key(s.road_map, salt), lambda key, s=s: encode_map(key, s.road_map), salt
                )
                row |= {TRACKS_KEY: tk, TRACKS_FILE: tf, TRACKS_ROW_GROUP: tg, MAP_KEY: mk, MAP_FILE: mf, MAP_ROW_GROUP: mg}
                if s.signals.num_signals:
                    sk, sf, sg = locate(
                        SIGNALS_TABLE,
                        s.signals,
                        b"",
                        lambda salt, s=s: signals_key(s.signals, salt),
                        lambda key, s=s: encode_signals(key, s.signals),
                        salt,
                    )
                    row |= {SIGNALS_KEY: sk, SIGNALS_FILE: sf, SIGNALS_ROW_GROUP: sg}
                else:
                    row |= {SIGNALS_KEY: None, SIGNALS_FILE: None, SIGNALS_ROW_GROUP: None}
                rows.append(row)
            files += part.finish_data()
        except BaseException:
            part.abort()
            for table in DATA_TABLES:  # keys of this part are not stored after all
                pending[table] = {k: v for k, v in pending[table].items() if v[0] != name}
            raise
        return pa.Table.from_pylist(rows, schema=SCENARIOS_SCHEMA)

    def compact_index(self) -> int:
        """Rewrite the scenarios table as one part (after many small appends); the parts replaced.

        The new part lists the parts it supersedes, so a crash before they are deleted leaves
        no duplicate rows for this library's readers; the next compaction or append removes them.
        """
        with self._write_lock():
            self.refresh()
            old = list(self._live)
            if len(old) <= 1:
                return 0
            self._commit_index(self._index, supersedes=old)
            for name in old:
                with contextlib.suppress(FileNotFoundError):
                    (self.root / SCENARIOS_TABLE / name).unlink()
            self.refresh()
        return len(old)


class _PartWriter:
    """The data part files of one commit: a Parquet writer per table, fed by its own thread.

    Compression runs in the background (pyarrow releases the GIL) while the caller hashes and
    encodes the next scenario. Row groups keep the order of ``add``.
    """

    #: Encoded tables queued before ``add`` waits for the writers.
    MAX_PENDING = 8

    def __init__(self, root: Path, name: str) -> None:
        self.root, self.name = root, name
        self._writers: dict[str, tuple[pq.ParquetWriter, Path, ThreadPoolExecutor]] = {}
        self._groups = dict.fromkeys(DATA_TABLES, 0)
        self._pending: deque[Future] = deque()
        self._final: list[Path] = []

    def add(self, table: str, data: pa.Table) -> int:
        """Queue ``data`` as the next row group of ``table``'s part file; its row-group index."""
        if table not in self._writers:
            tmp = self.root / table / f".{self.name}{TMP_SUFFIX}"
            writer = pq.ParquetWriter(tmp, SCHEMAS[table], **WRITE_OPTIONS[table])
            self._writers[table] = (writer, tmp, ThreadPoolExecutor(1, thread_name_prefix=f"library-{table}"))
        writer, _, pool = self._writers[table]
        self._pending.append(pool.submit(writer.write_table, data, row_group_size=max(1, data.num_rows)))
        while len(self._pending) > self.MAX_PENDING:
            self._pending.popleft().result()
        group = self._groups[table]
        self._groups[table] += 1
        return group

    def _drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()
        for _, _, pool in self._writers.values():
            pool.shutdown(wait=True)

    def finish_data(self) -> list[Path]:
        """Write out, close, fsync and rename every data part into place; their final paths."""
        self._drain()
        for table, (writer, tmp, _) in self._writers.items():
            writer.close()
            _fsync(tmp)
            final = self.root / table / self.name
            os.replace(tmp, final)
            self._final.append(final)
        return list(self._final)

    def abort(self) -> None:
        """Remove whatever this part wrote (temporary or renamed data parts)."""
        with contextlib.suppress(BaseException):
            self._drain()
        for writer, tmp, _ in self._writers.values():
            with contextlib.suppress(Exception):
                writer.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        for path in self._final:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def open_library(root: str | Path, **options: Any) -> ScenarioLibrary:
    """Open the existing library at ``root`` (``ScenarioError`` when it is not one)."""
    return ScenarioLibrary(root, **options)


def write_library(root: str | Path, scenarios: Iterable[Scenario], **append_options: Any) -> AppendResult:
    """Append ``scenarios`` to the library at ``root``, creating it first when absent."""
    library = ScenarioLibrary.create(root, exist_ok=True)
    try:
        return library.append(scenarios, **append_options)
    finally:
        library.close()
