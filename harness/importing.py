"""``drivetwin import``: real log files into a scenario library, one process or many (Ray).

``scan`` walks the sources and says, for every file passed over, why (not a scenario file,
read with another file); ``import_files`` reads the files, in one process or in Ray tasks
(a local instance, or a cluster by ``address``), and appends each file's scenarios to the
library in the order the files were given, so the library is the same whatever the number
of workers. A file that fails is reported with its error and skipped; the others still
import. Appending skips ids already stored, so importing again adds nothing.

Small files' scenarios are appended together (``BATCH_SCENARIOS``: each append writes Parquet
parts, which costs more than decoding a small file). In one process a large Waymo shard streams
from the reader into the library in an append of its own, never held whole. A Ray task returns
one file's scenarios through the object store; the driver keeps at most ``2 x workers`` files in
flight. The sources must be readable where the
tasks run (any path on this machine for a local instance; a shared filesystem on a cluster).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Outcome statuses.
IMPORTED = "imported"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file a folder walk passed over, and why."""

    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """One source file of an import.

    Attributes:
        path: the file (or log directory).
        status: ``IMPORTED`` or ``FAILED``.
        scenarios: how many scenarios it made.
        added: how many of those were new to the library.
        error: the error's message when it failed.
    """

    path: Path
    status: str
    scenarios: int = 0
    added: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == IMPORTED


def scan(sources: Sequence[str | Path]) -> tuple[list[Path], list[Skipped]]:
    """The files (and log directories) to import under ``sources``, sorted, and those passed over.

    A source named directly is always tried. A directory that is itself a log (an Argoverse 2
    scenario or sensor-log directory) is one source; any other directory is walked, and a file
    of no known format, or one read as part of another beside it, is passed over with its reason.
    Files inside a log directory found in the walk belong to that log.
    """
    from scenarios import ScenarioError, detect

    files: list[Path] = []
    skipped: list[Skipped] = []
    for source in sources:
        path = Path(source)
        if not path.is_dir():
            files.append(path)
            continue
        if _is_log(path, detect, ScenarioError):
            files.append(path)
            continue
        logs: list[Path] = []
        for child in sorted(path.rglob("*")):
            if any(log in child.parents for log in logs):
                continue  # part of a log directory already taken
            if child.is_dir():
                if _is_log(child, detect, ScenarioError):
                    logs.append(child)
                    files.append(child)
                continue
            try:
                importer = detect(child)
            except ScenarioError as exc:
                skipped.append(Skipped(child, f"not a scenario file ({exc.problem})"))
                continue
            if importer.is_companion(child):
                skipped.append(Skipped(child, f"read with the {importer.name} file beside it"))
            else:
                files.append(child)
    return files, skipped


def _is_log(path: Path, detect: Callable[[Path], Any], error: type[Exception]) -> bool:
    try:
        detect(path)
    except error:
        return False
    return True


def _load_file(path: str, options: dict[str, Any]) -> tuple[list[Any], str]:
    """One file's scenarios, or its error message (never raises a ScenarioError)."""
    from scenarios import ScenarioError, load

    try:
        return load(path, **options), ""
    except ScenarioError as exc:
        return [], str(exc)


#: Files' scenarios are appended to the library together, up to this many scenarios or files at
#: a time: each append writes its own Parquet parts, which costs more than decoding a small file.
BATCH_SCENARIOS = 64
BATCH_FILES = 64
#: A file of a streaming format (a Waymo shard) larger than this [bytes] streams into the library
#: in its own append, never held whole; smaller ones are read whole and batched.
STREAM_ABOVE_BYTES = 32 * 1024 * 1024


