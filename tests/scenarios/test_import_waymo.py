"""The Waymo Open Motion (GPUDrive JSON) importer against the two real samples.

Expected values are read from the files independently (json) or were checked by hand. Both
samples have empty ``tl_states`` (GPUDrive's converter skips scenes with traffic lights), so the
signal mapping is tested on a small crafted scene, ``signalled_crossing``, built below.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import scenarios
from scenarios import AgentType, FeatureKind, ScenarioError, SignalState
from scenarios.importers.waymo_json import read_waymo_json, signal_state

FILE_4 = "tfrecord-00000-of-01000_4.json"
FILE_222 = "tfrecord-00000-of-01000_222.json"


@pytest.fixture(scope="module")
def waymo_dir(data_dir: Path) -> Path:
    return data_dir / "waymo_json"


@pytest.fixture(scope="module")
def raw4(waymo_dir: Path) -> dict:
    return json.loads((waymo_dir / FILE_4).read_text())


@pytest.fixture(scope="module")
def scene4(waymo_dir: Path) -> scenarios.Scenario:
    (scene,) = read_waymo_json(waymo_dir / FILE_4)
    return scene


@pytest.fixture(scope="module")
def scene222(waymo_dir: Path) -> scenarios.Scenario:
    (scene,) = read_waymo_json(waymo_dir / FILE_222)
    return scene


# ---------------------------------------------------------------------------------- real files


def test_identity_and_time(scene4, raw4, waymo_dir):
    assert scene4.id == "waymo-db4edc9bd0c9d18c"
    assert scene4.provenance.dataset == "waymo"
    assert scene4.provenance.source_log_id == raw4["scenario_id"] == "db4edc9bd0c9d18c"
    assert scene4.provenance.source_file == str(waymo_dir / FILE_4)
    assert scene4.num_steps == 91 == len(raw4["objects"][0]["valid"])
    assert scene4.dt_us == 100_000
    assert scene4.t_us.tolist() == [k * 100_000 for k in range(91)]


def test_agents_and_ego(scene4, scene222, raw4):
    assert Counter(o["type"] for o in raw4["objects"]) == {"vehicle": 68, "pedestrian": 12, "cyclist": 1}
    assert scene4.num_agents == 81
    assert Counter(AgentType(v).name for v in scene4.tracks.agent_types) == {"VEHICLE": 68, "PEDESTRIAN": 12, "CYCLIST": 1}
    sdc = raw4["metadata"]["sdc_track_index"]
    assert sdc == 80 and scene4.ego_index == 80
    assert scene4.ego_id == str(raw4["objects"][80]["id"]) == "285"
    assert scene222.num_agents == 25 and scene222.ego_id == "1847"
    assert Counter(AgentType(v).name for v in scene222.tracks.agent_types) == {"VEHICLE": 23, "PEDESTRIAN": 2}


def test_known_positions_sizes_and_ego_speed(scene4, raw4):
    t = scene4.tracks
    ego = scene4.ego_index
    # Hand-checked: the SDC at step 0.
    position = (t.x[ego, 0], t.y[ego, 0], t.z[ego, 0])
    assert position == pytest.approx((1778.5487676192415, -2266.574274621582, 12.267496075887523))
    assert t.yaw[ego, 0] == pytest.approx(-0.4829528331756592)
    assert (t.length[ego], t.width[ego], t.height[ego]) == pytest.approx((5.286, 2.332, 2.33), abs=1e-3)
    cyclist = t.index_of("284")
    raw = raw4["objects"][79]
    assert t.agent_types[cyclist] == AgentType.CYCLIST
    assert (t.x[cyclist, 40], t.y[cyclist, 40]) == pytest.approx((raw["position"][40]["x"], raw["position"][40]["y"]))
    assert (t.x[cyclist, 40], t.y[cyclist, 40]) == pytest.approx((1760.3719482421875, -2257.60595703125))
    assert t.length[cyclist] == raw["length"]
    v = raw4["objects"][80]["velocity"][10]
    assert t.speed[ego, 10] == pytest.approx(np.hypot(v["x"], v["y"])) == pytest.approx(3.95058827, abs=1e-6)


def test_invalid_steps_do_not_leak(scene4, raw4):
    t = scene4.tracks
    raw_valid = np.array([o["valid"] for o in raw4["objects"]])
    np.testing.assert_array_equal(t.valid, raw_valid)
    assert (~raw_valid).sum() == 2569  # steps the file fills with -10000
    gappy = t.index_of("7")  # objects[7], a vehicle valid for 34 of 91 steps, not at 34..
    assert t.valid[gappy].sum() == 34 and not t.valid[gappy, 34]
    assert raw4["objects"][7]["position"][34] == {"x": -10000.0, "y": -10000.0, "z": -10000.0}
    assert t.x[gappy, 34] == 0.0
    for name in ("x", "y", "z", "yaw", "vx", "vy"):
        values = getattr(t, name)
        assert (values[~t.valid] == 0).all()
        assert (values != -10000.0).all()
    assert np.abs(t.x[t.valid] - 1790).max() < 100  # every valid x lies in the 1722..1858 m scene


def test_map_of_file_4(scene4, raw4):
    m = scene4.road_map
    kinds = Counter(r["type"] for r in raw4["roads"])
    assert kinds == {"lane": 37, "driveway": 30, "road_edge": 18, "road_line": 7, "crosswalk": 5, "stop_sign": 5}
    assert len(m.lanes) == 37
    assert all(lane.left_boundary is None and lane.predecessors == () for lane in m.lanes)
    assert {lane.lane_type for lane in m.lanes} == {"surface_street"}
    assert len(m.crosswalks) == 5 and all(len(c.points) == 4 for c in m.crosswalks)
    assert len(m.of_kind(FeatureKind.DRIVEWAY)) == 30
    assert len(m.road_edges) == 18 and {f.subtype for f in m.road_edges} == {"boundary"}
    assert len(m.road_lines) == 7 and {f.subtype for f in m.road_lines} == {"solid_double_yellow"}
    # No drivable area in Waymo: one derived per lane.
    assert len(m.drivable_areas) == 37 and {f.subtype for f in m.drivable_areas} == {"derived_from_lane"}
    signs = {f.id: f.points for f in m.stop_signs}
    assert len(signs) == 5
    raw_sign = next(r for r in raw4["roads"] if r["type"] == "stop_sign")
    np.testing.assert_allclose(signs[str(raw_sign["id"])], [[raw_sign["geometry"][0][k] for k in "xyz"]])
    lane = m.lane(str(next(r for r in raw4["roads"] if r["type"] == "lane")["id"]))
    assert len(lane.centerline) == len(next(r for r in raw4["roads"] if r["type"] == "lane")["geometry"])
    assert scene4.signals.num_signals == 0 and raw4["tl_states"] == {}


def test_map_of_file_222(scene222):
    m = scene222.road_map
    assert len(m.lanes) == 39
    assert Counter(lane.lane_type for lane in m.lanes) == {"surface_street": 28, "bike": 6, "undefined": 5}
    assert len(m.of_kind(FeatureKind.SPEED_BUMP)) == 3
    assert len(m.stop_signs) == 2 and len(m.crosswalks) == 0
    assert len(m.of_kind(FeatureKind.DRIVEWAY)) == 48
    assert Counter(f.subtype for f in m.road_lines) == {"solid_single_white": 6, "solid_double_yellow": 2}


def test_load_detects_waymo_json_from_content(scene4, waymo_dir, tmp_path):
    disguised = tmp_path / "scenario_x.parquet"  # a misleading name
    shutil.copy(waymo_dir / FILE_4, disguised)
    assert scenarios.detect(disguised).name == "waymo_json"
    (scene,) = scenarios.load(disguised)
    assert scene.id == scene4.id and scene.num_agents == 81


# ---------------------------------------------------------------------------------- signals


def road(road_id: int, kind: str, points: list[tuple[float, float]], element: int) -> dict:
    """A GPUDrive road: typed geometry at z = 0."""
    geometry = [{"x": x, "y": y, "z": 0.0} for x, y in points]
    return {"id": road_id, "type": kind, "map_element_id": element, "geometry": geometry}


def signal(states: list, stop_xy: tuple[float, float], steps: list[int]) -> dict:
    """One lane's ``tl_states`` entry: its states at ``steps``, stopping at ``stop_xy``."""
    n = len(states)
    return {"state": states, "x": [stop_xy[0]] * n, "y": [stop_xy[1]] * n, "z": [0.0] * n, "time_index": steps}


