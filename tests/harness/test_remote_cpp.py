"""The example C++ planner (examples/cpp_planner), built with Debian's gRPC packages, drives the sample.

It is built once per test session into a temporary directory with cmake. The test skips, naming
what is missing, only when the compiler packages are not installed (.ci/run installs them).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("grpc")

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "examples" / "cpp_planner"
SAMPLE = ROOT / "scenarios" / "sample" / "ngsim_us101"
TOOLS = ("cmake", "c++", "pkg-config", "protoc", "grpc_cpp_plugin")
APT = "apt-get install -y g++ cmake pkg-config libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc"


def _missing() -> list[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if shutil.which("pkg-config") and subprocess.run(["pkg-config", "--exists", "grpc++", "protobuf"]).returncode != 0:
        missing.append("libgrpc++-dev/libprotobuf-dev (pkg-config grpc++ protobuf)")
    return missing


@pytest.fixture(scope="module")
def cpp_planner(tmp_path_factory) -> Path:
    missing = _missing()
    if missing:
        pytest.skip(f"the C++ planner needs {', '.join(missing)}: {APT}")
    build = tmp_path_factory.mktemp("cpp_planner")
    for argv in (
        ["cmake", "-S", str(SOURCE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
        ["cmake", "--build", str(build), "-j2"],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    binary = build / "cpp_planner"
    assert binary.is_file()
    return binary


@pytest.mark.parametrize(("action", "flags"), [("trajectory", ""), ("continuous", " --unary-only")])
def test_cpp_planner_drives_a_sample_scenario_to_the_end(cpp_planner, action, flags, tmp_path):
    """On the Session call, and (``--unary-only``: Session UNIMPLEMENTED) on unary calls."""
    from harness.config import parse_suite
    from harness.runner import run_suite

    suite = parse_suite({
        "suite": {"name": f"cpp-{action}"},
        "scenarios": {"sources": [str(SAMPLE)], "ids": ["commonroad-USA_US101-4_1_T-1.ego-383"]},
        "policy": {"command": f"{cpp_planner} --port {{port}}{flags}"},
        "env": {"observation": ["state"], "action": action},
        "run": {"seed": 0},
    })
    result = run_suite(suite, out=tmp_path / "run", executor="sequential", progress=False)
    row = result.summary.iloc[0]
    assert row["status"] == "ok", row["error"]
    assert row["policy"] == "cpp_route_follower"  # the name its Describe reply gives
    assert row["termination"] in ("goal", "log_end")  # driven to the end: no collision, not off the road
    assert row["collisions"] == 0 and row["progress_ratio"] > 0.95
    assert row["num_steps"] >= 20 and row["planner_latency_p50_ms"] > 0
    logs = list((tmp_path / "run" / "planners").glob("planner-*.log"))
    log = logs[0].read_text() if len(logs) == 1 else ""
    assert "cpp_planner: serving on 127.0.0.1:" in log
    assert ("cpp_planner: Session call opened" in log) == (not flags)


def test_cpp_planner_refuses_discrete_actions(cpp_planner, tmp_path):
    from harness.config import parse_suite
    from harness.runner import run_suite

    suite = parse_suite({
        "suite": {"name": "cpp-discrete"},
        "scenarios": {"sources": [str(SAMPLE)], "limit": 1},
        "policy": {"command": f"{cpp_planner} --port {{port}}"},
        "env": {"observation": ["state"], "action": "discrete"},
    })
    row = run_suite(suite, out=tmp_path / "run", executor="sequential", progress=False).summary.iloc[0]
    assert row["status"] == "error"
    assert "STATUS_ERROR: cpp_route_follower answers continuous or trajectory actions only" in row["error"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
