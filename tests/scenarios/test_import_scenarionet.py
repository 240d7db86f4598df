"""ScenarioNet pickles: the two nuScenes samples, crafted descriptions, malicious and broken pickles.

Expected values for the samples were read independently with plain ``pickle`` (safe for these
two known files only) and are re-derived from the raw pickle in ``test_tracks_match_the_raw_pickle``.
"""

from __future__ import annotations

import copy
import os
import pickle
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scenarios
from scenarios import AgentType, FeatureKind, ScenarioError, SignalState
from scenarios.importers import detect
from scenarios.importers import scenarionet
from scenarios.importers.base import read_head
from scenarios.importers.scenarionet import SIGNAL_STATES, _sniff, read_scenarionet, signal_state

SCENE_0061 = "scenarionet/sd_nuscenes_v1.0-mini_scene-0061.pkl"
SCENE_1100 = "scenarionet/sd_nuscenes_v1.0-mini_scene-1100.pkl"
#: A car that drives through scene-0061 for all 191 steps.
CAR_0061 = "c1958768d48640948f6053d04cffd35b"


@pytest.fixture(scope="module")
def scene_0061(data_dir: Path):
    [scenario] = read_scenarionet(data_dir / SCENE_0061)
    return scenario


@pytest.fixture(scope="module")
def scene_1100(data_dir: Path):
    [scenario] = read_scenarionet(data_dir / SCENE_1100)
    return scenario


@pytest.fixture(scope="module")
def raw_0061(data_dir: Path) -> dict[str, Any]:
    with open(data_dir / SCENE_0061, "rb") as fh:
        return pickle.load(fh)  # the known sample: plain pickle is safe for it, and only for it


# --------------------------------------------------------------------------- the real samples


def test_scene_0061_known_values(scene_0061):
    s = scene_0061
    assert s.id == "scenarionet-nuscenes-scene-0061"
    assert (s.provenance.dataset, s.provenance.source_log_id) == ("scenarionet-nuscenes", "scene-0061")
    assert s.num_steps == 191 and s.dt_us == 100_000
    assert s.t_us[0] == 0 and s.t_us[-1] == 19_000_000
    assert s.ego_id == "ego"
    summary = s.summary()
    # 24 VEHICLE, 60 PEDESTRIAN, 6 CYCLIST (3 motorcycles + 3 bicycles), 71 TRAFFIC_CONE + 65 TRAFFIC_BARRIER
    assert (summary["num_agents"], summary["num_vehicles"], summary["num_pedestrians"]) == (226, 24, 60)
    assert (summary["num_cyclists"], summary["num_others"]) == (6, 136)
    assert len(s.road_map.lanes) == 460
    assert len(s.road_map.road_lines) == 97  # 72 broken white + 25 solid yellow
    assert len(s.road_map.road_edges) == 29  # boundary_0 .. boundary_28
    assert len(s.road_map.drivable_areas) == 460
    assert Counter(f.subtype for f in s.road_map.drivable_areas) == {"lane_polygon": 213, "derived_from_lane": 247}
    assert s.signals.num_signals == 0
    ego = s.tracks.index_of("ego")
    np.testing.assert_allclose([s.tracks.x[ego, 0], s.tracks.y[ego, 0], s.tracks.z[ego, 0]], [411.24948141, 1180.74320966, 0.0])
    car = s.tracks.index_of(CAR_0061)
    np.testing.assert_allclose([s.tracks.x[car, 100], s.tracks.y[car, 100], s.tracks.z[car, 100]], [408.562, 1110.104, 0.988])
    np.testing.assert_allclose([s.tracks.vx[car, 0], s.tracks.vy[car, 0]], [-1.734, -4.884])
    assert s.tracks.agent_types[car] == AgentType.VEHICLE


def test_scene_1100_known_values(scene_1100):
    s = scene_1100
    assert s.id == "scenarionet-nuscenes-scene-1100"
    assert s.num_steps == 196 and s.dt_us == 100_000 and s.duration_s == pytest.approx(19.5)
    assert s.ego_id == "ego"
    summary = s.summary()
    assert (summary["num_agents"], summary["num_vehicles"], summary["num_pedestrians"]) == (33, 19, 11)
    assert (summary["num_cyclists"], summary["num_others"]) == (3, 0)
    assert len(s.road_map.lanes) == 153
    assert len(s.road_map.road_lines) == 36 and len(s.road_map.road_edges) == 44
    np.testing.assert_allclose([s.tracks.x[s.ego_index, 0], s.tracks.y[s.ego_index, 0]], [1321.3907556, 903.7547841])


