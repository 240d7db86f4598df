"""INTERACTION importer on a fixture in the dataset's layout (see tests/fixtures/interaction/make_fixture.py)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Point, Polygon
from shapely.ops import unary_union

import scenarios.importers as importers
from scenarios.errors import ScenarioError
from scenarios.importers.interaction import read_interaction
from scenarios.model import AgentType, FeatureKind, SignalState

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "interaction"
LOCATION = "DR_DTW_Curve"
VEHICLES = FIXTURE / "recorded_trackfiles" / LOCATION / "vehicle_tracks_000.csv"
PEDESTRIANS = VEHICLES.with_name("pedestrian_tracks_000.csv")
MAP = FIXTURE / "maps" / f"{LOCATION}.osm"
#: Each fixture vehicle's lane: its two lanelets (straight, then arc).
LANE_OF = {"1": ("3001", "3002"), "2": ("3003", "3004"), "3": ("3005", "3006")}


@pytest.fixture(scope="module")
def scenario():
    (scene,) = read_interaction(VEHICLES)
    return scene


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """A writable copy of the fixture's layout; returns the vehicle file in it."""
    shutil.copytree(FIXTURE / "maps", tmp_path / "maps")
    shutil.copytree(FIXTURE / "recorded_trackfiles", tmp_path / "recorded_trackfiles")
    return tmp_path / "recorded_trackfiles" / LOCATION / "vehicle_tracks_000.csv"


def test_identity_time_and_agents(scenario) -> None:
    assert scenario.id == "interaction-DR_DTW_Curve_vehicle_tracks_000"
    assert scenario.provenance.dataset == "interaction"
    assert scenario.provenance.source_log_id == "DR_DTW_Curve_vehicle_tracks_000"
    assert "UTM zone 31" in scenario.provenance.frame
    assert scenario.num_steps == 200 and scenario.dt_us == 100_000
    assert scenario.t_us[0] == 100_000 and scenario.t_us[-1] == 20_000_000  # timestamp_ms 100 .. 20000
    tracks = scenario.tracks
    assert tracks.agent_ids.tolist() == ["1", "2", "3", "P1", "P2"]
    assert tracks.agent_types.tolist() == [AgentType.VEHICLE] * 3 + [AgentType.PEDESTRIAN, AgentType.CYCLIST]
    assert tracks.valid.sum(axis=1).tolist() == [200, 200, 140, 100, 151]
    assert np.flatnonzero(tracks.valid[2])[[0, -1]].tolist() == [30, 169]  # frames 31..170
    assert tracks.length.tolist() == [4.6, 4.8, 4.5, 0.5, 1.8] and tracks.width.tolist() == [1.9, 1.8, 1.8, 0.5, 0.6]
    assert tracks.height.tolist() == [1.5, 1.5, 1.5, 1.75, 1.7]
    # the first row of the vehicle file: 1,1,100,car,1005.000,998.250,9.000,0.000,0.000,4.6,1.9
    assert (tracks.x[0, 0], tracks.y[0, 0], tracks.vx[0, 0], tracks.vy[0, 0], tracks.yaw[0, 0]) == (1005.0, 998.25, 9.0, 0.0, 0.0)
    # pedestrians carry no heading: it follows their velocity (P1 walks +x, P2 rides -x)
    assert tracks.yaw[3, 0] == 0.0 and tracks.yaw[4, 49] == pytest.approx(math.pi)
    assert tracks.x[4, 49] == 1100.0 and tracks.vx[4, 49] == -4.0
    # vehicles 1 and 2 are seen throughout; 1 travels further (9 m/s against 8 m/s)
    assert scenario.ego_id == "1"
    assert "pick_ego" in scenario.provenance.notes and "pedestrian_tracks_000.csv" in scenario.provenance.notes


