"""Truthful on real logs: a log replayed as a rollout is no crash for the drivers who drove it.

Every real sample in ``../shared/data`` is loaded with ``scenarios.load`` (the logged ego, and every
vehicle as an ego) and replayed with ``Rollout.from_log``; the expert must have no at-fault
collision and must score as itself (no divergence, full progress). Formats whose importer is not
there yet are skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import scenarios
from evaluators import evaluate
from scenarios import ScenarioError
from scenarios.rollout import Rollout

#: ``../shared/data`` beside the project root (as in tests/conftest.py), read at collection time.
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def log_files() -> list[Path]:
    if not DATA.is_dir():
        return []
    return sorted(
        p for p in DATA.rglob("*") if p.is_file() and p.suffix in {".json", ".parquet", ".xml", ".pkl", ".csv", ".osm", ".tfrecord"}
        and not p.name.startswith("log_map_archive")  # the AV2 map beside its scenario file
        and not p.name.endswith("_Sim2_city.json")  # the AV2 sensor log's raster transform
        or p.name == "annotations_with_ego.feather"  # an AV2 sensor log (its poses are read with it)
    )  # fmt: skip


def load_or_skip(path: Path, egos: str) -> list:
    try:
        scenarios.detect(path)
    except ScenarioError as exc:
        pytest.skip(f"no importer reads {path.name} yet: {exc}")
    return scenarios.load(path, egos=egos)


@pytest.mark.parametrize("egos", ["logged", "vehicles"])
@pytest.mark.parametrize("path", log_files(), ids=lambda p: p.name)
def test_log_replay_has_no_at_fault_collision(path, egos, data_dir):
    scenes = load_or_skip(path, egos)
    assert scenes
    for s in scenes:
        row = evaluate(Rollout.from_log(s), s)
        assert row["status"] == "ok"
        assert row["at_fault_collisions"] == 0, (s.id, row["at_fault_collisions"])
        assert row["ade_m"] == 0.0 and row["fde_m"] == 0.0
        assert row["progress_ratio"] == 1.0 and row["making_progress"]
