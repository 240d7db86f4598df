"""The library package: libraries written before the split, conditions columns from the dataclass,
the bundled sample by name, and close ids for an unknown one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scenarios import Conditions, ScenarioError, load, scenarios_equal
from scenarios import library as L
from scenarios.library import ScenarioLibrary, UnknownScenarioError
from scenarios.synthetic import AgentSpec, scene

#: The bundled sample: 18 cars of the NGSIM US-101 CommonRoad log, each the ego of one scenario.
SAMPLE_IDS = [
    f"commonroad-USA_US101-4_1_T-1.ego-{car}"
    for car in (381, 383, 384, 387, 388, 389, 394, 395, 399, 400, 401, 405, 422, 427, 442, 451, 468, 475)
]

#: A value other than the default for every ``Conditions`` field (a new field must be added here).
NON_DEFAULT_CONDITIONS = {
    "road_friction": 0.37,
    "ego_latency_s": 0.25,
    "position_noise_m": 0.4,
    "heading_noise_rad": 0.03,
    "detection_dropout": 0.15,
    "agents_mode": "reactive",
    "reactive_agents": ("lead", "car/7"),
    "replay_agents": ("cutter",),
}


# --- a library written by the code before the split -----------------------------------------


def test_sample_written_before_the_split_decodes_to_its_stored_content_keys() -> None:
    """The sample was written by the one-module library: every loaded scenario hashes to the keys
    that code stored, so tracks and maps decode bit for bit, and the index rows are reproduced."""
    library = ScenarioLibrary("sample")
    assert library.ids() == SAMPLE_IDS
    index = library.index_table().to_pylist()
    for row in index:
        scenario = library.load(row[L.SCENARIO_ID])
        assert L.tracks_key(scenario.t_us, scenario.tracks) == row[L.TRACKS_KEY]
        assert L.map_key(scenario.road_map) == row[L.MAP_KEY]
        assert row[L.SIGNALS_KEY] is None and scenario.signals.num_signals == 0
        assert scenario.conditions == Conditions()
        written = L.scenario_row(scenario)
        assert row[L.REPLAY_AGENTS] is None and written.pop(L.REPLAY_AGENTS) == []  # a column added after
        assert written == {k: row[k] for k in written}
    assert len({row[L.TRACKS_KEY] for row in index}) == 1  # ego variants of one log share one tracks key


def test_sample_loads_as_the_log_imports(data_dir: Path) -> None:
    imported = {s.id: s for s in load(data_dir / "commonroad" / "USA_US101-4_1_T-1.xml", egos="vehicles")}
    library = ScenarioLibrary("sample")
    assert sorted(imported) == sorted(SAMPLE_IDS)
    for scenario_id in SAMPLE_IDS:
        stored, fresh = library.load(scenario_id), imported[scenario_id]
        assert stored.provenance.source_file == "../shared/data/commonroad/USA_US101-4_1_T-1.xml"  # as imported
        assert scenarios_equal(stored, fresh.replace(provenance=stored.provenance)), scenario_id
        assert dataclasses.replace(stored.provenance, source_file="") == dataclasses.replace(fresh.provenance, source_file="")


def test_the_schemas_are_the_ones_stored_in_the_sample() -> None:
    """Field for field, with units and descriptions; the sample predates ``replay_agents`` only."""
    root = L.sample_path()
    for table in (L.SCENARIOS_TABLE, L.TRACKS_TABLE, L.MAP_TABLE):
        (part,) = sorted((root / table).glob("part-*.parquet"))
        stored = pq.read_schema(part)
        missing = set(L.SCHEMAS[table].names) - set(stored.names)
        assert missing == ({L.REPLAY_AGENTS} if table == L.SCENARIOS_TABLE else set()), table
        for f in stored:
            want = L.SCHEMAS[table].field(f.name)
            assert (f.metadata, f.nullable) == (want.metadata, want.nullable), (table, f.name)
            if pa.types.is_list(want.type):  # Parquet names a list's item "element"
                assert pa.types.is_list(f.type) and f.type.value_type == want.type.value_type, (table, f.name)
            else:
                assert f.type == want.type, (table, f.name)
        assert stored.metadata[L.META_SCHEMA_VERSION] == L.SCHEMAS[table].metadata[L.META_SCHEMA_VERSION]


# --- conditions columns from the dataclass ----------------------------------------------------


def test_conditions_columns_are_the_dataclass_fields_in_order() -> None:
    names = [f.name for f in dataclasses.fields(Conditions)]
    assert list(L.CONDITION_COLUMNS) == names
    schema = L.SCENARIOS_SCHEMA.names
    start = schema.index(L.SIGNALS_NUM_STEPS) + 1
    assert schema[start : start + len(names)] == names
    units = {f.name: f.metadata[L.FIELD_UNIT].decode() for f in L.condition_fields()}
    assert units == {
        "road_friction": "1",
        "ego_latency_s": "s",
        "position_noise_m": "m",
        "heading_noise_rad": "rad",
        "detection_dropout": "1",
        "agents_mode": "",
        "reactive_agents": "",
        "replay_agents": "",
    }


def test_every_condition_round_trips_through_the_library_with_a_non_default_value(tmp_path: Path) -> None:
    defaults = Conditions()
    assert set(NON_DEFAULT_CONDITIONS) == set(L.CONDITION_COLUMNS), "list a non-default value for the new field"
    for name, value in NON_DEFAULT_CONDITIONS.items():
        assert getattr(defaults, name) != value, name
    conditions = Conditions(**NON_DEFAULT_CONDITIONS)
    base = scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("lead", 30.0, speed=8.0)], num_steps=5, scenario_id="c")
    library = ScenarioLibrary.create(tmp_path / "lib")
    library.append([base.replace(conditions=conditions)])
    loaded = ScenarioLibrary(tmp_path / "lib").load("c").conditions
    assert loaded == conditions
    for name, value in NON_DEFAULT_CONDITIONS.items():
        assert getattr(loaded, name) == value, name


@dataclasses.dataclass(frozen=True)
class ExtendedConditions(Conditions):
    """``Conditions`` plus two fields a newcomer might add: nothing else changes."""

    wind_mps: float = 0.0
    surface: str = "asphalt"
    visibility: float = dataclasses.field(default=1.0, metadata={"unit": "1", "description": "share of range"})


def test_a_new_condition_field_becomes_a_column_that_round_trips(tmp_path: Path) -> None:
    fields = {f.name: f for f in L.condition_fields(ExtendedConditions)}
    assert list(fields) == [*L.CONDITION_COLUMNS, "wind_mps", "surface", "visibility"]
    assert fields["wind_mps"].type == pa.float64() and fields["wind_mps"].metadata[L.FIELD_UNIT] == b"m/s"
    assert fields["surface"].type == pa.string() and fields["surface"].metadata[L.FIELD_UNIT] == b""
    assert fields["visibility"].metadata[L.FIELD_DESCRIPTION] == b"share of range"
    value = ExtendedConditions(**NON_DEFAULT_CONDITIONS, wind_mps=7.5, surface="gravel", visibility=0.3)
    schema = pa.schema(list(fields.values()))
    pq.write_table(pa.Table.from_pylist([L.conditions_row(value)], schema=schema), tmp_path / "c.parquet")
    (row,) = pq.read_table(tmp_path / "c.parquet").to_pylist()
    assert L.conditions_from_row(row, ExtendedConditions) == value
    # A part written before the fields existed lacks their columns: they read as the defaults.
    old = {k: v for k, v in row.items() if k in L.CONDITION_COLUMNS}
    assert L.conditions_from_row(old, ExtendedConditions) == ExtendedConditions(**NON_DEFAULT_CONDITIONS)


def test_a_field_type_no_column_can_hold_is_refused_naming_it() -> None:
    @dataclasses.dataclass(frozen=True)
    class Bad(Conditions):
        gusts: dict = dataclasses.field(default_factory=dict)

    with pytest.raises(TypeError, match="Bad.gusts"):
        L.condition_fields(Bad)


def test_a_part_without_a_condition_column_reads_its_default(tmp_path: Path) -> None:
    base = scene([AgentSpec("ego", 0.0, speed=10.0)], num_steps=4, scenario_id="old")
    library = ScenarioLibrary.create(tmp_path / "lib")
    library.append([base.replace(conditions=Conditions(road_friction=0.5, replay_agents=("x",)))])
    (part,) = (tmp_path / "lib" / L.SCENARIOS_TABLE).glob("part-*.parquet")
    table = pq.read_table(part)
    table = table.drop_columns([L.REPLAY_AGENTS, L.DETECTION_DROPOUT]).replace_schema_metadata(table.schema.metadata)
    pq.write_table(table, part)
    loaded = ScenarioLibrary(tmp_path / "lib").load("old").conditions
    assert loaded == Conditions(road_friction=0.5)


# --- the sample by name, close ids ------------------------------------------------------------


def test_sample_is_a_library_name() -> None:
    assert L.resolve_path("sample") == L.sample_path() == Path(L.__file__).resolve().parents[1] / "sample" / "ngsim_us101"
    assert L.resolve_path(Path("sample")) == Path("sample")  # a directory of that name stays one
    assert L.resolve_path("runs/lib") == Path("runs/lib")
    library = ScenarioLibrary("sample")
    assert library.root == L.sample_path() and len(library) == 18
    assert L.open_library("sample").ids() == SAMPLE_IDS
    assert ScenarioLibrary.create("sample", exist_ok=True).root == L.sample_path()
    with pytest.raises(ScenarioError, match="already exists"):
        ScenarioLibrary.create("sample")


def test_suggest_gives_the_closest_ids_best_first() -> None:
    library = ScenarioLibrary("sample")
    prefix = "commonroad-USA_US101-4_1_T-1.ego-"
    assert library.suggest(prefix + "300") == [prefix + "400", prefix + "405", prefix + "401"]
    assert library.suggest(prefix + "4222", n=1) == [prefix + "422"]
    assert library.suggest("waymo-ffff") == []


def test_an_unknown_id_is_a_scenario_error_and_a_key_error_with_close_ids() -> None:
    library = ScenarioLibrary("sample")
    prefix = "commonroad-USA_US101-4_1_T-1.ego-"
    with pytest.raises(UnknownScenarioError) as err:
        library.load(prefix + "300")
    assert isinstance(err.value, KeyError) and isinstance(err.value, ScenarioError)
    assert err.value.source == str(L.sample_path()) and err.value.field == L.SCENARIO_ID
    assert str(err.value) == (
        f"{L.sample_path()}: scenario_id: no scenario '{prefix}300' in the library; "
        f"did you mean '{prefix}400', '{prefix}405', '{prefix}401'?"
    )
    with pytest.raises(KeyError, match="no scenario 'nothing-like-it' in the library$"):
        library["nothing-like-it"]


def test_files_kept_open_are_closed_when_evicted(tmp_path: Path) -> None:
    library = ScenarioLibrary.create(tmp_path / "lib", open_files=1)
    scenes = [scene([AgentSpec("ego", 10.0 * k, speed=5.0)], num_steps=3, scenario_id=f"s{k}") for k in range(3)]
    library.append(scenes, scenarios_per_part=1)  # one part per scenario
    opened = []
    for s in scenes:
        assert scenarios_equal(library.load(s.id), s)
        opened += [h for h in library._files.values() if h not in opened]
    assert len(library._files) == 1
    assert all(h.closed for h in opened[:-1]) and not opened[-1].closed
    library.close()
    assert opened[-1].closed and len(library._files) == 0
    assert np.all([scenarios_equal(library.load(s.id), s) for s in scenes])  # reopens on demand


def test_a_library_in_use_deep_copies_and_pickles_with_empty_caches() -> None:
    """``gymnasium``'s ``check_env`` deep-copies an env holding a library; Ray pickles one."""
    import copy
    import pickle

    library = ScenarioLibrary("sample")
    first = library.load(SAMPLE_IDS[0])
    assert len(library._files) == 2  # tracks and map parts open
    for clone in (copy.deepcopy(library), pickle.loads(pickle.dumps(library))):
        assert len(clone._files) == 0 and clone.ids() == SAMPLE_IDS
        assert scenarios_equal(clone.load(SAMPLE_IDS[0]), first)
        assert len(clone._files) == 2
    assert scenarios_equal(library.load(SAMPLE_IDS[-1]), ScenarioLibrary("sample").load(SAMPLE_IDS[-1]))
