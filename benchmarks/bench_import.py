"""Import throughput per format on the real sample logs, and of a folder of many files: scenarios per second.

Usage: python benchmarks/bench_import.py [--data ../shared/data] [--repeats 5] [--copies 16] [--skip-folder]

1. For each real log (file, or AV2 sensor-log directory): the median time of ``scenarios.load``
   over the repeats (logged ego, and ``egos="vehicles"``), the scenarios it makes, and the source
   bytes per scenario. As a reference measured in the same run, the time to merely read and parse
   the file with the format's own parser (json / pyarrow / pickle / ElementTree; for TFRecords the
   framing and CRCs alone), so the importer's own cost is visible.
2. Waymo TFRecord decoding, two ways: drivetwin's wire decoder (``scenarios.importers.protowire``,
   the whole ``read_womd``) against the ``protobuf`` package (upb) parsing the same record with a
   schema of the same fields built here as descriptors, then copying the same values into numpy
   arrays; and CRC-32C per MB with google-crc32c, the numpy fallback and a plain byte loop.
3. A folder of ``--copies`` WOMD files (the real record, each with its own scenario id) imported
   into a fresh library by ``harness.importing.import_files`` with 1 and 2 workers (Ray's
   start-up and the workers' first imports measured apart).
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow.feather as feather
import pyarrow.parquet as pq

import scenarios
from scenarios.importers import tfrecord, womd

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".json", ".parquet", ".pkl", ".xml", ".tfrecord"}


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _raw_parse(path: Path):
    if path.is_dir():  # an AV2 sensor log: its two feather files
        return lambda: [feather.read_table(path / name) for name in ("annotations_with_ego.feather", "city_SE3_egovehicle.feather")]
    if path.suffix == ".json":
        return lambda: json.loads(path.read_bytes())
    if path.suffix == ".parquet":
        return lambda: pq.read_table(path)
    if path.suffix == ".pkl":
        return lambda: pickle.loads(path.read_bytes())  # the known sample only; drivetwin never does this
    if path.suffix == ".xml":
        return lambda: ET.parse(path)
    if path.suffix == ".tfrecord":
        return lambda: list(tfrecord.iter_records(path))
    return None


def _sources(data: Path) -> list[Path]:
    files = sorted(p for p in data.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    logs = sorted(p.parent for p in data.rglob("annotations_with_ego.feather"))
    return files + logs


def per_file(data: Path, repeats: int) -> None:
    print(f"{'format':<12} {'file':<48} {'scen':>5} {'scen/s':>8} {'veh-egos':>8} {'scen/s':>8} {'raw parse':>10} {'KB/scen':>8}")
    per_format: dict[str, list[float]] = {}
    for path in _sources(data):
        try:
            importer = scenarios.detect(path)
        except scenarios.ScenarioError:
            continue  # a map beside its log
        logged = scenarios.load(path)
        vehicles = scenarios.load(path, egos="vehicles")
        t_logged = _median_time(lambda: scenarios.load(path), repeats)
        t_vehicles = _median_time(lambda: scenarios.load(path, egos="vehicles"), repeats)
        raw = _raw_parse(path)
        t_raw = _median_time(raw, repeats) if raw else float("nan")
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
        rate = len(logged) / t_logged
        per_format.setdefault(importer.name, []).append(rate)
        print(
            f"{importer.name:<12} {path.name[:48]:<48} {len(logged):>5} {rate:>8.1f} {len(vehicles):>8} "
            f"{len(vehicles) / t_vehicles:>8.1f} {t_raw * 1e3:>8.1f}ms {size / 1024 / len(logged):>8.0f}"
        )
    print()
    for name, rates in sorted(per_format.items()):
        print(f"{name:<12} median {statistics.median(rates):8.1f} logged scenarios/s over {len(rates)} file(s)")


# --------------------------------------------------------------------------------------------
# protobuf with a schema of the fields drivetwin reads (field numbers from scenario.proto/map.proto)

_D, _F, _B, _I32, _I64, _S, _M, _E = "double", "float", "bool", "int32", "int64", "string", "message", "enum"
_SCHEMA: dict[str, list[tuple[str, int, str, str, bool]]] = {  # message: (field, number, type, type name, repeated)
    "ObjectState": [("center_x", 2, _D, "", False), ("center_y", 3, _D, "", False), ("center_z", 4, _D, "", False),
                    ("length", 5, _F, "", False), ("width", 6, _F, "", False), ("height", 7, _F, "", False),
                    ("heading", 8, _F, "", False), ("velocity_x", 9, _F, "", False), ("velocity_y", 10, _F, "", False),
                    ("valid", 11, _B, "", False)],
    "Track": [("id", 1, _I32, "", False), ("object_type", 2, _I32, "", False), ("states", 3, _M, "ObjectState", True)],
    "MapPoint": [("x", 1, _D, "", False), ("y", 2, _D, "", False), ("z", 3, _D, "", False)],
    "TrafficSignalLaneState": [("lane", 1, _I64, "", False), ("state", 2, _I32, "", False), ("stop_point", 3, _M, "MapPoint", False)],
    "DynamicMapState": [("lane_states", 1, _M, "TrafficSignalLaneState", True)],
    "RequiredPrediction": [("track_index", 1, _I32, "", False), ("difficulty", 2, _I32, "", False)],
    "BoundarySegment": [("lane_start_index", 1, _I32, "", False), ("lane_end_index", 2, _I32, "", False),
                        ("boundary_feature_id", 3, _I64, "", False), ("boundary_type", 4, _I32, "", False)],
    "LaneNeighbor": [("feature_id", 1, _I64, "", False), ("self_start_index", 2, _I32, "", False),
                     ("self_end_index", 3, _I32, "", False), ("neighbor_start_index", 4, _I32, "", False),
                     ("neighbor_end_index", 5, _I32, "", False), ("boundaries", 6, _M, "BoundarySegment", True)],
    "LaneCenter": [("speed_limit_mph", 1, _D, "", False), ("type", 2, _I32, "", False), ("interpolating", 3, _B, "", False),
                   ("polyline", 8, _M, "MapPoint", True), ("entry_lanes", 9, _I64, "", True), ("exit_lanes", 10, _I64, "", True),
                   ("left_neighbors", 11, _M, "LaneNeighbor", True), ("right_neighbors", 12, _M, "LaneNeighbor", True),
                   ("left_boundaries", 13, _M, "BoundarySegment", True), ("right_boundaries", 14, _M, "BoundarySegment", True)],
    "RoadEdge": [("type", 1, _I32, "", False), ("polyline", 2, _M, "MapPoint", True)],
    "RoadLine": [("type", 1, _I32, "", False), ("polyline", 2, _M, "MapPoint", True)],
    "StopSign": [("lane", 1, _I64, "", True), ("position", 2, _M, "MapPoint", False)],
    "Crosswalk": [("polygon", 1, _M, "MapPoint", True)],
    "SpeedBump": [("polygon", 1, _M, "MapPoint", True)],
    "Driveway": [("polygon", 1, _M, "MapPoint", True)],
    "MapFeature": [("id", 1, _I64, "", False), ("lane", 3, _M, "LaneCenter", False), ("road_line", 4, _M, "RoadLine", False),
                   ("road_edge", 5, _M, "RoadEdge", False), ("stop_sign", 7, _M, "StopSign", False),
                   ("crosswalk", 8, _M, "Crosswalk", False), ("speed_bump", 9, _M, "SpeedBump", False),
                   ("driveway", 10, _M, "Driveway", False)],
    "Scenario": [("scenario_id", 5, _S, "", False), ("timestamps_seconds", 1, _D, "", True),
                 ("current_time_index", 10, _I32, "", False), ("tracks", 2, _M, "Track", True),
                 ("dynamic_map_states", 7, _M, "DynamicMapState", True), ("map_features", 8, _M, "MapFeature", True),
                 ("sdc_track_index", 6, _I32, "", False), ("objects_of_interest", 4, _I32, "", True),
                 ("tracks_to_predict", 11, _M, "RequiredPrediction", True)],
}  # fmt: skip


def _protobuf_scenario_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    types = {
        _D: descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
        _F: descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
        _B: descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
        _I32: descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
        _I64: descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
        _S: descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        _M: descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
    }
    file = descriptor_pb2.FileDescriptorProto(name="drivetwin_bench_womd.proto", package="bench", syntax="proto2")
    for name, fields in _SCHEMA.items():
        message = file.message_type.add(name=name)
        for field, number, kind, type_name, repeated in fields:
            f = message.field.add(name=field, number=number, type=types[kind])
            f.label = f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL
            if type_name:
                f.type_name = f".bench.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.Scenario"))


def _protobuf_arrays(cls, data: bytes) -> dict[str, object]:
    """Parse with protobuf and copy what read_womd reads into numpy arrays (no Scenario built)."""
    s = cls.FromString(data)
    states = [[(st.center_x, st.center_y, st.center_z, st.heading, st.velocity_x, st.velocity_y, st.valid) for st in t.states]
              for t in s.tracks]  # fmt: skip
    tracks = np.array(states, np.float64)
    lanes, lines = [], []
    for f in s.map_features:
        if f.HasField("lane"):
            lane = f.lane
            lanes.append((np.array([(p.x, p.y, p.z) for p in lane.polyline]), lane.speed_limit_mph, list(lane.entry_lanes),
                          list(lane.exit_lanes), [n.feature_id for n in lane.left_neighbors],
                          [(b.lane_start_index, b.lane_end_index, b.boundary_feature_id) for b in lane.left_boundaries]))  # fmt: skip
        for name in ("road_line", "road_edge"):
            if f.HasField(name):
                lines.append(np.array([(p.x, p.y, p.z) for p in getattr(f, name).polyline]))
        for name in ("crosswalk", "speed_bump", "driveway"):
            if f.HasField(name):
                lines.append(np.array([(p.x, p.y, p.z) for p in getattr(f, name).polygon]))
    signals = [[(ls.lane, ls.state) for ls in d.lane_states] for d in s.dynamic_map_states]
    return {"tracks": tracks, "lanes": lanes, "lines": lines, "signals": signals}


def _wire_arrays(data: bytes) -> dict[str, object]:
    """drivetwin's decoder up to the same arrays (tracks, map, signals; no Scenario built)."""
    from scenarios.importers import protowire as pw

    top = pw.parse(data, 0, len(data), "Scenario")
    seconds = pw.repeated_doubles(data, top, womd.SC_TIMESTAMPS, "Scenario", "timestamps_seconds")
    where = Path("bench")
    tracks = womd._tracks(data, pw.messages(top, womd.SC_TRACKS, "Scenario", "tracks"), len(seconds), where, "bench")
    road = womd._map(data, pw.messages(top, womd.SC_MAP, "Scenario", "map_features"), where, "bench")
    signals = womd._signals(data, pw.messages(top, womd.SC_DYNAMIC, "Scenario", "dynamic_map_states"), len(seconds), where, "bench")
    return {"tracks": tracks, "map": road, "signals": signals}