def test_map_lanes_topology_and_limits(scenario) -> None:
    lanes = {lane.id: lane for lane in scenario.road_map.lanes}
    assert sorted(lanes) == ["3001", "3002", "3003", "3004", "3005", "3006"]
    # the lanes land where they were built in metres, after the lat/lon round trip
    np.testing.assert_allclose(lanes["3001"].centerline[0, :2], [1000.0, 998.25], atol=1e-5)
    np.testing.assert_allclose(lanes["3001"].centerline[-1, :2], [1120.0, 998.25], atol=1e-5)
    # the oncoming lane's bounds are drawn +x in the file and reversed: it runs from the arc's end to x = 1000
    np.testing.assert_allclose(lanes["3005"].centerline[[0, -1], :2], [[1120.0, 1005.25], [1000.0, 1005.25]], atol=1e-5)
    np.testing.assert_allclose(lanes["3005"].left_boundary[0, :2], [1120.0, 1003.5], atol=1e-5)
    end_angle = -math.pi / 2 + math.pi / 3
    np.testing.assert_allclose(
        lanes["3006"].centerline[0, :2], [1120 + 74.75 * math.cos(end_angle), 1080 + 74.75 * math.sin(end_angle)], atol=1e-5
    )
    assert lanes["3001"].successors == ("3002",) and lanes["3002"].predecessors == ("3001",)
    assert lanes["3006"].successors == ("3005",) and lanes["3005"].predecessors == ("3006",)
    assert lanes["3001"].left_neighbors == ("3003",) and lanes["3003"].right_neighbors == ("3001",)
    # L and O share the double solid line as both their left bounds: opposite directions, no neighbours
    assert lanes["3003"].left_neighbors == () and lanes["3005"].left_neighbors == ()
    for lane_id in ("3001", "3002", "3003", "3004"):
        assert lanes[lane_id].speed_limit == pytest.approx(50 / 3.6)  # the de274-50 sign's regulatory element
    assert lanes["3005"].speed_limit == pytest.approx(30 * 0.44704)  # the lanelet's "30 mph" tag
    road_map = scenario.road_map
    assert sorted(f.subtype for f in road_map.road_lines) == ["line_thin_dashed"] * 2 + ["line_thin_solid_solid"] * 2
    assert len(road_map.road_edges) == 4 and len(road_map.drivable_areas) == 6
    assert [f.id for f in road_map.of_kind(FeatureKind.STOP_LINE)] == ["way-2103"]
    signals = scenario.signals
    assert signals.lane_ids.tolist() == ["3002"] and (signals.states == SignalState.UNKNOWN).all()
    mid = lanes["3002"].centerline[-1]
    np.testing.assert_allclose(signals.stop_points[0, :2], mid[:2], atol=1e-6)


def test_every_vehicle_is_inside_its_lanelets_and_heads_along_them(scenario) -> None:
    lanes = {lane.id: lane for lane in scenario.road_map.lanes}
    tracks = scenario.tracks
    for agent_id, lane_ids in LANE_OF.items():
        row = tracks.index_of(agent_id)
        own = unary_union([Polygon(lanes[i].polygon()) for i in lane_ids])
        others = unary_union([Polygon(lane.polygon()) for lane in lanes.values() if lane.id not in lane_ids])
        steps = np.flatnonzero(tracks.valid[row])
        for step in steps:
            point = Point(tracks.x[row, step], tracks.y[row, step])
            assert own.contains(point), (agent_id, step)
            assert not others.contains(point), (agent_id, step)
            assert own.exterior.distance(point) > 1.5  # 1.75 m from either bound, to the metre precision of the file
        # the heading agrees with the lane's direction at the nearest centerline segment
        centerline = np.vstack([lanes[i].centerline[:, :2] for i in lane_ids])
        for step in steps[::10]:
            p = np.array([tracks.x[row, step], tracks.y[row, step]])
            k = int(np.argmin(np.linalg.norm(0.5 * (centerline[1:] + centerline[:-1]) - p, axis=1)))
            d = centerline[k + 1] - centerline[k]
            error = math.remainder(tracks.yaw[row, step] - math.atan2(d[1], d[0]), 2 * math.pi)
            assert abs(error) < 0.05, (agent_id, step)


