"""Scaling out: more workers than CPUs, scenarios shipped through Ray's object store, URI libraries."""

from __future__ import annotations

import pickle
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


class _HangsOnStart:
    """A worker whose warm-up (building its twin) never ends."""

    def warm(self) -> None:
        time.sleep(3600)

    def run(self, task: float) -> float:
        return task


def test_a_worker_whose_construction_hangs_is_a_clear_error(ray_local):
    from harness.executor import WorkerStartupError

    executor = RayExecutor(1, timeout_s=5.0, chunk_size=1, retries=1, startup_timeout_s=1.0)
    try:
        with pytest.raises(WorkerStartupError, match=r"did not finish starting \(building its twin and plug-ins\) within 1 s, 2 times"):
            list(executor.map(_HangsOnStart, [0.1, 0.2]))
    finally:
        executor.close()


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


def test_a_uri_library_reads_like_its_directory():
    from scenarios.errors import ScenarioError
    from scenarios.library import ScenarioLibrary, sample_path

    local, remote = ScenarioLibrary("sample"), ScenarioLibrary(sample_path().as_uri())
    assert remote.ids() == local.ids() and len(remote) == 18
    for scenario_id in remote.ids()[:3]:
        assert pickle.dumps(remote.load(scenario_id)) == pickle.dumps(local.load(scenario_id))
    with pytest.raises(ScenarioError, match="read-only"):
        remote.append([])
    with pytest.raises(ScenarioError, match="file:///no/such/lib: not a scenario library"):
        ScenarioLibrary("file:///no/such/lib")