def decoders(data: Path, repeats: int) -> None:
    path = data / "womd_tfrecord" / "motion_data_one_scenario.tfrecord"
    ((_, _, record),) = list(tfrecord.iter_records(path))
    mb = len(record) / 1e6
    print(f"\nWaymo TFRecord decoding, one {mb:.2f} MB Scenario record (median of {repeats}):")
    t_wire = _median_time(lambda: womd.read_womd(path), repeats)
    t_wire_arrays = _median_time(lambda: _wire_arrays(record), repeats)
    print(f"  drivetwin wire decoder, whole read_womd (framing, CRCs, decode, Scenario):  {t_wire * 1e3:7.1f} ms")
    print(f"  drivetwin wire decoder up to arrays (tracks, map with lane boundaries, signals): {t_wire_arrays * 1e3:7.1f} ms")
    try:
        cls = _protobuf_scenario_class()
    except Exception as exc:  # noqa: BLE001  (the package is optional here)
        print(f"  protobuf package unavailable: {exc}")
    else:
        from google.protobuf.internal import api_implementation

        t_parse = _median_time(lambda: cls.FromString(record), repeats)
        t_arrays = _median_time(lambda: _protobuf_arrays(cls, record), repeats)
        print(f"  protobuf ({api_implementation.Type()}) parse only:                                {t_parse * 1e3:7.1f} ms")
        print(f"  protobuf parse + the same values into arrays (no Scenario built):          {t_arrays * 1e3:7.1f} ms")
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, 1_000_000, dtype=np.uint8).tobytes()
    t_fast = _median_time(lambda: tfrecord._FAST(block), repeats) if tfrecord._FAST else float("nan")
    t_numpy = _median_time(lambda: tfrecord.crc32c_numpy(block), repeats)
    t_loop = _median_time(lambda: tfrecord._register(block[:100_000], 0xFFFFFFFF), 1) * 10
    print(f"  CRC-32C per MB: google-crc32c {t_fast * 1e3:.2f} ms, numpy slices {t_numpy * 1e3:.1f} ms, byte loop {t_loop * 1e3:.0f} ms")