def test_tracks_match_the_raw_pickle(scene_0061, raw_0061):
    s, raw = scene_0061, raw_0061
    assert list(s.tracks.agent_ids) == list(raw["tracks"])  # file order, nothing dropped
    words = Counter(t["type"] for t in raw["tracks"].values())
    assert words == {"TRAFFIC_CONE": 71, "TRAFFIC_BARRIER": 65, "PEDESTRIAN": 60, "VEHICLE": 24, "CYCLIST": 6}
    for row, (key, track) in enumerate(raw["tracks"].items()):
        state = track["state"]
        valid = state["valid"] > 0
        np.testing.assert_array_equal(s.tracks.valid[row], valid)
        np.testing.assert_array_equal(s.tracks.x[row][valid], state["position"][valid, 0])
        np.testing.assert_array_equal(s.tracks.yaw[row][valid], state["heading"][valid])
        raw_v = state["velocity"][:, :2].copy()
        # the importer holds the velocity over a run's last step when the file has exactly 0 there
        # after motion (ScenarioNet's forward differences); everywhere else the raw value is kept
        ends = np.flatnonzero(valid & ~np.append(valid[1:], False))
        for k in ends:
            if k > 0 and valid[k - 1] and not raw_v[k].any() and raw_v[k - 1].any():
                raw_v[k] = raw_v[k - 1]
        np.testing.assert_array_equal(s.tracks.vy[row][valid], raw_v[valid, 1])
        np.testing.assert_array_equal(s.tracks.vx[row][valid], raw_v[valid, 0])
        if key != "ego":
            assert s.tracks.length[row] == np.median(state["length"][valid, 0])
            assert s.tracks.width[row] == np.median(state["width"][valid, 0])


def test_ego_box_is_unswapped(scene_0061, raw_0061):
    ego = raw_0061["tracks"]["ego"]["state"]
    assert (ego["length"][0, 0], ego["width"][0, 0]) == (1.73, 4.08)  # as ScenarioNet wrote it
    t = scene_0061.tracks
    assert (t.length[t.index_of("ego")], t.width[t.index_of("ego")], t.height[t.index_of("ego")]) == (4.08, 1.73, 1.56)
    assert "swapped" in scene_0061.provenance.notes


def test_nuscenes_lanes(scene_0061, raw_0061):
    lane_id = "0059e752-5800-44a5-9798-b1c97529f3c5"
    raw_lane = raw_0061["map_features"][lane_id]
    lane = scene_0061.road_map.lane(lane_id)
    poses = np.asarray(raw_lane["polyline"])  # (x, y, heading) from nuScenes' discretize_lane
    np.testing.assert_array_equal(lane.centerline[:, :2], poses[:, :2])
    assert (lane.centerline[:, 2] == 0).all()  # the heading column is not a height
    assert np.isnan(lane.speed_limit)  # no limit in the file for lanes...
    connector = next(k for k, v in raw_0061["map_features"].items() if v.get("speed_limit_kmh") == 100)
    assert np.isnan(scene_0061.road_map.lane(connector).speed_limit)  # ...and the converter's 100 km/h is a placeholder
    drivable = {f.id: f for f in scene_0061.road_map.drivable_areas}[f"drivable-{lane_id}"]
    polygon = np.asarray(raw_lane["polygon"])
    assert len(polygon) == 11 and np.array_equal(polygon[0], polygon[-1])
    np.testing.assert_array_equal(drivable.points[:, :2], polygon[:-1])  # closing point dropped
    edge = {f.id: f for f in scene_0061.road_map.road_edges}["boundary_0"]
    assert edge.subtype == "drivable_area_boundary" and len(edge.points) == 19
    line_types = Counter(f.subtype for f in scene_0061.road_map.road_lines)
    assert line_types == {"broken_single_white": 72, "solid_single_yellow": 25}


def test_nuscenes_lane_links_are_inferred_from_shared_end_points(scene_0061, raw_0061):
    """The converter writes no entry/exit lanes; a lane whose first point is its neighbour's last
    (within 0.1 m, heading within 60 deg) follows it, checked here against the raw polylines."""
    lanes = scene_0061.road_map.lanes
    assert not any(v.get("exit_lanes") for v in raw_0061["map_features"].values())
    assert sum(len(lane.successors) for lane in lanes) == 476 and sum(bool(lane.predecessors) for lane in lanes) == 413
    ends = {lane.id: np.asarray(raw_0061["map_features"][lane.id]["polyline"])[[0, -1], :2] for lane in lanes}
    for lane in lanes:
        for after in lane.successors:
            assert np.hypot(*(ends[after][0] - ends[lane.id][1])) <= 0.1
            assert lane.id in scene_0061.road_map.lane(after).predecessors
    assert "476 successor links inferred" in scene_0061.provenance.notes


