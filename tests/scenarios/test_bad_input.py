"""Bad input never stops a batch, never allocates without bound and never loads absurd values.

The files are the tiny hand-built logs of ``tiny_logs``, each spoiled in one value. Loads that
could allocate gigabytes on a reader without its size checks run in a forked child with a memory
cap (``isolated``), so that such a reader fails its test instead of the machine.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tiny_logs
from isolated import Isolation

import scenarios
from harness.cli import main
from scenarios import ScenarioError
from scenarios.importers import waymo_json
from scenarios.library import ScenarioLibrary
from scenarios.model import (
    MAX_ID_LENGTH,
    MAX_SPEED_MPS,
    MAX_STEPS,
    Lane,
    Provenance,
    RoadMap,
    Tracks,
)
from scenarios.synthetic import AgentSpec, scene, straight_road

HUGE_INT = "1" + "0" * 5000  # beyond Python's 4300-digit int() limit
LONG_ID = "x" * 100_000


def error_of(path: Path, **options: object) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        scenarios.load(path, **options)  # type: ignore[arg-type]
    assert getattr(info.value, "unexpected", None) is None, f"an unanticipated exception: {info.value}"
    return info.value


def assert_error(path: Path, field: str, words: str, source: Path | None = None) -> ScenarioError:
    error = error_of(path)
    assert error.field == field, error
    assert words in error.problem, error
    assert (source or path).name in error.source, error
    return error


@pytest.fixture(scope="module")
def isolation():
    with Isolation() as iso:
        yield iso


def assert_isolated_error(iso: Isolation, path: Path, field: str, words: str) -> None:
    outcome = iso.load(path)
    assert outcome.kind == "error" and outcome.unexpected is None, outcome
    assert outcome.field == field and words in outcome.message, outcome


# ---- every failure of one file is that file's error ----------------------------------------


def test_an_unanticipated_exception_is_the_files_error_and_the_batch_goes_on(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    bad = tiny_logs.waymo_json(tmp_path / "a")
    good = tiny_logs.commonroad(tmp_path / "b")

    def explode(*args: object) -> None:
        raise RuntimeError("an importer bug")

    monkeypatch.setattr(waymo_json, "_read_roads", explode)
    first, second = scenarios.load_many([bad, good])
    assert not first.ok and second.ok and len(second.scenarios) == 1
    assert first.error.source == str(bad) and "unexpected RuntimeError" in first.error.problem
    assert isinstance(first.error.__cause__, RuntimeError)  # the traceback is kept


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ('"length": 4.5', f'"length": {HUGE_INT}', "objects[0].length", "finite non-negative size"),
        ('"sdc_track_index": 0', f'"sdc_track_index": {HUGE_INT}', "metadata.sdc_track_index", "not an object index"),
        ('{"x": 0.0, "y": 0.0, "z": 0.0}', f'{{"x": {HUGE_INT}, "y": 0.0, "z": 0.0}}', "objects[0].position", "infinite"),
        ('"id": 2,', f'"id": {HUGE_INT},', "objects[1].id", "must be a string or an integer"),
        ('"id": 2,', '"id": "\\ud800",', "objects[1].id", "not valid Unicode"),
    ],
)
def test_waymo_json_huge_integers_and_lone_surrogates_name_their_field(tmp_path, old, new, field, words):
    assert_error(tiny_logs.waymo_json(tmp_path, replace={old: new}), field, words)


def test_commonroad_time_step_size_beyond_int64_microseconds(tmp_path):
    assert_error(tiny_logs.commonroad(tmp_path, dt="1e13"), "timeStepSize", "positive number of seconds up to 60")


def test_commonroad_light_cycle_of_1e300_steps_and_a_huge_offset(tmp_path):
    assert_error(tiny_logs.commonroad(tmp_path, duration="1e300"), "trafficLight[@id=301]/cycle/cycleElement[1]/duration", "whole number of steps")
    # an offset far beyond the cycle is the same offset within it: exact integer arithmetic
    (huge,) = scenarios.load(tiny_logs.commonroad(tmp_path, offset="1e300"))
    (small,) = scenarios.load(tiny_logs.commonroad(tmp_path, offset=str(int(float("1e300")) % 4)))
    assert np.array_equal(huge.signals.states, small.signals.states)


def test_commonroad_time_step_of_5000_digits(tmp_path):
    assert_error(tiny_logs.commonroad(tmp_path, last=HUGE_INT), "dynamicObstacle[@id=501]/trajectory/state[2]/time/exact", "not an integer")


# ---- memory bombs in small files: sizes checked before allocating ----------------------------


def test_av2_ten_million_timestamps_in_a_six_row_file(tmp_path, isolation):
    folder = tiny_logs.av2(tmp_path, num_timestamps=10**7)
    assert_isolated_error(isolation, folder, "num_timestamps", "more than the file's 6 rows")


@pytest.mark.parametrize("fmt", ["av2", "interaction", "waymo_json", "commonroad", "scenarionet"])
def test_100000_character_track_ids(tmp_path, isolation, fmt):
    if fmt == "av2":
        path, field = tiny_logs.av2(tmp_path, columns={"track_id": ["AV"] * 3 + [LONG_ID] * 3}), "track_id"
    elif fmt == "interaction":
        path, field = tiny_logs.interaction_layout(tmp_path), "track_id"
        tiny_logs.edit(path, "\n2,", f"\n{LONG_ID},", count=200)
    elif fmt == "waymo_json":
        path, field = tiny_logs.waymo_json(tmp_path, replace={'"id": 2,': f'"id": "{LONG_ID}",'}), "objects[1].id"
    elif fmt == "commonroad":
        path, field = tiny_logs.commonroad(tmp_path, oid=LONG_ID), "dynamicObstacle/@id"
    else:
        path, field = tiny_logs.scenarionet(tmp_path, ego_id=LONG_ID), "metadata.sdc_id"
    assert_isolated_error(isolation, path, field, f"100000 characters, more than {MAX_ID_LENGTH}")


def test_commonroad_last_time_of_3000000_steps(tmp_path, isolation):
    assert_isolated_error(isolation, tiny_logs.commonroad(tmp_path, last="3000000"), "time", f"beyond {MAX_STEPS - 1}")


def test_interaction_rows_that_would_make_a_huge_sparse_grid(tmp_path, isolation):
    """4,000 rows, each its own track at its own timestamp: 16 million cells from a 200 KB file."""
    path = tiny_logs.interaction_layout(tmp_path)
    rows = [f"{k},{k},{100 * k},car,{1000 + k * 0.01:.3f},998.250,0.000,0.000,0.000,4.6,1.9" for k in range(1, 4001)]
    path.write_text("track_id,frame_id,timestamp_ms,agent_type,x,y,vx,vy,psi_rad,length,width\n" + "\n".join(rows) + "\n")
    path.with_name("pedestrian_tracks_000.csv").unlink()
    assert_isolated_error(isolation, path, "track_id, timestamp_ms", "16000000 track cells, more than a scenario may have")


# ---- absurd values, in every format ----------------------------------------------------------


def spoil(fmt: str, folder: Path, what: str) -> tuple[Path, str, str]:
    """A tiny log of ``fmt`` whose ego has ``what`` ("coordinate", "speed", "jump"): (path, field, words)."""
    if what == "coordinate":
        words, x = "1e+308 m is beyond", "1e308"
    elif what == "speed":
        words = "150.0 m/s is beyond +-100 m/s"
    else:
        words = "moves 1000 m in 0.1 s"
    field = {"coordinate": "x", "speed": "vx", "jump": "x, y"}[what]
    if fmt == "waymo_json":
        replace = {"coordinate": {'"x": 1.0,': '"x": 1e308,'}, "speed": {'{"x": 10.0,': '{"x": 150.0,'},
                   "jump": {'"x": 1.0,': '"x": 1000.0,'}}[what]  # fmt: skip
        return tiny_logs.waymo_json(folder, replace=replace), field, words
    if fmt == "commonroad":
        values = {"coordinate": {"x1": "1e308"}, "speed": {"v": "150"}, "jump": {"x1": "1000"}}[what]
        return tiny_logs.commonroad(folder, **values), field, words
    if fmt == "av2":
        xs = [0.0, 1.0, 2.0, -20.0, -19.0, -18.0]
        columns = {"coordinate": {"position_x": [0.0, 1e308, *xs[2:]]}, "speed": {"velocity_x": [150.0, *[10.0] * 5]},
                   "jump": {"position_x": [0.0, 1000.0, *xs[2:]]}}[what]  # fmt: skip
        if what == "coordinate":  # refused as read, with the file's column name
            field, words = "position_x", "1e+308 m for track 'AV' at timestep 1 is beyond"
        return tiny_logs.av2(folder, columns=columns), field, words
    if fmt == "scenarionet":
        position = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
        velocity = np.array([[10.0, 0.0]] * 3)
        if what == "coordinate":
            position[1, 0] = 1e308
        elif what == "jump":
            position[1, 0] = 1000.0
        else:
            velocity[0, 0] = 150.0
        return tiny_logs.scenarionet(folder, track={"position": position, "velocity": velocity}), field, words
    path = tiny_logs.interaction_layout(folder)
    old = "1,2,200,car,1005.900,998.250,9.000,"
    new = {"coordinate": "1,2,200,car,1e308,998.250,9.000,", "speed": "1,2,200,car,1005.900,998.250,150.000,",
           "jump": "1,2,200,car,2005.000,998.250,9.000,"}[what]  # fmt: skip
    tiny_logs.edit(path, old, new)
    return path, field, words


FORMATS = ["waymo_json", "commonroad", "av2", "scenarionet", "interaction"]


@pytest.mark.parametrize("what", ["coordinate", "speed", "jump"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_absurd_positions_and_speeds_are_refused_with_file_and_field(tmp_path, fmt, what):
    path, field, words = spoil(fmt, tmp_path, what)
    error = error_of(path)
    assert error.field == field and words in error.problem, error
    assert path.name in error.source or (fmt == "av2" and "scenario_tiny.parquet" in error.source), error


@pytest.mark.parametrize(
    ("value", "words"),
    [("-5", "(0, 100]"), ("1e400", "(0, 100]"), ("250", "(0, 100]")],
)
def test_commonroad_speed_limit_signs_negative_infinite_or_absurd(tmp_path, value, words):
    field = "trafficSign[@id=201]/trafficSignElement[1]/additionalValue"
    assert_error(tiny_logs.commonroad(tmp_path, speed=value), field, words)


@pytest.mark.parametrize("value", [-10.0, math.inf, 1000.0])
def test_scenarionet_speed_limits_negative_infinite_or_absurd(tmp_path, value):
    path = tiny_logs.scenarionet(tmp_path, lane={"speed_limit_mph": value})
    assert_error(path, "map_features.10.speed_limit_mph", "is not a speed limit in (0, 100] m/s")


def test_interaction_speed_limit_tag_beyond_any_road(tmp_path):
    path = tiny_logs.interaction_layout(tmp_path)
    osm = path.parents[2] / "maps" / "DR_DTW_Curve.osm"
    tiny_logs.edit(osm, 'v="30 mph"', 'v="99999 mph"')
    error = assert_error(path, "relation[@id=3005]/tag[@k=speed_limit]", "faster than a speed limit can be", source=osm)
    assert error.source == str(osm)


def test_osm_latitude_of_95_degrees(tmp_path):
    path = tiny_logs.interaction_layout(tmp_path)
    osm = path.parents[2] / "maps" / "DR_DTW_Curve.osm"
    tiny_logs.edit(osm, 'lat="0.00900328343"', 'lat="95"')
    assert_error(path, "node[@id=1001]/@lat", "not a latitude in [-90, 90]", source=osm)


def test_interaction_timestamp_that_would_wrap_int64(tmp_path):
    path = tiny_logs.interaction_layout(tmp_path)
    tiny_logs.edit(path, "1,3,300,car", "1,3,1000000000000000000,car")
    assert_error(path, "timestamp_ms", "1e+18 ms at line 4 (track 1) is beyond 1e+14 ms")


def test_the_model_holds_the_bounds_for_every_reader():
    """One place: a scenario built by any code (a new importer, a mutation) meets the same bounds."""
    base = scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("lead", 30.0, speed=10.0)], num_steps=5)
    tracks = base.tracks

    def spoilt(**arrays: object) -> str:
        with pytest.raises(ScenarioError) as info:
            base.replace(tracks=tracks.replace(**arrays))
        return f"{info.value.field}: {info.value.problem}"

    x = tracks.x.copy()
    x[1, 3] += 500.0
    assert spoilt(x=x).startswith("x, y: agent 'lead' moves 501 m in 0.1 s from step 2 to step 3")
    vx = tracks.vx.copy()
    vx[0, 0] = MAX_SPEED_MPS + 1
    assert spoilt(vx=vx).startswith("vx: 101.0 m/s is beyond +-100 m/s (agent 'ego', step 0)")
    assert spoilt(length=np.array([4.5, 1e308])).startswith("length: 1e+308 m for agent 'lead'")
    assert "not valid Unicode" in spoilt(agent_ids=np.array(["ego", "lead\ud800"], dtype=object))
    with pytest.raises(ScenarioError, match="an agent id of 257 characters"):
        Tracks(**{**{n: getattr(tracks, n) for n in Tracks.__dataclass_fields__}, "agent_ids": ["ego", "x" * 257]})
    with pytest.raises(ScenarioError, match="t_us: 1000000000000000000 us at step 0 is beyond"):
        base.replace(t_us=base.t_us + 10**18)
    with pytest.raises(ScenarioError, match=r"speed_limit: speed limit -1.0 m/s is not in \(0, 100\]"):
        road = straight_road()
        lanes = (Lane("bad", road.lanes[0].centerline, speed_limit=-1.0),)
        base.replace(road_map=RoadMap(road.lanes + lanes, road.features))
    with pytest.raises(ScenarioError, match="provenance.source_log_id: not valid Unicode"):
        base.replace(provenance=Provenance("synthetic", "<memory>", "log\udc80"))


# ---- paths as the user gave them ---------------------------------------------------------------


def test_a_symlinked_interaction_track_file_finds_the_maps_of_the_layout_it_is_linked_into(tmp_path):
    path = tiny_logs.interaction_layout(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "vehicle_tracks_000.csv"
    path.rename(target)
    path.symlink_to(target)
    path.with_name("pedestrian_tracks_000.csv").unlink()
    (scenario,) = scenarios.load(path)
    assert scenario.provenance.source_file == str(path)
    assert "DR_DTW_Curve.osm" in scenario.provenance.frame and len(scenario.road_map.lanes) > 0


# ---- the CLI imports every good file of a folder with bad ones --------------------------------


def test_cli_import_of_a_folder_with_bad_files_among_good_ones_imports_every_good_one(tmp_path, capsys):
    src = tmp_path / "src"
    for name in ("good_waymo", "good_commonroad", "bad_int", "bad_unicode", "bad_speed"):
        (src / name).mkdir(parents=True)
    tiny_logs.waymo_json(src / "good_waymo")
    tiny_logs.commonroad(src / "good_commonroad")
    tiny_logs.waymo_json(src / "bad_int", scenario_id="other", replace={'"length": 4.5': f'"length": {HUGE_INT}'})
    tiny_logs.waymo_json(src / "bad_unicode", scenario_id="third", replace={'"id": 2,': '"id": "\\ud800",'})
    tiny_logs.waymo_json(src / "bad_speed", scenario_id="fourth", replace={'{"x": 10.0,': '{"x": 9999.0,'})
    out = tmp_path / "lib"
    assert main(["import", str(src), "--out", str(out), "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert "2/5 files imported" in printed, printed
    for name in ("bad_int", "bad_unicode", "bad_speed"):
        assert f"FAIL {src / name / 'tiny.json'}" in printed, printed
    assert sorted(ScenarioLibrary(out).ids()) == ["commonroad-USA_Tiny-1_1_T-1", "waymo-tiny"]


# ---- scenario ids stay unique ------------------------------------------------------------------


def test_source_ids_that_sanitise_alike_give_distinct_stable_scenario_ids(tmp_path, capsys):
    src = tmp_path / "src"
    for name, log_id in (("a", "?"), ("b", "!"), ("c", "_")):
        (src / name).mkdir(parents=True)
        tiny_logs.waymo_json(src / name, scenario_id=log_id)
    out = tmp_path / "lib"
    assert main(["import", str(src), "--out", str(out), "--quiet"]) == 0
    assert "3 scenarios, 3 new" in capsys.readouterr().out
    ids = ScenarioLibrary(out).ids()
    assert len(set(ids)) == 3 and "waymo-_" in ids  # "_" is safe as it is; "?" and "!" get a hash of themselves
    assert all(i == "waymo-_" or i.startswith("waymo-__") and len(i) == len("waymo-__") + 8 for i in ids), ids
    assert main(["import", str(src), "--out", str(out), "--quiet"]) == 0  # stable: a re-import adds nothing
    assert "3 scenarios, 0 new" in capsys.readouterr().out
    assert scenarios.make_scenario_id("waymo", "?") == scenarios.make_scenario_id("waymo", "?") != scenarios.make_scenario_id("waymo", "!")


def test_interaction_max_speed_sign_beyond_any_road(tmp_path):
    path = tiny_logs.interaction_layout(tmp_path)
    osm = path.parents[2] / "maps" / "DR_DTW_Curve.osm"
    tiny_logs.edit(osm, 'v="de274-50"', 'v="de274-900"')
    error = assert_error(path, "relation[@id=3001]/member[@role=regulatory_element]", "250.0 m/s is not in (0, 100]", source=osm)
    assert error.source == str(osm)


def test_a_file_whose_scenarios_cannot_be_stored_fails_alone_though_files_are_stored_in_batches(tmp_path, capsys, monkeypatch):
    """``drivetwin import`` appends many files' scenarios at once; an append that fails (all or
    nothing) is retried file by file, so only the file that cannot be stored fails."""
    src = tmp_path / "src"
    for name in ("a", "b", "c"):
        (src / name).mkdir(parents=True)
        tiny_logs.waymo_json(src / name, scenario_id=f"log-{name}")
    append = ScenarioLibrary.append

    def refuse_b(self, scenes, **kwargs):
        scenes = list(scenes)
        if any(s.id == "waymo-log-b" for s in scenes):
            raise OSError(28, "No space left on device")
        return append(self, scenes, **kwargs)

    monkeypatch.setattr(ScenarioLibrary, "append", refuse_b)
    out = tmp_path / "lib"
    assert main(["import", str(src), "--out", str(out), "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert f"FAIL {src / 'b' / 'tiny.json'}: not stored in {out}: OSError" in printed, printed
    assert sorted(ScenarioLibrary(out).ids()) == ["waymo-log-a", "waymo-log-c"]
