"""A real interrupt followed by --resume, in a child process (an interrupt is a signal to a whole
process). The suite on a two-node cluster is in test_scale.py, beside the object-store test that
starts the same cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


def test_interrupt_leaves_a_valid_partial_dataset_and_resume_finishes_it(tmp_path):
    # Event-based, not timed: the policy holds every reset after the pre-check's and three
    # variants' until a release file exists, so the interrupt lands after exactly three results
    # however slow the machine is.
    release = tmp_path / "release"
    suite = tmp_path / "slow.toml"
    suite.write_text(
        textwrap.dedent(
            f"""
            [suite]
            name = "slow"
            [scenarios]
            sources = ["sample"]
            [policy]
            name = "faulty_policies:HeldReset"
            options = {{ hold_after = 4, release = {str(release)!r} }}
            [run]
            seed = 2
            executor = "sequential"
            """
        )
    )
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "harness.cli", "run", str(suite), "--out", str(out)]
    # SIGINT at its default in the child, so that Python raises KeyboardInterrupt on it even when
    # pytest runs under a shell that ignores SIGINT (a background job's), as the child would inherit
    child = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    parts = out / "parts" / "summary"
    while len(list(parts.glob("*.parquet"))) < 3:  # one part per variant (18 variants: flush_every 1)
        if child.poll() is not None:
            raise AssertionError(f"the run ended before three results: {child.stderr.read()[-2000:]}")
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)  # the run is held in the fourth variant's reset
    _, stderr = child.communicate(timeout=600)
    assert child.returncode == 130, stderr[-2000:]
    assert "--resume" in stderr

    partial = pd.read_parquet(parts)  # a valid dataset
    assert len(partial) == 3 and partial["variant_id"].is_unique
    assert not (out / "summary.parquet").exists()

    release.touch()
    resumed = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = pd.read_parquet(out / "summary.parquet")
    assert len(summary) == 18 and (summary["status"] == "ok").all()
    assert set(partial["variant_id"]) <= set(summary["variant_id"])
    assert len(list(parts.glob("*.parquet"))) == 18  # the resume ran only the 15 missing