def test_load_detects_windows_and_vehicle_egos() -> None:
    assert importers.detect(VEHICLES).name == "interaction"
    windows = importers.load(VEHICLES, window_s=5)
    assert [s.id for s in windows] == [f"interaction-DR_DTW_Curve_vehicle_tracks_000.w{k}" for k in (0, 50, 100, 150)]
    assert all(s.num_steps == 50 for s in windows)
    assert [s.ego_id for s in windows] == ["1", "1", "1", "1"]
    # vehicle 3 is seen at steps 30..169, P1 at 0..99, P2 at 49..199
    assert [s.num_agents for s in windows] == [5, 5, 4, 4]
    assert "P1" not in windows[2].tracks.agent_ids and "3" in windows[3].tracks.agent_ids
    egos = importers.load(VEHICLES, egos="vehicles")
    assert [s.id for s in egos] == [f"interaction-DR_DTW_Curve_vehicle_tracks_000.ego-{k}" for k in (1, 2, 3)]
    assert [s.ego_id for s in egos] == ["1", "2", "3"]


def test_explicit_map_path(tmp_path: Path) -> None:
    shutil.copy(VEHICLES, tmp_path / "vehicle_tracks_000.csv")
    (scene,) = read_interaction(tmp_path / "vehicle_tracks_000.csv", map_path=MAP)
    assert scene.num_agents == 3  # no pedestrian file beside this copy
    assert scene.id == f"interaction-{tmp_path.name}_vehicle_tracks_000"
    with pytest.raises(ScenarioError) as info:
        read_interaction(tmp_path / "vehicle_tracks_000.csv")
    assert info.value.source == str(tmp_path / "vehicle_tracks_000.csv") and info.value.field == "map"
    assert "no Lanelet2 map" in info.value.problem


@pytest.mark.parametrize(
    "sign, mph",
    [("15mph", 15), ("25 mph", 25), ("us35", 35), ("US-40", 40), ("us_45mph", 45), ("usR2-1-55", 55)],
)
def test_us_speed_limit_signs_are_mph(layout, sign, mph) -> None:
    """US INTERACTION maps give the limit as the sign's type (``sign_type="15mph"``): it becomes m/s."""
    _edit(_map_of(layout), '<tag k="subtype" v="de274-50"/>', f'<tag k="subtype" v="{sign}"/>')
    (scene,) = read_interaction(layout)
    lanes = {lane.id: lane for lane in scene.road_map.lanes}
    for lane_id in ("3001", "3002", "3003", "3004"):
        assert lanes[lane_id].speed_limit == pytest.approx(mph * 0.44704)


def test_a_us_sign_type_on_the_regulatory_element(layout) -> None:
    _edit(_map_of(layout), '<tag k="subtype" v="speed_limit"/>', '<tag k="subtype" v="speed_limit"/><tag k="sign_type" v="15mph"/>')
    _edit(_map_of(layout), '<tag k="subtype" v="de274-50"/>', '<tag k="subtype" v="usR2-1"/>')  # a sign with no number
    (scene,) = read_interaction(layout)
    assert scene.road_map.lane("3001").speed_limit == pytest.approx(15 * 0.44704)  # 6.7056 m/s


@pytest.mark.parametrize("sign", ["25", "usR2-1", "us", "0mph", "de205"])
def test_signs_that_carry_no_limit_give_none(layout, sign) -> None:
    _edit(_map_of(layout), '<tag k="subtype" v="de274-50"/>', f'<tag k="subtype" v="{sign}"/>')
    (scene,) = read_interaction(layout)
    assert math.isnan(scene.road_map.lane("3001").speed_limit)


def _map_of(vehicles: Path) -> Path:
    return vehicles.parents[2] / "maps" / f"{LOCATION}.osm"


# ---- bad input -------------------------------------------------------------------------------


