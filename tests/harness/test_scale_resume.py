"""The streaming driver: variants planned lazily, tasks.jsonl written as they are planned, and a
real interrupt (SIGINT) followed by ``--resume`` that runs exactly the missing variants, on both
executors; the finished run equals an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal

import pandas as pd
import pyarrow.dataset as ds
import pytest

from evaluators.report import RUN_COLUMNS
from harness.config import parse_suite
from harness.rundir import IdSet, RunDirectory, task_line
from harness.runner import count_planned, plan_variants, run_suite, select_scenarios
from harness.worker import VariantTask
from sim.policies import make_policy

IDS = [f"commonroad-USA_US101-4_1_T-1.ego-{i}" for i in (381, 383, 384)]
#: 3 scenarios x (the original + 3 road_friction samples)
VARIANTS = 12


class InterruptingExpert:
    """The expert; the reset that brings the count in file ``count`` (one byte per reset, in any
    process) to ``after`` sends SIGINT to process ``pid``: an interrupt at a known point."""

    def __init__(self, after: int, pid: int, count: str) -> None:
        self.after, self.pid, self.count = int(after), int(pid), count
        self.expert = make_policy("expert")

    def reset(self, scenario_info) -> None:
        with open(self.count, "ab") as fh:
            fh.write(b".")
        if os.path.getsize(self.count) == self.after:
            os.kill(self.pid, signal.SIGINT)
        self.expert.reset(scenario_info)

    def act(self, observation):
        return self.expert.act(observation)


def _suite(count: str, after: int = 5):
    return parse_suite(
        {
            "suite": {"name": "lazy"},
            "scenarios": {"sources": ["sample"], "ids": IDS},
            "env": {"max_steps": 10},
            "policy": {"name": "test_scale_resume:InterruptingExpert", "options": {"after": after, "pid": os.getpid(), "count": count}},
            "mutations": [{"name": "mu", "operator": "road_friction", "variants": 3, "params": {"mu": {"uniform": [0.3, 1.0]}}}],
            "run": {"seed": 7, "workers": 2, "chunk_size": 1, "include_original": True, "timeout_s": 120},
        },
        "lazy.toml",
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The same suite run through without an interrupt (its count never hits ``after``)."""
    tmp = tmp_path_factory.mktemp("whole")
    result = run_suite(_suite(str(tmp / "count"), after=-1), out=tmp / "run", executor="sequential", progress=False)
    assert result.num_variants == VARIANTS and result.num_errors == 0
    return result.summary.drop(columns=list(RUN_COLUMNS) + ["run_id"])


def _part_ids(run_dir) -> list[str]:
    return ds.dataset(run_dir / "parts" / "summary", format="parquet").to_table(columns=["variant_id"]).column("variant_id").to_pylist()


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt here even when pytest runs under a shell that ignores it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_interrupt_then_resume_runs_exactly_the_missing_variants(executor_kind, uninterrupted, tmp_path, sigint_raises):
    config = _suite(str(tmp_path / "count"))
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_suite(config, out=out, executor=executor_kind, progress=False)

    finished = _part_ids(out)
    lines = (out / "tasks.jsonl").read_text().splitlines()
    assert 0 < len(finished) < VARIANTS and len(set(finished)) == len(finished)
    assert len(lines) < VARIANTS  # planned lazily: the variants after the interrupt were never planned
    planned = [json.loads(line)["variant_id"] for line in lines]
    assert set(finished) <= set(planned)  # every stored result has its task (replay finds it)
    assert not (out / "summary.parquet").exists()

    resumed = run_suite(config, out=out, executor=executor_kind, resume=True, progress=False)
    assert resumed.num_skipped == len(finished) and resumed.num_variants == VARIANTS and resumed.num_errors == 0
    rows = _part_ids(out)
    assert len(rows) == VARIANTS and len(set(rows)) == VARIANTS  # none lost, none run twice
    lines = (out / "tasks.jsonl").read_text().splitlines()
    assert len(lines) == VARIANTS and len({json.loads(line)["variant_id"] for line in lines}) == VARIANTS
    summary = resumed.summary.drop(columns=list(RUN_COLUMNS) + ["run_id"])
    pd.testing.assert_frame_equal(summary, uninterrupted)
    assert RunDirectory(out).find_task(rows[-1]).variant_id == rows[-1]


def test_lazy_plan_is_the_eager_spec_path_and_counted_without_planning(tmp_path):
    """Each planned task's spec JSON and id are exactly ``VariantSpec.create``'s; the count is exact;
    each tasks.jsonl line is ``json.dumps(sort_keys=True)``'s."""
    from harness.runner import _sweep
    from scenarios.library import ScenarioLibrary
    from scenarios.mutations import VariantSpec, variant_seeds
    from harness.runner import _seed

    config = _suite(str(tmp_path / "count"))
    scenarios = select_scenarios(config, [str(ScenarioLibrary("sample").root)])
    tasks = list(plan_variants(config, scenarios))
    assert len(tasks) == count_planned(config, scenarios) == VARIANTS
    name, plan = _sweep(config, 0)
    points = plan.make_sampler().propose(plan.variants)
    library = ScenarioLibrary("sample")
    mutated = [t for t in tasks if t.spec_json]
    for k, (root, sid) in enumerate(scenarios):
        scenario = library.load(sid)
        for point, seed, task in zip(points, variant_seeds(_seed(plan.seed, sid), len(points)), mutated[3 * k : 3 * k + 3]):
            spec = VariantSpec.create(scenario, plan.space.chain(point), seed)
            assert (task.spec_json, task.variant_id, task.seed, task.mutation) == (spec.to_json(), spec.id, seed, name)
    for task in tasks:
        assert task_line(task) == json.dumps(task.to_dict(), sort_keys=True) + "\n"
    odd = VariantTask('a"b\u00e9', "s\\", "/l", "", 2**40, "m", "{}")
    assert task_line(odd) == json.dumps(odd.to_dict(), sort_keys=True) + "\n"


def test_id_set_holds_digests_compactly():
    ids = [f"scenario-{i}~{i * 7919:012x}" for i in range(5000)]
    known = IdSet.from_batches([ids[:2000], ids[2000:]])
    assert len(known) == 5000 and known.nbytes == 5000 * 16
    assert all(i in known for i in ids[::97]) and "scenario-1~nope" not in known and 3 not in known
    assert "x" not in IdSet()


def test_a_tasks_file_cut_mid_line_reads_and_appends_cleanly(tmp_path):
    """A run killed mid-write leaves a last line cut short: reading skips it, appending drops it."""
    from harness.rundir import TaskLog

    rd = RunDirectory(tmp_path)
    tasks = [VariantTask(f"s~{i:012x}", "s", "/lib", '{"chain":[]}', i, "m", "{}") for i in range(3)]
    rd.tasks.write_text(task_line(tasks[0]) + task_line(tasks[1])[:25])
    assert [t.variant_id for t in rd.iter_tasks()] == [tasks[0].variant_id]
    with TaskLog(rd.tasks) as log:
        log.add(tasks[1])
        log.add(tasks[2])
    assert [t.variant_id for t in rd.iter_tasks()] == [t.variant_id for t in tasks]
    assert rd.find_task(tasks[2].variant_id) == tasks[2] and rd.find_task("s~nope") is None
    assert "s~" + "0" * 12 in rd.task_ids() and len(rd.task_ids()) == 3