def import_files(
    paths: Sequence[Path],
    library_root: str | Path,
    options: dict[str, Any],
    *,
    workers: int = 1,
    address: str = "",
    on_outcome: Callable[[FileOutcome], None] | None = None,
) -> tuple[FileOutcome, ...]:
    """Import ``paths`` into the library at ``library_root`` (created if missing).

    Args:
        options: ``scenarios.load`` keyword arguments (egos, window_s, min_ego_duration_s, min_ego_travel_m).
        workers: 1 reads in this process; more runs Ray tasks on that many CPUs (0: all that
            Ray sees); a cluster when ``address`` is given.
        on_outcome: called with each file's outcome once it is in the library (or failed), in
            ``paths`` order.

    Returns:
        Every file's outcome, in ``paths`` order.
    """
    from scenarios.library import ScenarioLibrary

    library = ScenarioLibrary.create(library_root, exist_ok=True)
    outcomes: list[FileOutcome] = []
    batch: list[tuple[Path, list[Any]]] = []

    def emit(outcome: FileOutcome) -> None:
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    def flush() -> None:
        if not batch:
            return
        try:
            fresh = set(library.append(s for _, scenes in batch for s in scenes).added)
        except Exception as exc:  # noqa: BLE001 - appends are all or nothing: store the files one by one
            files = batch[:]
            batch.clear()
            if len(files) == 1:
                emit(FileOutcome(files[0][0], FAILED, error=_not_stored(files[0][0], library_root, exc)))
                return
            for item in files:
                batch.append(item)
                flush()
            return
        for path, scenes in batch:
            ids = set(s.id for s in scenes) & fresh
            fresh -= ids  # an id in two files is new for the first only
            emit(FileOutcome(path, IMPORTED, len(scenes), len(ids)))
        batch.clear()

    results = _sequential(paths, options) if workers == 1 and not address else _parallel(paths, options, workers, address)
    for path, scenes, error in results:
        if error:
            flush()
            emit(FileOutcome(path, FAILED, error=error))
        elif isinstance(scenes, list):
            batch.append((path, scenes))
            if sum(len(s) for _, s in batch) >= BATCH_SCENARIOS or len(batch) >= BATCH_FILES:
                flush()
        else:  # a large shard, streamed in an append of its own
            flush()
            counted = _Counted(scenes)
            try:
                added = len(library.append(counted).added)
            except _StreamError as exc:  # failed part-way: nothing of it was kept
                emit(FileOutcome(path, FAILED, error=exc.message))
            except Exception as exc:  # noqa: BLE001 - could not be stored; the other files still are
                emit(FileOutcome(path, FAILED, error=_not_stored(path, library_root, exc)))
            else:
                emit(FileOutcome(path, IMPORTED, counted.count, added))
    flush()
    return tuple(outcomes)


def _not_stored(path: Path, library_root: str | Path, exc: Exception) -> str:
    return f"{path}: not stored in {library_root}: {type(exc).__name__}: {str(exc)[:300]}"


class _StreamError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Counted:
    """An iterable of scenarios that counts what passes and turns a ScenarioError into ``_StreamError``."""

    def __init__(self, scenarios: Iterable[Any]) -> None:
        self._scenarios = scenarios
        self.count = 0

    def __iter__(self) -> Iterator[Any]:
        from scenarios import ScenarioError

        try:
            for scenario in self._scenarios:
                self.count += 1
                yield scenario
        except ScenarioError as exc:
            raise _StreamError(str(exc)) from None


def _streams(path: Path) -> bool:
    """Whether ``path`` is a large file of a format read one scenario at a time."""
    from scenarios import ScenarioError, detect
    from scenarios.importers import STREAMING_READERS

    try:
        return path.is_file() and path.stat().st_size > STREAM_ABOVE_BYTES and detect(path).name in STREAMING_READERS
    except (ScenarioError, OSError):
        return False


def _sequential(paths: Sequence[Path], options: dict[str, Any]) -> Iterator[tuple[Path, Iterable[Any], str]]:
    """Each file's scenarios as a list (or, for a large shard, a stream), or its error."""
    from scenarios import iter_load

    for path in paths:
        if _streams(path):
            yield path, iter_load(path, **options), ""
        else:
            scenes, error = _load_file(str(path), options)
            yield path, scenes, error


def _parallel(
    paths: Sequence[Path], options: dict[str, Any], workers: int, address: str
) -> Iterator[tuple[Path, Iterable[Any], str]]:
    import ray

    from harness.executor import init_ray

    started = not ray.is_initialized()
    init_ray(address, num_cpus=None if address or workers <= 0 else workers)
    try:
        task = ray.remote(num_cpus=1, max_retries=1)(_load_file)
        capacity = max(1, int(ray.cluster_resources().get("CPU", 1)) if workers <= 0 else workers)
        window = 2 * capacity
        pending: dict[int, Any] = {}
        next_index = 0
        for index, path in enumerate(paths):
            pending[index] = task.remote(str(path), options)
            while len(pending) >= window or (index == len(paths) - 1 and pending):
                ref = pending.pop(next_index)
                yield paths[next_index], *_get(ray, ref, paths[next_index])
                next_index += 1
    finally:
        if started and ray.is_initialized():
            ray.shutdown()


def _get(ray: Any, ref: Any, path: Path) -> tuple[list[Any], str]:
    from ray.exceptions import RayError

    try:
        return ray.get(ref)
    except RayError as exc:  # the worker died reading this file (out of memory, a crash)
        return [], f"{path}: the import worker failed: {type(exc).__name__}: {str(exc)[:300]}"


def summary_line(outcomes: Sequence[FileOutcome], skipped: Sequence[Skipped], library_root: str | Path, size: int) -> str:
    """The closing line of ``drivetwin import``."""
    imported = sum(o.scenarios for o in outcomes)
    new = sum(o.added for o in outcomes)
    done = sum(o.ok for o in outcomes)
    line = f"{done}/{len(outcomes)} files imported: {imported} scenarios, {new} new, library {library_root} holds {size}"
    if skipped:
        line += f"; {len(skipped)} files passed over"
    return line

