"""The CLI end to end on a library imported from the real logs: import, run, gate, report, replay."""

from __future__ import annotations

import json
import textwrap

import pandas as pd

from harness.cli import main


def test_import_run_gate_report_replay_on_real_logs(tmp_path, data_dir, capsys):
    library = tmp_path / "lib"
    assert main(["import", str(data_dir), "--out", str(library), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "8/8 files imported: 8 scenarios" in printed
    # passed over, and said why: the data README and the reference .proto schemas
    assert "3 files passed over" in printed and "scenario.proto: not a scenario file" in printed

    suite = tmp_path / "suite.toml"
    suite.write_text(
        textwrap.dedent(
            f"""
            [suite]
            name = "real"
            [scenarios]
            sources = ["{library}"]
            [policy]
            name = "idm"
            [[mutations]]
            operator = "road_friction"
            params = {{ mu = {{ choice = [0.3, 0.9] }} }}
            variants = 1
            [gate]
            max_error_rate = 0.0
            [run]
            seed = 5
            executor = "sequential"
            """
        )
    )
    run = tmp_path / "run"
    status = main(["run", str(suite), "--out", str(run)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    summary = pd.read_parquet(run / "summary.parquet")
    assert len(summary) == 16  # 8 real scenarios, each as logged and with one friction variant
    assert set(summary["dataset"]) == {"av2", "av2_sensor", "commonroad", "scenarionet-nuscenes", "waymo"}
    assert (summary["status"] == "ok").all()
    assert summary["mutation"].value_counts().to_dict() == {"": 8, "road_friction#0": 8}
    assert json.loads((run / "manifest.json").read_text())["libraries"] == [str(library.resolve())]

    junit = tmp_path / "junit.xml"
    status = main(["gate", str(run), "--junit", str(junit)])
    assert status in (0, 1) and junit.exists()
    assert ("verdict: PASS" in capsys.readouterr().out) == (status == 0)

    assert main(["report", str(run), "--worst", "2"]) == 0
    capsys.readouterr()
    html = (run / "report.html").read_text()
    worst = summary.sort_values(["closed_loop_score", "variant_id"])["variant_id"].iloc[0]
    assert worst in html and f"drivetwin replay {worst}" in html

    variant = summary.loc[summary["mutation"] != "", "variant_id"].iloc[0]
    assert main(["replay", variant, "--run", str(run), "--check"]) == 0
    assert "exact" in capsys.readouterr().out
    assert (run / "replays" / f"{variant}.png").exists()