def test_lane_links_join_ends_to_starts_in_the_same_direction_only():
    from scenarios.importers.base import infer_lane_links
    from scenarios.model import Lane

    def lane(name, points):
        return Lane(name, np.column_stack([np.asarray(points, float), np.zeros(len(points))]))

    a = lane("a", [(0, 0), (10, 0)])
    b = lane("b", [(10.05, 0), (20, 0)])  # starts 5 cm from a's end, same way: follows a
    u = lane("u", [(10, 0), (0, 0.1)])  # starts at a's end but turns back: a U-turn, not joined
    far = lane("far", [(10.2, 0), (20, 1)])  # 20 cm away: not joined
    bend = lane("bend", [(20, 0), (25, 4)])  # 39 deg left of b at b's end: joined
    linked, n = infer_lane_links([a, b, u, far, bend])
    by = {x.id: x for x in linked}
    assert n == 2 and by["a"].successors == ("b",) and by["b"].predecessors == ("a",)
    assert by["b"].successors == ("bend",) and by["u"].predecessors == () and by["far"].predecessors == ()


def test_both_samples_load_and_are_stable(data_dir):
    for name, scene_id in ((SCENE_0061, "scenarionet-nuscenes-scene-0061"), (SCENE_1100, "scenarionet-nuscenes-scene-1100")):
        first, again = read_scenarionet(data_dir / name), read_scenarionet(data_dir / name)
        assert [s.id for s in first] == [scene_id]
        assert scenarios.scenarios_equal(first[0], again[0])


def test_detected_by_content_under_a_misleading_name(data_dir, tmp_path):
    disguised = tmp_path / "route_notes.json"
    shutil.copyfile(data_dir / SCENE_1100, disguised)
    assert detect(disguised).name == "scenarionet"
    [s] = scenarios.load(disguised)
    assert s.id == "scenarionet-nuscenes-scene-1100" and s.num_agents == 33
    windows = scenarios.load(disguised, window_s=5.0)  # 196 steps -> windows at 0, 50, 100
    assert [w.id for w in windows] == [f"scenarionet-nuscenes-scene-1100.w{k}" for k in (0, 50, 100)]
    assert all(w.num_steps == 50 for w in windows)


def test_sniff(data_dir, tmp_path):
    for name in (SCENE_0061, SCENE_1100):
        path = data_dir / name
        assert _sniff(path, read_head(path))
    assert not _sniff(tmp_path, b"")
    assert not _sniff(tmp_path, b'{"metadata": {}}')  # JSON
    assert not _sniff(tmp_path, pickle.dumps([1, 2, 3], protocol=4))  # a pickle, not a description
    assert not _sniff(tmp_path, pickle.dumps({"metadata": 1}, protocol=0))  # protocol 0 is text


# --------------------------------------------------------------------------- a crafted Waymo-style file

T = 5


def _track(kind: str, x0: float, speed: float, *, valid: np.ndarray | None = None, length: float = 4.5, width: float = 2.0) -> dict:
    """A Waymo-via-ScenarioNet track along +x: float32 arrays, bool valid, (T,) sizes."""
    position = np.zeros((T, 3), np.float32)
    position[:, 0] = x0 + speed * 0.1 * np.arange(T)
    position[:, 2] = 1.0
    velocity = np.zeros((T, 2), np.float32)
    velocity[:, 0] = speed
    return {
        "type": kind,
        "state": {
            "position": position,
            "heading": np.zeros(T, np.float32),
            "velocity": velocity,
            "valid": np.ones(T, bool) if valid is None else valid,
            "length": np.full(T, length, np.float32),
            "width": np.full(T, width, np.float32),
            "height": np.full(T, 1.6, np.float32),
        },
        "metadata": {"type": kind},
    }


def _line(*xy: tuple[float, float], z: float = 5.0) -> np.ndarray:
    return np.array([[x, y, z] for x, y in xy], np.float32)


LIGHT_TAIL = ["LANE_STATE_CAUTION", "LANE_STATE_FLASHING_STOP"]


