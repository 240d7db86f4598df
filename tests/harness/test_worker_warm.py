"""The variant worker compiles the reactive agents' kernels when it builds its twin (``VariantWorker``),
before its first episode's steps, and only then."""

from __future__ import annotations

from harness.worker import VariantWorker
from sim import agent_kernels


def test_the_worker_warms_the_kernels_when_it_builds_its_env(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(agent_kernels, "warm", lambda: calls.append(1))
    worker = VariantWorker({}, "constant_velocity")
    try:
        assert calls == []  # nothing at construction (the factory runs in the driver too)
        worker.warm()  # what the Ray actor calls at its start; the sequential worker's first episode does the same
        assert calls == [1] and worker._env is not None
        worker.warm()  # the env is built: no second warm-up
        assert calls == [1]
    finally:
        worker.close()
    worker.warm()  # a closed worker builds a new env, and warms (a no-op once compiled)
    worker.close()
    assert calls == [1, 1]
