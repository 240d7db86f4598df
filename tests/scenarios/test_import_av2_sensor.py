"""The Argoverse 2 sensor-log importer against the real Miami log, and damaged copies of it.

Expected values come from ../shared/data/README.md (157 frames, 120 tracks: 84 regular
vehicles, 12 pedestrians, 7 wheeled devices, 6 bicycles, ...; 150 lanes, 6 crosswalks, 5
drivable areas) or are recomputed here from the feather files with pyarrow and a planar
composition written out in the test (not the importer's 3-D one).
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pytest

import scenarios
from scenarios import AgentType, FeatureKind, ScenarioError
from scenarios.importers.av2_sensor import ANNOTATIONS, POSES, _run_gradient, read_av2_sensor

LOG_ID = "3b3570b4-7b0b-3268-a571-b0889dbf40b6"


@pytest.fixture(scope="module")
def log_dir(data_dir: Path) -> Path:
    return data_dir / "argoverse2_sensor" / LOG_ID


@pytest.fixture(scope="module")
def scene(log_dir: Path) -> scenarios.Scenario:
    (scene,) = read_av2_sensor(log_dir)
    return scene


@pytest.fixture(scope="module")
def boxes(log_dir: Path):
    return feather.read_table(log_dir / ANNOTATIONS).to_pandas()


@pytest.fixture(scope="module")
def poses(log_dir: Path):
    return feather.read_table(log_dir / POSES).to_pandas()


@pytest.fixture()
def copy_dir(log_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / LOG_ID
    shutil.copytree(log_dir, target)
    for path in target.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    return target


def _yaw(qw: float, qz: float) -> float:
    return 2.0 * math.atan2(qz, qw)  # a rotation about z only


# ---------------------------------------------------------------------------------- real log


def test_detected_as_a_directory_and_by_its_files(log_dir, scene):
    assert scenarios.detect(log_dir).name == "av2_sensor"
    assert scenarios.detect(log_dir / ANNOTATIONS).name == "av2_sensor"
    assert scenarios.detect(log_dir / POSES).is_companion(log_dir / POSES)
    (again,) = scenarios.load(log_dir / ANNOTATIONS)
    assert scenarios.scenarios_equal(again, scene)
    assert scene.id == f"av2_sensor-{LOG_ID}" and scene.provenance.source_log_id == LOG_ID


def test_frames_and_agent_counts_by_category(scene, boxes):
    assert scene.num_steps == 157
    frames = np.sort(boxes.timestamp_ns.unique())
    assert scene.t_us.tolist() == (frames // 1000).tolist()
    assert scene.duration_s == pytest.approx(15.599845)
    assert scene.num_agents == 120  # 119 annotated tracks + the ego from the pose stream
    assert "EGO_VEHICLE" not in set(scene.tracks.agent_ids) and scene.ego_id == "AV"
    types = Counter(AgentType(t).name for t in scene.tracks.agent_types)
    # vehicles: 84 regular, 2 trucks, 1 box truck, 1 large vehicle, 2 motorcycles, + the ego
    # cyclists: 6 bicycles + 7 wheeled devices; others: 3 bollards + 1 construction cone
    assert types == {"VEHICLE": 91, "PEDESTRIAN": 12, "CYCLIST": 13, "OTHER": 4}
    for uuid in boxes[boxes.category == "BOLLARD"].track_uuid.unique():
        assert scene.tracks.agent_types[scene.tracks.index_of(uuid)] == AgentType.OTHER
    assert "REGULAR_VEHICLE 84" in scene.provenance.notes


def test_the_ego_is_the_pose_stream_at_the_annotation_times(scene, poses, boxes):
    t, e = scene.tracks, scene.ego_index
    first = int(boxes.timestamp_ns.min())
    (pose,) = poses[poses.timestamp_ns == first].to_dict("records")
    assert t.valid[e].all()
    assert (t.x[e, 0], t.y[e, 0], t.z[e, 0]) == (pose["tx_m"], pose["ty_m"], pose["tz_m"])
    assert (t.x[e, 0], t.y[e, 0]) == pytest.approx((743.9777930173304, 2231.5482569447154))
    assert t.yaw[e, 0] == pytest.approx(_yaw(pose["qw"], pose["qz"]), abs=0.01)  # 1.6005 rad: heading north
    ego_box = boxes[boxes.category == "EGO_VEHICLE"].iloc[0]
    assert (t.length[e], t.width[e], t.height[e]) == (ego_box.length_m, ego_box.width_m, ego_box.height_m)


def test_a_box_composed_into_the_city_frame(scene, boxes, poses):
    row = boxes.iloc[0]  # a bicycle, 28.5 m ahead and 32 m to the right of the ego
    (pose,) = poses[poses.timestamp_ns == row.timestamp_ns].to_dict("records")
    yaw = _yaw(pose["qw"], pose["qz"])
    x = pose["tx_m"] + math.cos(yaw) * row.tx_m - math.sin(yaw) * row.ty_m
    y = pose["ty_m"] + math.sin(yaw) * row.tx_m + math.cos(yaw) * row.ty_m
    t = scene.tracks
    i, k = t.index_of(row.track_uuid), int(np.searchsorted(scene.t_us, row.timestamp_ns // 1000))
    assert (t.x[i, k], t.y[i, k]) == pytest.approx((x, y), abs=0.05)  # (775.07, 2260.94)
    assert (t.x[i, k], t.y[i, k]) == pytest.approx((775.07, 2260.94), abs=0.01)
    heading = math.remainder(yaw + _yaw(row.qw, row.qz), 2 * math.pi)
    assert t.yaw[i, k] == pytest.approx(heading, abs=0.03)  # roll and pitch of the pose make the rest


def test_static_objects_stand_still_in_the_city_frame(scene, boxes):
    """A bollard moves tens of metres in the ego frame as the ego drives past, a few cm in the city."""
    t = scene.tracks
    for uuid in boxes[boxes.category == "BOLLARD"].track_uuid.unique():
        i = t.index_of(uuid)
        v = t.valid[i]
        raw = boxes[boxes.track_uuid == uuid]
        assert max(raw.tx_m.std(), raw.ty_m.std()) > 4.0
        assert max(t.x[i, v].std(), t.y[i, v].std()) < 0.1
        assert t.speed[i, v].max() < 0.1


def test_velocities_are_central_differences_on_valid_runs(scene):
    t, e = scene.tracks, scene.ego_index
    s = (scene.t_us - scene.t_us[0]) / 1e6
    k = 50
    expected = (t.x[e, k + 1] - t.x[e, k - 1]) / (s[k + 1] - s[k - 1])
    assert t.vx[e, k] == pytest.approx(expected, rel=0.02)  # numpy's non-uniform form; steps differ by < 1 ms
    assert t.vx[e, 0] == pytest.approx((t.x[e, 1] - t.x[e, 0]) / (s[1] - s[0]))  # one-sided at the start
    # a track with a gap (none in this log, so a hand-built one): differences never reach across it
    values = np.array([[0.0, 1.0, 4.0, 99.0, 10.0, 12.0, 50.0, 0.0]])
    valid = np.array([[True, True, True, False, True, True, False, True]])
    seconds = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    assert _run_gradient(values, valid, seconds).tolist() == [[1.0, 2.0, 3.0, 0.0, 2.0, 2.0, 0.0, 0.0]]
    assert "central differences" in scene.provenance.notes


def test_map_lane_segments_without_centerline(scene, log_dir):
    road_map = scene.road_map
    assert len(road_map.lanes) == 150
    kinds = Counter(f.kind for f in road_map.features)
    assert kinds[FeatureKind.CROSSWALK] == 6 and kinds[FeatureKind.DRIVABLE_AREA] == 5
    (archive,) = (log_dir / "map").glob("log_map_archive_*.json")
    raw = json.loads(archive.read_text())["lane_segments"]
    assert not any("centerline" in seg for seg in raw.values())
    seg = next(iter(raw.values()))
    lane = road_map.lane(str(seg["id"]))
    left = np.array([[p["x"], p["y"]] for p in seg["left_lane_boundary"]])
    right = np.array([[p["x"], p["y"]] for p in seg["right_lane_boundary"]])
    assert lane.centerline[0, :2] == pytest.approx((left[0] + right[0]) / 2)
    assert lane.centerline[-1, :2] == pytest.approx((left[-1] + right[-1]) / 2)
    assert "150 lane centerlines derived from their boundaries" in scene.provenance.notes


def test_the_expert_drives_it_without_any_collision(scene):
    from evaluators import evaluate
    from sim.env import DriveTwinEnv
    from sim.runner import rollout

    env = DriveTwinEnv(scenario=scene, config={"observation": ["state"]})
    try:
        record = rollout(env, "expert", seed=0)
    finally:
        env.close()
    row = evaluate(record, scene)
    assert record.termination in ("log_end", "goal")
    assert row["collisions"] == 0 and row["at_fault_collisions"] == 0
    assert row["collisions_vehicle"] == row["collisions_vru"] == row["collisions_object"] == 0


def test_windows(log_dir):
    windows = scenarios.load(log_dir, window_s=5.0)
    assert [w.id for w in windows] == [f"av2_sensor-{LOG_ID}.w{k}" for k in (0, 50, 100)]
    assert all(w.ego_id == "AV" and w.num_steps == 50 for w in windows)


# ---------------------------------------------------------------------------------- bad input


def _rewrite(path: Path, change) -> None:
    table = feather.read_table(path)
    feather.write_feather(change(table), path)


def test_truncated_annotations(copy_dir):
    path = copy_dir / ANNOTATIONS
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ScenarioError) as err:
        scenarios.load(copy_dir)
    assert str(path) in str(err.value) and "feather" in str(err.value)


def test_missing_column(copy_dir):
    _rewrite(copy_dir / ANNOTATIONS, lambda t: t.drop_columns(["qz"]))
    with pytest.raises(ScenarioError, match=r"annotations_with_ego.feather: qz: missing column"):
        scenarios.load(copy_dir)


def test_unknown_category(copy_dir):
    def spoil(t: pa.Table) -> pa.Table:
        values = t.column("category").to_pylist()
        values[3] = "HOVERBOARD"
        return t.set_column(t.schema.get_field_index("category"), "category", pa.array(values))

    _rewrite(copy_dir / ANNOTATIONS, spoil)
    with pytest.raises(ScenarioError, match=r"category: unknown categories \['HOVERBOARD'\]"):
        scenarios.load(copy_dir)


def test_nan_box(copy_dir):
    def spoil(t: pa.Table) -> pa.Table:
        values = t.column("tx_m").to_numpy().copy()
        values[10] = np.nan
        return t.set_column(t.schema.get_field_index("tx_m"), "tx_m", pa.array(values))

    _rewrite(copy_dir / ANNOTATIONS, spoil)
    with pytest.raises(ScenarioError, match=r"tx_m: NaN or infinite value at row 10"):
        scenarios.load(copy_dir)


def test_an_annotation_outside_the_pose_stream(copy_dir):
    _rewrite(copy_dir / POSES, lambda t: t.slice(100))  # the first poses are gone
    with pytest.raises(ScenarioError, match=r"city_SE3_egovehicle.feather: timestamp_ns: no ego pose"):
        scenarios.load(copy_dir)


def test_poses_between_annotations_are_interpolated(copy_dir, scene):
    poses = feather.read_table(copy_dir / POSES)
    frames = set((scene.t_us * 1000).tolist())
    keep = [i for i, t in enumerate(poses.column("timestamp_ns").to_pylist()) if t not in frames or t == min(frames)]
    feather.write_feather(poses.take(keep), copy_dir / POSES)
    (again,) = scenarios.load(copy_dir)
    assert "156 of 157 annotation times between two poses" in again.provenance.notes
    e = again.ego_index
    assert np.abs(again.tracks.x[e] - scene.tracks.x[e]).max() < 0.05  # 5 ms of driving at most
    assert np.abs(again.tracks.y[e] - scene.tracks.y[e]).max() < 0.05


def test_a_zero_quaternion(copy_dir):
    def spoil(t: pa.Table) -> pa.Table:
        for name in ("qw", "qx", "qy", "qz"):
            values = t.column(name).to_numpy().copy()
            values[7] = 0.0
            t = t.set_column(t.schema.get_field_index(name), name, pa.array(values))
        return t

    _rewrite(copy_dir / ANNOTATIONS, spoil)
    with pytest.raises(ScenarioError, match=r"qw: a zero quaternion at row"):
        scenarios.load(copy_dir)


def test_no_map(copy_dir):
    for path in (copy_dir / "map").glob("log_map_archive_*.json"):
        path.unlink()
    with pytest.raises(ScenarioError, match=r"map: 0 map/log_map_archive_\*.json files"):
        scenarios.load(copy_dir)
