"""Both executors: one result per task, failures contained, a dead worker retried then reported."""

from __future__ import annotations

import os
import time

import pytest

from harness.executor import make_executor


class FaultyWorker:
    """Squares numbers; some tasks raise, hang or kill their process."""

    def __init__(self) -> None:
        self.calls = 0

    def run(self, task):
        kind, value = task
        self.calls += 1
        if kind == "raise":
            raise RuntimeError(f"policy crashed on {value}")
        if kind == "hang":
            time.sleep(60)
        if kind == "exit":
            os._exit(3)
        return value * value


def make_worker():
    return FaultyWorker()


def run(kind, tasks, **options):
    with make_executor(kind, workers=2, **options) as executor:
        return sorted(executor.map(make_worker, tasks), key=lambda r: r.index)


def test_every_task_gets_its_result(executor_kind):
    results = run(executor_kind, [("ok", i) for i in range(20)], timeout_s=30)
    assert [r.index for r in results] == list(range(20))
    assert results[0].error == ""
    assert [r.value for r in results] == [i * i for i in range(20)]
    assert all(r.ok and r.attempts == 1 and r.error == "" for r in results)


def test_a_raising_task_fails_alone(executor_kind):
    tasks = [("ok", 1), ("raise", 2), ("ok", 3)]
    results = run(executor_kind, tasks, timeout_s=30)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.startswith("RuntimeError: policy crashed on 2")
    assert results[2].value == 9


def test_a_hung_task_times_out_and_the_others_finish(executor_kind):
    tasks = [("ok", 1), ("hang", 0), ("ok", 4)]
    start = time.monotonic()
    results = run(executor_kind, tasks, timeout_s=1.0, chunk_size=1) if executor_kind == "ray" else run(executor_kind, tasks, timeout_s=1.0)
    assert time.monotonic() - start < 30
    assert [r.ok for r in results] == [True, False, True]
    assert "timeout after 1 s" in results[1].error


def test_a_dead_worker_is_retried_then_reported(ray_local):
    tasks = [("ok", i) for i in range(6)] + [("exit", 0)] + [("ok", i) for i in range(6, 12)]
    results = run("ray", tasks, timeout_s=30, retries=1, chunk_size=3)
    dead = results[6]
    assert not dead.ok and "worker died" in dead.error and dead.attempts == 2
    others = [r for r in results if r.index != 6]
    assert all(r.ok for r in others) and len(others) == 12
    assert [r.value for r in others] == [i * i for i in range(12)]


def test_unknown_executor():
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("threads")
