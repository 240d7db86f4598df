"""CommonRoad importer: the real NGSIM US-101 sample (2020a), a hand-built 2018b fixture, signs and lights, bad files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import scenarios.importers as importers
from scenarios.errors import ScenarioError
from scenarios.importers.commonroad import HEIGHT_M, centerline_from_bounds, read_commonroad
from scenarios.model import AgentType, FeatureKind, SignalState

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "commonroad"
FIXTURE_2018B = FIXTURES / "ZAM_Drivetwin-1_1_T-1.xml"


@pytest.fixture(scope="module")
def us101_path(data_dir: Path) -> Path:
    return data_dir / "commonroad" / "USA_US101-4_1_T-1.xml"


@pytest.fixture(scope="module")
def us101(us101_path: Path):
    (scenario,) = read_commonroad(us101_path)
    return scenario


# ---- the real 2020a sample ---------------------------------------------------------------------


def test_us101_identity_and_time(us101) -> None:
    assert us101.id == "commonroad-USA_US101-4_1_T-1"
    assert us101.provenance.dataset == "commonroad"
    assert us101.provenance.source_log_id == "USA_US101-4_1_T-1"
    assert us101.num_steps == 101  # steps 0..100
    assert us101.dt_us == 100_000
    assert us101.t_us[0] == 0 and us101.t_us[-1] == 10_000_000
    assert us101.tags == (
        "highway", "multi_lane", "no_oncoming_traffic", "parallel_lanes", "slip_road", "lane_following", "comfort", "traffic_jam",
    )  # fmt: skip


def test_us101_tracks(us101) -> None:
    tracks = us101.tracks
    assert tracks.num_agents == 22
    assert (tracks.agent_types == AgentType.VEHICLE).all()
    assert "458" not in tracks.agent_ids  # the planning problem is not a track
    # obstacle 373: a 4.7244 x 2.1031 car, recorded at steps 0..7 only
    row = tracks.index_of("373")
    assert tracks.length[row] == 4.7244 and tracks.width[row] == 2.1031 and tracks.height[row] == HEIGHT_M["car"]
    assert np.flatnonzero(tracks.valid[row]).tolist() == list(range(8))
    # its state at step 2, as in the file: (23.3306, -41.1123), orientation -0.76677, velocity 16.6939
    assert tracks.x[row, 2] == 23.3306 and tracks.y[row, 2] == -41.1123
    assert tracks.yaw[row, 2] == -0.76677
    assert tracks.vx[row, 2] == pytest.approx(16.6939 * math.cos(-0.76677), abs=1e-12)
    assert tracks.vy[row, 2] == pytest.approx(16.6939 * math.sin(-0.76677), abs=1e-12)
    # the longest tracks: five cars seen at all 101 steps
    full = sorted(tracks.agent_ids[tracks.valid.sum(axis=1) == 101].tolist())
    assert full == ["427", "442", "451", "468", "475"]


def test_us101_ego_chosen_by_the_rule(us101) -> None:
    # Of the five cars seen throughout, 475 travels furthest (39.97 m against 29.01 m for 468).
    assert us101.ego_id == "475"
    assert "pick_ego" in us101.provenance.notes
    assert "planningProblem" in us101.provenance.notes


def test_us101_lanes(us101) -> None:
    lanes = {lane.id: lane for lane in us101.road_map.lanes}
    assert sorted(lanes, key=int) == ["2", "4", "6", "7", "9", "10", "12", "13", "15", "16", "40", "42"]
    lane = lanes["2"]
    assert lane.successors == ("4",) and lane.predecessors == ()
    assert lane.right_neighbors == ("42",) and lane.left_neighbors == ()
    assert lanes["13"].left_neighbors == ("10",) and lanes["13"].right_neighbors == ("16",)
    assert lanes["15"].left_neighbors == () and lanes["15"].successors == ("16",)
    assert all(math.isnan(lane.speed_limit) for lane in lanes.values())  # no traffic signs in the file
    # lanelet 2's first bound points: left (-40.54872163, 40.24680481), right (-42.9445673, 37.69206832)
    assert lane.centerline[0, 0] == pytest.approx(-41.746644465, abs=1e-9)
    assert lane.centerline[0, 1] == pytest.approx(38.969436565, abs=1e-9)
    assert lane.left_boundary.shape == (25, 3) and lane.centerline.shape == (25, 3)


def test_us101_map_features(us101) -> None:
    road_map = us101.road_map
    assert len(road_map.drivable_areas) == 12
    lines = road_map.road_lines
    # 24 bound markings, less the 9 shared between same-direction neighbours
    assert len(lines) == 15
    assert sorted(f.subtype for f in lines).count("broad_solid") == 2
    assert {f.id for f in lines if f.subtype == "broad_solid"} == {"left-bound-2", "left-bound-4"}
    assert us101.signals.num_signals == 0


def test_us101_through_load_windows_and_egos(us101_path: Path) -> None:
    assert importers.detect(us101_path).name == "commonroad"
    windows = importers.load(us101_path, window_s=5)
    assert [s.id for s in windows] == ["commonroad-USA_US101-4_1_T-1.w0", "commonroad-USA_US101-4_1_T-1.w50"]
    assert all(s.num_steps == 50 for s in windows)
    egos = importers.load(us101_path, egos="vehicles")
    # vehicles seen for at least 2 s (20 steps): all but 373, 375, 379 and 380
    assert len(egos) == 18
    assert {s.ego_id for s in egos} == {
        "381", "383", "384", "387", "388", "389", "394", "395", "399", "400", "401", "405", "422",
        "427", "442", "451", "468", "475",
    }  # fmt: skip
    assert egos[0].id.startswith("commonroad-USA_US101-4_1_T-1.ego-")


# ---- the hand-built 2018b fixture --------------------------------------------------------------


@pytest.fixture(scope="module")
def zam():
    (scenario,) = read_commonroad(FIXTURE_2018B)
    return scenario


def test_2018b_fixture_tracks(zam) -> None:
    assert zam.id == "commonroad-ZAM_Drivetwin-1_1_T-1"
    assert zam.num_steps == 21 and zam.dt_us == 100_000
    assert zam.tags == ("interstate", "multi_lane", "parallel_lanes", "no_oncoming_traffic")
    tracks = zam.tracks
    assert tracks.agent_ids.tolist() == ["300", "301", "302"]
    assert (tracks.agent_types == AgentType.VEHICLE).all()  # car, truck, parkedVehicle
    assert tracks.length.tolist() == [4.5, 10.0, 4.2] and tracks.width.tolist() == [1.8, 2.5, 1.8]
    assert tracks.height.tolist() == [1.5, 3.5, 1.5]
    car, truck, parked = 0, 1, 2
    assert tracks.valid[car].all()
    assert tracks.x[car, 10] == pytest.approx(17.0) and tracks.y[car, 10] == -1.75
    assert tracks.vx[car, 10] == 12.0 and tracks.vy[car, 10] == 0.0
    assert np.flatnonzero(tracks.valid[truck]).tolist() == list(range(5, 21))
    # step 11 is given as the interval [10, 12] and its orientation as [-0.02, 0.02]: midpoints
    assert tracks.x[truck, 11] == pytest.approx(7.4) and tracks.yaw[truck, 11] == 0.0
    assert tracks.vx[truck, 11] == 9.0
    # the static parked car is valid throughout, still
    assert tracks.valid[parked].all()
    assert (tracks.x[parked] == 95.0).all() and (tracks.y[parked] == -2.2).all() and (tracks.yaw[parked] == 0.05).all()
    assert (tracks.vx[parked] == 0.0).all()
    # the car and the parked car are both seen at all 21 steps; the car travels 24 m
    assert zam.ego_id == "300"


def test_2018b_fixture_map(zam) -> None:
    lanes = {lane.id: lane for lane in zam.road_map.lanes}
    assert sorted(lanes) == ["100", "101", "200"]
    assert lanes["100"].speed_limit == 22.22 and lanes["101"].speed_limit == 13.89 and lanes["200"].speed_limit == 22.22
    assert lanes["100"].successors == ("101",) and lanes["101"].predecessors == ("100",)
    assert lanes["100"].left_neighbors == ("200",) and lanes["200"].right_neighbors == ("100",)
    np.testing.assert_array_equal(lanes["200"].centerline[:, :2], [[0.0, 1.75], [50.0, 1.75], [100.0, 1.75]])
    subtypes = sorted(f.subtype for f in zam.road_map.road_lines)
    assert subtypes == ["dashed", "dashed", "solid", "solid", "solid"]


# ---- 2020a traffic signs and traffic lights ----------------------------------------------------

SIGNS_AND_LIGHTS_2020A = """<?xml version="1.0" encoding="UTF-8"?>
<commonRoad commonRoadVersion="2020a" benchmarkID="USA_Drivetwin-2_1_T-1" date="2024-05-01" author="drivetwin"
            affiliation="drivetwin tests" source="hand-crafted" timeStepSize="0.1">
  <location><geoNameId>-999</geoNameId><gpsLatitude>999</gpsLatitude><gpsLongitude>999</gpsLongitude></location>
  <scenarioTags><urban/><intersection/></scenarioTags>
  <lanelet id="1">
    <leftBound><point><x>0</x><y>3</y></point><point><x>30</x><y>3</y></point><lineMarking>solid</lineMarking></leftBound>
    <rightBound><point><x>0</x><y>0</y></point><point><x>10</x><y>0</y></point><point><x>30</x><y>0</y></point>
      <lineMarking>solid</lineMarking></rightBound>
    <successor ref="2"/>
    <adjacentLeft ref="3" drivingDir="opposite"/>
    <stopLine><point><x>30</x><y>3</y></point><point><x>30</x><y>0</y></point><lineMarking>solid</lineMarking>
      <trafficLightRef ref="301"/></stopLine>
    <laneletType>urban</laneletType>
    <trafficSignRef ref="201"/>
    <trafficLightRef ref="301"/>
  </lanelet>
  <lanelet id="2">
    <leftBound><point><x>30</x><y>3</y></point><point><x>60</x><y>3</y></point></leftBound>
    <rightBound><point><x>30</x><y>0</y></point><point><x>60</x><y>0</y></point></rightBound>
    <predecessor ref="1"/>
    <laneletType>urban</laneletType>
    <trafficSignRef ref="202"/>
  </lanelet>
  <lanelet id="3">
    <leftBound><point><x>30</x><y>3</y></point><point><x>0</x><y>3</y></point><lineMarking>solid</lineMarking></leftBound>
    <rightBound><point><x>30</x><y>6</y></point><point><x>0</x><y>6</y></point><lineMarking>solid</lineMarking></rightBound>
    <adjacentLeft ref="1" drivingDir="opposite"/>
    <laneletType>urban</laneletType>
  </lanelet>
  <lanelet id="4">
    <leftBound><point><x>31</x><y>6</y></point><point><x>31</x><y>-3</y></point></leftBound>
    <rightBound><point><x>34</x><y>6</y></point><point><x>34</x><y>-3</y></point></rightBound>
    <laneletType>crosswalk</laneletType>
  </lanelet>
  <trafficSign id="201">
    <trafficSignElement><trafficSignID>R2-1</trafficSignID><additionalValue>29.0576</additionalValue></trafficSignElement>
  </trafficSign>
  <trafficSign id="202">
    <trafficSignElement><trafficSignID>R2-1</trafficSignID><additionalValue>25 mph</additionalValue></trafficSignElement>
  </trafficSign>
  <trafficLight id="301">
    <cycle>
      <cycleElement><duration>30</duration><color>red</color></cycleElement>
      <cycleElement><duration>20</duration><color>green</color></cycleElement>
      <cycleElement><duration>5</duration><color>yellow</color></cycleElement>
      <timeOffset>10</timeOffset>
    </cycle>
    <direction>all</direction>
    <active>true</active>
  </trafficLight>
  <staticObstacle id="501">
    <type>constructionZone</type>
    <shape><rectangle><length>2.0</length><width>1.0</width></rectangle></shape>
    <initialState><position><point><x>50</x><y>1.5</y></point></position><orientation><exact>0</exact></orientation>
      <time><exact>0</exact></time></initialState>
  </staticObstacle>
  <dynamicObstacle id="502">
    <type>car</type>
    <shape><rectangle><length>4.0</length><width>1.8</width></rectangle></shape>
    <initialState><position><point><x>0</x><y>1.5</y></point></position><orientation><exact>0</exact></orientation>
      <time><exact>0</exact></time><velocity><exact>5</exact></velocity></initialState>
    <trajectory>
      <state><position><point><x>30</x><y>1.5</y></point></position><orientation><exact>0</exact></orientation>
        <time><exact>60</exact></time><velocity><exact>5</exact></velocity></state>
      <state><position><point><x>32.5</x><y>1.5</y></point></position><orientation><exact>0</exact></orientation>
        <time><exact>65</exact></time><velocity><exact>5</exact></velocity></state>
    </trajectory>
  </dynamicObstacle>
  <dynamicObstacle id="503">
    <type>pedestrian</type>
    <shape><circle><radius>0.3</radius></circle></shape>
    <initialState><position><point><x>32</x><y>5</y></point></position><orientation><exact>-1.5708</exact></orientation>
      <time><exact>0</exact></time></initialState>
    <trajectory>
      <state><position><point><x>32</x><y>4</y></point></position><orientation><exact>-1.5708</exact></orientation>
        <time><exact>10</exact></time></state>
    </trajectory>
  </dynamicObstacle>
  <planningProblem id="900">
    <initialState><position><point><x>0</x><y>1.5</y></point></position><velocity><exact>5</exact></velocity>
      <orientation><exact>0</exact></orientation><yawRate><exact>0</exact></yawRate><slipAngle><exact>0</exact></slipAngle>
      <time><exact>0</exact></time></initialState>
    <goalState><time><intervalStart>50</intervalStart><intervalEnd>65</intervalEnd></time></goalState>
  </planningProblem>
