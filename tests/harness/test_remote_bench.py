"""``benchmarks/bench_remote.py``'s verdict on the issue's target (3x of in process, frames on a Unix socket)."""

from __future__ import annotations

import importlib.util
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("grpc")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_remote.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_remote", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_target_is_read_off_frames_on_the_unix_socket(bench):
    assert (bench.TARGET_X, bench.TARGET_FORM) == (3.0, "frames-unix")


@pytest.mark.parametrize(
    ("ratio", "same", "verified", "expected"),
    [
        (2.4, True, True, "met"),
        (3.0, True, True, "met"),
        (3.2, True, True, "NOT met (3.20x is over 3x)"),
        (2.4, False, True, "NOT met (the remote rollouts differ from the in-process ones)"),
        (2.4, True, False, "NOT met (a server or a transport was not the intended one)"),
        (3.5, False, False, "NOT met (3.50x is over 3x; the remote rollouts differ from the in-process ones; "
                            "a server or a transport was not the intended one)"),
        (float("nan"), True, True, "NOT met (nanx is over 3x)"),
    ],
)
def test_met_needs_the_ratio_equal_rollouts_and_verified_servers(bench, ratio, same, verified, expected):
    assert bench.verdict(ratio, same, verified) == expected


CPP_BENCH = Path(__file__).resolve().parents[2] / "examples" / "cpp_planner" / "bench.py"


@pytest.fixture(scope="module")
def cpp_bench():
    spec = importlib.util.spec_from_file_location("cpp_bench", CPP_BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_planner(tmp_path, body: str) -> str:
    """A stand-in for cpp_planner running ``body`` (sh)."""
    script = tmp_path / "fake_planner"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # a reviewer's fake.sh: the frames one prints garbage and exits; the others serve (hang here)
        ('case "$*" in *--socket*) echo garbage; exit 1;; esac\nexec sleep 60', "the frames-unix planner printed 'garbage\\n'"),
        ("exec sleep 60", "the frames-unix planner printed nothing within 0.5 s"),  # readline() had no timeout
    ],
)
def test_the_cpp_bench_stops_every_planner_when_one_does_not_start(cpp_bench, tmp_path, monkeypatch, body, message):
    binary = _fake_planner(tmp_path, body)
    started: list = []
    popen = subprocess.Popen

    def record(*args, **kwargs):
        started.append(popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", record)
    began = time.monotonic()
    try:
        with pytest.raises(SystemExit) as caught:
            if "garbage" in body:  # the default timeout (as the old start() was called)
                cpp_bench.start(binary, str(tmp_path))
            else:
                cpp_bench.start(binary, str(tmp_path), timeout_s=0.5)
        assert str(caught.value) == message
        assert time.monotonic() - began < 5.0
        assert len(started) == len(cpp_bench.FORMS)  # all were started ...
        assert [p.returncode is not None for p in started] == [True] * len(started)  # ... and all stopped (were left running)
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_the_cpp_bench_reads_each_planners_address(cpp_bench, tmp_path):
    binary = _fake_planner(tmp_path, 'echo "cpp_planner: serving on 127.0.0.1:5$$"\nexec sleep 60')
    procs, addresses = cpp_bench.start(binary, str(tmp_path), timeout_s=5.0)
    try:
        assert set(addresses) == set(cpp_bench.FORMS)
        assert addresses == {form: f"127.0.0.1:5{proc.pid}" for form, proc in procs.items()}
    finally:
        cpp_bench.stop(procs)
    assert all(proc.returncode is not None for proc in procs.values())
