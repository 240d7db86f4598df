"""Seeded fuzzing of every importer: corrupted copies of real logs load cleanly or fail cleanly.

Each case takes a real file (``../shared/data``; INTERACTION, which has no sample there, the
project's fixture), corrupts it one way (byte flips, truncation, a spliced chunk, or one field set
to a value a fuzzer likes: 1e308, NaN, a 5000-digit integer, a 100,000-character id, a lone
surrogate, an empty list...) and loads it in a forked child with a memory cap and a timeout
(``isolated``). Every case must end in a valid scenario (within the model's bounds, measured apart from
its own checks: ``isolated.implausible``) or a ``ScenarioError`` an importer raised on purpose:
never another exception, an error ``load`` had to wrap (a bug an input found), a hang or an
allocation beyond the cap. Half the field edits hit the fields that size arrays, time, place or
identify (``HOT_NAMES``) with the values that broke readers before (``HOT_NUMBERS``).

The count per format is small by default so that the suite stays quick; set
``DRIVETWIN_FUZZ_CASES`` for a longer campaign (the seed is the case number: a failure names it
and replays with the same number).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.feather
import pyarrow.parquet as pq
import pytest
from isolated import Isolation, Outcome

from scenarios.importers import tfrecord

from scenarios.importers.scenarionet import _unpickle

#: Cases per format (each a fork and a load: about 0.1-0.4 s).
CASES = int(os.environ.get("DRIVETWIN_FUZZ_CASES", "10"))
#: First case number; ``DRIVETWIN_FUZZ_FIRST`` starts a campaign elsewhere.
FIRST = int(os.environ.get("DRIVETWIN_FUZZ_FIRST", "0"))

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HUGE_INT = "9" * 5000
LONG_TEXT = "x" * 100_000
NUMBERS = [1e308, -1e308, 1e18, -1.0, 0.0, 150.0, 1e4, float("nan"), float("inf"), float("-inf"), 3e6, 1e300, 95.0, 1e-300]
INTEGERS = [-1, 0, 1, 2**31, 2**62, 2**63 - 1, 10**7, 3_000_000]
TEXTS = ["", LONG_TEXT, "\ud800", "é", "../../x", "NaN", "1e13", "-5", "TYPE_VEHICLE"]
#: Text a text format may hold in a number's place.
NUMBER_TEXTS = ["1e308", "-1e308", "1e13", "1e300", "nan", "inf", "-1", "0", "150", "10000", "3000000", HUGE_INT, "", "abc", "95"]
#: What a fuzzer puts where a structure was.
STRUCTURES: list[Any] = [None, [], {}, [[]], True]
#: Names of the fields that size arrays, time, place or identify (half the field edits pick one).
HOT_NAMES = frozenset({
    "length", "width", "height", "x", "y", "z", "sdc_track_index", "id", "time_index", "ts", "position", "velocity",
    "exact", "duration", "timeOffset", "additionalValue", "timeStepSize", "lat", "lon", "v",
    "num_timestamps", "start_timestamp", "end_timestamp", "track_id", "timestep", "position_x", "velocity_x",
    "timestamp_ms", "vx", "sdc_id", "speed_limit_mph",
})  # fmt: skip
#: Half the field edits of a number put one of these (the values that broke readers before).
HOT_NUMBERS: list[Any] = ["__HUGE_INT__", 1e308, -1e308, 150.0, 1e4, 1e18, 1e13, 3e6, 10**7, float("inf")]


def _flip(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    out = bytearray(data)
    spots = rng.integers(0, len(out), size=int(rng.integers(1, 9)))
    for spot in spots:
        out[spot] ^= 1 << int(rng.integers(0, 8))
    return bytes(out), f"flipped bits at bytes {sorted(spots.tolist())}"


def _truncate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    cut = int(rng.integers(0, len(data)))
    return data[:cut], f"truncated to {cut} bytes"


def _splice(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    start = int(rng.integers(0, len(data)))
    length = int(rng.integers(1, 4096))
    if rng.random() < 0.5:
        return data[:start] + data[start + length :], f"deleted {length} bytes at {start}"
    return data[:start] + data[start : start + length] * 2 + data[start + length :], f"duplicated {length} bytes at {start}"


BYTE_MUTATIONS = (_flip, _truncate, _splice)


def _pick(rng: np.random.Generator, items: list[Any]) -> Any:
    return items[int(rng.integers(0, len(items)))]


def _leaves(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every leaf and container of a JSON-like tree (containers too: they can be replaced)."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _leaves(item, (*path, key))
    elif isinstance(value, list):
        for k, item in enumerate(value):
            found += _leaves(item, (*path, k))
    return found


def _set(tree: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


def _get(tree: Any, path: tuple) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _hot(rng: np.random.Generator, candidates: list[Any], name: Callable[[Any], object]) -> list[Any]:
    """Half the time, the candidates whose name is in ``HOT_NAMES`` (when there are any)."""
    hot = [c for c in candidates if str(name(c)) in HOT_NAMES]
    return hot if hot and rng.random() < 0.5 else candidates


def _fuzz_value(old: Any, rng: np.random.Generator) -> Any:
    """What to put where ``old`` was: usually something of its own kind, sometimes anything."""
    if rng.random() < 0.15:
        return _pick(rng, STRUCTURES + TEXTS[:3] + NUMBERS[:3])
    if isinstance(old, bool):
        return _pick(rng, [not old, 2, None])
    if isinstance(old, (int, float)):
        return _pick(rng, HOT_NUMBERS if rng.random() < 0.5 else NUMBERS + INTEGERS + ["__HUGE_INT__"])
    if isinstance(old, str):
        return _pick(rng, TEXTS)
    return _pick(rng, STRUCTURES)


# ---- a field edit per format ------------------------------------------------------------------


def _edit_json(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    tree = json.loads(data)
    paths = _hot(rng, _leaves(tree)[1:], lambda path: path[-1] if isinstance(path[-1], str) else path[-2] if len(path) > 1 else "")
    path = _pick(rng, paths)
    value = _fuzz_value(_get(tree, path), rng)
    _set(tree, path, value)
    text = json.dumps(tree).replace('"__HUGE_INT__"', HUGE_INT)
    return text.encode(), f"set {'.'.join(map(str, path))[:120]} to {str(value)[:40]!r}"


def _edit_xml(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    root = ET.fromstring(data)
    elements = list(root.iter())
    with_text = _hot(rng, [e for e in elements if e.text and e.text.strip()], lambda e: e.tag)
    with_attrs = _hot(rng, [e for e in elements if e.attrib], lambda e: "id" if "id" in e.attrib else next(iter(e.attrib)))
    if with_attrs and (rng.random() < 0.3 or not with_text):
        element = _pick(rng, with_attrs)
        names = [n for n in sorted(element.attrib) if n in HOT_NAMES] or sorted(element.attrib)
        name = _pick(rng, names)
        value = _pick(rng, NUMBER_TEXTS + [LONG_TEXT])
        element.set(name, value)
        what = f"set <{element.tag}> @{name} to {value[:40]!r}"
    else:
        element = _pick(rng, with_text)
        value = _pick(rng, NUMBER_TEXTS + [LONG_TEXT])
        element.text = value
        what = f"set <{element.tag}> text to {value[:40]!r}"
    return ET.tostring(root), what


def _edit_csv(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    lines = data.decode().split("\n")
    row = int(rng.integers(0, len(lines) - 1)) if rng.random() < 0.95 else 0
    cells = lines[row].split(",")
    header = lines[0].split(",")
    hot = [k for k, name in enumerate(header[: len(cells)]) if name in HOT_NAMES]
    column = _pick(rng, hot) if hot and rng.random() < 0.5 else int(rng.integers(0, len(cells)))
    value = _pick(rng, NUMBER_TEXTS + [LONG_TEXT, "1e18", "P1", "car", "pedestrian"])
    cells[column] = value
    lines[row] = ",".join(cells)
    return "\n".join(lines).encode(), f"set line {row + 1} column {column + 1} to {value[:40]!r}"


def _edit_parquet(data: bytes, rng: np.random.Generator, feather: bool = False) -> tuple[bytes, str]:
    table = (pa.feather.read_table if feather else pq.read_table)(io.BytesIO(data))
    name = _pick(rng, _hot(rng, table.column_names, str))
    column = table.column(name).to_pylist()
    kind = table.schema.field(name).type
    if pa.types.is_floating(kind):
        value: Any = _pick(rng, NUMBERS + [v for v in HOT_NUMBERS if isinstance(v, float)])
    elif pa.types.is_integer(kind):
        value = _pick(rng, INTEGERS)
    elif pa.types.is_boolean(kind):
        value = None
    else:
        value = _pick(rng, [t for t in TEXTS if t != "\ud800"] + [None])
    every_row = rng.random() < 0.4
    rows = range(len(column)) if every_row else [int(rng.integers(0, len(column)))]
    for row in rows:
        column[row] = value
    try:
        array = pa.array(column, type=kind)
    except (pa.ArrowException, OverflowError):
        array = pa.array(column)
    table = table.set_column(table.column_names.index(name), name, array)
    sink = io.BytesIO()
    (pa.feather.write_feather if feather else pq.write_table)(table, sink)
    where = "every row" if every_row else f"row {rows[0]}"
    return sink.getvalue(), f"set {name} at {where} to {str(value)[:40]!r}"


def _edit_feather(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    return _edit_parquet(data, rng, feather=True)


def _records(data: bytes) -> list[bytes]:
    """The payloads of a TFRecord file's records (the file is the real one: well formed)."""
    out, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        out.append(data[offset + 12 : offset + 12 + length])
        offset += 12 + length + 4
    return out