</commonRoad>
"""


@pytest.fixture
def signs_and_lights(tmp_path: Path) -> Path:
    path = tmp_path / "USA_Drivetwin-2_1_T-1.xml"
    path.write_text(SIGNS_AND_LIGHTS_2020A)
    return path


def test_2020a_signs_lights_static_and_crosswalk(signs_and_lights: Path) -> None:
    (scenario,) = read_commonroad(signs_and_lights)
    assert scenario.num_steps == 66 and scenario.tags == ("urban", "intersection")
    lanes = {lane.id: lane for lane in scenario.road_map.lanes}
    assert sorted(lanes) == ["1", "2", "3"]  # lanelet 4 is a crosswalk, not a lane
    assert [f.id for f in scenario.road_map.crosswalks] == ["crosswalk-4"]
    # US R2-1 max-speed signs: a value in m/s as the format prescribes, and one that names mph
    assert lanes["1"].speed_limit == 29.0576
    assert lanes["2"].speed_limit == pytest.approx(25 * 0.44704)
    assert math.isnan(lanes["3"].speed_limit)
    # bounds of unequal point counts are resampled before averaging
    np.testing.assert_allclose(lanes["1"].centerline[:, :2], [[0, 1.5], [15, 1.5], [30, 1.5]])
    # opposite-direction neighbours are not lane-change neighbours; the shared line is kept once
    assert lanes["1"].left_neighbors == () and lanes["3"].left_neighbors == ()
    assert sorted(f.id for f in scenario.road_map.road_lines) == ["left-bound-1", "right-bound-1", "right-bound-3"]
    assert [f.lane_ids for f in scenario.road_map.of_kind(FeatureKind.STOP_LINE)] == [("1",)]
    # the light on lanelet 1: red 30, green 20, yellow 5 steps, offset by 10 steps
    signals = scenario.signals
    assert signals.lane_ids.tolist() == ["1"]
    np.testing.assert_allclose(signals.stop_points, [[30.0, 1.5, 0.0]])
    states = signals.states[0]
    assert states[0] == SignalState.GO  # (0 - 10) mod 55 = 45: green
    assert states[4] == SignalState.GO and states[5] == SignalState.CAUTION and states[9] == SignalState.CAUTION
    assert states[10] == SignalState.STOP and states[39] == SignalState.STOP
    assert states[40] == SignalState.GO and states[60] == SignalState.CAUTION and states[65] == SignalState.STOP
    tracks = scenario.tracks
    zone, car, walker = (tracks.index_of(i) for i in ("501", "502", "503"))
    assert tracks.agent_types[zone] == AgentType.OTHER and tracks.valid[zone].all()
    assert tracks.height[zone] == HEIGHT_M["constructionzone"]
    assert np.flatnonzero(tracks.valid[car]).tolist() == [0, 60, 65]
    assert tracks.agent_types[walker] == AgentType.PEDESTRIAN
    assert tracks.length[walker] == pytest.approx(0.6) and tracks.width[walker] == pytest.approx(0.6)
    # the pedestrian's states carry no velocity: derived from its positions, 1 m in 1 s
    assert tracks.vy[walker, 0] == pytest.approx(-1.0) and tracks.vy[walker, 10] == pytest.approx(-1.0)
    assert "derived from their positions" in scenario.provenance.notes
    assert scenario.ego_id == "502"


def test_centerline_from_bounds() -> None:
    left = np.array([[0.0, 2.0], [4.0, 2.0]])
    right = np.array([[0.0, 0.0], [1.0, 0.0], [4.0, 0.0]])
    np.testing.assert_allclose(centerline_from_bounds(left, right), [[0, 1], [2, 1], [4, 1]])
    np.testing.assert_allclose(centerline_from_bounds(right, right + 2), right + 1)


# ---- bad input -------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str, name: str = "bad.xml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _raises(path: Path, field: str, words: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        read_commonroad(path)
    error = info.value
    assert error.source == str(path)
    assert error.field == field
    assert words in error.problem
    return error


def test_truncated_file(us101_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.xml"
    path.write_bytes(us101_path.read_bytes()[:20_000])
    _raises(path, "xml", "not well-formed XML")
    # detected as CommonRoad by its head, and reported by load_many without stopping the batch
    outcomes = list(importers.load_many([path, us101_path]))
    assert [o.ok for o in outcomes] == [False, True]
    assert outcomes[0].error.field == "xml"


def test_missing_and_empty_files(tmp_path: Path) -> None:
    _raises(tmp_path / "nowhere.xml", "", "cannot read the file")
    _raises(_write(tmp_path, "  \n"), "", "empty")


STEP_10 = "<exact>10</exact>\n        </time>"


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ('timeStepSize="0.1"', "", "timeStepSize", "missing"),
        ('timeStepSize="0.1"', 'timeStepSize="-0.1"', "timeStepSize", "positive"),
        ('commonRoadVersion="2018b"', 'commonRoadVersion="2017a"', "commonRoadVersion", "unsupported format"),
        ("<x>17.0</x>", "<x>nan</x>", "obstacle[@id=300]/trajectory/state[10]/position/point/x", "not a finite number"),
        ("<x>17.0</x>", "<x>seventeen</x>", "obstacle[@id=300]/trajectory/state[10]/position/point/x", "not a number"),
        (STEP_10, STEP_10.replace("10", "9"), "obstacle[@id=300]/trajectory/state[10]/time", "duplicate time step 9"),
        (STEP_10, STEP_10.replace("10", "3"), "obstacle[@id=300]/trajectory/state[10]/time", "time steps decrease"),
        ("<role>static</role>", "<role>parked</role>", "obstacle[@id=302]/role", "must be 'static' or 'dynamic'"),
        ("<length>10.0</length>", "", "obstacle[@id=301]/shape/rectangle/length", "missing"),
        ("<speedLimit>13.89</speedLimit>", "<speedLimit>fast</speedLimit>", "lanelet[@id=101]/speedLimit", "not a number"),
    ],
)
def test_malformed_2018b_fields(tmp_path: Path, old: str, new: str, field: str, words: str) -> None:
    text = FIXTURE_2018B.read_text()
    assert old in text
    _raises(_write(tmp_path, text.replace(old, new, 1)), field, words)


def test_empty_map_and_no_obstacles(tmp_path: Path) -> None:
    text = FIXTURE_2018B.read_text()
    start, end = text.index('  <lanelet id="100">'), text.index('  <obstacle id="300">')
    _raises(_write(tmp_path, text[:start] + text[end:], "nomap.xml"), "lanelet", "empty map")
    start, end = text.index('  <obstacle id="300">'), text.index('  <planningProblem')
    _raises(_write(tmp_path, text[:start] + text[end:], "noobstacles.xml"), "obstacles", "no obstacles")


def test_other_roots_entities_and_missing_orientation(tmp_path: Path) -> None:
    _raises(_write(tmp_path, "<osm version='0.6'/>", "osm.xml"), "xml", "not <commonRoad>")
    bomb = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><commonRoad>&a;</commonRoad>'
    _raises(_write(tmp_path, bomb, "bomb.xml"), "xml", "entities")
    yaw_then_time = "<orientation><exact>0</exact></orientation>\n        <time><exact>60</exact>"
    text = SIGNS_AND_LIGHTS_2020A.replace(yaw_then_time, "<time><exact>60</exact>")
    _raises(_write(tmp_path, text, "noyaw.xml"), "dynamicObstacle[@id=502]/trajectory/state[1]/orientation", "missing")
    text = SIGNS_AND_LIGHTS_2020A.replace("<color>green</color>", "<color>blue</color>")
    _raises(_write(tmp_path, text, "blue.xml"), "trafficLight[@id=301]/cycle/cycleElement[2]/color", "unknown colour")
    text = SIGNS_AND_LIGHTS_2020A.replace("25 mph", "25 furlongs")
    _raises(_write(tmp_path, text, "furlongs.xml"), "trafficSign[@id=202]/trafficSignElement[1]/additionalValue", "not a speed")
