"""Where scenarios come from: the built-in sample, library directories, raw log files and folders."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

#: Name that ``drivetwin scenarios`` and suite configs accept for the built-in sample library.
SAMPLE_NAME = "sample"


def sample_library_path() -> Path:
    """The built-in sample library (NGSIM US-101 via CommonRoad), shipped inside the package."""
    import scenarios

    return Path(scenarios.__file__).resolve().parent / "sample" / "ngsim_us101"


def resolve_library(name: str) -> Path:
    """A library directory from a path or the word ``sample``."""
    return sample_library_path() if name == SAMPLE_NAME else Path(name)


def iter_sources(sources: Sequence[str]) -> Iterator[Path]:
    """Files (or Argoverse 2 scenario directories) to import, found under ``sources`` in sorted order.

    A directory is walked; inside a walk, files of no known format (maps beside their logs,
    READMEs) and files read as part of another (``Importer.companion``) are passed over, while a
    file named on the command line is always tried.
    """
    from scenarios import ScenarioError, detect

    for source in sources:
        path = Path(source)
        if not path.is_dir():
            yield path
            continue
        try:
            detect(path)
            yield path  # a directory that is one scenario (Argoverse 2 layout)
            continue
        except ScenarioError:
            pass
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            try:
                importer = detect(child)
            except ScenarioError:
                continue
            if not importer.is_companion(child):
                yield child