def waymo_like() -> dict:
    """A small description laid out as ScenarioNet's Waymo converter writes it."""
    ts = np.array([0.0, 0.1000015, 0.2, 0.3, 0.4])  # one step off the grid by 1.5 us
    return {
        "id": "abc123",
        "version": "v1.2",
        "length": T,
        "metadata": {"dataset": "waymo", "scenario_id": "abc123", "sdc_id": "7", "ts": ts, "coordinate": "waymo"},
        "tracks": {
            "7": _track("VEHICLE", 0.0, 10.0),
            "8": _track("PEDESTRIAN", 20.0, 1.0, length=0.5, width=0.8),  # wider than long: left alone
            "9": _track("TRAFFIC_CONE", 30.0, 0.0, valid=np.array([False, True, True, False, False])),
            "10": _track("CYCLIST", 40.0, 0.0, valid=np.zeros(T, bool)),  # never valid: dropped
        },
        "map_features": {
            "100": {
                "type": "LANE_SURFACE_STREET",
                "polyline": _line((0, 0), (50, 0), (100, 0)),
                "speed_limit_mph": 25.0,
                "speed_limit_kmh": 40.2336,
                "entry_lanes": [101],
                "exit_lanes": [999],  # not in the file
                "left_neighbor": [{"feature_id": "101", "self_start_index": "0"}],
                "right_neighbor": [],
            },
            "101": {"type": "LANE_BIKE_LANE", "polyline": _line((0, 3), (100, 3)), "speed_limit_mph": 0.0, "exit_lanes": [100]},
            "200": {"type": "ROAD_LINE_SOLID_DOUBLE_YELLOW", "polyline": _line((0, 1.5), (100, 1.5))},
            "300": {"type": "ROAD_EDGE_BOUNDARY", "polyline": _line((0, -2), (100, -2))},
            "400": {"type": "CROSSWALK", "polygon": _line((60, -2), (64, -2), (64, 5), (60, 5))},
            "500": {"type": "STOP_SIGN", "lane": [100], "position": np.array([58.0, -1.0, 5.0], np.float32)},
            "600": {"type": "UNKNOWN", "polyline": _line((0, 6), (100, 6))},
            "700": {"type": "HOVERCRAFT_PAD", "polygon": _line((0, 0), (1, 0), (1, 1))},
        },
        "dynamic_map_states": {
            "100": {
                "type": "TRAFFIC_LIGHT",
                "state": {"object_state": ["LANE_STATE_STOP", "LANE_STATE_ARROW_GO", None, *LIGHT_TAIL]},
                "lane": 100,
                "stop_point": np.array([58.0, 0.0, 5.0], np.float32),
            }
        },
    }


def write(tmp_path: Path, obj: Any, name: str = "scene.pkl", protocol: int = 4) -> Path:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_crafted_waymo_description(tmp_path, protocol):
    [s] = read_scenarionet(write(tmp_path, waymo_like(), protocol=protocol))
    assert s.id == "scenarionet-waymo-abc123"
    np.testing.assert_array_equal(s.t_us, [0, 100_000, 200_000, 300_000, 400_000])  # snapped to the grid
    assert list(s.tracks.agent_ids) == ["7", "8", "9"] and s.ego_id == "7"
    assert list(s.tracks.agent_types) == [AgentType.VEHICLE, AgentType.PEDESTRIAN, AgentType.OTHER]
    assert (s.tracks.length[1], s.tracks.width[1]) == (0.5, pytest.approx(0.8))
    np.testing.assert_allclose(s.tracks.x[0], [0, 1, 2, 3, 4])
    assert s.tracks.z[0, 0] == 1.0
    assert list(s.tracks.valid[2]) == [False, True, True, False, False]
    assert "1 tracks never valid" in s.provenance.notes
    lane = s.road_map.lane("100")
    assert lane.speed_limit == pytest.approx(25 * 0.44704)  # 11.176 m/s
    assert lane.centerline[0, 2] == 5.0  # a real height here
    assert (lane.predecessors, lane.successors, lane.left_neighbors) == (("101",), (), ("101",))
    bike = s.road_map.lane("101")
    assert bike.lane_type == "bike" and np.isnan(bike.speed_limit) and bike.successors == ("100",)
    assert [f.subtype for f in s.road_map.road_lines] == ["solid_double_yellow", "unknown"]
    assert [f.subtype for f in s.road_map.road_edges] == ["boundary"]
    [crosswalk] = s.road_map.crosswalks
    assert crosswalk.points.shape == (4, 3)
    [stop] = s.road_map.stop_signs
    assert stop.lane_ids == ("100",) and stop.points.tolist() == [[58.0, -1.0, 5.0]]
    assert {f.id for f in s.road_map.drivable_areas} == {"drivable-100", "drivable-101"}
    assert "1 HOVERCRAFT_PAD" in s.provenance.notes and "1 lane references" in s.provenance.notes
    assert list(s.signals.lane_ids) == ["100"]
    assert s.signals.states[0].tolist() == [
        SignalState.STOP,
        SignalState.GO,
        SignalState.UNKNOWN,
        SignalState.CAUTION,
        SignalState.FLASHING_STOP,
    ]
    assert s.signals.stop_points.tolist() == [[58.0, 0.0, 5.0]]


