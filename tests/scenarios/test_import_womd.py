"""The Waymo Open Motion TFRecord importer against the real one-scenario file, and damaged copies of it.

Expected values come from the file's documented contents (../shared/data/README.md: 83 tracks,
70 vehicles, 10 pedestrians, 3 cyclists, sdc_track_index 82, 301 map features) or were read by
hand from the record with the field-by-field decoder. Damaged files are made here from the real
record: a flipped CRC, a truncated record, a changed wire type (re-framed with valid CRCs, so
that the decoder, not the framing, must catch it), a shard of several records, a tf.Example.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import scenarios
from scenarios import AgentType, FeatureKind, ScenarioError, SignalState
from scenarios.importers import protowire, tfrecord, womd
from scenarios.model import scenarios_equal

FILE = "motion_data_one_scenario.tfrecord"
LOG_ID = "637f20cafde22ff8"


@pytest.fixture(scope="module")
def womd_file(data_dir: Path) -> Path:
    return data_dir / "womd_tfrecord" / FILE


@pytest.fixture(scope="module")
def record(womd_file: Path) -> bytes:
    ((_, _, data),) = list(tfrecord.iter_records(womd_file))
    return data


@pytest.fixture(scope="module")
def scene(womd_file: Path) -> scenarios.Scenario:
    (scene,) = womd.read_womd(womd_file)
    return scene


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    head = _varint(number << 3 | wire)
    return head + (_varint(len(payload)) + payload if wire == 2 else payload)


def _write(path: Path, *records: bytes) -> Path:
    path.write_bytes(b"".join(tfrecord.frame(r) for r in records))
    return path


# ---------------------------------------------------------------------------------- real file


def test_detected_by_content_and_identity(scene, womd_file):
    assert scenarios.detect(womd_file).name == "womd"
    assert scene.id == f"waymo-{LOG_ID}"  # the dataset's name, as the GPUDrive JSON importer gives it
    assert scene.provenance.dataset == "waymo"
    assert scene.provenance.source_log_id == LOG_ID
    assert scene.num_steps == 91
    assert scene.t_us[0] == 0
    assert abs(scene.dt_us - 100_000) <= 100  # the file's own timestamps, to the microsecond
    assert (np.diff(scene.t_us) > 0).all()


def test_agent_counts_by_type_and_the_ego(scene):
    types = Counter(AgentType(t).name for t in scene.tracks.agent_types)
    assert types == {"VEHICLE": 70, "PEDESTRIAN": 10, "CYCLIST": 3}
    t, e = scene.tracks, scene.ego_index
    assert t.agent_ids[e] == "2406" and e == 82  # sdc_track_index 82; no track is dropped
    assert t.valid[e].all()
    # the ego's first state as the proto holds it (doubles for the centre, floats for the rest)
    assert t.x[e, 0] == pytest.approx(-7785.91666090556, abs=1e-9)
    assert t.y[e, 0] == pytest.approx(-6683.406001632057, abs=1e-9)
    assert t.z[e, 0] == pytest.approx(-184.02591693688962, abs=1e-9)
    assert t.yaw[e, 0] == np.float32(-1.5457465648651123)
    assert (t.length[e], t.width[e], t.height[e]) == (np.float32(5.286), np.float32(2.332), np.float32(2.33))
    assert abs(t.vx[e, 0]) < 1e-3 and abs(t.vy[e, 0]) < 1e-3  # the SDC stands still at first
    assert (~t.valid).sum() == 2957  # invalid states in the record (11-byte messages: valid = false)


def test_tags_name_the_tracks_to_predict_and_the_current_step(scene):
    assert scene.tags == (
        "current_time_index:10",
        "tracks_to_predict:2320",
        "tracks_to_predict:1676",
        "tracks_to_predict:1675",
    )
    assert "1675 level 2" in scene.provenance.notes
    assert "objects_of_interest" not in scene.tags  # this record has none


def test_objects_of_interest_become_tags(tmp_path, record):
    # appending fields to a serialized message merges them: objects_of_interest = [2320, 1676]
    extra = _field(4, 0, _varint(2320)) + _field(4, 0, _varint(1676))
    (scene,) = womd.read_womd(_write(tmp_path / "interest.tfrecord", record + extra))
    assert {"objects_of_interest", "objects_of_interest:2320", "objects_of_interest:1676"} <= set(scene.tags)


def test_map_features_by_kind_and_lane_attributes(scene):
    road_map = scene.road_map
    kinds = Counter(f.kind for f in road_map.features if f.kind != FeatureKind.DRIVABLE_AREA)
    assert len(road_map.lanes) == 199
    assert kinds == {
        FeatureKind.ROAD_LINE: 59,
        FeatureKind.ROAD_EDGE: 28,
        FeatureKind.STOP_SIGN: 8,
        FeatureKind.CROSSWALK: 4,
        FeatureKind.SPEED_BUMP: 3,
    }
    assert len(road_map.lanes) + sum(kinds.values()) == 301
    lane = road_map.lane("154")
    assert lane.speed_limit == pytest.approx(15.0 * 0.44704)  # 15 mph in m/s
    assert lane.lane_type == "surface_street"
    assert lane.successors == ("158",) and lane.right_neighbors == ("169", "159")
    assert Counter(round(l.speed_limit / 0.44704, 6) for l in road_map.lanes if np.isfinite(l.speed_limit)) == {
        15.0: 75, 45.0: 63, 40.0: 56, 10.0: 4
    }
    assert Counter(l.lane_type for l in road_map.lanes) == {"surface_street": 198, "bike": 1}
    assert Counter(f.subtype for f in road_map.road_lines) == {
        "broken_single_white": 24, "solid_single_white": 18, "solid_single_yellow": 17
    }
    assert Counter(f.subtype for f in road_map.road_edges) == {"boundary": 15, "median": 13}
    sign = next(f for f in road_map.stop_signs if f.id == "594")
    assert sign.lane_ids == ("213", "212", "211", "210")
    assert sign.points.shape == (1, 3)


def test_lane_boundaries_lie_on_the_lines_their_segments_name(scene):
    lane = scene.road_map.lane("203")
    assert lane.left_boundary is not None and lane.right_boundary is not None
    assert lane.left_boundary.shape == lane.centerline.shape
    width = np.hypot(*(lane.left_boundary[:, :2] - lane.right_boundary[:, :2]).T)
    assert np.allclose(width, 3.24, atol=0.05)
    # the left boundary is left of the centerline (positive cross product with the heading)
    d = np.diff(lane.centerline[:, :2], axis=0)
    off = lane.left_boundary[:-1, :2] - lane.centerline[:-1, :2]
    assert (d[:, 0] * off[:, 1] - d[:, 1] * off[:, 0] > 0).all()


def test_signal_states_per_lane_and_step(scene):
    signals = scene.signals
    assert signals.num_signals == 12
    row = {lane: i for i, lane in enumerate(signals.lane_ids)}
    assert signals.states[row["443"], 10] == SignalState.STOP  # LANE_STATE_STOP (4)
    assert signals.states[row["443"], 50] == SignalState.UNKNOWN  # the record says unknown at step 50
    assert signals.states[row["455"], 51] == SignalState.STOP  # LANE_STATE_ARROW_STOP (1)
    assert signals.states[row["431"], 10] == SignalState.UNKNOWN
    assert np.allclose(signals.stop_points[row["443"]], [-7798.49456149, -6686.84657786, -185.41017391])


def test_fast_and_field_by_field_decoding_agree(monkeypatch, womd_file, scene):
    monkeypatch.setattr(womd, "_fast_states", lambda *args: False)
    monkeypatch.setattr(protowire, "fixed_layout", lambda *args: None)
    (slow,) = womd.read_womd(womd_file)
    assert scenarios_equal(slow, scene)


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
    assert record.termination == "log_end"
    assert row["collisions"] == 0 and row["at_fault_collisions"] == 0
    assert row["collisions_vehicle"] == row["collisions_vru"] == row["collisions_object"] == 0


def test_every_vehicle_as_the_ego_drives_it_without_any_collision(womd_file):
    """30 vehicle egos (every vehicle seen for 2 s that drives 5 m, less overlapping duplicate
    tracks); 57 with the parked ones."""
    from evaluators import evaluate
    from sim.env import DriveTwinEnv
    from sim.runner import rollout

    assert len(scenarios.load(womd_file, egos="vehicles", min_ego_travel_m=0.0)) == 57
    scenes = scenarios.load(womd_file, egos="vehicles")
    assert len(scenes) == 30
    env = DriveTwinEnv(config={"observation": ["state"]}, library=scenes)
    try:
        rows = [evaluate(rollout(env, "expert", s, seed=0), s) for s in scenes]
    finally:
        env.close()
    assert [r["collisions"] for r in rows] == [0] * 30
    assert sum(r["at_fault_collisions"] for r in rows) == 0


# ---------------------------------------------------------------------------------- framing, CRC


def test_crc32c_implementations_agree_with_the_standard():
    assert tfrecord.crc32c_numpy(b"123456789") == 0xE3069283  # the CRC-32C check value
    rng = np.random.default_rng(0)
    for n in (0, 1, 8, 4095, 4096, 70_001):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert tfrecord.crc32c_numpy(data) == tfrecord._register(data, 0xFFFFFFFF) ^ 0xFFFFFFFF
        assert tfrecord.crc32c(data) == tfrecord.crc32c_numpy(data)


def test_a_shard_streams_one_record_at_a_time(tmp_path, record):
    ids = [f"{LOG_ID}{k}" for k in range(3)]
    records = [record + _field(5, 2, i.encode()) for i in ids]  # the last scenario_id wins
    path = _write(tmp_path / "shard.tfrecord-00000-of-00001", *records)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # damage the last record's data CRC
    path.write_bytes(bytes(data))
    stream = womd.iter_womd(path)
    assert next(stream).provenance.source_log_id == ids[0]
    assert next(stream).provenance.source_log_id == ids[1]  # decoded before the damage is reached
    with pytest.raises(ScenarioError) as err:
        next(stream)
    offset = 2 * (len(records[0]) + 16)
    assert str(path) in str(err.value) and "record 2" in str(err.value) and f"byte {offset}" in str(err.value)
    assert "data CRC" in str(err.value)


@pytest.mark.parametrize("where", ["length_crc", "data_crc", "data"])
def test_a_flipped_crc_or_byte_names_the_file_record_and_offset(tmp_path, womd_file, where):
    data = bytearray(womd_file.read_bytes())
    position = {"length_crc": 9, "data_crc": len(data) - 2, "data": 5000}[where]
    data[position] ^= 0x10
    path = tmp_path / "flipped.tfrecord"
    path.write_bytes(bytes(data))
    with pytest.raises(ScenarioError) as err:
        scenarios.load(path)
    message = str(err.value)
    assert str(path) in message and "record 0" in message and "byte 0" in message
    assert ("length CRC" if where == "length_crc" else "data CRC") in message


@pytest.mark.parametrize("keep", [5, 12, 100_000, -1])
def test_a_truncated_file_names_the_file_and_record(tmp_path, womd_file, keep):
    path = tmp_path / "cut.tfrecord"
    path.write_bytes(womd_file.read_bytes()[:keep])
    with pytest.raises(ScenarioError) as err:
        scenarios.load(path)
    assert str(path) in str(err.value) and "record 0" in str(err.value) and "truncated" in str(err.value)


def test_a_wrong_wire_type_names_the_field(tmp_path, record):
    # sdc_track_index (field 6) as a 32-bit value instead of a varint, appended (the last wins)
    path = _write(tmp_path / "wire.tfrecord", record + _field(6, 5, struct.pack("<I", 82)))
    with pytest.raises(ScenarioError) as err:
        scenarios.load(path)
    assert str(path) in str(err.value) and "sdc_track_index" in str(err.value) and "wire type 5" in str(err.value)
    # the first track's first state's center_x (tag 0x11) rewritten as a 32-bit field (0x15)
    top = protowire.parse(record, 0, len(record))
    _, start, end = top[2][0]  # tracks[0]
    _, state_start, _ = protowire.parse(record, start, end)[3][0]  # its states[0]
    data = bytearray(record)
    assert data[state_start] == 0x11
    data[state_start] = 0x15
    with pytest.raises(ScenarioError) as err:
        scenarios.load(_write(tmp_path / "wire2.tfrecord", bytes(data)))
    message = str(err.value)
    assert "wire2.tfrecord" in message and "record 0" in message and "tracks[0].states[0]" in message
    # a lane appended whose speed_limit_mph (a double) is written as a varint
    feature = _field(1, 0, _varint(999_999)) + _field(3, 2, _field(1, 0, _varint(15)))
    with pytest.raises(ScenarioError) as err:
        scenarios.load(_write(tmp_path / "wire3.tfrecord", record + _field(8, 2, feature)))
    assert "map_features[301].lane.speed_limit_mph: wire type 0 (varint), expected 1" in str(err.value)


def test_random_damage_inside_a_valid_frame_is_a_scenario_error_or_a_scenario(tmp_path, record):
    rng = np.random.default_rng(7)
    outcomes = Counter()
    for trial in range(12):
        data = bytearray(record)
        for position in rng.integers(0, len(data), 4):
            data[position] = int(rng.integers(0, 256))
        path = _write(tmp_path / f"fuzz{trial}.tfrecord", bytes(data))
        try:
            womd.read_womd(path)
            outcomes["read"] += 1
        except ScenarioError as exc:
            assert str(path) in str(exc)
            outcomes["error"] += 1
    assert sum(outcomes.values()) == 12


def test_a_length_beyond_the_file_allocates_nothing(tmp_path):
    huge = struct.pack("<Q", 1 << 60)
    path = tmp_path / "huge.tfrecord"
    path.write_bytes(huge + struct.pack("<I", tfrecord.masked_crc(huge)) + b"\0" * 32)
    assert scenarios.detect(path).name == "womd"
    with pytest.raises(ScenarioError, match="claims 1152921504606846976 bytes"):
        scenarios.load(path)


def test_a_tf_example_record_is_refused_as_that_layout(tmp_path):
    float_list = _field(1, 2, struct.pack("<3f", 1.0, 2.0, 3.0))  # FloatList { packed value }
    feature = _field(2, 2, float_list)  # Feature { float_list = 2 }
    entry = _field(1, 2, b"state/current/x") + _field(2, 2, feature)  # map entry
    example = _field(1, 2, _field(1, 2, entry))  # Example { Features { feature } }
    path = _write(tmp_path / "training_tfexample.tfrecord-00000-of-01000", example)
    assert scenarios.detect(path).name == "womd"
    with pytest.raises(ScenarioError) as err:
        scenarios.load(path)
    assert "tf.Example" in str(err.value) and "Scenario protos" in str(err.value) and str(path) in str(err.value)


def test_other_protos_and_empty_files_are_refused(tmp_path):
    path = _write(tmp_path / "other.tfrecord", _field(3, 0, _varint(7)))
    with pytest.raises(ScenarioError, match="not a Waymo Open Motion Scenario"):
        scenarios.load(path)
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    with pytest.raises(ScenarioError, match="empty"):
        scenarios.load(empty)
    noise = tmp_path / "noise.bin"
    noise.write_bytes(os.urandom(64))
    with pytest.raises(ScenarioError, match="unknown format"):
        scenarios.detect(noise)
