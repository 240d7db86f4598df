"""Tiny, hand-built log files of every format, valid as written, for the bad-input tests to spoil.

Each builder writes one file (AV2: a folder) into ``folder`` and returns its path. The scene is the
same everywhere: the ego drives along +x at 10 m/s (1 m per 0.1 s step) and another vehicle
follows 20 m behind, for 3 steps, on one straight lane. Keyword arguments replace one value, as
text where the format is text, so that a test can write what no serialiser would (a 5000-digit
integer, a lone surrogate escape).
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
STEPS = 3
#: AV2 stores nanosecond timestamps as float64; this is a real log's start.
AV2_START_NS = 315_986_559_459_579_000.0


def waymo_json(folder: Path, *, replace: dict[str, str] | None = None, **fields: Any) -> Path:
    """GPUDrive JSON; ``fields`` override top-level keys, ``replace`` substitutes raw text once each."""
    def obj(oid: int, x0: float) -> dict[str, Any]:
        return {
            "id": oid,
            "type": "vehicle",
            "position": [{"x": x0 + t, "y": 0.0, "z": 0.0} for t in range(STEPS)],
            "heading": [0.0] * STEPS,
            "velocity": [{"x": 10.0, "y": 0.0}] * STEPS,
            "valid": [True] * STEPS,
            "width": 2.0,
            "length": 4.5,
            "height": 1.5,
        }

    doc = {
        "scenario_id": "tiny",
        "objects": [obj(1, 0.0), obj(2, -20.0)],
        "roads": [{"id": 100, "type": "lane", "geometry": [{"x": -50.0, "y": 0.0}, {"x": 50.0, "y": 0.0}], "map_element_id": 2}],
        "tl_states": {},
        "metadata": {"sdc_track_index": 0},
        **fields,
    }
    text = json.dumps(doc)
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new, 1)
    path = folder / "tiny.json"
    path.write_text(text)
    return path


COMMONROAD_2020A = """<?xml version="1.0" encoding="UTF-8"?>
<commonRoad commonRoadVersion="2020a" benchmarkID="USA_Tiny-1_1_T-1" date="2026-12-01" author="drivetwin"
            affiliation="drivetwin tests" source="hand-crafted" timeStepSize="{dt}">
  <lanelet id="1">
    <leftBound><point><x>-50</x><y>1.75</y></point><point><x>50</x><y>1.75</y></point></leftBound>
    <rightBound><point><x>-50</x><y>-1.75</y></point><point><x>50</x><y>-1.75</y></point></rightBound>
    <laneletType>urban</laneletType>
    <trafficSignRef ref="201"/>
    <trafficLightRef ref="301"/>
  </lanelet>
  <trafficSign id="201">
    <trafficSignElement><trafficSignID>R2-1</trafficSignID><additionalValue>{speed}</additionalValue></trafficSignElement>
  </trafficSign>
  <trafficLight id="301">
    <cycle>
      <cycleElement><duration>{duration}</duration><color>red</color></cycleElement>
      <cycleElement><duration>2</duration><color>green</color></cycleElement>
      <timeOffset>{offset}</timeOffset>
    </cycle>
  </trafficLight>
  <dynamicObstacle id="{oid}">
    <type>car</type>
    <shape><rectangle><length>4.5</length><width>2.0</width></rectangle></shape>
    <initialState><position><point><x>{x0}</x><y>0</y></point></position><orientation><exact>0</exact></orientation>
      <time><exact>0</exact></time><velocity><exact>{v}</exact></velocity></initialState>
    <trajectory>
      <state><position><point><x>{x1}</x><y>0</y></point></position><orientation><exact>0</exact></orientation>
        <time><exact>1</exact></time><velocity><exact>10</exact></velocity></state>
      <state><position><point><x>2</x><y>0</y></point></position><orientation><exact>0</exact></orientation>
        <time><exact>{last}</exact></time><velocity><exact>10</exact></velocity></state>
    </trajectory>
  </dynamicObstacle>
  <dynamicObstacle id="502">
    <type>car</type>
    <shape><rectangle><length>4.5</length><width>2.0</width></rectangle></shape>
    <initialState><position><point><x>-20</x><y>0</y></point></position><orientation><exact>0</exact></orientation>
      <time><exact>0</exact></time><velocity><exact>10</exact></velocity></initialState>
    <trajectory>
      <state><position><point><x>-19</x><y>0</y></point></position><orientation><exact>0</exact></orientation>
        <time><exact>1</exact></time><velocity><exact>10</exact></velocity></state>
    </trajectory>
  </dynamicObstacle>
