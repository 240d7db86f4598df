"""Faults in runs (issue 16): configs refused with the key and the expected form, a run never
joins a cluster it was not told to, a leaking policy's workers recycled without changing a
result, a killed driver's Ray processes ended, a resume after a config change names the key."""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from harness import executor as executor_module
from harness.config import MAX_ROUNDS, MAX_VARIANTS, MAX_WORKERS, ConfigError, parse_suite
from harness.runner import RunError, run_suite

HERE = Path(__file__).resolve().parent
SAMPLE = "commonroad-USA_US101-4_1_T-1"
IDS = [f"{SAMPLE}.ego-{i}" for i in (381, 383, 384, 387, 388, 389)]
#: Columns that say how a run went rather than what the driving was.
RUN_COLUMNS = ["run_id", "worker_s", "attempts"]
DECEL = {"uniform": [2.0, 9.0], "unit": "m/s2"}


def _suite(**tables):
    data = {"suite": {"name": "f"}, "scenarios": {"sources": ["sample"]}, **tables}
    return parse_suite(data, "faults.toml")


@pytest.mark.parametrize(
    "tables, key, expected",
    [
        ({"scenarios": {"sources": ["sample"], "window_s": math.nan}}, "scenarios.window_s", "finite number of seconds >= 0, got nan"),
        ({"scenarios": {"sources": ["sample"], "window_s": math.inf}}, "scenarios.window_s", "finite number of seconds >= 0, got inf"),
        ({"scenarios": {"sources": ["sample"], "min_ego_duration_s": math.nan}}, "scenarios.min_ego_duration_s", "got nan"),
        ({"suite": {"name": "../../../../tmp/escape"}}, "suite.name", "plain file name (no path separators"),
        ({"suite": {"name": ".."}}, "suite.name", "plain file name"),
        ({"run": {"workers": 1_000_000}}, "run.workers", f"integer in [0, {MAX_WORKERS}]"),
        ({"run": {"address": "not-an-address"}}, "run.address", '"host:port", "ray://host:port" or "auto"'),
        ({"run": {"max_worker_memory_mb": math.nan}}, "run.max_worker_memory_mb", "got nan"),
        (
            {"mutations": [{"operator": "lead_brake", "params": {"decel": DECEL}, "variants": 10**9}]},
            "mutations.variants", f"integer in [1, {MAX_VARIANTS}] (per scenario), got 1000000000",
        ),
        (
            {"mutations": [{"operator": "lead_brake", "params": {"decel": DECEL}, "sampler": "cem", "rounds": 10**9}]},
            "mutations.rounds", f"integer in [1, {MAX_ROUNDS}], got 1000000000",
        ),
        (
            {"mutations": [{"operator": "lead_brake", "params": {"decel": DECEL}, "sampler": "cem", "objective": "closed_loop_scor"}]},
            "mutations.objective", "'closed_loop_scor' is no numeric summary column; known: ",
        ),
        (
            {"mutations": [{"operator": "lead_brake", "params": {"decel": {"normal": [5, -1], "unit": "m/s2"}}}]},
            "mutations.params.decel.normal", "expected [mean, std, low, high] or {mean, std, low, high}, 4 numbers",
        ),
        (
            {"mutations": [{"operator": "lead_brake", "params": {"decel": {"uniform": [5], "unit": "m/s2"}}}]},
            "mutations.params.decel.uniform", "expected [low, high], 2 numbers",
        ),
    ],
)
def test_a_bad_config_is_refused_with_its_key_and_the_expected_form(tables, key, expected):
    with pytest.raises(ConfigError) as info:
        _suite(**tables)
    assert info.value.source == "faults.toml" and info.value.key == key
    assert expected in info.value.problem


