"""The library under bad input and races: id collisions, concurrent creation, corrupted part files."""

from __future__ import annotations

import dataclasses
import multiprocessing
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scenarios import ScenarioError, scenarios_equal
from scenarios.library import ScenarioLibrary
from scenarios.synthetic import AgentSpec, scene


def tiny(scenario_id: str = "tiny", log_id: str = "log-1", num_steps: int = 40):
    base = scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("lead", 30.0, speed=8.0)], num_steps=num_steps, scenario_id=scenario_id)
    return base.replace(provenance=dataclasses.replace(base.provenance, source_log_id=log_id, source_file=f"/logs/{log_id}.json"))


# ---- an id that two logs claim is an error, never a silent skip ------------------------------


def test_an_id_stored_for_another_log_is_refused_and_nothing_of_the_append_is_stored(tmp_path):
    library = ScenarioLibrary.create(tmp_path / "lib")
    library.append([tiny(log_id="log-1")])
    assert library.append([tiny(log_id="log-1")]).skipped == ("tiny",)  # a re-import of the same log: skipped
    with pytest.raises(ScenarioError) as info:
        library.append([tiny("other", log_id="log-3"), tiny(log_id="log-2")])
    error = info.value
    assert error.source == "/logs/log-2.json" and error.field == "scenario_id"
    assert "'log-2' is already the id of synthetic log 'log-1' (stored from /logs/log-1.json)" in error.problem
    assert sorted(ScenarioLibrary(library.root).ids()) == ["tiny"]  # all or nothing: "other" is not stored either


def test_an_id_repeated_by_two_logs_in_one_append_is_refused(tmp_path):
    library = ScenarioLibrary.create(tmp_path / "lib")
    with pytest.raises(ScenarioError, match="already the id of synthetic log 'log-1' \\(earlier in this append\\)"):
        library.append([tiny(log_id="log-1"), tiny(log_id="log-2")])
    assert len(ScenarioLibrary(library.root)) == 0


# ---- two importers creating the same new library at once -------------------------------------


def _create_and_append(root: str, scenario_id: str, barrier, results) -> None:
    try:
        barrier.wait(timeout=60)
        library = ScenarioLibrary.create(root, exist_ok=True)
        library.append([tiny(scenario_id, log_id=scenario_id)])
        results.put((scenario_id, "ok"))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        results.put((scenario_id, f"{type(exc).__name__}: {exc}"))


def test_two_processes_creating_the_same_new_library_at_once_both_succeed(tmp_path):
    context = multiprocessing.get_context("fork")
    for trial in range(6):
        root = tmp_path / f"lib{trial}"
        barrier, results = context.Barrier(2), context.Queue()
        workers = [context.Process(target=_create_and_append, args=(str(root), name, barrier, results)) for name in ("a", "b")]
        for worker in workers:
            worker.start()
        outcomes = dict(results.get(timeout=120) for _ in workers)
        for worker in workers:
            worker.join(timeout=60)
        assert outcomes == {"a": "ok", "b": "ok"}, f"trial {trial}: {outcomes}"
        assert sorted(ScenarioLibrary(root).ids()) == ["a", "b"]
        assert not [p.name for p in root.iterdir() if p.name.endswith(".tmp")]


def test_create_still_refuses_a_directory_that_is_not_a_library(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ScenarioError, match="not empty and is not a scenario library"):
        ScenarioLibrary.create(tmp_path, exist_ok=True)


# ---- a corrupted part file is an error naming it, never changed data -------------------------


def test_a_flipped_byte_in_any_page_of_a_library_part_is_an_error_naming_the_file(tmp_path):
    """The last bytes of every column chunk (page payload) of the tracks part, flipped one at a time.

    Without page checksums some flips decode into other values (or into the same ones, the
    corruption unnoticed); with them, every flip fails the CRC."""
    original = tiny()
    library = ScenarioLibrary.create(tmp_path / "lib")
    library.append([original])
    part = next((library.root / "tracks").glob("part-*.parquet"))
    data = part.read_bytes()
    metadata = pq.ParquetFile(part).metadata
    assert metadata.row_group(0).num_columns >= 10
    flips = 0
    for k in range(metadata.row_group(0).num_columns):
        column = metadata.row_group(0).column(k)
        end = (column.dictionary_page_offset or column.data_page_offset) + column.total_compressed_size
        for position in range(end - 4, end):
            spoilt = bytearray(data)
            spoilt[position] ^= 0x10
            part.write_bytes(bytes(spoilt))
            with pytest.raises(ScenarioError) as info:
                ScenarioLibrary(library.root, decoded_cache=0).load("tiny")
            assert str(part) in info.value.source, (position, info.value)
            flips += 1
    part.write_bytes(data)
    assert scenarios_equal(ScenarioLibrary(library.root).load("tiny"), original)  # intact again: loads as written
    assert flips >= 40


def test_a_flipped_byte_in_the_index_part_is_an_error_at_open(tmp_path):
    library = ScenarioLibrary.create(tmp_path / "lib")
    library.append([tiny()])
    part = next((library.root / "scenarios").glob("part-*.parquet"))
    column = pq.ParquetFile(part).metadata.row_group(0).column(0)
    end = (column.dictionary_page_offset or column.data_page_offset) + column.total_compressed_size
    spoilt = bytearray(part.read_bytes())
    spoilt[end - 1] ^= 0x01
    part.write_bytes(bytes(spoilt))
    with pytest.raises(ScenarioError) as info:
        ScenarioLibrary(library.root)
    assert info.value.source == str(part) and "unreadable Parquet file" in info.value.problem


def test_library_parts_carry_page_checksums(tmp_path):
    library = ScenarioLibrary.create(tmp_path / "lib")
    library.append([tiny()])
    for table in ("scenarios", "tracks", "map_features"):
        part = next((library.root / table).glob("part-*.parquet"))
        # a page header's crc field: thrift field 4 (i32), present only when the writer computed it
        assert _first_page_has_crc(part), table


def _first_page_has_crc(path: Path) -> bool:
    """Whether the first page header of the first column chunk carries Parquet's optional ``crc``."""
    column = pq.ParquetFile(path).metadata.row_group(0).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    with open(path, "rb") as fh:
        fh.seek(start)
        header = fh.read(64)
    # compact thrift: field 1 type (i32, zigzag varint), 2 uncompressed size, 3 compressed size, then 4 crc
    position, field = 0, 0
    while position < len(header):
        byte = header[position]
        delta, kind = byte >> 4, byte & 0x0F
        position += 1
        if delta == 0 or kind != 5:  # not a short-form i32 field: past the fields we look at
            return False
        field += delta
        if field == 4:
            return True
        while header[position] & 0x80:  # skip the varint
            position += 1
        position += 1
    return False
