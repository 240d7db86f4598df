"""``benchmarks/bench_remote.py``'s verdict on the issue's target (3x of in process, frames on a Unix socket)."""

from __future__ import annotations

import importlib.util
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
