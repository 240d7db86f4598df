"""Fixtures of the twin's tests: an env factory that closes what it opens, hand-built scenes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scenarios.errors import ScenarioError
from scenarios.model import Lane, MapFeature, RoadMap, Scenario, Tracks
from scenarios.synthetic import AgentSpec, scene


@pytest.fixture
def make_env() -> Iterator[Callable[..., Any]]:
    """``make_env(scenario=None, **config)``: a ``DriveTwinEnv``, closed after the test."""
    from sim.env import DriveTwinEnv

    made: list[DriveTwinEnv] = []

    def factory(scenario: Scenario | None = None, render_mode: str | None = None, library: Any = None, **config: Any) -> DriveTwinEnv:
        env = DriveTwinEnv(scenario=scenario, config=config, render_mode=render_mode, library=library)
        made.append(env)
        return env

    yield factory
    for env in made:
        env.close()


def lead_stopped(gap_m: float = 50.0, speed: float = 15.0) -> Scenario:
    """``lead_vehicle_stopped``: the ego at ``speed`` [m/s] in lane 0, a stopped car ``gap_m`` ahead (centres)."""
    return scene(
        [AgentSpec("ego", x=0.0, speed=speed), AgentSpec("lead", x=gap_m, speed=0.0)],
        scenario_id="lead_stopped",
    )


def cruise(speed: float = 10.0, num_steps: int = 61) -> Scenario:
    """``cruise``: the ego alone at ``speed`` in lane 0; a far car in lane 1."""
    return scene(
        [AgentSpec("ego", x=0.0, speed=speed), AgentSpec("far", x=150.0, y=3.5, speed=speed)],
        num_steps=num_steps,
        scenario_id="cruise",
    )


def shifted(s: Scenario, dx: float, dy: float, scenario_id: str) -> Scenario:
    """``s`` translated by (dx, dy) [m]: the same scene at city coordinates."""
    tr = s.tracks
    valid = tr.valid
    tracks = tr.replace(x=np.where(valid, tr.x + dx, 0.0), y=np.where(valid, tr.y + dy, 0.0))
    off = np.array([dx, dy, 0.0])

    def mv(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a + off

    lanes = [
        Lane(
            lane.id, mv(lane.centerline), mv(lane.left_boundary), mv(lane.right_boundary), lane.speed_limit,
            lane.lane_type, lane.predecessors, lane.successors, lane.left_neighbors, lane.right_neighbors,
        )
        for lane in s.road_map.lanes
    ]
    features = [MapFeature(f.id, f.kind, f.points + off, f.subtype, f.lane_ids) for f in s.road_map.features]
    return s.replace(id=scenario_id, tracks=Tracks(**{n: getattr(tracks, n) for n in tracks.__dataclass_fields__}),
                     road_map=RoadMap(tuple(lanes), tuple(features)))


def load_real(path: Path) -> list[Scenario]:
    """The scenarios of a real log, or a clean skip when its importer cannot read it (yet)."""
    import scenarios

    try:
        return scenarios.load(path)
    except (ScenarioError, NotImplementedError, ImportError) as exc:
        pytest.skip(f"cannot import {path.name}: {exc}")
    return []


def real_files(data_dir: Path) -> list[Path]:
    """Every real log in ``../shared/data`` (an Argoverse 2 scenario counts once, by its parquet)."""
    files = [p for p in sorted(data_dir.glob("*/*")) if p.suffix in (".json", ".xml", ".pkl", ".parquet", ".csv", ".osm")]
    return [p for p in files if not p.name.startswith("log_map_archive_")]


@pytest.fixture
def scenes() -> Any:
    """The hand-built scenes and real-data helpers above, as one namespace for tests."""
    from types import SimpleNamespace

    return SimpleNamespace(lead_stopped=lead_stopped, cruise=cruise, shifted=shifted, load_real=load_real, real_files=real_files)