</commonRoad>
"""
COMMONROAD_DEFAULTS = {"dt": "0.1", "speed": "13.4", "duration": "2", "offset": "0", "oid": "501", "x0": "0", "x1": "1", "v": "10", "last": "2"}


def commonroad(folder: Path, **values: str) -> Path:
    """A 2020a file: two cars, one lanelet with a speed-limit sign and a traffic light."""
    unknown = set(values) - set(COMMONROAD_DEFAULTS)
    assert not unknown, unknown
    path = folder / "USA_Tiny-1_1_T-1.xml"
    path.write_text(COMMONROAD_2020A.format(**{**COMMONROAD_DEFAULTS, **values}))
    return path


def av2(folder: Path, *, columns: dict[str, list[Any]] | None = None, num_timestamps: int = STEPS) -> Path:
    """An AV2 scenario folder (Parquet + map); ``columns`` replace whole columns (6 rows: AV, then c1)."""
    ids = ["AV"] * STEPS + ["c1"] * STEPS
    steps = list(range(STEPS)) * 2
    table = {
        "observed": [True] * 6,
        "track_id": ids,
        "object_type": ["vehicle"] * 6,
        "object_category": [3] * 6,
        "timestep": steps,
        "position_x": [float(t) if i == "AV" else t - 20.0 for i, t in zip(ids, steps)],
        "position_y": [0.0] * 6,
        "heading": [0.0] * 6,
        "velocity_x": [10.0] * 6,
        "velocity_y": [0.0] * 6,
        "scenario_id": ["tiny"] * 6,
        "start_timestamp": [AV2_START_NS] * 6,
        "end_timestamp": [AV2_START_NS + (num_timestamps - 1) * 1e8] * 6,
        "num_timestamps": [num_timestamps] * 6,
        "focal_track_id": ["c1"] * 6,
        "city": ["austin"] * 6,
    }
    table.update(columns or {})
    folder = folder / "av2"
    folder.mkdir()
    pq.write_table(pa.table(table), folder / "scenario_tiny.parquet")
    line = lambda y: [{"x": -50.0, "y": y, "z": 0.0}, {"x": 50.0, "y": y, "z": 0.0}]  # noqa: E731
    lane = {"id": 1, "left_lane_boundary": line(1.75), "right_lane_boundary": line(-1.75), "centerline": line(0.0),
            "lane_type": "VEHICLE", "predecessors": [], "successors": [],
            "left_lane_mark_type": "NONE", "right_lane_mark_type": "NONE"}  # fmt: skip
    doc = {"lane_segments": {"1": lane}, "pedestrian_crossings": {}, "drivable_areas": {}}
    (folder / "log_map_archive_tiny.json").write_text(json.dumps(doc))
    return folder


def scenarionet(folder: Path, *, track: dict[str, Any] | None = None, lane: dict[str, Any] | None = None, ego_id: str = "ego") -> Path:
    """A ScenarioNet description (protocol 4); ``track``/``lane`` update the ego's state / the lane."""
    def state(x0: float) -> dict[str, np.ndarray]:
        return {
            "position": np.array([[x0 + t, 0.0, 0.0] for t in range(STEPS)]),
            "heading": np.zeros(STEPS),
            "velocity": np.array([[10.0, 0.0]] * STEPS),
            "valid": np.ones(STEPS),
            "length": np.full(STEPS, 4.5),
            "width": np.full(STEPS, 2.0),
            "height": np.full(STEPS, 1.5),
        }

    ego = state(0.0) | (track or {})
    lane_item = {"type": "LANE_SURFACE_STREET", "polyline": np.array([[-50.0, 0.0, 0.0], [50.0, 0.0, 0.0]]), "speed_limit_mph": 25.0}
    doc = {
        "id": "tiny",
        "version": "test",
        "length": STEPS,
        "metadata": {"sdc_id": ego_id, "ts": np.arange(STEPS) * 0.1, "dataset": "waymo", "scenario_id": "tiny"},
        "tracks": {
            ego_id: {"type": "VEHICLE", "state": ego, "metadata": {}},
            "c1": {"type": "VEHICLE", "state": state(-20.0), "metadata": {}},
        },
        "map_features": {"10": lane_item | (lane or {})},
        "dynamic_map_states": {},
    }
    path = folder / "tiny.pkl"
    path.write_bytes(pickle.dumps(doc, protocol=4))
    return path


def interaction_layout(folder: Path) -> Path:
    """The INTERACTION fixture's layout copied into ``folder``; returns its vehicle tracks file."""
    shutil.copytree(FIXTURES / "interaction", folder / "interaction")
    return folder / "interaction" / "recorded_trackfiles" / "DR_DTW_Curve" / "vehicle_tracks_000.csv"


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    """Replace the first ``count`` occurrences of ``old`` in a text file (it must occur)."""
    text = path.read_text()
    assert text.count(old) >= count, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, count))
