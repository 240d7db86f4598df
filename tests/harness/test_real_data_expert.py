"""Truthful on real data: the expert, driven through the twin on every real log, never crashes.

Every real sample in ../shared/data, with the logged ego and with every vehicle as the ego
(about 160 episodes), through the same runner, env and evaluators a user's suite goes through.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.config import Egos, load_suite
from harness.runner import run_suite

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "real_data.toml"


@pytest.mark.parametrize("egos, expected", [("logged", 6), ("vehicles", 150)])
def test_the_expert_has_no_collision_on_any_real_log(tmp_path, data_dir, egos, expected):
    base = load_suite(CONFIG)
    config = base.replace(
        scenarios=dataclasses.replace(base.scenarios, sources=(str(data_dir),), egos=Egos(egos)),
    )
    summary = run_suite(config, out=tmp_path / egos, executor="sequential", progress=False).summary
    assert len(summary) == expected
    assert (summary["status"] == "ok").all(), summary.loc[summary["status"] != "ok", "error"].tolist()
    assert set(summary["dataset"]) == {"av2", "commonroad", "scenarionet-nuscenes", "waymo"}
    assert (summary["at_fault_collisions"] == 0).all()
    assert (summary["collisions"] == 0).all()
    assert (summary["making_progress"]).all()
    # the twin ends an expert episode only when its log does (or at its goal), almost always
    early = summary[~summary["termination"].isin(["goal", "log_end"])]
    assert len(early) <= 0.05 * len(summary), early[["variant_id", "termination"]].to_string()
