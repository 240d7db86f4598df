"""What a new user trips on: a policy that cannot work stops the run before it starts, errors are
grouped with where they came from, modules in the working directory import under both
executors, ``report`` says when it cannot draw, ``--version``, ``--policy``, close scenario ids."""

from __future__ import annotations

import json
import sys
import textwrap

import pandas as pd
import pytest

from harness.cli import main

SAMPLE = "commonroad-USA_US101-4_1_T-1"
IDS = [f"{SAMPLE}.ego-{i}" for i in (381, 383, 384)]

#: A user's planner: drives like the expert, then raises on its third step in every scenario.
PLANNER = '''\
from sim.policies import make_policy


class Planner:
    def __init__(self, fail_at=3):
        self.expert, self.fail_at, self.steps = make_policy("expert"), fail_at, 0

    def reset(self, info):
        self.expert.reset(info)
        self.steps = 0

    def act(self, observation):
        self.steps += 1
        if self.steps == self.fail_at:
            raise RuntimeError("planner blew up")
        return self.expert.act(observation)


class NoMap(Planner):
    def reset(self, info):
        raise KeyError("hd_map")
'''
#: The line of ``PLANNER`` that raises (1-based).
RAISE_LINE = PLANNER.splitlines().index('            raise RuntimeError("planner blew up")') + 1


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A working directory holding ``my_planner.py`` and a suite naming it; cleaned up after."""
    (tmp_path / "my_planner.py").write_text(PLANNER)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # main() puts the cwd on the path: undo it
    yield tmp_path
    sys.modules.pop("my_planner", None)


def write_suite(directory, policy, options="", executor="sequential", ids=IDS):
    suite = directory / "suite.toml"
    suite.write_text(
        textwrap.dedent(
            f"""
            [suite]
            name = "user"
            [scenarios]
            sources = ["sample"]
            ids = {json.dumps(list(ids))}
            [policy]
            name = "{policy}"
            {options}
            [run]
            seed = 1
            workers = 2
            executor = "{executor}"
            timeout_s = 120
            """
        )
    )
    return suite


@pytest.mark.parametrize(
    "policy, options, expected",
    [
        ("my_plannr:Planner", "", ["ModuleNotFoundError", "No module named 'my_plannr'", "Traceback"]),
        ("my_planner:Planner", "options = { fail_after = 3 }", ["cannot be made with options", "TypeError", "fail_after", "Traceback"]),
        ("my_planner:NoMap", "", ["failed to reset on scenario " + IDS[0], "KeyError: 'hd_map'", 'my_planner.py", line']),
    ],
)
def test_a_policy_that_cannot_work_stops_the_run_before_it_starts(user_dir, capsys, policy, options, expected):
    suite = write_suite(user_dir, policy, options)
    assert main(["run", str(suite), "--out", str(user_dir / "run")]) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err
    assert "no variant ran" in err
    assert not (user_dir / "run" / "tasks.jsonl").exists() and not (user_dir / "run" / "summary.parquet").exists()


def test_identical_errors_are_grouped_and_each_row_keeps_its_traceback(executor_kind, user_dir, capsys):
    """The planner lives only in the temp working directory: it imports under both executors."""
    suite = write_suite(user_dir, "my_planner:Planner", executor=executor_kind)
    assert main(["run", str(suite), "--out", str(user_dir / "run")]) == 1  # every variant failed, the run finished
    out = capsys.readouterr().out
    assert f"3 variants: RuntimeError: planner blew up, at my_planner.py:{RAISE_LINE} (first {IDS[0]})" in out
    summary = pd.read_parquet(user_dir / "run" / "summary.parquet")
    assert list(summary["status"]) == ["error"] * 3
    for tb in summary["traceback"]:
        assert tb.startswith("Traceback (most recent call last):")
        assert f'my_planner.py", line {RAISE_LINE}, in act' in tb and "RuntimeError: planner blew up" in tb


def test_a_cwd_module_imports_under_both_executors(executor_kind, user_dir):
    """The same module, found through the driver's working directory alone, drives on either executor."""
    from harness.config import load_suite
    from harness.runner import run_suite

    suite = write_suite(user_dir, "my_planner:Planner", options="options = { fail_at = 100000 }", executor=executor_kind, ids=IDS[:2])
    result = run_suite(load_suite(suite), out=user_dir / "run", progress=False)
    assert result.num_errors == 0 and list(result.summary["status"]) == ["ok", "ok"]
    assert (result.summary["ade_m"] < 0.2).all()  # it is the expert underneath
    assert result.summary["traceback"].isna().all()


def test_policy_override_is_run_and_recorded(user_dir, capsys):
    suite = write_suite(user_dir, "no_such_module:Planner", ids=IDS[:1])
    assert main(["run", str(suite), "--out", str(user_dir / "run"), "--policy", "constant_velocity"]) == 0
    manifest = json.loads((user_dir / "run" / "manifest.json").read_text())
    assert manifest["policy_override"] == "constant_velocity"
    policy = manifest["config"]["policy"]
    assert policy["name"] == "constant_velocity" and policy["options"] == {}
    assert list(pd.read_parquet(user_dir / "run" / "summary.parquet")["policy"]) == ["constant_velocity"]


def test_report_says_when_it_cannot_draw(user_dir, capsys):
    suite = write_suite(user_dir, "expert", ids=IDS[:1])
    run = user_dir / "run"
    assert main(["run", str(suite), "--out", str(run)]) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["policy"]["name"] = "no_such_package_here.planner:Planner"
    (run / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["report", str(run), "--worst", "1"]) == 0
    captured = capsys.readouterr()
    assert "drivetwin report: no pictures of the 1 worst variants" in captured.err
    assert "'no_such_package_here.planner:Planner' is not importable here" in captured.err
    assert "report: " in captured.out and (run / "report.html").exists()


def test_version(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"drivetwin {metadata.version('drivetwin')}"


def test_show_an_unknown_id_suggests_close_ones(capsys):
    assert main(["scenarios", "sample", "--show", f"{SAMPLE}.ego-38"]) == 1
    err = capsys.readouterr().err
    assert f"no scenario '{SAMPLE}.ego-38'" in err
    assert f"did you mean {SAMPLE}.ego-389" in err  # the closest sample ids
    assert main(["scenarios", "sample", "--show", "zzzz"]) == 1
    assert "did you mean" not in capsys.readouterr().err