def signalled_crossing() -> dict:
    """Two lanes at a light, 5 steps. Lane 10: stop, stop, go, go, caution (stop line at x = 20).
    Lane 11 is listed at steps 1 and 3 only: arrow_go then flashing_stop, UNKNOWN elsewhere."""
    steps = 5
    ego = {
        "id": 1,
        "type": "vehicle",
        "position": [{"x": 2.0 * k, "y": 0.0, "z": 0.8} for k in range(steps)],
        "heading": [0.0] * steps,
        "velocity": [{"x": 20.0, "y": 0.0}] * steps,
        "valid": [True] * steps,
        "length": 4.5,
        "width": 2.0,
        "height": 1.6,
    }
    walker = {
        **ego,
        "id": 2,
        "type": "pedestrian",
        "position": [{"x": -10000.0, "y": -10000.0, "z": -10000.0}] + [{"x": 25.0, "y": 5.0, "z": 0.9}] * (steps - 1),
        "heading": [-10000.0] + [-1.5] * (steps - 1),
        "velocity": [{"x": -10000.0, "y": -10000.0}] + [{"x": 0.0, "y": -1.0}] * (steps - 1),
        "valid": [False] + [True] * (steps - 1),
        "length": 0.5,
        "width": 0.5,
        "height": 1.8,
    }
    return {
        "name": "signalled_crossing.json",
        "scenario_id": "signalled_crossing",
        "objects": [ego, walker],
        "roads": [
            road(10, "lane", [(0, 0), (20, 0), (40, 0)], 2),
            road(11, "lane", [(0, 3.5), (20, 3.5), (40, 3.5)], 2),
            road(20, "crosswalk", [(21, -2), (24, -2), (24, 6), (21, 6)], 18),
            road(30, "stop_sign", [(19, -3)], 17),
        ],
        "tl_states": {
            "10": signal(["stop", "stop", "go", "go", "caution"], (20.0, 0.0), [0, 1, 2, 3, 4]),
            "11": signal(["arrow_go", "flashing_stop"], (20.0, 3.5), [1, 3]),
        },
        "metadata": {"sdc_track_index": 0, "objects_of_interest": [], "tracks_to_predict": []},
    }


