"""Suite configs cannot be built invalid; executors by name from a registry; one RunDirectory."""

from __future__ import annotations

import json

import pytest

from harness.config import ConfigError, GateConfig, RunConfig, ScenariosConfig, SuiteConfig, load_suite, parse_suite
from harness.executor import EXECUTORS, SequentialExecutor, make_executor
from harness.rundir import RunDirectory, RunError
from harness.runner import run_suite


@pytest.mark.parametrize(
    "build, key",
    [
        (lambda: GateConfig(max_error_rate=1.5), "gate.max_error_rate"),
        (lambda: GateConfig(max_new_failures=-1), "gate.max_new_failures"),
        (lambda: RunConfig(timeout_s=0.0), "run.timeout_s"),
        (lambda: RunConfig(startup_timeout_s=float("inf")), "run.startup_timeout_s"),
        (lambda: RunConfig(executor="threads"), "run.executor"),
        (lambda: ScenariosConfig(sources=()), "scenarios.sources"),
        (lambda: ScenariosConfig(egos="pedestrians"), "scenarios.egos"),
        (lambda: SuiteConfig(name=""), "suite.name"),
    ],
)
def test_an_invalid_config_cannot_be_built(build, key):
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.key == key


def test_a_file_names_the_file_and_the_key(tmp_path):
    suite = tmp_path / "bad.toml"
    suite.write_text('[suite]\nname = "bad"\n[run]\nexecutor = "threads"\n')
    with pytest.raises(ConfigError) as info:
        load_suite(suite)
    assert info.value.source == str(suite) and info.value.key == "run.executor"
    assert "unknown executor 'threads'" in str(info.value) and "'sequential'" in str(info.value)
    suite.write_text('[suite]\nname = "bad"\n[gate]\nmax_error_rate = 3\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: gate\.max_error_rate: must be in \[0, 1\], got 3\.0"):
        load_suite(suite)
    suite.write_text('[suite]\nname = "bad"\n[run]\nsede = 3\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: run\.sede: unknown key"):
        load_suite(suite)


def test_an_executor_registered_by_a_plugin_is_selected_by_name(tmp_path):
    made = []

    @EXECUTORS.decorator("counting")
    def counting(workers=0, **options):
        made.append(workers)
        return SequentialExecutor(timeout_s=options["timeout_s"], retries=options["retries"], paths=options["paths"])

    try:
        assert isinstance(make_executor("counting", 3, timeout_s=5.0, retries=0, paths=()), SequentialExecutor) and made == [3]
        config = parse_suite(
            {"suite": {"name": "c"}, "scenarios": {"sources": ["sample"], "limit": 1}, "run": {"executor": "counting", "workers": 2}}, "c.toml"
        )
        result = run_suite(config, out=tmp_path / "run", progress=False)
        assert made == [3, 2] and result.num_variants == 1 and result.manifest["executor"] == "counting"
    finally:
        EXECUTORS.remove("counting")
    with pytest.raises(ValueError, match=r"unknown executor 'counting'; known: \['ray', 'sequential'\]"):
        make_executor("counting")


def test_one_run_directory_for_every_reader(tmp_path):
    config = parse_suite(
        {"suite": {"name": "rd"}, "scenarios": {"sources": ["sample"], "limit": 2}, "run": {"executor": "sequential", "seed": 4}}, "rd.toml"
    )
    result = run_suite(config, out=tmp_path / "run", progress=False)
    rd = RunDirectory(result.run_dir)
    assert rd.name == "run" and rd.manifest.name == "manifest.json" and rd.parts.is_dir()
    assert [p.name for p in (rd.summary, rd.metrics, rd.tasks, rd.report, rd.library, rd.replays)] == [
        "summary.parquet", "metrics.parquet", "tasks.jsonl", "report.html", "library", "replays",
    ]  # fmt: skip
    assert rd.summary.exists() and rd.metrics.exists() and not rd.series.exists()  # no save_steps
    manifest = rd.read_manifest()
    assert manifest["suite"] == "rd" and manifest["num_variants"] == 2 and manifest["seed"] == 4
    tasks = rd.read_tasks()
    assert sorted(tasks) == sorted(rd.read_summary()["variant_id"]) and len(tasks) == 2
    assert json.loads(rd.manifest.read_text()) == manifest
    empty = RunDirectory(tmp_path / "nothing")
    for read in (empty.read_manifest, empty.read_tasks, empty.read_summary):
        with pytest.raises(RunError, match="not a run directory"):
            read()