@pytest.mark.parametrize(
    "value, state",
    [
        ("LANE_STATE_UNKNOWN", SignalState.UNKNOWN),
        ("LANE_STATE_ARROW_STOP", SignalState.STOP),
        ("LANE_STATE_ARROW_CAUTION", SignalState.CAUTION),
        ("LANE_STATE_ARROW_GO", SignalState.GO),
        ("LANE_STATE_STOP", SignalState.STOP),
        ("LANE_STATE_CAUTION", SignalState.CAUTION),
        ("LANE_STATE_GO", SignalState.GO),
        ("LANE_STATE_FLASHING_STOP", SignalState.FLASHING_STOP),
        ("LANE_STATE_FLASHING_CAUTION", SignalState.FLASHING_CAUTION),
        ("TRAFFIC_LIGHT_RED", SignalState.STOP),
        ("TRAFFIC_LIGHT_YELLOW", SignalState.CAUTION),
        ("TRAFFIC_LIGHT_GREEN", SignalState.GO),
        ("TRAFFIC_LIGHT_UNKNOWN", SignalState.UNKNOWN),
        (None, SignalState.UNKNOWN),
        ("a new state", SignalState.UNKNOWN),
        (4, SignalState.STOP),  # Waymo's enum: 4 is LANE_STATE_STOP
        (np.int64(6), SignalState.GO),
        (8, SignalState.FLASHING_CAUTION),
        (42, SignalState.UNKNOWN),
    ],
)
def test_signal_state_mapping(value, state):
    assert signal_state(value) == state


def test_every_named_state_is_mapped():
    assert len(SIGNAL_STATES) == 13 and set(SIGNAL_STATES.values()) == set(SignalState)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_converter_containers_defaultdict_and_ordereddict_load(tmp_path, protocol):
    """ScenarioNet's Waymo converter writes defaultdict(int) summaries; others write OrderedDicts."""
    import collections

    description = waymo_like()
    counts = collections.defaultdict(int)
    counts["VEHICLE"] += 1
    counts["PEDESTRIAN"] += 2
    description["metadata"]["number_summary"] = {"object_types": counts, "dynamic_object_states": collections.defaultdict(list)}
    description["metadata"]["object_summary"] = collections.defaultdict(dict, {"7": {"type": "VEHICLE"}})
    description["metadata"]["sets"] = collections.defaultdict(set, {"x": {1, 2}})
    description["map_features"] = collections.OrderedDict(description["map_features"])
    description["tracks"] = collections.OrderedDict(description["tracks"])
    path = write(tmp_path, description, protocol=protocol)
    data = path.read_bytes()
    assert b"defaultdict" in data and b"OrderedDict" in data and (b"int" in data or b"long" in data)
    [s] = read_scenarionet(path)
    assert s.id == "scenarionet-waymo-abc123"
    assert list(s.tracks.agent_ids) == ["7", "8", "9"] and s.ego_id == "7"
    assert s.road_map.lane("100").speed_limit == pytest.approx(25 * 0.44704)
    loaded = scenarionet._unpickle(path)
    counts_back = loaded["metadata"]["number_summary"]["object_types"]
    assert type(counts_back) is collections.defaultdict and counts_back.default_factory is int
    assert dict(counts_back) == {"VEHICLE": 1, "PEDESTRIAN": 2} and counts_back["CYCLIST"] == 0
    assert type(loaded["map_features"]) is collections.OrderedDict
    assert list(loaded["map_features"]) == list(waymo_like()["map_features"])
    assert loaded["metadata"]["sets"]["x"] == {1, 2}