def _edit_tfrecord(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Bits flipped inside a record's ``Scenario`` proto, the record re-framed with valid CRCs, so
    that the damage reaches the proto reader instead of stopping at the checksum."""
    records = _records(data)
    k = int(rng.integers(0, len(records)))
    payload = bytearray(records[k])
    spots = rng.integers(0, len(payload), size=int(rng.integers(1, 9)))
    for spot in spots:
        payload[spot] ^= 1 << int(rng.integers(0, 8))
    records[k] = bytes(payload)
    return b"".join(tfrecord.frame(r) for r in records), f"flipped bits at proto bytes {sorted(spots.tolist())} of record {k}, CRCs valid"


def _pickle_leaves(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _pickle_leaves(item, (*path, key))
    elif isinstance(value, (list, tuple)) and not isinstance(value, tuple):
        for k, item in enumerate(value):
            found += _pickle_leaves(item, (*path, k))
    return found


def _edit_pickle(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    tree = pickle.loads(data)  # the real ScenarioNet file, as the dataset ships it (trusted input here)
    path = _pick(rng, _hot(rng, _pickle_leaves(tree)[1:], lambda path: path[-1]))
    old = _get(tree, path)
    if isinstance(old, np.ndarray) and old.size and old.dtype.kind in "fiub" and rng.random() < 0.8:
        new = old.astype(np.float64 if old.dtype.kind == "f" else old.dtype).copy()
        spot = tuple(int(rng.integers(0, n)) for n in new.shape)
        floats = NUMBERS + [v for v in HOT_NUMBERS if isinstance(v, float)]
        value: Any = _pick(rng, floats) if new.dtype.kind == "f" else _pick(rng, [v for v in INTEGERS if v < 2**31])
        try:
            new[spot] = value
        except (OverflowError, ValueError):
            new = new.astype(np.float64)
            new[spot] = value
        _set(tree, path, new)
        what = f"set {'.'.join(map(str, path))[:120]}[{spot}] to {value!r}"
    else:
        value = _fuzz_value(old, rng)
        huge = value == "__HUGE_INT__"
        value = 10**5000 if huge else value  # (int("9" * 5000) would hit the str-to-int digit limit)
        _set(tree, path, value)
        what = f"set {'.'.join(map(str, path))[:120]} to {'a 5000-digit int' if huge else repr(value)[:40]}"
    return pickle.dumps(tree, protocol=4), what


# ---- the formats --------------------------------------------------------------------------------


def _real(data_dir: Path, fmt: str) -> tuple[Path, list[Path]]:
    """The file a format's cases corrupt, and the files copied beside it unchanged."""
    if fmt == "av2":
        folder = data_dir / "argoverse2"
        return next(folder.glob("scenario_*.parquet")), list(folder.glob("log_map_archive_*.json"))
    if fmt == "commonroad":
        return data_dir / "commonroad" / "USA_US101-4_1_T-1.xml", []
    if fmt == "scenarionet":
        return data_dir / "scenarionet" / "sd_nuscenes_v1.0-mini_scene-1100.pkl", []
    if fmt == "waymo_json":
        return data_dir / "waymo_json" / "tfrecord-00000-of-01000_222.json", []
    if fmt == "womd":
        return data_dir / "womd_tfrecord" / "motion_data_one_scenario.tfrecord", []
    if fmt == "av2_sensor":  # the annotations are corrupted; the poses and the map are copied beside them
        log = next((data_dir / "argoverse2_sensor").iterdir())
        return log / "annotations_with_ego.feather", [log / "city_SE3_egovehicle.feather", *sorted((log / "map").iterdir())]
    raise KeyError(fmt)


FIELD_EDITS: dict[str, Callable[[bytes, np.random.Generator], tuple[bytes, str]]] = {
    "av2": _edit_parquet,
    "commonroad": _edit_xml,
    "scenarionet": _edit_pickle,
    "waymo_json": _edit_json,
    "interaction": _edit_csv,
    "womd": _edit_tfrecord,
    "av2_sensor": _edit_feather,
}


# ---- directed cases: the edits that broke readers, applied to the real files first ------------


def _json_edit(change: Callable[[dict], None]) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        tree = json.loads(data)
        change(tree)
        return json.dumps(tree).replace('"__HUGE_INT__"', HUGE_INT).encode()

    return edit


def _first_valid(tree: dict) -> tuple[dict, int]:
    ego = tree["objects"][tree["metadata"]["sdc_track_index"]]
    return ego, ego["valid"].index(True)


def _parquet_edit(change: Callable[[dict], None]) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        table = pq.read_table(io.BytesIO(data))
        columns = {name: table.column(name).to_pylist() for name in table.column_names}
        change(columns)
        sink = io.BytesIO()
        pq.write_table(pa.table({name: pa.array(values, type=table.schema.field(name).type) for name, values in columns.items()}), sink)
        return sink.getvalue()

    return edit


def _feather_edit(change: Callable[[dict], None]) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        table = pa.feather.read_table(io.BytesIO(data))
        columns = {name: table.column(name).to_pylist() for name in table.column_names}
        change(columns)
        sink = io.BytesIO()
        pa.feather.write_feather(pa.table({n: pa.array(v, type=table.schema.field(n).type) for n, v in columns.items()}), sink)
        return sink.getvalue()

    return edit


def _huge_record_length(data: bytes) -> bytes:
    length = struct.pack("<Q", 2**40)
    return length + struct.pack("<I", tfrecord.masked_crc(length)) + data[12:]


def _av2_ten_million_steps(columns: dict) -> None:
    columns["num_timestamps"] = [10**7] * len(columns["num_timestamps"])
    columns["end_timestamp"] = [start + (10**7 - 1) * 1e8 for start in columns["start_timestamp"]]


def _av2_long_id(columns: dict) -> None:
    columns["track_id"] = [LONG_TEXT if t == "AV" else t for t in columns["track_id"]]


def _pickle_edit(change: Callable[[dict], None]) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        tree = pickle.loads(data)  # the real file as the dataset ships it
        change(tree)
        return pickle.dumps(tree, protocol=4)

    return edit


def _rename_sdc(tree: dict) -> None:
    sdc = tree["metadata"]["sdc_id"]
    tree["tracks"][LONG_TEXT] = tree["tracks"].pop(sdc)
    tree["metadata"]["sdc_id"] = LONG_TEXT


def _text_edit(old: str, new: str) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        text = data.decode()
        assert old in text, old
        return text.replace(old, new, 1).encode()

    return edit


def _regex_edit(pattern: str, replacement: str) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        text, count = re.subn(pattern, replacement, data.decode(), count=1)
        assert count == 1, pattern
        return text.encode()

    return edit


def _last_time(data: bytes) -> bytes:
    """The time step of the last recorded obstacle state (before any planning problem) set to 3,000,000."""
    text = data.decode()
    end = text.find("<planningProblem")
    matches = list(re.finditer(r"<time>\s*<exact>([0-9]+)</exact>", text[: end if end >= 0 else len(text)]))
    last = matches[-1]
    return (text[: last.start(1)] + "3000000" + text[last.end(1) :]).encode()


DIRECTED: dict[str, list[tuple[str, Callable[[bytes], bytes]]]] = {
    "waymo_json": [
        ("a 5000-digit length", _json_edit(lambda t: t["objects"][0].__setitem__("length", "__HUGE_INT__"))),
        ("a lone surrogate id", _json_edit(lambda t: t["objects"][1].__setitem__("id", "\ud800"))),
        ("the ego at 9999 m/s", _json_edit(lambda t: (lambda ego, k: ego["velocity"][k].__setitem__("x", 9999.0))(*_first_valid(t)))),
        ("the ego at x = 1e308", _json_edit(lambda t: (lambda ego, k: ego["position"][k].__setitem__("x", 1e308))(*_first_valid(t)))),
    ],
    "av2": [
        ("num_timestamps = 10**7", _parquet_edit(_av2_ten_million_steps)),
        ("a 100,000-character track id", _parquet_edit(_av2_long_id)),
        ("position_x = 1e308", _parquet_edit(lambda c: c["position_x"].__setitem__(0, 1e308))),
    ],
    "commonroad": [
        ('timeStepSize="1e13"', _text_edit('timeStepSize="0.1"', 'timeStepSize="1e13"')),
        ("a last time step of 3,000,000", _last_time),
        ("an x of 1e308", _regex_edit(r"<x>[^<]*</x>", "<x>1e308</x>")),
    ],
    "scenarionet": [
        ("timestamps of 1e18 s", _pickle_edit(lambda t: t["metadata"].__setitem__("ts", np.asarray(t["metadata"]["ts"]) + 1e18))),
        ("a 100,000-character ego id", _pickle_edit(_rename_sdc)),
        ("the ego at 9999 m/s", _pickle_edit(lambda t: t["tracks"][t["metadata"]["sdc_id"]]["state"]["velocity"].__setitem__((slice(None), 0), 9999.0))),
    ],
    "womd": [
        ("a record length of 2**40 bytes with a valid length CRC", lambda d: _huge_record_length(d)),
    ],
    "av2_sensor": [
        ("a box at tx_m = 1e308", _feather_edit(lambda c: c["tx_m"].__setitem__(0, 1e308))),
        ("a 100,000-character track uuid", _feather_edit(lambda c: c["track_uuid"].__setitem__(1, LONG_TEXT))),
    ],
    "interaction": [  # (the file of the fixture's layout they edit is named first)
        ("vehicle_tracks_000.csv: timestamp_ms = 1e18", _text_edit("1,3,300,car", "1,3,1000000000000000000,car")),
        ("vehicle_tracks_000.csv: vx = 9999", _text_edit("1,2,200,car,1005.900,998.250,9.000,", "1,2,200,car,1005.900,998.250,9999,")),
        ("DR_DTW_Curve.osm: lat = 95", _regex_edit(r'lat="[^"]*"', 'lat="95"')),
        ("vehicle_tracks_000.csv: a 100,000-character track id", _regex_edit(r"\n2,", f"\n{LONG_TEXT},")),
    ],
}


def _mutate(fmt: str, data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    if rng.random() < 0.4:
        return _pick(rng, list(BYTE_MUTATIONS))(data, rng)
    return FIELD_EDITS[fmt](data, rng)


@pytest.fixture(scope="module")
def isolation():
    with Isolation() as iso:
        yield iso


def _interaction_layout(tmp: Path) -> Path:
    """The fixture's layout copied into ``tmp``; its vehicle tracks file."""
    shutil.copytree(FIXTURES / "interaction", tmp / "interaction")
    return tmp / "interaction" / "recorded_trackfiles" / "DR_DTW_Curve" / "vehicle_tracks_000.csv"


def _interaction_case(tmp: Path, rng: np.random.Generator) -> tuple[Path, str]:
    """The fixture's layout with its vehicle tracks, pedestrian tracks or map corrupted."""
    tracks = _interaction_layout(tmp)
    target = _pick(rng, [tracks, tracks, tracks.with_name("pedestrian_tracks_000.csv"), tmp / "interaction" / "maps" / "DR_DTW_Curve.osm"])
    data = target.read_bytes()
    if rng.random() < 0.4:
        data, what = _pick(rng, list(BYTE_MUTATIONS))(data, rng)
    else:
        data, what = (_edit_xml if target.suffix == ".osm" else _edit_csv)(data, rng)
    target.write_bytes(data)
    return tracks, f"{target.name}: {what}"


def _copy_beside(folder: Path, real: Path, companions: list[Path]) -> None:
    """The unchanged files of a log into ``folder``, where they lie relative to ``real``."""
    for companion in companions:
        target = folder / companion.relative_to(real.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(companion.read_bytes())


@pytest.mark.parametrize("fmt", ["av2", "commonroad", "scenarionet", "waymo_json", "interaction", "womd", "av2_sensor"])
def test_corrupted_real_files_load_or_fail_cleanly(fmt, data_dir, tmp_path, isolation):
    if fmt != "interaction":
        real, companions = _real(data_dir, fmt)
        original = real.read_bytes()
    failures: list[str] = []
    for k, (what, edit) in enumerate(DIRECTED[fmt]):
        folder = tmp_path / f"directed{k}"
        folder.mkdir()
        if fmt == "interaction":
            target = _interaction_layout(folder)
            spoilt = next(p for p in folder.rglob(what.split(":")[0]))
            spoilt.write_bytes(edit(spoilt.read_bytes()))
        else:
            target = folder / real.name
            target.write_bytes(edit(original))
            _copy_beside(folder, real, companions)
        outcome = isolation.load(target)
        if outcome.kind != "error" or outcome.unexpected:  # each of these must be refused
            failures.append(f"directed ({what}): {outcome.kind} {outcome.unexpected or ''} {outcome.message[:300]}")
    for case in range(FIRST, FIRST + CASES):
        rng = np.random.default_rng([20261201, case, sum(map(ord, fmt))])
        folder = tmp_path / f"case{case}"
        folder.mkdir()
        if fmt == "interaction":
            target, what = _interaction_case(folder, rng)
        else:
            data, what = _mutate(fmt, original, rng)
            target = folder / real.name
            target.write_bytes(data)
            _copy_beside(folder, real, companions)
        outcome: Outcome = isolation.load(target)
        if not outcome.clean:
            failures.append(f"case {case} ({what}): {outcome.kind} {outcome.unexpected or ''} {outcome.message[:300]}")
    total = CASES + len(DIRECTED[fmt])
    assert not failures, f"{len(failures)} of {total} corrupted {fmt} files did not load or fail cleanly:\n" + "\n".join(failures)