def test_workers_that_cannot_open_the_library_get_scenarios_through_the_object_store(tmp_path):
    """Two-node cluster whose worker processes cannot open the library (any attempt raises, as on
    a node without the driver's disk; the driver reads it lazily, as it plans), so workers can
    only have their scenarios from the object store; the results equal the sequential run's."""
    script = textwrap.dedent(
        f"""
        import json, shutil
        from pathlib import Path
        import pandas as pd
        import ray
        from ray.cluster_utils import Cluster
        from harness.config import parse_suite
        from harness.executor import EXECUTORS, RayExecutor, _ActorBody
        from harness.runner import run_suite
        from harness.worker import ShippedTask
        from scenarios.library import ScenarioLibrary, sample_path

        tmp = Path({str(tmp_path)!r})
        lib = tmp / "lib"
        shutil.copytree(sample_path(), lib)
        cfg = parse_suite({{"suite": {{"name": "ship"}}, "scenarios": {{"sources": [str(lib)], "ids": {IDS!r}}},
                            "mutations": [{{"name": "lead_brake", "operator": "lead_brake", "variants": 2,
                                            "params": {{"decel": {{"uniform": [3.0, 8.0], "unit": "m/s2"}}, "onset_s": {{"uniform": [1.0, 3.0], "unit": "s"}}}}}}],
                            "run": {{"seed": 5, "workers": 2, "chunk_size": 1, "timeout_s": 120, "include_original": True}}}}, "ship.toml")
        sequential = run_suite(cfg, out=tmp / "seq", executor="sequential", progress=False)

        seen = {{}}
        root = str(lib.resolve())

        def blind():
            # this process cannot open the library (as on a node without the driver's disk)
            from scenarios.library import store

            original = store.ScenarioLibrary.__init__

            def refuse(self, path, *args, **kwargs):
                if str(path).startswith(root):
                    raise FileNotFoundError(f"{{path}}: no such directory on this node")
                original(self, path, *args, **kwargs)

            store.ScenarioLibrary.__init__ = refuse

        class BlindBody(_ActorBody):
            def __init__(self, *args):
                blind()
                super().__init__(*args)

            def probe(self):
                try:
                    ScenarioLibrary(root)
                    return "opened"
                except FileNotFoundError:
                    return "refused"

        class HidingExecutor(RayExecutor):
            # actors blind to the library; counts the tasks that carry their scenario

            def _actor_class(self):
                return ray.remote(num_cpus=1, max_restarts=0)(BlindBody)

            def map(self, factory, tasks, total=None):
                def counted():  # tasks are drawn lazily: count them as they go
                    for task in tasks:
                        seen["shipped"] = seen.get("shipped", 0) + isinstance(task, ShippedTask)
                        yield task
                if "probe" not in seen:  # a CPU-less actor of the same body, asked to open the library
                    prober = ray.remote(num_cpus=0)(BlindBody).remote(factory, 1.0)
                    seen["probe"] = ray.get(prober.probe.remote(), timeout=120)
                    ray.kill(prober)
                yield from super().map(factory, counted(), total)

        EXECUTORS.decorator("hiding")(lambda workers=0, **options: HidingExecutor(workers, **options))
        cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1, "include_dashboard": False}})
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        shipped = run_suite(cfg, out=tmp / "ray", executor="hiding", address=cluster.address, progress=False)
        drop = ["run_id", "worker_s", "attempts"]
        pd.testing.assert_frame_equal(shipped.summary.drop(columns=drop), sequential.summary.drop(columns=drop))
        m1 = pd.read_parquet(tmp / "ray" / "metrics.parquet").drop(columns=["run_id"])
        m0 = pd.read_parquet(tmp / "seq" / "metrics.parquet").drop(columns=["run_id"])
        pd.testing.assert_frame_equal(m1, m0)
        # the plain Ray executor on the same two nodes, whose actors open the library themselves
        plain = run_suite(cfg, out=tmp / "plain", executor="ray", address=cluster.address, progress=False)
        pd.testing.assert_frame_equal(plain.summary.drop(columns=drop), sequential.summary.drop(columns=drop))
        alive = len([n for n in ray.nodes() if n["Alive"]])
        print(json.dumps({{"variants": shipped.num_variants, "errors": shipped.num_errors, "nodes": alive,
                          "shipped": seen["shipped"], "probe": seen["probe"], "plain_errors": plain.num_errors,
                          "manifest_shipped": shipped.manifest["scenarios_shipped"],
                          "seq_variants": sequential.num_variants, "rejected": sum(shipped.rejected.values()),
                          "seq_rejected": sum(sequential.rejected.values())}}))
        ray.shutdown()
        cluster.shutdown()
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = done.stdout.strip().splitlines()[-1]
    # 3 originals + 6 lead_brake variants, all 9 shipped; 5 are rejected (no lead car) on the workers
    expected = ('"variants": 4, "errors": 0, "nodes": 2, "shipped": 9, "probe": "refused", "plain_errors": 0, '
                '"manifest_shipped": 3, "seq_variants": 4, "rejected": 5, "seq_rejected": 5')
    assert expected in line, line


def test_adaptive_rounds_with_rejection_on_the_workers_are_identical_on_both_executors(ray_local, tmp_path):
    """Cross-entropy rounds: every proposed point is either a result row or a rejected count
    (the mutation is checked on the worker), and both executors give the same tables."""
    from harness.runner import run_suite

    cfg = parse_suite(
        {
            "suite": {"name": "cem"},
            "scenarios": {"sources": ["sample"], "limit": 3},
            "policy": {"name": "idm"},
            "mutations": [{
                "name": "brake", "operator": "lead_brake", "sampler": "cem", "variants": 4, "rounds": 2,
                "params": {"decel": {"uniform": [2.0, 9.0], "unit": "m/s2"}, "onset_s": {"uniform": [0.5, 4.0], "unit": "s"}},
            }],
            "run": {"seed": 2, "workers": 2, "timeout_s": 120, "include_original": False},
        },
        "cem.toml",
    )  # fmt: skip
    runs = [run_suite(cfg, out=tmp_path / kind, executor=kind, progress=False) for kind in ("sequential", "ray")]
    for result in runs:
        assert result.num_variants + sum(result.rejected.values()) == 3 * 4 * 2
        assert result.manifest["num_rejected"] == sum(result.rejected.values())
        assert set(result.summary["status"]) <= {"ok"} and set(result.summary["mutation"]) == {"brake"}
        assert all(key.startswith("brake:") for key in result.rejected)
    assert runs[0].rejected == runs[1].rejected and runs[0].rejected
    drop = ["run_id", "worker_s", "attempts"]
    import pandas as pd

    pd.testing.assert_frame_equal(runs[0].summary.drop(columns=drop), runs[1].summary.drop(columns=drop))
