"""The Argoverse 2 importer against the real Austin sample (58 tracks x 110 steps, 71 lanes).

Expected values are read from the files independently (pyarrow, json) or were checked by hand;
the hand-checked ones are written out beside the test that uses them.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import shapely

import scenarios
from scenarios import AgentType, ScenarioError, scenarios_equal
from scenarios.importers.av2 import DEFAULT_SIZES, read_av2

LOG_ID = "0a1e6f0a-1817-4a98-b02e-db8c9327d151"
PARQUET_NAME = f"scenario_{LOG_ID}.parquet"
MAP_NAME = f"log_map_archive_{LOG_ID}.json"


@pytest.fixture(scope="module")
def av2_dir(data_dir: Path) -> Path:
    return data_dir / "argoverse2"


@pytest.fixture(scope="module")
def scenario(av2_dir: Path) -> scenarios.Scenario:
    (scene,) = read_av2(av2_dir / PARQUET_NAME)
    return scene


@pytest.fixture(scope="module")
def rows(av2_dir: Path):
    """The Parquet rows, read without the importer."""
    return pq.read_table(av2_dir / PARQUET_NAME).to_pandas()


@pytest.fixture(scope="module")
def raw_map(av2_dir: Path) -> dict:
    return json.loads((av2_dir / MAP_NAME).read_text())


def row_of(rows, track_id: str, step: int):
    (hit,) = rows[(rows.track_id == track_id) & (rows.timestep == step)].to_dict("records")
    return hit


# ---------------------------------------------------------------------------------- identity


def test_identity_and_provenance(scenario, av2_dir):
    assert scenario.id == f"av2-{LOG_ID}"
    assert scenario.provenance.dataset == "av2"
    assert scenario.provenance.source_log_id == LOG_ID
    assert scenario.provenance.source_file == str(av2_dir / PARQUET_NAME)
    assert "austin" in scenario.provenance.frame
    assert scenario.ego_id == "AV"
    assert scenario.tracks.agent_types[scenario.ego_index] == AgentType.VEHICLE
    assert scenario.signals.num_signals == 0


def test_agent_counts_per_type(scenario, rows):
    per_track = rows.groupby("track_id").object_type.first()
    assert dict(Counter(per_track)) == {"vehicle": 32, "pedestrian": 12, "static": 8, "riderless_bicycle": 4, "background": 2}
    t = scenario.tracks
    assert scenario.num_agents == 56  # 58 tracks less the 2 background ones
    counts = Counter(AgentType(v).name for v in t.agent_types)
    assert counts == {"VEHICLE": 32, "PEDESTRIAN": 12, "OTHER": 12}
    background = set(per_track[per_track == "background"].index)
    assert background == {"139507", "139588"}
    assert not background & set(t.agent_ids.tolist())
    assert "2 background" in scenario.provenance.notes


def test_time_axis(scenario, rows):
    assert scenario.num_steps == 110 == int(rows.num_timestamps.iloc[0])
    assert scenario.dt_us == 100_000
    assert (np.diff(scenario.t_us) == 100_000).all()
    assert scenario.t_us[0] == int(rows.start_timestamp.iloc[0]) // 1000 == 315_986_559_459_579
    assert scenario.t_us[-1] == int(rows.end_timestamp.iloc[0]) // 1000
    assert scenario.duration_s == pytest.approx(10.9)


# ---------------------------------------------------------------------------------- tracks


def test_known_positions(scenario, rows):
    t = scenario.tracks
    ego = scenario.ego_index
    # Hand-checked: AV at timestep 0.
    assert t.x[ego, 0] == pytest.approx(-433.71031511630383)
    assert t.y[ego, 0] == pytest.approx(1326.4229802368)
    assert t.yaw[ego, 0] == pytest.approx(1.5022921725578375)
    ped = t.index_of("139397")
    assert t.agent_types[ped] == AgentType.PEDESTRIAN
    expected = row_of(rows, "139397", 30)
    assert (t.x[ped, 30], t.y[ped, 30]) == pytest.approx((expected["position_x"], expected["position_y"]))
    assert (t.x[ped, 30], t.y[ped, 30]) == pytest.approx((-443.30115309817234, 1330.1817387322608))
    assert (t.vx[ped, 30], t.vy[ped, 30]) == pytest.approx((expected["velocity_x"], expected["velocity_y"]))


def test_valid_follows_the_rows(scenario, rows):
    t = scenario.tracks
    assert t.valid.sum() == len(rows) - int((rows.object_type == "background").sum()) == 2434 - 22
    early = t.index_of("138902")  # observed at timesteps 0..48 only
    assert t.valid[early].tolist() == [True] * 49 + [False] * 61
    assert (t.x[early, 49:] == 0).all()
    late = t.index_of("139482")  # observed at timesteps 3..33
    assert np.flatnonzero(t.valid[late]).tolist() == list(range(3, 34))


def test_ego_speed_matches_logged_velocity(scenario, rows):
    ego = scenario.ego_index
    logged = row_of(rows, "AV", 10)
    assert scenario.tracks.speed[ego, 10] == pytest.approx(np.hypot(logged["velocity_x"], logged["velocity_y"]))
    assert scenario.tracks.speed[ego, 10] == pytest.approx(6.698612, abs=1e-6)


def test_default_sizes_by_type(scenario):
    t = scenario.tracks
    ego = scenario.ego_index
    assert (t.length[ego], t.width[ego], t.height[ego]) == (4.7, 2.0, 1.6)
    ped = t.index_of("139397")
    assert (t.length[ped], t.width[ped], t.height[ped]) == DEFAULT_SIZES["pedestrian"]
    static = t.index_of("139408")
    assert t.agent_types[static] == AgentType.OTHER
    assert (t.length[static], t.width[static], t.height[static]) == DEFAULT_SIZES["static"]
    assert "no box sizes" in scenario.provenance.notes


def test_z_is_ground_under_the_agent_plus_half_height(scenario, raw_map):
    t = scenario.tracks
    ego = scenario.ego_index
    boundary = np.array(
        [
            [p["x"], p["y"], p["z"]]
            for seg in raw_map["lane_segments"].values()
            for side in ("left_lane_boundary", "right_lane_boundary")
            for p in seg[side]
        ]
    )
    near = np.hypot(boundary[:, 0] - t.x[ego, 0], boundary[:, 1] - t.y[ego, 0]) < 10.0
    ground = t.z[ego, 0] - t.height[ego] / 2
    assert boundary[near, 2].min() - 0.05 <= ground <= boundary[near, 2].max() + 0.05
    ground_all = (t.z - t.height[:, None] / 2)[t.valid]
    assert boundary[:, 2].min() - 0.05 <= ground_all.min() and ground_all.max() <= boundary[:, 2].max() + 0.05
    assert (t.z[~t.valid] == 0).all()


# ---------------------------------------------------------------------------------- map


def test_map_counts(scenario, raw_map):
    m = scenario.road_map
    assert len(m.lanes) == len(raw_map["lane_segments"]) == 71
    assert len(m.crosswalks) == len(raw_map["pedestrian_crossings"]) == 6
    assert len(m.drivable_areas) == len(raw_map["drivable_areas"]) == 2
    assert all(area.subtype != "derived_from_lane" for area in m.drivable_areas)
    assert Counter(lane.lane_type for lane in m.lanes) == {"bike": 37, "vehicle": 34}
    # 50 painted boundary sides, 13 of them the same line as a neighbour's: 37 road lines.
    painted = sum(seg[f"{s}_lane_mark_type"] != "NONE" for seg in raw_map["lane_segments"].values() for s in ("left", "right"))
    assert painted == 50
    assert len(m.road_lines) == 37
    assert {f.subtype for f in m.road_lines} == {"dashed_yellow", "double_solid_yellow", "dashed_white", "solid_white"}


def test_lane_topology_and_geometry(scenario, raw_map):
    m = scenario.road_map
    lane = m.lane("205119120")
    raw = raw_map["lane_segments"]["205119120"]
    assert lane.lane_type == "bike"
    assert lane.predecessors == ("205119219",) and lane.successors == ("205119659",)
    assert lane.left_neighbors == ("205119290",) and lane.right_neighbors == ()
    np.testing.assert_allclose(lane.centerline[:, :2], [[p["x"], p["y"]] for p in raw["centerline"]])
    np.testing.assert_allclose(lane.left_boundary, [[p["x"], p["y"], p["z"]] for p in raw["left_lane_boundary"]])
    # The file's centerline z are all 0; the importer takes them from the boundaries (22.3-22.9 m here).
    assert all(p["z"] == 0.0 for p in raw["centerline"])
    assert 22.2 < lane.centerline[:, 2].min() and lane.centerline[:, 2].max() < 22.9
    ids = {lane.id for lane in m.lanes}
    for lane in m.lanes:  # references to lanes outside the map are dropped
        assert set(lane.predecessors + lane.successors + lane.left_neighbors + lane.right_neighbors) <= ids


def test_crosswalk_and_drivable_polygons(scenario, raw_map):
    m = scenario.road_map
    raw = raw_map["pedestrian_crossings"]["13294505"]
    crosswalk = next(f for f in m.crosswalks if f.id == "crosswalk-13294505")
    expected = [raw["edge1"][0], raw["edge1"][1], raw["edge2"][1], raw["edge2"][0]]
    np.testing.assert_allclose(crosswalk.points, [[p["x"], p["y"], p["z"]] for p in expected])
    for feature in m.crosswalks + m.drivable_areas:
        polygon = shapely.Polygon(feature.points[:, :2])
        assert polygon.is_valid and polygon.area > 10.0
    area = next(f for f in m.drivable_areas if f.id == "drivable-11055391")
    assert len(area.points) == len(raw_map["drivable_areas"]["11055391"]["area_boundary"]) == 153


# ---------------------------------------------------------------------------------- paths and detection


def test_directory_and_explicit_map_path(scenario, av2_dir, tmp_path):
    assert scenarios_equal(read_av2(av2_dir)[0], scenario)
    shutil.copy(av2_dir / PARQUET_NAME, tmp_path / PARQUET_NAME)
    elsewhere = tmp_path / "maps" / "austin.json"
    elsewhere.parent.mkdir()
    shutil.copy(av2_dir / MAP_NAME, elsewhere)
    (scene,) = read_av2(tmp_path / PARQUET_NAME, map_path=elsewhere)
    assert scene.id == scenario.id and len(scene.road_map.lanes) == 71
    np.testing.assert_array_equal(scene.tracks.z, scenario.tracks.z)


def test_load_detects_av2_from_content(scenario, av2_dir, tmp_path):
    disguised = tmp_path / "recording.json"  # a misleading name
    shutil.copy(av2_dir / PARQUET_NAME, disguised)
    shutil.copy(av2_dir / MAP_NAME, tmp_path / MAP_NAME)
    assert scenarios.detect(disguised).name == "av2"
    (scene,) = scenarios.load(disguised)
    assert scene.id == scenario.id and scene.num_agents == 56
    assert scenarios.detect(av2_dir).name == "av2"
    assert [s.id for s in scenarios.load(av2_dir)] == [scenario.id]


# ---------------------------------------------------------------------------------- bad input


@pytest.fixture()
def copy_dir(av2_dir: Path, tmp_path: Path) -> Path:
    """A scenario directory in tmp_path with the map beside a copy of the Parquet."""
    shutil.copy(av2_dir / MAP_NAME, tmp_path / MAP_NAME)
    return tmp_path


def write_table(table: pa.Table, folder: Path) -> Path:
    path = folder / PARQUET_NAME
    pq.write_table(table, path)
    return path


def expect_error(path: Path, field: str, named: Path | None = None, **kwargs) -> ScenarioError:
    with pytest.raises(ScenarioError) as err:
        read_av2(path, **kwargs)
    assert err.value.field == field
    assert str(named or path) in str(err.value)
    return err.value


def test_truncated_parquet(av2_dir, copy_dir):
    data = (av2_dir / PARQUET_NAME).read_bytes()
    path = copy_dir / PARQUET_NAME
    path.write_bytes(data[: len(data) // 2])
    err = expect_error(path, "")
    assert "Parquet" in err.problem
    with pytest.raises(ScenarioError, match="Parquet") as err:
        scenarios.load(path)
    assert str(path) in str(err.value)


def test_renamed_column(av2_dir, copy_dir):
    table = pq.read_table(av2_dir / PARQUET_NAME)
    renamed = table.rename_columns(["pos_x" if n == "position_x" else n for n in table.column_names])
    err = expect_error(write_table(renamed, copy_dir), "position_x")
    assert "missing column" in err.problem


def test_nan_position_where_observed(av2_dir, copy_dir):
    table = pq.read_table(av2_dir / PARQUET_NAME)
    x = table.column("position_x").to_numpy().copy()
    x[5] = np.nan  # track 138902, timestep 5
    table = table.set_column(table.column_names.index("position_x"), "position_x", pa.array(x))
    err = expect_error(write_table(table, copy_dir), "position_x")
    assert "'138902'" in err.problem and "timestep 5" in err.problem


def test_repeated_timestep(av2_dir, copy_dir):
    table = pq.read_table(av2_dir / PARQUET_NAME)
    table = pa.concat_tables([table, table.slice(7, 1)])  # track 138902 at timestep 7 twice
    err = expect_error(write_table(table, copy_dir), "timestep")
    assert "time does not increase" in err.problem


def test_end_timestamp_not_ten_hz(av2_dir, copy_dir):
    table = pq.read_table(av2_dir / PARQUET_NAME)
    end = pc.add(table.column("end_timestamp"), 5e8)  # half a second late
    table = table.set_column(table.column_names.index("end_timestamp"), "end_timestamp", end)
    expect_error(write_table(table, copy_dir), "end_timestamp")


def test_no_ego_track(av2_dir, copy_dir):
    table = pq.read_table(av2_dir / PARQUET_NAME)
    table = table.filter(pc.not_equal(table.column("track_id"), "AV"))
    err = expect_error(write_table(table, copy_dir), "track_id")
    assert "'AV'" in err.problem


def test_missing_map(av2_dir, tmp_path):
    path = tmp_path / PARQUET_NAME
    shutil.copy(av2_dir / PARQUET_NAME, path)
    expect_error(path, "map")


@pytest.mark.parametrize(
    "spoil, field",
    [
        (lambda text, m: text[: len(text) // 2], ""),
        (lambda text, m: json.dumps({k: v for k, v in m.items() if k != "lane_segments"}), "lane_segments"),
        (lambda text, m: json.dumps({"lane_segments": {}, "pedestrian_crossings": {}, "drivable_areas": {}}), "lane_segments"),
        (
            lambda text, m: text.replace('"centerline": [{"x": -438.53', '"centerline": [{"x": NaN', 1),
            "lane_segments.205119120.centerline",
        ),
    ],
    ids=["truncated", "renamed-key", "empty-map", "nan-point"],
)
def test_bad_map(av2_dir, tmp_path, raw_map, spoil, field):
    path = tmp_path / PARQUET_NAME
    shutil.copy(av2_dir / PARQUET_NAME, path)
    text = (av2_dir / MAP_NAME).read_text()
    spoiled = spoil(text, raw_map)
    assert spoiled != text
    (tmp_path / MAP_NAME).write_text(spoiled)
    expect_error(path, field, named=tmp_path / MAP_NAME)


def test_unknown_file_is_rejected(tmp_path):
    path = tmp_path / "notes.parquet"
    path.write_text("track_id,timestep\nAV,0\n")
    with pytest.raises(ScenarioError, match="unknown format") as err:
        scenarios.load(path)
    assert err.value.field == "" and str(path) in str(err.value)
    with pytest.raises(ScenarioError) as err:
        read_av2(path)
    assert err.value.field == "" and str(path) in str(err.value)