def test_the_bounds_themselves_and_a_real_objective_are_accepted():
    cfg = _suite(
        run={"workers": MAX_WORKERS},
        mutations=[{"operator": "lead_brake", "params": {"decel": DECEL}, "sampler": "cem", "rounds": MAX_ROUNDS, "objective": "min_ttc_s"}],
    )
    assert cfg.run.workers == MAX_WORKERS and cfg.mutations[0].rounds == MAX_ROUNDS


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


def test_an_unreachable_address_is_a_clear_error_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.setattr(executor_module, "CONNECT_TIMEOUT_S", 1.0)
    address = f"127.0.0.1:{_closed_port()}"  # nothing listens
    cfg = _suite(scenarios={"sources": ["sample"], "ids": IDS[:1]}, run={"address": address})
    with pytest.raises(ConfigError) as info:
        run_suite(cfg, out=tmp_path / "run", progress=False)
    assert info.value.key == "run.address" and f"cannot reach a Ray cluster at {address!r} within 1 s" in info.value.problem


def test_an_address_that_answers_but_is_no_ray_cluster_times_out(tmp_path, monkeypatch):
    monkeypatch.setattr(executor_module, "JOIN_TIMEOUT_S", 5.0)
    with socket.socket() as server:  # accepts connections, never speaks (ray.init would retry for ever)
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        cfg = _suite(scenarios={"sources": ["sample"], "ids": IDS[:1]}, run={"address": address})
        with pytest.raises(ConfigError) as info:
            run_suite(cfg, out=tmp_path / "run", progress=False)
    assert info.value.key == "run.address"
    assert f"{address!r} accepts connections but did not answer as a Ray cluster within 5 s" in info.value.problem


def _run_cli(args, env_extra=None, **kwargs):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], env=env, capture_output=True, text=True, **kwargs)