def write(data: dict | str, folder: Path, name: str = "scene.json") -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_signals_of_crafted_scene(tmp_path):
    (scene,) = read_waymo_json(write(signalled_crossing(), tmp_path))
    s = scene.signals
    assert s.lane_ids.tolist() == ["10", "11"]
    S = SignalState
    assert s.states[0].tolist() == [S.STOP, S.STOP, S.GO, S.GO, S.CAUTION]
    assert s.states[1].tolist() == [S.UNKNOWN, S.GO, S.UNKNOWN, S.FLASHING_STOP, S.UNKNOWN]
    np.testing.assert_allclose(s.stop_points, [[20.0, 0.0, 0.0], [20.0, 3.5, 0.0]])
    walker = scene.tracks.index_of("2")
    assert scene.tracks.valid[walker].tolist() == [False, True, True, True, True]
    assert scene.tracks.x[walker, 0] == 0.0 and scene.tracks.x[walker, 1] == 25.0
    assert len(scene.road_map.crosswalks) == 1 and len(scene.road_map.stop_signs) == 1


@pytest.mark.parametrize(
    "value, state",
    [
        ("unknown", SignalState.UNKNOWN),
        ("arrow_stop", SignalState.STOP),
        ("arrow_caution", SignalState.CAUTION),
        ("arrow_go", SignalState.GO),
        ("stop", SignalState.STOP),
        ("caution", SignalState.CAUTION),
        ("go", SignalState.GO),
        ("flashing_stop", SignalState.FLASHING_STOP),
        ("flashing_caution", SignalState.FLASHING_CAUTION),
        ("LANE_STATE_ARROW_GO", SignalState.GO),
        (0, SignalState.UNKNOWN),
        (4, SignalState.STOP),
        (6, SignalState.GO),
        (8, SignalState.FLASHING_CAUTION),
    ],
)
def test_waymo_lane_states(value, state):
    assert signal_state(value) == state


