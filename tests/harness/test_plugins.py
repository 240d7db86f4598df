"""Plug-ins: a suite's ``plugins`` modules and installed entry points register a metric, an
operator and a policy, on the driver and on every worker of both executors."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import evaluators.base
import scenarios.mutations.base
import sim.policies
from harness.config import ConfigError, load_suite, parse_suite
from harness.runner import run_suite
from harness.sources import resolve_library
from scenarios.library import ScenarioLibrary

SAMPLE = "commonroad-USA_US101-4_1_T-1"
IDS = [f"{SAMPLE}.ego-{i}" for i in (381, 383)]


def _registry(module):
    """A package's registry: its public ``REGISTRY`` or its private ``_REGISTRY``."""
    return module.REGISTRY if hasattr(module, "REGISTRY") else module._REGISTRY


def _forget(registry, name: str) -> None:
    """Drop ``name`` from a package registry (a ``Registry`` or a plain dict)."""
    if hasattr(registry, "remove"):
        registry.remove(name)
    else:
        registry.pop(name, None)


@pytest.fixture
def example_plugin():
    """The tests' plug-in module, unloaded and unregistered afterwards (registries are process-wide)."""
    yield "example_plugin"
    module = sys.modules.pop("example_plugin", None)
    if module is not None:
        _forget(_registry(evaluators.base), module.EVALUATOR)
        _forget(_registry(scenarios.mutations.base), module.OPERATOR)
        _forget(_registry(sim.policies), module.POLICY)


def logged_path_m(scenario_id: str) -> float:
    """The logged ego's path length [m] (what the expert drives again)."""
    scenario = ScenarioLibrary(resolve_library("sample")).load(scenario_id)
    t, e = scenario.tracks, scenario.ego_index
    valid = np.asarray(t.valid[e], bool)
    x, y = np.asarray(t.x[e])[valid], np.asarray(t.y[e])[valid]
    return float(np.hypot(np.diff(x), np.diff(y)).sum())


def test_a_plugin_metric_operator_and_policy_run_on_both_executors(executor_kind, example_plugin, tmp_path):
    config = parse_suite(
        {
            "suite": {"name": "plugged", "plugins": [example_plugin]},
            "scenarios": {"sources": ["sample"], "ids": IDS},
            "policy": {"name": "example_expert"},
            "mutations": [{"operator": "example_wet_road", "params": {"mu": {"choice": [0.4, 0.6]}}, "sampler": "grid", "variants": 2}],
            "run": {"seed": 3, "workers": 2, "timeout_s": 120},
        },
        "plugged.toml",
    )
    assert config.plugins == ("example_plugin",)
    result = run_suite(config, out=tmp_path / "run", executor=executor_kind, progress=False)
    s = result.summary.set_index("variant_id")
    assert len(s) == 6 and (s["status"] == "ok").all(), s["error"].tolist()
    assert (s["policy"] == "example_expert").all()  # the plug-in's policy drove every variant
    # the plug-in's metric is a summary column on every row, from the workers' evaluations
    originals, wet = s.loc[IDS], s[s["mutation"] != ""]
    assert sorted(wet["example_surface_friction"].round(6)) == [0.4, 0.4, 0.6, 0.6]  # the plug-in operator's mu, seen by the twin
    assert (originals["example_surface_friction"].round(6) == 0.9).all()  # the recorded (dry) road
    for scenario_id in IDS:
        assert s.loc[scenario_id, "example_ego_path_m"] == pytest.approx(logged_path_m(scenario_id), rel=0.03)
    assert all(json.loads(p).keys() == {"example_wet_road.mu"} for p in wet["params"])
    tidy = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert set(tidy.loc[tidy["metric"] == "example_ego_path_m", "variant_id"]) == set(s.index)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["plugins"] == ["example_plugin"]


def test_a_plugin_that_cannot_be_imported_is_a_config_error(tmp_path):
    suite = tmp_path / "broken.toml"
    suite.write_text('[suite]\nname = "broken"\nplugins = ["no_such_drivetwin_plugin"]\n')
    with pytest.raises(ConfigError) as info:
        load_suite(suite)
    message = str(info.value)
    assert str(suite) in message and "suite.plugins" in message
    assert "'no_such_drivetwin_plugin'" in message and "ModuleNotFoundError" in message


def test_the_suite_may_name_what_its_plugin_registers_only_after_loading_it(example_plugin):
    table = {"suite": {"name": "x"}, "mutations": [{"operator": "example_wet_road", "params": {"mu": 0.5}}]}
    with pytest.raises(ConfigError, match="example_wet_road"):
        parse_suite(table, "x.toml")
    table["suite"]["plugins"] = [example_plugin]
    assert parse_suite(table, "x.toml").mutations[0].plan().variants >= 1


def test_an_installed_packages_entry_point_is_loaded(tmp_path, monkeypatch):
    """A package installed with a ``drivetwin.plugins`` entry point (a dist-info on the path)."""
    (tmp_path / "ep_plugin_mod.py").write_text(
        textwrap.dedent(
            """
            from sim.policies import make_policy, register_policy

            @register_policy("entry_point_expert")
            class EntryPointExpert:
                def __init__(self):
                    self.expert = make_policy("expert")

                def reset(self, info):
                    self.expert.reset(info)

                def act(self, observation):
                    return self.expert.act(observation)
            """
        )
    )
    dist = tmp_path / "ep_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[drivetwin.plugins]\nexample = ep_plugin_mod\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        config = parse_suite(
            {"suite": {"name": "ep"}, "scenarios": {"sources": ["sample"], "ids": IDS[:1]}, "policy": {"name": "entry_point_expert"},
             "run": {"executor": "sequential", "timeout_s": 120}},
            "ep.toml",
        )  # fmt: skip
        from harness.config import check_sections

        check_sections(config)  # the policy name is known once the entry point is loaded
        result = run_suite(config, out=tmp_path / "run", progress=False)
        assert list(result.summary["policy"]) == ["entry_point_expert"] and result.num_errors == 0
    finally:
        sys.modules.pop("ep_plugin_mod", None)
        _forget(_registry(sim.policies), "entry_point_expert")
