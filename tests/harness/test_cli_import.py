"""`drivetwin import` and `drivetwin scenarios` on the real sample logs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.cli import main
from scenarios.library import ScenarioLibrary


@pytest.fixture()
def sources(tmp_path, data_dir):
    """Two good real files and a bad one (a truncated Waymo JSON) in one directory."""
    src = tmp_path / "src"
    src.mkdir()
    good = data_dir / "waymo_json" / "tfrecord-00000-of-01000_4.json"
    shutil.copy(good, src / "a.json")
    shutil.copy(data_dir / "commonroad" / "USA_US101-4_1_T-1.xml", src / "b.xml")
    (src / "c.json").write_bytes(good.read_bytes()[:50_000])
    (src / "notes.txt").write_text("not a log; passed over in a directory walk\n")
    return src


def test_batch_import_skips_the_bad_file_and_keeps_the_others(sources, tmp_path, capsys):
    out = tmp_path / "lib"
    status = main(["import", str(sources), "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert status == 1  # one file failed
    assert "FAIL" in printed and "c.json" in printed
    assert "2/3 files imported" in printed
    library = ScenarioLibrary(out)
    assert len(library) == 2
    assert {library.load(i).provenance.dataset for i in library.ids()} == {"waymo", "commonroad"}


def test_reimport_is_idempotent_and_vehicle_egos_add_scenarios(sources, tmp_path, capsys):
    out = tmp_path / "lib"
    (sources / "c.json").unlink()
    assert main(["import", str(sources), "--out", str(out), "--quiet"]) == 0
    assert main(["import", str(sources), "--out", str(out), "--quiet"]) == 0
    assert len(ScenarioLibrary(out)) == 2
    assert main(["import", str(sources / "b.xml"), "--out", str(out), "--egos", "vehicles", "--quiet"]) == 0
    library = ScenarioLibrary(out)
    ngsim_egos = [i for i in library.ids() if i.startswith("commonroad-USA_US101-4_1_T-1.ego-")]
    assert len(ngsim_egos) == 18  # 18 of the 22 NGSIM cars are observed for 2 s (20 steps) or more
    capsys.readouterr()


def test_scenarios_lists_and_shows(sources, tmp_path, capsys):
    out = tmp_path / "lib"
    (sources / "c.json").unlink()
    main(["import", str(sources), "--out", str(out), "--quiet"])
    capsys.readouterr()
    assert main(["scenarios", str(out)]) == 0
    listing = capsys.readouterr().out
    assert "waymo-db4edc9bd0c9d18c" in listing and "2 scenarios" in listing
    assert main(["scenarios", str(out), "--show", "waymo-db4edc9bd0c9d18c"]) == 0
    shown = capsys.readouterr().out
    assert "num_agents  81" in shown and "ego_id  285" in shown
    assert main(["scenarios", str(out), "--show", "nope"]) == 1


def test_unknown_file_named_on_the_command_line_fails(tmp_path, capsys):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"\x00\x01garbage")
    assert main(["import", str(bad), "--out", str(tmp_path / "lib"), "--quiet"]) == 1
    assert "unknown format" in capsys.readouterr().out


def test_a_folder_in_the_interaction_layout_imports_without_failing_on_pedestrian_files(tmp_path, capsys):
    """``recorded_trackfiles/<loc>/pedestrian_tracks_000.csv`` is read with its vehicle file: a
    folder import passes over it (named alone on the command line, it is still refused clearly)."""
    from pathlib import Path

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "interaction"
    out = tmp_path / "lib"
    assert main(["import", str(fixture), "--out", str(out), "--window-s", "5", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "1/1 files imported: 4 scenarios" in printed and "FAIL" not in printed
    # the pedestrian file is passed over, and the import says so and why
    assert "pedestrian_tracks_000.csv: read with the interaction file beside it" in printed
    assert "make_fixture.py: not a scenario file (unknown format" in printed
    pedestrians = next(fixture.rglob("pedestrian_tracks_000.csv"))
    assert main(["import", str(pedestrians), "--out", str(out), "--quiet"]) == 1
    assert "vehicle_tracks file of the same number" in capsys.readouterr().out


def test_import_with_an_unreachable_address_is_a_usage_error(tmp_path, capsys):
    """``--address`` of a closed port: exit 2 with the address named, no traceback, nothing written."""
    import socket

    from harness.cli import main

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = Path(__file__).resolve().parents[1] / "fixtures" / "commonroad"
    code = main(["import", str(source), "--out", str(tmp_path / "lib"), "--workers", "2", "--address", f"127.0.0.1:{port}", "--quiet"])
    assert code == 2
    assert f"127.0.0.1:{port}" in capsys.readouterr().err
