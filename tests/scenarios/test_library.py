"""The Parquet scenario library: exact round trips, dedup, idempotent appends, bad files."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from scenarios import (
    AgentType,
    Conditions,
    FeatureKind,
    Lane,
    MapFeature,
    Provenance,
    RoadMap,
    Scenario,
    ScenarioError,
    SignalState,
    Signals,
    Tracks,
    scenarios_equal,
)
from scenarios import library as L
from scenarios.library import ScenarioLibrary, open_library, write_library
from scenarios.synthetic import AgentSpec, scene, straight_road


def every_feature_map() -> RoadMap:
    """Lanes with and without boundaries, NaN and set speed limits, topology; one feature of every kind."""
    base = straight_road(num_lanes=2)
    bike = Lane(
        "bike-0",
        [[0.0, -3.0, 0.1], [10.0, -3.0, 0.2], [20.0, -3.5, 0.25]],
        left_boundary=None,
        right_boundary=[[0.0, -4.0], [20.0, -4.5]],
        speed_limit=float("nan"),
        lane_type="bike",
        predecessors=("lane0",),
        successors=("lane1", "lane0"),
    )
    bare = Lane("bare", [[5.0, 9.0]], speed_limit=float("nan"))
    features = [
        MapFeature("edge", FeatureKind.ROAD_EDGE, [[0, -5], [50, -5]], "road_edge_boundary"),
        MapFeature("line", FeatureKind.ROAD_LINE, [[0, 1.75, 0.0], [50, 1.75, 0.5]], "broken_white"),
        MapFeature("xwalk", FeatureKind.CROSSWALK, [[30, -2], [33, -2], [33, 6], [30, 6]]),
        MapFeature("stopline", FeatureKind.STOP_LINE, [[40, -1.75], [40, 1.75]]),
        MapFeature("stopsign", FeatureKind.STOP_SIGN, [[41.0, -2.5, 0.0]], lane_ids=("lane0", "bike-0")),
        MapFeature("area", FeatureKind.DRIVABLE_AREA, [[0, -2], [50, -2], [50, 6], [0, 6]]),
        MapFeature("bump", FeatureKind.SPEED_BUMP, [[20, -2], [21, -2], [21, 2], [20, 2]]),
        MapFeature("drive", FeatureKind.DRIVEWAY, [[10, 6], [12, 6], [12, 9], [10, 9]], "private"),
    ]
    return RoadMap(base.lanes + (bike, bare), tuple(features))


def rich_scenario(scenario_id: str = "rich", *, ego: int = 0, shift: float = 0.0) -> Scenario:
    """Every model field set to something a round trip could lose."""
    n, t = 5, 23
    rng = np.random.default_rng(7)
    valid = np.ones((n, t), bool)
    valid[1, :4] = False
    valid[2, 10:15] = False  # a gap
    valid[4, :] = False
    valid[4, -1] = True  # seen once
    tracks = Tracks(
        agent_ids=["ego", "car-2", "Fußgänger 3", "bike/4", "x"],
        agent_types=[AgentType.VEHICLE, AgentType.VEHICLE, AgentType.PEDESTRIAN, AgentType.CYCLIST, AgentType.OTHER],
        length=[4.5, 5.1, 0.5, 1.8, 0.0],
        width=[1.9, 2.0, 0.5, 0.6, 0.0],
        height=[1.5, 1.7, 1.8, 1.6, 0.0],
        # full-precision floats, ~1 km apart, each track a plausible random walk (no teleporting boxes)
        x=rng.normal(size=(n, 1)) * 1e3 + np.cumsum(rng.normal(size=(n, t)), axis=1) + shift,
        y=rng.normal(size=(n, t)) * 1e-9,
        z=rng.normal(size=(n, t)),
        yaw=rng.uniform(-np.pi, np.pi, (n, t)),
        vx=rng.normal(size=(n, t)),
        vy=np.full((n, t), -0.0),
        valid=valid,
    )
    t_us = 1_700_000_000_000_000 + np.cumsum(rng.integers(99_000, 101_000, t))  # irregular
    states = np.array([[SignalState.GO] * 10 + [SignalState.CAUTION] * 3 + [SignalState.STOP] * 10, [SignalState.UNKNOWN] * t])
    signals = Signals(["lane0", "bike-0"], states, [[40.0, 0.0, 0.0], [40.0, -3.0, 0.1]])
    return Scenario(
        id=scenario_id,
        provenance=Provenance("synthetic", "/data/x.json", "log-1", "hand-built [m]", "notes: ünïcode, commas, \"quotes\""),
        t_us=t_us,
        tracks=tracks,
        ego_index=ego,
        road_map=every_feature_map(),
        signals=signals,
        tags=("intersection", "rain"),
        conditions=Conditions(0.5, 0.1, 0.3, 0.02, 0.05, "reactive", ("car-2",), replay_agents=("bike/4",)),
    )


def simple(scenario_id: str, num_steps: int = 11, shift: float = 0.0, dataset: str = "synthetic") -> Scenario:
    s = scene(
        [AgentSpec("ego", shift, speed=10.0), AgentSpec("lead", 30.0 + shift, speed=5.0, valid_from=2)],
        num_steps=num_steps,
        scenario_id=scenario_id,
    )
    return s.replace(provenance=Provenance(dataset, "<synthetic>", scenario_id), tags=("tag-" + dataset,))


@pytest.fixture
def lib(tmp_path: Path) -> ScenarioLibrary:
    return ScenarioLibrary.create(tmp_path / "lib")


def assert_same(a: Scenario, b: Scenario) -> None:
    assert scenarios_equal(a, b), f"{a.id} does not round-trip"


def test_round_trip_is_exact(lib: ScenarioLibrary) -> None:
    plain = scene([AgentSpec("ego", 0.0, speed=3.0)], num_steps=1, scenario_id="one-step")
    empty_signals = simple("empty-signals").replace(signals=Signals())  # (0, 0) states
    written = [rich_scenario(), rich_scenario("rich.ego-car-2", ego=1), rich_scenario().window(3, 20, "rich.w3"), plain, empty_signals]
    result = lib.append(written)
    assert result.added == tuple(s.id for s in written) and result.skipped == ()
    reopened = open_library(lib.root)
    assert reopened.ids() == [s.id for s in written] and len(reopened) == len(written)
    for s in written:
        assert s.id in reopened
        assert_same(reopened.load(s.id), s)
    assert_same(ScenarioLibrary(lib.root, decoded_cache=0)["rich.ego-car-2"], written[1])


REAL_SOURCES = ["argoverse2", "commonroad", "scenarionet", "waymo_json"]


def _real_scenarios(data_dir: Path, folder: str) -> list[Scenario]:
    from scenarios.importers import detect, load

    root = data_dir / folder
    paths = [root] if folder == "argoverse2" else sorted(p for p in root.iterdir() if p.is_file())
    out: list[Scenario] = []
    for path in paths:
        try:
            detect(path)
        except ScenarioError as exc:
            pytest.skip(f"no importer for {path.name} yet: {exc.problem}")
        out += load(path, egos="vehicles")[:5]
        out += load(path)
    return out


@pytest.mark.parametrize("folder", REAL_SOURCES)
def test_real_scenarios_round_trip(data_dir: Path, tmp_path: Path, folder: str) -> None:
    scenarios = _real_scenarios(data_dir, folder)
    result = write_library(tmp_path / "lib", scenarios)
    assert set(result.added) == {s.id for s in scenarios}
    library = open_library(tmp_path / "lib")
    for s in scenarios:
        assert_same(library.load(s.id), s)


def test_append_skips_ids_already_stored_and_is_idempotent(lib: ScenarioLibrary) -> None:
    a, b, c = simple("a"), simple("b", shift=1.0), simple("c", shift=2.0)
    first = lib.append([a, b])
    assert first.added == ("a", "b") and first.skipped == ()
    parts = sorted(os.listdir(lib.root / L.SCENARIOS_TABLE))
    again = lib.append([a, b])
    assert again.added == () and again.skipped == ("a", "b") and again.files == ()
    assert sorted(os.listdir(lib.root / L.SCENARIOS_TABLE)) == parts  # nothing written
    mixed = lib.append([c, a, c])
    assert mixed.added == ("c",) and mixed.skipped == ("a", "c")
    reopened = open_library(lib.root)
    assert reopened.ids() == ["a", "b", "c"]
    assert write_library(lib.root, [a, b, c]).skipped == ("a", "b", "c")  # re-importing the same files


def test_an_appended_id_is_visible_to_other_instances_after_refresh(lib: ScenarioLibrary) -> None:
    other = open_library(lib.root)
    lib.append([simple("a")])
    assert "a" not in other
    other.refresh()
    assert "a" in other and other.append([simple("a")]).skipped == ("a",)


def test_many_scenarios_each_load_reads_only_its_row_groups(tmp_path: Path) -> None:
    scenarios = [simple(f"s{i:03d}", num_steps=5 + i % 7, shift=float(i)) for i in range(300)]
    scenarios[17] = rich_scenario("s017")
    write_library(tmp_path / "lib", scenarios, scenarios_per_part=40)
    library = ScenarioLibrary(tmp_path / "lib", decoded_cache=0)
    assert len(os.listdir(tmp_path / "lib" / L.TRACKS_TABLE)) == 8  # 300 / 40 parts
    reads: list[tuple[str, str, int]] = []
    original = library._read_group

    def counting(table: str, name: str, group: int, key: str):
        reads.append((table, name, group))
        return original(table, name, group, key)

    library._read_group = counting  # type: ignore[method-assign]
    for i in random.Random(0).sample(range(300), 60) + [17]:
        reads.clear()
        assert_same(library.load(f"s{i:03d}"), scenarios[i])
        expected = [L.TRACKS_TABLE, L.MAP_TABLE] + ([L.SIGNALS_TABLE] if i == 17 else [])
        assert [t for t, _, _ in reads] == expected  # one row group per table, nothing else
    # The other parts are not needed: delete every tracks part but the target's and load it afresh.
    index = library.index_table()
    target = index.filter(pc.equal(index[L.SCENARIO_ID], "s123")).to_pylist()[0]
    for name in os.listdir(tmp_path / "lib" / L.TRACKS_TABLE):
        if name != target[L.TRACKS_FILE]:
            os.remove(tmp_path / "lib" / L.TRACKS_TABLE / name)
    assert_same(open_library(tmp_path / "lib").load("s123"), scenarios[123])


def test_ego_variants_store_one_copy_of_tracks_and_map(lib: ScenarioLibrary) -> None:
    base = rich_scenario()
    variants = [base.with_ego(agent, f"rich.ego-{i}") for i, agent in enumerate(["ego", "car-2"])]
    result = lib.append(variants)
    assert (result.tracks_written, result.tracks_reused, result.maps_written, result.maps_reused) == (1, 1, 1, 1)
    assert (result.signals_written, result.signals_reused) == (1, 1)
    tracks = pads.dataset(lib.root / L.TRACKS_TABLE).to_table()
    assert tracks.num_rows == int(base.tracks.valid.sum())  # one copy, not two
    maps = pads.dataset(lib.root / L.MAP_TABLE).to_table()
    assert maps.num_rows == len(base.road_map.lanes) + len(base.road_map.features)
    # Windows of one log share the map but not the tracks; a later append reuses stored content.
    later = lib.append([base.window(0, 10, "rich.w0"), base.window(10, 20, "rich.w10"), base.with_ego("car-2", "rich.ego-again")])
    assert (later.tracks_written, later.tracks_reused, later.maps_written, later.maps_reused) == (2, 1, 0, 3)
    index = open_library(lib.root).index_table()
    assert len(set(index[L.MAP_KEY].to_pylist())) == 1 and len(set(index[L.TRACKS_KEY].to_pylist())) == 3
    for s in [*variants, base.window(10, 20, "rich.w10")]:
        assert_same(open_library(lib.root).load(s.id), s)


def test_without_dedup_every_scenario_has_its_own_copy(lib: ScenarioLibrary) -> None:
    base = rich_scenario()
    result = lib.append([base.with_ego(a, f"v-{a}") for a in ("ego", "car-2")], dedup=False)
    assert (result.tracks_written, result.maps_written, result.tracks_reused) == (2, 2, 0)
    assert pads.dataset(lib.root / L.TRACKS_TABLE).to_table().num_rows == 2 * int(base.tracks.valid.sum())


def test_every_table_carries_schema_version_and_units(lib: ScenarioLibrary) -> None:
    lib.append([rich_scenario()])
    quantity_suffixes = ("_m", "_rad", "_mps", "_us", "_s")
    for table, schema in L.SCHEMAS.items():
        (part,) = os.listdir(lib.root / table)
        stored = pq.read_schema(lib.root / table / part)
        assert stored.metadata[L.META_SCHEMA_VERSION] == str(L.SCHEMA_VERSION).encode()
        assert stored.metadata[L.META_TABLE] == table.encode()
        assert stored.names == schema.names
        for f in stored:
            unit = f.metadata[L.FIELD_UNIT].decode()
            if f.name.endswith(quantity_suffixes):
                assert unit, f"{table}.{f.name} has no unit"
            base_type = f.type.value_type if pa.types.is_list(f.type) else f.type
            if pa.types.is_floating(base_type):  # every float is a quantity with a unit
                assert unit, f"{table}.{f.name} is a float without a unit"
    tracks = pq.read_schema(next((lib.root / L.TRACKS_TABLE).iterdir()))
    assert tracks.field(L.X_M).metadata[L.FIELD_UNIT] == b"m" and tracks.field(L.VX_MPS).metadata[L.FIELD_UNIT] == b"m/s"
    assert tracks.field(L.YAW_RAD).metadata[L.FIELD_UNIT] == b"rad" and tracks.field(L.T_US).metadata[L.FIELD_UNIT] == b"us"


def test_each_table_is_a_parquet_dataset_over_all_parts(lib: ScenarioLibrary) -> None:
    a, b = rich_scenario("a"), simple("b")
    lib.append([a])
    lib.append([b])
    tracks = pads.dataset(lib.root / L.TRACKS_TABLE).to_table()
    assert tracks.num_rows == int(a.tracks.valid.sum() + b.tracks.valid.sum())
    assert pads.dataset(lib.root / L.SCENARIOS_TABLE).to_table().num_rows == 2
    assert pads.dataset(lib.root / L.SIGNALS_TABLE).to_table().num_rows == 2
    maps = pads.dataset(lib.root / L.MAP_TABLE).to_table()
    assert set(maps[L.KIND].to_pylist()) == {L.LANE_KIND} | {k.name.lower() for k in FeatureKind}


def test_summaries_and_filters(lib: ScenarioLibrary) -> None:
    scenarios = [simple("a1", dataset="a"), simple("b1", dataset="b"), simple("a2", dataset="a", shift=3.0), rich_scenario()]
    lib.append(scenarios)
    assert lib.ids(dataset="a") == ["a1", "a2"]
    assert lib.ids(tag="rain") == ["rich"] and lib.ids(tag="tag-b") == ["b1"] and lib.ids(tag="nope") == []
    assert lib.ids(dataset="a", tag="tag-b") == []
    table = lib.summaries()
    assert list(table["id"]) == [s.id for s in scenarios]
    for s, row in zip(scenarios, table.to_dict("records")):
        assert {k: row[k] for k in s.summary()} == s.summary()
        assert row["tags"] == s.tags
    assert [s.id for s in lib.iter_scenarios(dataset="b")] == ["b1"]
    assert [s.id for s in lib.iter_scenarios(["a2", "a1"])] == ["a2", "a1"]


def test_missing_id_raises_key_error_naming_it_and_the_library(lib: ScenarioLibrary) -> None:
    lib.append([simple("a")])
    with pytest.raises(KeyError) as err:
        lib.load("nope")
    assert "nope" in str(err.value) and str(lib.root) in str(err.value)


def test_corrupt_tracks_part_raises_scenario_error_naming_the_file(lib: ScenarioLibrary) -> None:
    lib.append([simple("a")])
    (part,) = (lib.root / L.TRACKS_TABLE).iterdir()
    part.write_bytes(b"PAR1" + b"\x00" * 100 + part.read_bytes()[-50:])
    with pytest.raises(ScenarioError) as err:
        open_library(lib.root).load("a")
    assert str(part) in str(err.value)


def test_corrupt_index_part_raises_scenario_error_naming_the_file(lib: ScenarioLibrary) -> None:
    lib.append([simple("a")])
    (part,) = (lib.root / L.SCENARIOS_TABLE).iterdir()
    part.write_bytes(part.read_bytes()[:200])
    with pytest.raises(ScenarioError) as err:
        open_library(lib.root)
    assert err.value.source == str(part)


def test_foreign_parquet_file_in_a_table_is_rejected_by_name(lib: ScenarioLibrary) -> None:
    lib.append([simple("a")])
    stray = lib.root / L.SCENARIOS_TABLE / "part-9-stray.parquet"
    pq.write_table(pa.table({"x": [1]}), stray)
    with pytest.raises(ScenarioError) as err:
        open_library(lib.root)
    assert err.value.source == str(stray)


def test_not_a_library(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not a scenario library"):
        open_library(tmp_path)
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(ScenarioError, match="not empty"):
        ScenarioLibrary.create(tmp_path)
    ScenarioLibrary.create(tmp_path / "lib")
    with pytest.raises(ScenarioError, match="already exists"):
        ScenarioLibrary.create(tmp_path / "lib")
    assert len(ScenarioLibrary.create(tmp_path / "lib", exist_ok=True)) == 0


def test_interrupted_append_leaves_a_valid_library(lib: ScenarioLibrary, monkeypatch: pytest.MonkeyPatch) -> None:
    lib.append([simple("a")])

    def batch():
        yield simple("b", shift=1.0)
        yield simple("c", shift=2.0)
        raise KeyboardInterrupt  # the importer dies half way

    with pytest.raises(KeyboardInterrupt):
        lib.append(batch(), scenarios_per_part=1)  # b's data part was written, then the batch died
    assert open_library(lib.root).ids() == ["a"] and lib.ids() == ["a"]  # all or nothing
    assert len(os.listdir(lib.root / L.TRACKS_TABLE)) == 1
    lib.append([simple("b", shift=1.0)])

    real_replace = os.replace

    def crash_on_commit(src, dst):
        if Path(dst).parent.name == L.SCENARIOS_TABLE:
            raise OSError("disk gone")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_commit)
    with pytest.raises(OSError):
        lib.append([simple("d", shift=4.0)])
    monkeypatch.undo()
    # A crash between the data parts and the commit (left behind on purpose here).
    (tmp,) = [p for p in (lib.root / L.TRACKS_TABLE).iterdir() if p.name.startswith("part-")][:1]
    orphan = lib.root / L.TRACKS_TABLE / "part-99999999999999999999-deadbeef.parquet"
    orphan.write_bytes(tmp.read_bytes())
    (lib.root / L.MAP_TABLE / ".part-1-x.parquet.tmp").write_bytes(b"half a file")
    fresh = open_library(lib.root)
    assert fresh.ids() == ["a", "b"] and "d" not in fresh
    assert_same(fresh.load("b"), simple("b", shift=1.0))
    d = simple("d", shift=4.0)
    fresh.append([d])
    assert not orphan.exists() and not (lib.root / L.MAP_TABLE / ".part-1-x.parquet.tmp").exists()
    assert pads.dataset(lib.root / L.TRACKS_TABLE).to_table().num_rows == sum(
        int(s.tracks.valid.sum()) for s in [simple("a"), simple("b", shift=1.0), d]
    )
    assert_same(open_library(lib.root).load("d"), d)


def test_compacting_the_index_keeps_every_scenario(lib: ScenarioLibrary) -> None:
    scenarios = [simple(f"s{i}", shift=float(i)) for i in range(5)]
    for s in scenarios:
        lib.append([s])
    reader = open_library(lib.root)
    assert len(os.listdir(lib.root / L.SCENARIOS_TABLE)) == 5
    assert lib.compact_index() == 5
    assert len(os.listdir(lib.root / L.SCENARIOS_TABLE)) == 1 and lib.ids() == [s.id for s in scenarios]
    reader.refresh()  # an instance opened before the compaction
    assert reader.ids() == [s.id for s in scenarios]
    for s in scenarios:
        assert_same(open_library(lib.root).load(s.id), s)
    assert lib.append([scenarios[0], simple("new", shift=9.0)]).added == ("new",)
    assert pads.dataset(lib.root / L.SCENARIOS_TABLE).to_table().num_rows == 6


def test_a_crash_during_compaction_leaves_no_duplicate_rows(lib: ScenarioLibrary, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(3):
        lib.append([simple(f"s{i}", shift=float(i))])
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: None)  # the old parts survive
    lib.compact_index()
    monkeypatch.undo()
    assert len(os.listdir(lib.root / L.SCENARIOS_TABLE)) == 4
    fresh = open_library(lib.root)
    assert fresh.ids() == ["s0", "s1", "s2"] and len(fresh.summaries()) == 3