def _raises(path: Path, field: str, words: str, **kwargs: object) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        read_interaction(path, **kwargs)  # type: ignore[arg-type]
    error = info.value
    assert error.field == field, error
    assert words in error.problem, error
    return error


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, count))


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        (",psi_rad,length,width", ",length,width", "psi_rad", "missing column"),  # a dropped column
        ("agent_type,x,y,", "agent_type,pos_x,y,", "x", "missing column"),  # a renamed column
        ("1,2,200,car,1005.900,", "1,2,200,car,NaN,", "x", "not a finite number at line 3 (track 1)"),
        ("1,2,200,car,1005.900,998.250,", "1,2,200,car,1005.900,,", "y", "not a finite number at line 3"),
        ("1,3,300,car", "1,3,200,car", "timestamp_ms", "duplicate timestamp for track 1: 200 ms at line 4 after 200 ms at"),
        ("1,3,300,car", "1,3,150,car", "timestamp_ms", "decreasing timestamp for track 1"),
        ("1,3,300,car", "1,3,300.5,car", "timestamp_ms", "whole non-negative number"),
        ("0.000,0.000,4.6,1.9\n1,2,", "0.000,0.000,-4.6,1.9\n1,2,", "length", "not positive at line 2"),
    ],
)
def test_malformed_vehicle_csv(layout: Path, old: str, new: str, field: str, words: str) -> None:
    _edit(layout, old, new)
    error = _raises(layout, field, words)
    assert error.source == str(layout)


def test_malformed_pedestrian_csv_names_that_file(layout: Path) -> None:
    pedestrians = layout.with_name("pedestrian_tracks_000.csv")
    _edit(pedestrians, "P1,2,200,pedestrian,1010.130", "P1,2,200,pedestrian,inf")
    assert _raises(layout, "x", "not a finite number").source == str(pedestrians)
    _raises(pedestrians, "", "load that file")  # pedestrians are read with their vehicle file


def test_missing_empty_and_header_only_csv(layout: Path) -> None:
    assert _raises(layout.with_name("vehicle_tracks_999.csv"), "", "no such file").source.endswith("vehicle_tracks_999.csv")
    layout.write_text("")
    _raises(layout, "", "empty")
    layout.write_text("track_id,frame_id,timestamp_ms,agent_type,x,y,vx,vy,psi_rad,length,width\n")
    _raises(layout, "", "no rows")


def test_renamed_column_through_load(layout: Path) -> None:
    _edit(layout, ",vx,vy,", ",v_x,vy,")
    with pytest.raises(ScenarioError) as info:
        importers.load(layout)
    assert info.value.source == str(layout) and info.value.field == "vx"