def test_a_defaultdict_factory_is_nothing_callable(tmp_path):
    """The built-in factories resolve to inert tokens: naming builtins.int does not give int()."""
    path = tmp_path / "call_int.pkl"
    path.write_bytes(global_call("builtins", "int", _s("5")))
    with pytest.raises(ScenarioError, match="not a readable pickle") as err:
        scenarionet._unpickle(path)
    assert "not callable" in err.value.problem
    # a defaultdict whose factory is another allowed global (numpy.dtype) is refused
    path = tmp_path / "dtype_factory.pkl"
    path.write_bytes(b"\x80\x02}" + _s("metadata") + b"ccollections\ndefaultdict\ncnumpy\ndtype\n\x85Rs.")
    with pytest.raises(ScenarioError, match="only allowed with a built-in factory"):
        scenarionet._unpickle(path)
    # and one called with more than its factory
    path = tmp_path / "two_args.pkl"
    path.write_bytes(b"\x80\x02}" + _s("metadata") + b"ccollections\ndefaultdict\nc__builtin__\nlong\n}\x86Rs.")
    with pytest.raises(ScenarioError, match="only allowed with one factory argument"):
        scenarionet._unpickle(path)
    path = tmp_path / "odict_args.pkl"
    path.write_bytes(b"\x80\x02}" + _s("metadata") + b"ccollections\nOrderedDict\n]\x85Rs.")
    with pytest.raises(ScenarioError, match="OrderedDict is only allowed"):
        scenarionet._unpickle(path)


# --------------------------------------------------------------------------- malicious pickles


def _s(text: str) -> bytes:
    raw = text.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw  # BINUNICODE


def global_call(module: str, name: str, arg: bytes) -> bytes:
    """Protocol-2 pickle of ``{"metadata": module.name(arg)}``, by hand (GLOBAL, TUPLE1, REDUCE)."""
    return b"\x80\x02}" + _s("metadata") + b"c" + f"{module}\n{name}\n".encode() + arg + b"\x85Rs."


