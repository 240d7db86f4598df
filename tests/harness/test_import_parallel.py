"""``drivetwin import --workers N``: real files read by Ray tasks, bad files reported and skipped,
the library the same whatever the number of workers, re-imports idempotent, skips listed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness import importing
from harness.importing import FAILED, IMPORTED, import_files, scan
from scenarios import scenarios_equal
from scenarios.importers import tfrecord
from scenarios.library import ScenarioLibrary

WOMD = "womd_tfrecord/motion_data_one_scenario.tfrecord"
AV2_SENSOR = "argoverse2_sensor/3b3570b4-7b0b-3268-a571-b0889dbf40b6"
WAYMO_JSON = "waymo_json/tfrecord-00000-of-01000_4.json"


@pytest.fixture()
def sources(tmp_path: Path, data_dir: Path) -> Path:
    """Real files of three formats, a sensor-log directory, a truncated file and a README."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(data_dir / WOMD, src / "a.tfrecord")
    shutil.copytree(data_dir / AV2_SENSOR, src / "logs" / Path(AV2_SENSOR).name)
    shutil.copy(data_dir / WAYMO_JSON, src / "c.json")
    (src / "d.json").write_bytes((data_dir / WAYMO_JSON).read_bytes()[:40_000])  # truncated
    (src / "README.txt").write_text("not a log\n")
    for path in src.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return src


def test_scan_lists_what_it_passes_over_and_why(sources):
    files, skipped = scan([str(sources)])
    names = [p.name for p in files]
    assert names == ["a.tfrecord", "c.json", "d.json", "3b3570b4-7b0b-3268-a571-b0889dbf40b6"]
    assert files[-1].is_dir()  # the sensor log is one source
    reasons = {s.path.name: s.reason for s in skipped}
    assert list(reasons) == ["README.txt"]  # the log directory's own files belong to the log
    assert reasons["README.txt"].startswith("not a scenario file (unknown format")


def test_two_workers_import_what_one_does_and_skip_the_bad_file(sources, tmp_path, ray_local, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["import", str(sources), "--out", str(one), "--quiet"]) == 1
    printed_one = capsys.readouterr().out
    assert main(["import", str(sources), "--out", str(two), "--workers", "2", "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert "3/4 files imported: 3 scenarios, 3 new" in printed and "1 files passed over" in printed
    assert "FAIL" in printed and "d.json" in printed
    assert "skip " in printed and "README.txt: not a scenario file" in printed
    assert printed.replace(str(two), "") == printed_one.replace(str(one), "")  # the same report, line for line
    a, b = ScenarioLibrary(one), ScenarioLibrary(two)
    assert a.ids() == b.ids() and len(a) == 3
    assert {a.load(i).provenance.dataset for i in a.ids()} == {"waymo", "av2_sensor"}
    for scenario_id in a.ids():
        assert scenarios_equal(a.load(scenario_id), b.load(scenario_id))
    # importing again adds nothing, in parallel too
    assert main(["import", str(sources / "a.tfrecord"), str(sources / "c.json"), "--out", str(two), "--workers", "2", "--quiet"]) == 0
    assert "2/2 files imported: 2 scenarios, 0 new" in capsys.readouterr().out
    assert len(ScenarioLibrary(two)) == 3


def test_vehicle_egos_in_parallel(sources, tmp_path, ray_local):
    paths = [sources / "a.tfrecord", sources / "c.json"]
    options = {"egos": "vehicles", "window_s": None, "min_ego_duration_s": 2.0}
    seen = []
    outcomes = import_files(paths, tmp_path / "lib", options, workers=2, on_outcome=seen.append)
    assert [o.status for o in outcomes] == [IMPORTED, IMPORTED] and list(outcomes) == seen
    assert outcomes[0].scenarios == 30  # every WOMD vehicle seen for 2 s that drives 5 m, less overlapping tracks
    assert len(ScenarioLibrary(tmp_path / "lib")) == sum(o.added for o in outcomes) == sum(o.scenarios for o in outcomes)


@pytest.mark.parametrize("streamed", [True, False])
def test_a_shard_damaged_part_way_is_skipped_whole(sources, tmp_path, data_dir, monkeypatch, streamed):
    """Streamed into the library (a large shard) or read whole (a small one), a shard whose last
    record is damaged adds nothing, and the next file still imports."""
    if streamed:
        monkeypatch.setattr(importing, "STREAM_ABOVE_BYTES", 0)
    ((_, _, record),) = list(tfrecord.iter_records(data_dir / WOMD))
    other = record + b"\x2a\x04abcd"  # scenario_id "abcd" (the last one wins)
    shard = tmp_path / "shard.tfrecord"
    data = tfrecord.frame(record) + tfrecord.frame(other) + tfrecord.frame(other)[:-3]  # the last one cut short
    shard.write_bytes(data)
    outcomes = import_files([shard, sources / "c.json"], tmp_path / "lib", {"egos": "logged"}, workers=1)
    assert [o.status for o in outcomes] == [FAILED, IMPORTED]
    assert "record 2" in outcomes[0].error and str(shard) in outcomes[0].error
    library = ScenarioLibrary(tmp_path / "lib")
    assert library.ids() == ["waymo-db4edc9bd0c9d18c"]  # nothing of the damaged shard was kept


def test_small_files_share_an_append_and_count_what_each_added(sources, tmp_path, data_dir, monkeypatch):
    ((_, _, record),) = list(tfrecord.iter_records(data_dir / WOMD))
    paths = []
    for k in range(5):
        path = tmp_path / f"s{k}.tfrecord"
        path.write_bytes(tfrecord.frame(record + b"\x2a\x02" + f"s{k % 3}".encode()))  # s0, s1, s2, s0, s1
        paths.append(path)
    appends = []
    original = ScenarioLibrary.append
    monkeypatch.setattr(ScenarioLibrary, "append", lambda self, *a, **k: appends.append(1) or original(self, *a, **k))
    outcomes = import_files(paths, tmp_path / "lib", {"egos": "logged"}, workers=1)
    assert len(appends) == 1  # five small files, one append
    assert [(o.scenarios, o.added) for o in outcomes] == [(1, 1), (1, 1), (1, 1), (1, 0), (1, 0)]
    assert ScenarioLibrary(tmp_path / "lib").ids() == ["waymo-s0", "waymo-s1", "waymo-s2"]
