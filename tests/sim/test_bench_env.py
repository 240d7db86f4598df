"""``benchmarks/bench_env.py``: a failing child process shows why (its stderr), instead of a bare
``CalledProcessError``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sim import agent_kernels

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_env  # noqa: E402


@pytest.mark.skipif(not agent_kernels.AVAILABLE, reason="numba is not installed: no child process runs")
def test_a_failing_first_episode_child_prints_its_stderr(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit, match=r"the first episode \(empty numba cache \(compiling\)\) failed \(exit code 1"):
        bench_env.first_episode(tmp_path)  # no Waymo JSON there: the child stops at once
    assert f"no Waymo JSON scenario under {tmp_path / 'waymo_json'}" in capsys.readouterr().err