# ---------------------------------------------------------------------------------- bad input


def expect_error(path: Path, field: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as err:
        read_waymo_json(path)
    assert err.value.field == field
    assert str(path) in str(err.value)
    return err.value


def test_truncated_file(waymo_dir, tmp_path):
    text = (waymo_dir / FILE_4).read_text()
    path = write(text[: len(text) // 2], tmp_path)
    err = expect_error(path, "")
    assert "not valid JSON" in err.problem
    with pytest.raises(ScenarioError, match="not valid JSON") as err:
        scenarios.load(path)  # still recognised from its head
    assert str(path) in str(err.value)


def spoiled(raw: dict, change) -> dict:
    data = copy.deepcopy(raw)
    change(data)
    return data


def nan_at_valid_step(d: dict) -> None:
    d["objects"][3]["position"][int(np.argmax(d["objects"][3]["valid"]))]["x"] = float("nan")


def sentinel_at_valid_step(d: dict) -> None:
    d["objects"][3]["velocity"][int(np.argmax(d["objects"][3]["valid"]))] = {"x": -10000.0, "y": -10000.0}


def headings_in_degrees(d: dict) -> None:
    obj = d["objects"][5]
    obj["heading"] = [np.degrees(h) if v else h for h, v in zip(obj["heading"], obj["valid"])]


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda d: d["objects"][0].update(pos=d["objects"][0].pop("position")), "objects[0].position"),
        (lambda d: d.update(agents=d.pop("objects")), "objects"),
        (lambda d: d.update(objects=[]), "objects"),
        (lambda d: d.update(roads=[]), "roads"),
        (nan_at_valid_step, "objects[3].position"),
        (sentinel_at_valid_step, "objects[3].velocity"),
        (headings_in_degrees, "objects[5].heading"),
        (lambda d: d["objects"][2].update(valid=d["objects"][2]["valid"][:90]), "objects[2].valid"),
        (lambda d: d["objects"][1].update(id=d["objects"][0]["id"]), "objects[1].id"),
        (lambda d: d["objects"][1].update(length=float("nan")), "objects[1].length"),
        (lambda d: d["metadata"].update(sdc_track_index=81), "metadata.sdc_track_index"),
        (lambda d: d["roads"][4]["geometry"][0].update(y=float("inf")), "roads[4].geometry"),
        (lambda d: d["roads"][4].pop("geometry"), "roads[4].geometry"),
        (lambda d: d.update(tl_states={"7": signal(["green"], (0.0, 0.0), [0])}), "tl_states.7.state"),
        (lambda d: d.update(tl_states={"7": signal(["go"], (0.0, 0.0), [91])}), "tl_states.7.time_index"),
    ],
    ids=[
        "renamed-position",
        "renamed-objects",
        "no-objects",
        "empty-map",
        "nan-position",
        "sentinel-where-valid",
        "heading-in-degrees",
        "short-valid",
        "duplicate-id",
        "nan-length",
        "sdc-out-of-range",
        "inf-road-point",
        "road-without-geometry",
        "unknown-signal-state",
        "signal-step-out-of-range",
    ],
)
def test_bad_content(raw4, tmp_path, change, field):
    expect_error(write(spoiled(raw4, change), tmp_path), field)


def test_nan_at_invalid_step_is_ignored(raw4, tmp_path):
    data = copy.deepcopy(raw4)
    obj = data["objects"][7]
    assert not obj["valid"][34]
    obj["position"][34] = {"x": float("nan"), "y": None, "z": float("inf")}
    obj["heading"][34] = None
    (scene,) = read_waymo_json(write(data, tmp_path))
    assert scene.tracks.x[7, 34] == 0.0 and scene.tracks.yaw[7, 34] == 0.0


def test_unknown_file_is_rejected(tmp_path):
    path = write('{"type": "FeatureCollection", "features": []}', tmp_path, "roads.json")
    with pytest.raises(ScenarioError, match="unknown format") as err:
        scenarios.load(path)
    assert err.value.field == "" and str(path) in str(err.value)
    err = expect_error(path, "scenario_id")
    assert "missing key" in err.problem
