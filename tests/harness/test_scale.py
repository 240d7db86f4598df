"""Scaling out: more workers than CPUs, scenarios shipped through Ray's object store, URI libraries."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import warnings

import pytest

from harness.config import parse_suite
from harness.executor import RayExecutor

IDS = [f"commonroad-USA_US101-4_1_T-1.ego-{i}" for i in (381, 383, 384)]


class _Sleeper:
    """A worker whose task sleeps ``task`` seconds and returns it."""

    def run(self, task: float) -> float:
        time.sleep(task)
        return task


def test_more_workers_than_cpus_warns_and_uses_the_cpus(ray_local):
    with pytest.warns(RuntimeWarning, match="64 workers asked for but the Ray cluster has 2 CPUs; using 2"):
        executor = RayExecutor(64, timeout_s=2.0, chunk_size=1)
        assert executor.num_workers == 2
    executor.KILL_GRACE_S = 0.5
    try:
        results = sorted(executor.map(_Sleeper, [0.2] * 12), key=lambda r: r.index)
    finally:
        executor.close()
    assert [r.ok for r in results] == [True] * 12 and [r.attempts for r in results] == [1] * 12


def test_a_suite_with_workers_far_above_the_cpus_has_no_false_timeout(ray_local, tmp_path):
    from harness.runner import run_suite

    cfg = parse_suite(
        {"suite": {"name": "many"}, "scenarios": {"sources": ["sample"], "ids": IDS}, "run": {"seed": 3, "workers": 64, "timeout_s": 60}},
        "many.toml",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_suite(cfg, out=tmp_path / "run", progress=False)
    assert any("64 workers asked for" in str(w.message) for w in caught)
    assert result.num_errors == 0 and list(result.summary["variant_id"]) == IDS
    assert result.manifest["workers"] == 2


def test_actors_waiting_for_a_cpu_on_a_cluster_time_nothing_out(tmp_path):
    """Three actors on a one-CPU cluster: two wait for the autoscaler; the timeout (1 s + 0.5 s
    grace) is far shorter than the run, yet no task times out (the clock starts on the worker)."""
    script = textwrap.dedent(
        """
        import json, time, warnings
        import ray
        from ray.cluster_utils import Cluster
        from harness.executor import RayExecutor, init_ray

        class Sleeper:
            def run(self, task):
                time.sleep(task)
                return task

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        init_ray(cluster.address)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            executor = RayExecutor(3, address=cluster.address, timeout_s=1.0, chunk_size=1, retries=0)
            workers = executor.num_workers
        executor.KILL_GRACE_S = 0.5
        results = list(executor.map(Sleeper, [0.3] * 10))
        executor.close()
        print(json.dumps({"workers": workers, "ok": sum(r.ok for r in results), "n": len(results),
                          "errors": sorted({r.error for r in results if not r.ok}),
                          "warning": [str(w.message) for w in caught]}))
        ray.shutdown()
        cluster.shutdown()
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = done.stdout.strip().splitlines()[-1]
    assert '"workers": 3, "ok": 10, "n": 10, "errors": []' in line, line
    assert "3 workers asked for but the Ray cluster has 1 CPUs; waiting for the autoscaler" in line