def test_bad_maps(layout: Path) -> None:
    map_path = layout.parents[2] / "maps" / f"{LOCATION}.osm"
    text = map_path.read_text()
    map_path.write_text(text[: len(text) // 2])
    assert _raises(layout, "xml", "not well-formed XML").source == str(map_path)
    map_path.write_text('<?xml version="1.0"?>\n<osm version="0.6"></osm>\n')
    assert _raises(layout, "lanelet", "empty map").source == str(map_path)
    map_path.write_text(text.replace('lat="0.00900328343"', 'lat="north"'))
    _raises(layout, "node[@id=1001]/@lat", "not a number")
    map_path.write_text(text.replace('ref="2001" role="right"', 'ref="2999" role="right"'))
    _raises(layout, "relation[@id=3001]/member[@role=right]", "way 2999 is not in the map")
    map_path.write_text(text.replace('<tag k="speed_limit" v="30 mph"/>', '<tag k="speed_limit" v="fast"/>'))
    _raises(layout, "relation[@id=3005]/tag[@k=speed_limit]", "not a speed limit")
    map_path.unlink()
    assert _raises(layout, "map", "no Lanelet2 map").source == str(layout)
    missing = layout.parent / "elsewhere.osm"
    assert _raises(layout, "", "cannot read the map", map_path=missing).source == str(missing)


# ---- v1.2 train/val/test files (see tests/fixtures/interaction_v12/make_fixture.py) ---------

V12 = Path(__file__).resolve().parents[1] / "fixtures" / "interaction_v12"
V12_TRAIN = V12 / "train" / f"{LOCATION}_train.csv"
V12_HEADER = "case_id,track_id,frame_id,timestamp_ms,agent_type,x,y,vx,vy,psi_rad,length,width"


@pytest.fixture(scope="module")
def cases():
    return read_interaction(V12_TRAIN)


@pytest.fixture
def v12_layout(tmp_path: Path) -> Path:
    """A writable copy of the v1.2 fixture; returns its train file."""
    shutil.copytree(V12, tmp_path / "v12", ignore=shutil.ignore_patterns("*.py"))
    return tmp_path / "v12" / "train" / f"{LOCATION}_train.csv"


def test_v12_one_scenario_per_case(cases) -> None:
    assert V12_TRAIN.read_text().splitlines()[0] == V12_HEADER
    assert [s.id for s in cases] == [f"interaction-DR_DTW_Curve_train_case{k}" for k in (1, 2, 3)]
    assert [s.provenance.source_log_id for s in cases] == [f"DR_DTW_Curve_train_case{k}" for k in (1, 2, 3)]
    assert all(s.provenance.source_file == str(V12_TRAIN) for s in cases)
    # cases cut from source frames 1..40, 41..80 and 161..200; timestamps restart at 100 ms
    assert [s.num_steps for s in cases] == [40, 40, 40] and [s.dt_us for s in cases] == [100_000] * 3
    assert all(s.t_us[0] == 100_000 and s.t_us[-1] == 4_000_000 for s in cases)
    assert [s.num_agents for s in cases] == [4, 5, 4]
    assert [s.tracks.agent_ids.tolist() for s in cases] == [["1", "2", "3", "P1"], ["1", "2", "3", "P1", "P2"], ["1", "2", "3", "P2"]]
    assert [s.tracks.valid.sum(axis=1).tolist() for s in cases] == [[40, 40, 10, 40], [40, 40, 40, 40, 31], [40, 40, 10, 40]]
    assert [s.ego_id for s in cases] == ["1", "1", "1"]
    second = cases[1].tracks
    assert second.agent_types.tolist() == [AgentType.VEHICLE] * 3 + [AgentType.PEDESTRIAN, AgentType.CYCLIST]
    # the pedestrians' empty size columns: default boxes; vehicles keep theirs
    assert second.length.tolist() == [4.6, 4.8, 4.5, 0.5, 1.8] and second.width.tolist() == [1.9, 1.8, 1.8, 0.5, 0.6]
    # vehicle 1 at source frame 41 (s = 5 + 9 * 4 m), P2 cycling -x at source frame 80
    assert (second.x[0, 0], second.y[0, 0]) == (1041.0, 998.25)
    assert second.yaw[4, -1] == pytest.approx(math.pi) and second.x[4, -1] == pytest.approx(1088.0)
    assert cases[0].signals.lane_ids.tolist() == ["3002"] and cases[0].signals.states.shape == (1, 40)
    assert all(s.road_map is cases[0].road_map for s in cases)  # one map for the file


def test_v12_vehicles_are_inside_their_lanelets(cases) -> None:
    for scene in cases:
        lanes = {lane.id: lane for lane in scene.road_map.lanes}
        tracks = scene.tracks
        for agent_id, lane_ids in LANE_OF.items():
            row = tracks.index_of(agent_id)
            own = unary_union([Polygon(lanes[i].polygon()) for i in lane_ids])
            others = unary_union([Polygon(lane.polygon()) for lane in lanes.values() if lane.id not in lane_ids])
            for step in np.flatnonzero(tracks.valid[row]):
                point = Point(tracks.x[row, step], tracks.y[row, step])
                assert own.contains(point) and not others.contains(point), (scene.id, agent_id, step)
                assert own.exterior.distance(point) > 1.5, (scene.id, agent_id, step)


def test_v12_map_is_parsed_once_per_file(monkeypatch) -> None:
    import scenarios.importers.interaction as module

    calls = []
    original = module._read_map
    monkeypatch.setattr(module, "_read_map", lambda path: calls.append(path) or original(path))
    assert len(read_interaction(V12_TRAIN)) == 3
    assert calls == [V12 / "maps" / f"{LOCATION}.osm"]


def test_v12_load_detects_and_takes_vehicle_egos() -> None:
    assert importers.detect(V12_TRAIN).name == "interaction"
    egos = importers.load(V12_TRAIN, egos="vehicles")
    # vehicle 3 is seen for 1 s in cases 1 and 3, less than the 2 s an ego needs
    expected = [(1, "1"), (1, "2"), (2, "1"), (2, "2"), (2, "3"), (3, "1"), (3, "2")]
    assert [s.id for s in egos] == [f"interaction-DR_DTW_Curve_train_case{c}.ego-{a}" for c, a in expected]
    assert [s.ego_id for s in egos] == [a for _, a in expected]


def test_v12_explicit_map_path_and_missing_map(tmp_path: Path) -> None:
    copy = tmp_path / "DR_DTW_Curve_val.csv"
    shutil.copy(V12_TRAIN, copy)
    scenes = read_interaction(copy, map_path=MAP)
    assert [s.id for s in scenes] == [f"interaction-DR_DTW_Curve_val_case{k}" for k in (1, 2, 3)]
    error = _raises(copy, "map", "no Lanelet2 map")
    assert error.source == str(copy) and str(tmp_path.parent / "maps" / f"{LOCATION}.osm") in error.problem


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        # case 2's vehicle 1 goes back in time at its third row (line 134: the header, case 1's 130 rows, then 3)
        ("2.0,1,3,300,car", "2.0,1,3,150,car", "timestamp_ms", "decreasing timestamp for case 2, track 1: 150 ms at line 134"),
        ("2.0,1,1,100,car", ",1,1,100,car", "case_id", "empty at line 132 (the row after case 1's)"),
        ("2.0,1,1,100,car", "two,1,1,100,car", "case_id", "not a whole non-negative number at line 132: 'two'"),
        ("3.0,2,5,500,car,", "3.0,2,5,500,car,NaN", "x", "not a finite number at line"),
        (",0.000,4.6,1.9", ",,4.6,1.9", "psi_rad", "(case 1, track 1)"),  # a vehicle without heading
        ("2.0,1,2,200,car,1041.900,998.250,9.000,0.000,0.000,4.6,", "2.0,1,2,200,car,1041.900,998.250,9.000,0.000,0.000,-4.6,",
         "length", "not positive at line 133 (case 2, track 1)"),
    ],
)  # fmt: skip
def test_v12_malformed_rows_name_file_field_and_case(v12_layout: Path, old: str, new: str, field: str, words: str) -> None:
    _edit(v12_layout, old, new)
    error = _raises(v12_layout, field, words)
    assert error.source == str(v12_layout)


def test_v12_missing_column_and_header_only(v12_layout: Path) -> None:
    v12_layout.write_text(V12_HEADER.replace("case_id,", "") + "\n1,1,100,car,1,2,0,0,0,4,2\n")
    assert importers.detect(v12_layout).name == "interaction"  # the recorded-track layout, misnamed: still read
    v12_layout.write_text(V12_HEADER.replace(",length", "") + "\n1.0,1,1,100,car,1,2,0,0,0,2\n")
    _raises(v12_layout, "length", "missing column")
    v12_layout.write_text(V12_HEADER + "\n")
    _raises(v12_layout, "", "no rows")
    v12_layout.write_text(V12_HEADER + "\n1.0,P1,1,100,pedestrian,1,2,0,0,,,\n")
    _raises(v12_layout, "ego", "case 1: no vehicle")
