"""drivetwin replay and report on a small sequential run of the built-in sample.

The run uses a policy that drives like the expert except on one target variant, where it raises
with an HTML payload in its message: so the run holds ok rows and an error row, and the report
must escape what the policy said.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from evaluators import metric_specs
from harness.cli import main
from harness.config import parse_suite
from harness.replay import RUN_ONLY_COLUMNS, ReplayError, Replayer
from harness.report import build_report, replay_command
from harness.runner import run_suite

SAMPLE = "commonroad-USA_US101-4_1_T-1"
OK_IDS = [f"{SAMPLE}.ego-381", f"{SAMPLE}.ego-475"]
FAILING = f"{SAMPLE}.ego-383"
PAYLOAD = "<script>alert('owned')</script> & <b>bold</b>"
POLICY_MODULE = "drivetwin_test_script_policy"
POLICY_SOURCE = f'''
from sim.policies import make_policy


class ScriptInMessage:
    """The expert, except on ``target`` where it raises at its 5th action with an HTML payload."""

    def __init__(self, target):
        self.target, self.expert, self.armed, self.steps = target, make_policy("expert"), False, 0

    def reset(self, scenario_info):
        self.armed, self.steps = scenario_info["scenario_id"] == self.target or self.target == "*", 0
        self.expert.reset(scenario_info)

    def act(self, observation):
        self.steps += 1
        if self.armed and self.steps == 5:
            raise RuntimeError({PAYLOAD!r})
        return self.expert.act(observation)
'''


def _suite(ids: list[str], target: str) -> object:
    return parse_suite(
        {
            "suite": {"name": "replay-test"},
            "scenarios": {"sources": ["sample"], "ids": ids},
            "policy": {"name": f"{POLICY_MODULE}:ScriptInMessage", "options": {"target": target}},
            "env": {"observation": ["state"], "dynamics": "bicycle", "agents_mode": "replay"},
            "run": {"seed": 3, "workers": 1, "timeout_s": 60},
        },
        "test-suite.toml",
    )


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory):
    """The test policy, importable (as a run's ``package.module:Name`` policy must be) for the module."""
    folder = tmp_path_factory.mktemp("policy")
    (folder / f"{POLICY_MODULE}.py").write_text(textwrap.dedent(POLICY_SOURCE))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(folder))
        yield folder
    sys.modules.pop(POLICY_MODULE, None)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, policy_path):
    out = tmp_path_factory.mktemp("runs") / "run"
    result = run_suite(_suite([*OK_IDS, FAILING], FAILING), out=out, executor="sequential", progress=False)
    assert result.num_variants == 3 and result.num_errors == 1
    return out


def _same(a: object, b: object) -> bool:
    """Exact equality of two summary cells; every kind of missing (None, NaN) equals every other."""
    missing = [v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) for v in (a, b)]
    if any(missing):
        return all(missing)
    a, b = (v.item() if isinstance(v, np.generic) else v for v in (a, b))
    return a == b


def test_replay_reproduces_every_stored_column(run_dir):
    stored = pd.read_parquet(run_dir / "summary.parquet").set_index("variant_id", drop=False)
    metric_columns = [spec.name for spec in metric_specs()]
    compared = [c for c in stored.columns if c not in RUN_ONLY_COLUMNS]
    assert set(metric_columns) <= set(compared)
    with Replayer(run_dir) as replayer:
        for variant_id in [*OK_IDS, FAILING]:
            result = replayer.replay(variant_id)
            row = stored.loc[variant_id]
            differing = [c for c in compared if not _same(row[c], result.row.get(c))]
            assert differing == [], f"{variant_id}: {[(c, row[c], result.row.get(c)) for c in differing]}"
            assert result.exact and result.mismatches == []
    assert stored.loc[FAILING, "status"] == "error" and "owned" in stored.loc[FAILING, "error"]


def test_cli_replay_check_passes_and_writes_a_real_png(run_dir, capsys):
    assert main(["replay", OK_IDS[1], "--run", str(run_dir), "--check"]) == 0
    out = capsys.readouterr().out
    picture = run_dir / "replays" / f"{OK_IDS[1]}.png"
    assert "exact" in out and str(picture) in out and "closed_loop_score" in out
    data = picture.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.width == 800 and 300 < image.height < 1400
    assert len(image.getcolors(maxcolors=1 << 24)) > 50  # a picture, not a blank canvas


def test_cli_replay_writes_an_animated_gif(run_dir, tmp_path):
    out = tmp_path / "anim.gif"
    assert main(["replay", OK_IDS[0], "--run", str(run_dir), "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data[:6] == b"GIF89a"
    image = Image.open(io.BytesIO(data))
    assert image.size == (400, 400) and image.n_frames > 5


def test_a_tampered_summary_fails_the_check_naming_the_column(run_dir, tmp_path, capsys):
    copy = tmp_path / "tampered"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("replays", "report.html"))
    path = copy / "summary.parquet"
    table = pq.read_table(path)
    frame = table.to_pandas()
    row = frame["variant_id"] == OK_IDS[0]
    frame.loc[row, "min_distance_m"] = frame.loc[row, "min_distance_m"] + 1e-9
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), path)

    assert main(["replay", OK_IDS[0], "--run", str(copy), "--check", "--out", str(tmp_path / "t.png")]) == 1
    captured = capsys.readouterr()
    assert "min_distance_m" in captured.err and "MISMATCH" in captured.out
    assert main(["replay", OK_IDS[1], "--run", str(copy), "--check", "--out", str(tmp_path / "u.png")]) == 0


def test_unknown_variant_and_unimportable_policy_are_usage_errors(run_dir, tmp_path, capsys):
    assert main(["replay", f"{SAMPLE}.ego-99999", "--run", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "ego-99999" in err and str(run_dir) in err

    copy = tmp_path / "moved"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("replays", "report.html"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"]["policy"]["name"] = "no_such_package_here.planner:Planner"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ReplayError, match="not importable"):
        Replayer(copy)
    assert main(["replay", OK_IDS[0], "--run", str(copy)]) == 2
    assert "PYTHONPATH" in capsys.readouterr().err


def test_report_shows_the_worst_variants_and_escapes_messages(run_dir, capsys):
    assert main(["report", str(run_dir), "--worst", "2"]) == 0
    assert str(run_dir / "report.html") in capsys.readouterr().out
    page = (run_dir / "report.html").read_text()
    for rank, variant_id in enumerate(OK_IDS, start=1):  # the only two ok variants: the two worst
        assert f"<h3>#{rank} {variant_id}</h3>" in page
        assert replay_command(variant_id, run_dir.resolve()) in page
    assert page.count('<img src="data:image/png;base64,') == 3  # histograms + two bird's-eye pictures
    assert "Replayed exactly" in page
    assert "<script>" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert 'src="http' not in page and "<link" not in page  # self-contained


def test_report_of_a_run_where_every_variant_failed(tmp_path, policy_path):
    run = tmp_path / "all-failed"
    result = run_suite(_suite([FAILING], "*"), out=run, executor="sequential", progress=False)
    assert result.num_errors == result.num_variants == 1
    path = build_report(run, out=tmp_path / "r" / "page.html")
    page = path.read_text()
    assert "no variant ran to the end" in page.lower() and "<script>" not in page
    assert replay_command(FAILING, run.resolve()) in page  # the error's replay command
    assert "data:image" not in page