def folder(data: Path, copies: int) -> None:
    import ray

    from harness.executor import init_ray
    from harness.importing import import_files, scan

    path = data / "womd_tfrecord" / "motion_data_one_scenario.tfrecord"
    ((_, _, record),) = list(tfrecord.iter_records(path))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for k in range(copies):  # the same scene under its own scenario id (the last field 5 wins)
            scenario_id = f"bench{k:04d}".encode()
            (src / f"copy{k:04d}.tfrecord").write_bytes(tfrecord.frame(record + b"\x2a" + bytes([len(scenario_id)]) + scenario_id))
        files, _ = scan([str(src)])
        print(f"\nA folder of {copies} WOMD files (one scenario each), imported into a fresh library:")
        options = {"egos": "logged"}
        start = time.perf_counter()
        outcomes = import_files(files, Path(tmp) / "lib1", options, workers=1)
        t1 = time.perf_counter() - start
        n = sum(o.scenarios for o in outcomes)
        print(f"  1 worker (in process):             {n / t1:6.1f} scenarios/s ({t1:.2f} s)")
        start = time.perf_counter()
        init_ray(num_cpus=2)
        import_files(files[:4], Path(tmp) / "warm", options, workers=2)  # both workers up, modules imported
        t_ray = time.perf_counter() - start
        try:
            start = time.perf_counter()
            outcomes = import_files(files, Path(tmp) / "lib2", options, workers=2)
            t2 = time.perf_counter() - start
        finally:
            ray.shutdown()
        n2 = sum(o.scenarios for o in outcomes)
        print(f"  2 workers (Ray tasks):             {n2 / t2:6.1f} scenarios/s ({t2:.2f} s; Ray start-up and worker warm-up {t_ray:.1f} s apart)")
        print(f"  speed-up 2 vs 1: {t1 / t2:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--copies", type=int, default=16)
    parser.add_argument("--skip-folder", action="store_true")
    args = parser.parse_args()
    per_file(args.data, args.repeats)
    decoders(args.data, args.repeats)
    if not args.skip_folder:
        folder(args.data, args.copies)


if __name__ == "__main__":
    main()