def test_a_run_without_address_never_joins_the_cluster_RAY_ADDRESS_names(tmp_path):
    suite = tmp_path / "local.toml"
    suite.write_text(f'[scenarios]\nsources = ["sample"]\nids = {IDS[:2]!r}\n[run]\nworkers = 1\n')
    done = _run_cli(["run", str(suite), "--out", str(tmp_path / "run")], {"RAY_ADDRESS": f"127.0.0.1:{_closed_port()}"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = pd.read_parquet(tmp_path / "run" / "summary.parquet")
    assert list(summary["variant_id"]) == IDS[:2] and (summary["status"] == "ok").all()


def _leaky(executor_kind, log, **run):
    return parse_suite(
        {
            "suite": {"name": "leaky"},
            "scenarios": {"sources": ["sample"], "ids": IDS},
            "policy": {"name": "faulty_policies:Leaks", "options": {"mb": 8.0, "log": str(log)}},
            "run": {"seed": 5, "workers": 2, "executor": executor_kind, "timeout_s": 120, **run},
        },
        "leaky.toml",
    )


def _episodes_per_process(log: Path) -> Counter:
    return Counter(log.read_text().split())


def test_recycling_a_leaking_policy_s_workers_changes_no_result(executor_kind, tmp_path):
    plain, recycled = tmp_path / "plain.log", tmp_path / "recycled.log"
    a = run_suite(_leaky(executor_kind, plain), out=tmp_path / "a", progress=False)
    b = run_suite(_leaky(executor_kind, recycled, max_variants_per_worker=2), out=tmp_path / "b", progress=False)
    pd.testing.assert_frame_equal(a.summary.drop(columns=RUN_COLUMNS), b.summary.drop(columns=RUN_COLUMNS))
    assert len(a.summary) == 6 and (a.summary["status"] == "ok").all()
    driver = str(os.getpid())  # the policy pre-check resets once here
    if executor_kind == "ray":
        per_process = _episodes_per_process(recycled)
        per_process.pop(driver)
        assert sum(per_process.values()) == 6 and max(per_process.values()) <= 2 and len(per_process) >= 3
        assert max(_episodes_per_process(plain).values()) >= 3  # without a limit a worker keeps going
    else:  # one process: a fresh worker (and policy instance) every 2 variants
        assert _episodes_per_process(recycled)[driver] == 7  # the pre-check's reset and six variants
        made = {name: len(Path(f"{log}.init").read_text().split()) for name, log in (("plain", plain), ("recycled", recycled))}
        assert made == {"plain": 2, "recycled": 4}  # the pre-check's policy, then one per worker


def test_a_worker_over_the_memory_ceiling_is_replaced(ray_local, tmp_path):
    log = tmp_path / "memory.log"
    result = run_suite(_leaky("ray", log, chunk_size=1, max_worker_memory_mb=1.0), out=tmp_path / "run", progress=False)
    assert (result.summary["status"] == "ok").all() and len(result.summary) == 6
    per_process = _episodes_per_process(log)
    per_process.pop(str(os.getpid()))
    assert sorted(per_process.values()) == [1] * 6  # every worker is past 1 MB after its first chunk


def test_resume_after_a_config_change_names_the_key(tmp_path):
    cfg = parse_suite(
        {"suite": {"name": "r"}, "scenarios": {"sources": ["sample"], "ids": IDS[:1]}, "run": {"seed": 2, "executor": "sequential"}},
        "r.toml",
    )
    run_suite(cfg, out=tmp_path / "run", progress=False)
    changed = cfg.replace(run=cfg.run.__class__(seed=3, executor="sequential", workers=4))
    with pytest.raises(RunError, match=re.escape("the suite changed since this run started (run.seed: 2 -> 3)")):
        run_suite(changed, out=tmp_path / "run", resume=True, progress=False)
    moved = cfg.replace(scenarios=cfg.scenarios.__class__(ids=(IDS[1],)))
    with pytest.raises(RunError, match=re.escape(f'scenarios.ids[0]: "{IDS[0]}" -> "{IDS[1]}"')):
        run_suite(moved, out=tmp_path / "run", resume=True, progress=False)
    # how it is executed may change: workers differ above, and alone they resume
    assert run_suite(cfg.replace(run=cfg.run.__class__(seed=2, executor="sequential", workers=4)), out=tmp_path / "run", resume=True, progress=False).num_skipped == 1


def _children(pid: int) -> list[int]:
    from harness.lifetime import _parent, _pids

    return [p for p in _pids() if _parent(p) == pid]


def test_a_killed_driver_leaves_no_ray_process_of_its_session(tmp_path):
    from harness.lifetime import _cmdline, end_session, session_processes

    release = tmp_path / "release"  # never created: the run is held in its second variant
    suite = tmp_path / "held.toml"
    suite.write_text(
        textwrap.dedent(
            f"""
            [scenarios]
            sources = ["sample"]
            [policy]
            name = "faulty_policies:HeldReset"
            options = {{ hold_after = 1, release = {str(release)!r} }}
            [run]
            workers = 1
            chunk_size = 1
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(suite), "--out", str(out)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    session = ""
    try:
        while not list((out / "parts" / "summary").glob("*.parquet")):  # one result in: mid-run
            if child.poll() is not None:
                raise AssertionError(f"the run ended early: {child.stderr.read()[-2000:]}")
            time.sleep(0.1)
        names = {m.group(0) for pid in _children(child.pid) if (m := re.search(r"session_[0-9_-]+[0-9]", _cmdline(pid)))}
        assert len(names) == 1, names  # the driver started one local Ray
        session = names.pop()
        assert len(session_processes(session)) >= 3  # gcs_server, raylet, agents, the worker
        child.send_signal(signal.SIGKILL)
        child.wait()
        give_up = time.monotonic() + 120  # a hang guard only: it ends as soon as they are gone
        while session_processes(session) and time.monotonic() < give_up:
            time.sleep(0.2)
        left = [_cmdline(pid)[:120] for pid in session_processes(session)]
        assert left == [], left
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if session:
            end_session(session)