class _Reduce:
    """Pickles as ``func(*args)``: what an attacker's object looks like in a pickle."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _malicious(marker: Path) -> dict[str, bytes]:
    touch = f"touch {marker}"
    write_marker = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": global_call("os", "system", _s(touch)),
        "posix.system": pickle.dumps({"metadata": _Reduce(os.system, touch)}, protocol=4),  # os.system pickles as posix
        "builtins.eval": pickle.dumps({"metadata": _Reduce(eval, f"__import__('os').system({touch!r})")}, protocol=4),
        "builtins.exec": pickle.dumps({"metadata": _Reduce(exec, write_marker)}, protocol=3),
        "__builtin__.exec": pickle.dumps({"metadata": _Reduce(exec, write_marker)}, protocol=2),  # Python 2 names
        "subprocess.Popen": pickle.dumps({"metadata": _Reduce(subprocess.Popen, ["touch", str(marker)])}, protocol=5),
        # an object array whose element is an attacker's object: its global is refused like any other
        "posix.system ": pickle.dumps({"metadata": np.array([_Reduce(os.system, touch)], dtype=object)}, protocol=4),
    }


@pytest.mark.parametrize(
    "name", ["os.system", "posix.system", "builtins.eval", "builtins.exec", "__builtin__.exec", "subprocess.Popen", "posix.system "]
)
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, name):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(_malicious(marker)[name])
    with pytest.raises(ScenarioError) as err:
        read_scenarionet(path)
    assert err.value.field == "pickle" and err.value.source == str(path)
    assert f"refused to load {name.strip()}:" in err.value.problem
    with pytest.raises(ScenarioError, match="refused to load"):
        scenarios.load(path)  # detected as ScenarioNet by content, refused all the same
    assert not marker.exists()


def test_the_crafted_exploit_is_real(tmp_path):
    """Control: plain pickle does run the crafted ``exec`` file, so the marker test above means something."""
    marker = tmp_path / "pwned"
    pickle.loads(_malicious(marker)["builtins.exec"])
    assert marker.exists()


def test_object_arrays_reaching_other_classes_are_refused(tmp_path):
    from decimal import Decimal

    path = write(tmp_path, {"metadata": np.array([Decimal("1.5")], dtype=object)})
    with pytest.raises(ScenarioError, match=r"refused to load decimal\.Decimal"):
        read_scenarionet(path)


def test_object_array_from_raw_bytes_is_refused(tmp_path):
    # ndarray(shape, object, buffer=...) would turn file bytes into object pointers
    path = write(tmp_path, {"metadata": _Reduce(np.ndarray, (2,), np.dtype("O"), b"\x41" * 16)})
    with pytest.raises(ScenarioError) as err:
        read_scenarionet(path)
    assert err.value.field == "pickle" and "not a readable pickle" in err.value.problem
    # the same through _reconstruct + __setstate__ with bytes for an object dtype: numpy refuses it
    from numpy._core.multiarray import _reconstruct

    state = (1, (2,), np.dtype("O"), False, b"\x41" * 16)
    path = write(tmp_path, {"metadata": _ReduceWithState(_reconstruct, (np.ndarray, (0,), b"b"), state)}, name="b.pkl")
    with pytest.raises(ScenarioError, match="not a readable pickle"):
        read_scenarionet(path)


def test_memo_index_bomb_is_refused_before_loading(tmp_path):
    path = tmp_path / "memo.pkl"
    path.write_bytes(b"\x80\x02}r" + (2**31 - 1).to_bytes(4, "little") + b".")  # LONG_BINPUT 2**31 - 1
    with pytest.raises(ScenarioError, match="memo index 2147483647 out of range") as err:
        read_scenarionet(path)
    assert err.value.field == "pickle"


def test_extension_registry_opcode_is_refused(tmp_path):
    path = tmp_path / "ext.pkl"
    path.write_bytes(b"\x80\x02\x82\x01.")  # EXT1 1: a global looked up in copyreg's registry
    with pytest.raises(ScenarioError, match="refused opcode EXT1"):
        read_scenarionet(path)


def test_reconstruct_only_as_numpy_writes_it(tmp_path):
    from numpy._core.multiarray import _reconstruct

    path = write(tmp_path, {"metadata": _Reduce(_reconstruct, np.ndarray, (10**12,), b"O")})  # 8 TB of None
    with pytest.raises(ScenarioError, match="_reconstruct is only allowed"):
        read_scenarionet(path)


def test_shared_references_cannot_multiply_a_field(tmp_path, monkeypatch):
    monkeypatch.setattr(scenarionet, "MAX_FIELD_ELEMENTS", 100_000)  # the walk stops at the limit: keep it quick
    nested: Any = [1.0] * 1000
    for _ in range(3):
        nested = [nested] * 1000  # 10**12 numbers from a few kB of memo references
    description = waymo_like()
    description["tracks"]["8"]["state"]["position"] = nested
    path = write(tmp_path, description)
    assert path.stat().st_size < 50_000
    with pytest.raises(ScenarioError, match="expands to more than") as err:
        read_scenarionet(path)
    assert err.value.field == "tracks.8.state.position"


class _ReduceWithState:
    def __init__(self, func: Any, args: tuple, state: Any) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return self.func, self.args, self.state


# --------------------------------------------------------------------------- bad input


def _mutated(change) -> dict:
    description = copy.deepcopy(waymo_like())
    change(description)
    return description


def _nan_position(d: dict) -> None:
    d["tracks"]["8"]["state"]["position"][2, 0] = np.nan


def _nan_where_invalid(d: dict) -> None:
    d["tracks"]["9"]["state"]["position"][0, 0] = np.nan  # step 0 is not valid: fine


@pytest.mark.parametrize(
    "change, field, words",
    [
        (lambda d: d.pop("tracks"), "tracks", "missing"),
        (lambda d: d.update(tracks={}), "tracks", "no tracks"),
        (lambda d: d.pop("metadata"), "metadata", "missing"),
        (lambda d: d["metadata"].pop("sdc_id"), "metadata.sdc_id", "missing"),
        (lambda d: d["metadata"].update(sdc_id="404"), "metadata.sdc_id", "not among the 4 tracks"),
        (lambda d: d["metadata"].update(sdc_id="10"), "metadata.sdc_id", "never valid"),
        (_nan_position, "tracks.8.state.position", "NaN or infinite value where valid (step 2)"),
        (lambda d: d["tracks"]["7"]["state"].pop("heading"), "tracks.7.state.heading", "missing"),
        (lambda d: d["tracks"]["7"]["state"].update(heading=np.zeros(4)), "tracks.7.state.heading", "4 steps"),
        (lambda d: d["tracks"]["7"]["state"].update(position=np.zeros((T, 4))), "tracks.7.state.position", "shape"),
        (lambda d: d["tracks"]["7"].update(state="moving"), "tracks.7.state", "must be a dict"),
        (lambda d: d["metadata"].update(ts=np.array([0.0, 0.1, 0.1, 0.3, 0.4])), "metadata.ts", "not strictly increasing"),
        (lambda d: d.update(length=7), "length", "7 steps"),
        (lambda d: d.update(map_features={}), "map_features", "the map is empty"),
        (lambda d: d.pop("map_features"), "map_features", "the map is empty"),
        (lambda d: d["map_features"]["200"].update(polyline=[[0.0, np.nan]]), "map_features.200.polyline", "NaN"),
        (
            lambda d: d["dynamic_map_states"]["100"]["state"]["object_state"].pop(),
            "dynamic_map_states.100.state.object_state",
            "one state per step",
        ),
        (lambda d: d["metadata"].update(scenario_id=None) or d.pop("id"), "metadata.scenario_id", "missing"),
    ],
)
def test_bad_description_names_file_and_field(tmp_path, change, field, words):
    path = write(tmp_path, _mutated(change))
    with pytest.raises(ScenarioError) as err:
        read_scenarionet(path)
    assert err.value.field == field
    assert words in err.value.problem
    assert str(path) in str(err.value)


def test_nan_where_invalid_is_fine(tmp_path):
    [s] = read_scenarionet(write(tmp_path, _mutated(_nan_where_invalid)))
    assert s.tracks.x[s.tracks.index_of("9"), 0] == 0.0  # invalid entries are stored as 0


@pytest.mark.parametrize("obj", [[1, 2, 3], "metadata", ("tracks", {})])
def test_a_pickle_of_something_else(tmp_path, obj):
    path = write(tmp_path, obj)
    with pytest.raises(ScenarioError, match="expected a dict") as err:
        read_scenarionet(path)
    assert err.value.field == "" and err.value.source == str(path)


def test_truncated_pickle(data_dir, tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes((data_dir / SCENE_1100).read_bytes()[:100_000])
    with pytest.raises(ScenarioError) as err:
        read_scenarionet(path)
    assert err.value.field == "pickle" and "not a readable pickle" in err.value.problem
    assert err.value.source == str(path)


@pytest.mark.parametrize("content", [b"", b"\x80\x04garbage", b"not a pickle at all"])
def test_garbage_is_a_scenario_error(tmp_path, content):
    path = tmp_path / "junk.pkl"
    path.write_bytes(content)
    with pytest.raises(ScenarioError) as err:
        read_scenarionet(path)
    assert err.value.field == "pickle"


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read the file"):
        read_scenarionet(tmp_path / "absent.pkl")


def test_a_bad_file_does_not_stop_a_batch(data_dir, tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(_malicious(tmp_path / "pwned")["os.system"])
    outcomes = list(scenarios.load_many([evil, data_dir / SCENE_1100]))
    assert [o.ok for o in outcomes] == [False, True]
    assert outcomes[0].error.field == "pickle" and outcomes[1].scenarios[0].num_agents == 33
    assert FeatureKind.ROAD_EDGE in {f.kind for f in outcomes[1].scenarios[0].road_map.features}


# --------------------------------------------------------------------------- fuzzing: only ScenarioError


def _leaf_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [prefix] + [p for k, v in node.items() for p in _leaf_paths(v, (*prefix, k))]
    return [prefix]


_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.one_of(st.none(), st.floats(), st.text(max_size=3)), max_size=4),
    st.just({}),
    st.just(np.zeros((T, 7))),
    st.just(np.full(T, np.nan)),
    st.just(np.array(["a", "b"])),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_corrupted_field_is_a_scenario_error(tmp_path, data):
    description = waymo_like()
    path_to = data.draw(st.sampled_from(_leaf_paths(description)[1:]))
    junk = data.draw(_JUNK)
    parent = description
    for key in path_to[:-1]:
        parent = parent[key]
    parent[path_to[-1]] = junk
    try:
        read_scenarionet(write(tmp_path, description, name="fuzz.pkl"))
    except ScenarioError as err:
        assert err.source.startswith(str(tmp_path / "fuzz.pkl"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damaged_byte_is_a_scenario_error(tmp_path, data):
    clean = bytearray(pickle.dumps(waymo_like(), protocol=data.draw(st.sampled_from([2, 4, 5]))))
    for _ in range(data.draw(st.integers(1, 4))):
        clean[data.draw(st.integers(0, len(clean) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(clean)))
    path = tmp_path / "damaged.pkl"
    path.write_bytes(bytes(clean[:cut]))
    try:
        read_scenarionet(path)
    except ScenarioError as err:
        assert err.source.startswith(str(path))


def test_moving_tracks_keep_their_speed_on_their_last_step(scene_0061, raw_0061):
    """ScenarioNet stores velocity 0 on the last step of every track (a forward difference with
    nothing after it); a car that was moving did not stop dead there."""
    held = 0
    for row, track in enumerate(raw_0061["tracks"].values()):
        valid = track["state"]["valid"] > 0
        last = int(np.flatnonzero(valid)[-1])
        raw_speed = np.hypot(*track["state"]["velocity"][last, :2])
        before = np.hypot(*track["state"]["velocity"][last - 1, :2]) if last > 0 and valid[last - 1] else 0.0
        if raw_speed == 0.0 and before > 0.5:
            held += 1
            assert scene_0061.tracks.speed[row, last] == pytest.approx(before)
    assert held > 10  # the artefact is real and common in this file
    assert "given the previous step's velocity" in scene_0061.provenance.notes
