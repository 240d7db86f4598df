"""The registry, the base class's checks, the config and the input validation."""

from __future__ import annotations

import numpy as np
import pytest

import evaluators
from evaluators import (
    EvaluatorConfig,
    EvaluatorError,
    MetricSpec,
    evaluate,
    evaluate_all,
)
from evaluators.base import REGISTRY, Evaluator, get, metric_specs, register, select
from evaluators.config import SETTINGS
from evaluators.context import Context
from evaluators.report import REQUIRED_SUMMARY_COLUMNS
from scenarios.synthetic import AgentSpec, scene
from scenarios.rollout import Rollout


@pytest.fixture
def two_cars():
    s = scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("lead", 30.0, speed=10.0)], num_steps=21)
    return s, Rollout.from_log(s)


@pytest.fixture
def scratch_registry():
    """Register test evaluators and remove them afterwards."""
    before = set(REGISTRY)
    yield
    for name in set(REGISTRY) - before:
        REGISTRY.remove(name)
        SETTINGS.remove(name)


def test_every_builtin_is_registered_with_units():
    names = list(evaluators.registered())
    assert names[:3] == ["collisions", "drivable_area", "driving_direction"]
    assert {"ttc", "speed_limit", "comfort", "divergence", "kinematics", "red_light", "closed_loop_score", "driving_score"} <= set(names)
    specs = metric_specs()
    assert len({s.name for s in specs}) == len(specs)
    assert set(REQUIRED_SUMMARY_COLUMNS) - {"variant_id", "scenario_id", "ego_id", "status", "error"} <= {s.name for s in specs}


def test_duplicate_name_or_metric_is_an_error(scratch_registry):
    with pytest.raises(ValueError, match="already registered"):
        register("ttc")(type("Again", (Evaluator,), {"_compute": lambda self, ctx: []}))
    with pytest.raises(ValueError, match="already produced"):
        register("my_ttc")(type("Mine", (Evaluator,), {"metrics": (MetricSpec("min_ttc_s", "s", "again"),), "_compute": lambda self, ctx: []}))


def test_select_adds_requirements_first():
    names = [cls.name for cls in select(["closed_loop_score"])]
    assert names[-1] == "closed_loop_score"
    assert {"collisions", "progress", "ttc", "comfort"} <= set(names[:-1])
    with pytest.raises(EvaluatorError, match="no evaluator"):
        get("nope")


def test_config_selects_evaluators(two_cars):
    s, r = two_cars
    row = evaluate(r, s, EvaluatorConfig(evaluators=("ttc",)))
    assert row["min_ttc_s"] == np.inf and row["closed_loop_score"] is None and row["ade_m"] is None
    assert set(REQUIRED_SUMMARY_COLUMNS) <= set(row)  # every column is there, unselected ones null


def test_base_checks_what_the_hook_returns(two_cars, scratch_registry):
    s, r = two_cars

    @register("liar")
    class Liar(Evaluator):
        metrics = (MetricSpec("liar_ratio", "1", "a ratio out of range"),)

        def _compute(self, ctx):
            return [self.value("liar_ratio", 1.5)]

    @register("forgetful")
    class Forgetful(Evaluator):
        metrics = (MetricSpec("forgot_m", "m", "never returned"),)

        def _compute(self, ctx):
            return []

    with pytest.raises(EvaluatorError, match=r"ratio must lie in \[0, 1\]"):
        Liar().evaluate(r, s)
    with pytest.raises(EvaluatorError, match="declared"):
        Forgetful().evaluate(r, s)
    with pytest.raises(ValueError, match="unit"):
        MetricSpec("x", "furlongs", "bad unit")


def test_requirements_run_on_demand(two_cars):
    s, r = two_cars
    ctx = Context(r, s, EvaluatorConfig())
    values = get("closed_loop_score")().evaluate(r, s, ctx)
    assert values[0].value == 1.0 and "progress_ratio" in ctx.results
    with pytest.raises(EvaluatorError, match="another rollout"):
        get("ttc")().evaluate(Rollout.from_log(s), s, ctx)


def test_config_defaults_and_validation(tmp_path):
    cfg = EvaluatorConfig()
    assert (cfg.of("drivable_area").max_distance_m, cfg.of("ttc").bound_s, cfg.of("speed_limit").max_overspeed_mps) == (0.3, 0.95, 2.23)
    w = cfg.of("closed_loop_score")
    assert (w.weight_progress, w.weight_ttc, w.weight_speed_limit, w.weight_comfort) == (5, 5, 4, 2)
    p = cfg.of("driving_score")
    assert (p.penalty_pedestrian, p.penalty_vehicle, p.penalty_object, p.penalty_red_light) == (0.5, 0.6, 0.65, 0.7)
    assert cfg.judge_against_log is True
    with pytest.raises(EvaluatorError, match="bound_s"):
        cfg.with_settings("ttc", bound_s=-1.0)
    with pytest.raises(EvaluatorError, match="odd window"):
        cfg.with_settings("comfort", jerk_window=14)
    with pytest.raises(EvaluatorError) as err:
        EvaluatorConfig.from_mapping({"drivable_area": {"max_distance_m": 0.5, "max_distnce_m": 1.0}}, "suite.toml")
    assert err.value.field == "drivable_area.max_distnce_m" and "suite.toml" in str(err.value)
    loaded = EvaluatorConfig.from_mapping({"drivable_area": {"max_distance_m": 0.5}, "evaluators": ["ttc"]})
    assert loaded.evaluators == ("ttc",) and loaded.of("drivable_area").max_distance_m == 0.5
    assert loaded.of("ttc").horizon_s == 3.0  # a table not given keeps its defaults
    with pytest.raises(EvaluatorError) as err:
        EvaluatorConfig.from_mapping({"driving_score": {"penalty_vehicle": 2.0}}, "suite.toml")
    assert err.value.field == "driving_score.penalty_vehicle" and "[0, 1]" in err.value.problem
    with pytest.raises(EvaluatorError) as err:  # a flat key of earlier versions says where it went
        EvaluatorConfig.from_mapping({"ttc_horizon_s": 4.0}, "suite.toml")
    assert err.value.field == "ttc_horizon_s" and "horizon_s in the [evaluators.ttc] table" in err.value.problem
    with pytest.raises(EvaluatorError, match="no evaluator of that name"):
        EvaluatorConfig.from_mapping({"tcc": {"horizon_s": 4.0}}, "suite.toml")
    with pytest.raises(EvaluatorError, match="judge_against_log"):
        EvaluatorConfig.from_mapping({"judge_against_log": "yes"}, "suite.toml")


def test_a_plugin_metric_has_its_own_validated_table(two_cars, scratch_registry):
    from dataclasses import dataclass

    @dataclass(frozen=True, slots=True)
    class GapSettings:
        min_gap_m: float = 2.0

        def __post_init__(self):
            if self.min_gap_m <= 0:
                raise EvaluatorError("[evaluators.gap]", "min_gap_m", "must be > 0")

    @register("gap")
    class Gap(Evaluator):
        settings_type = GapSettings
        metrics = (MetricSpec("gap_ok", "bool", "the ego keeps its gap"),)

        def _compute(self, ctx):
            return [self.value("gap_ok", ctx.results["min_distance_m"].value >= self.settings(ctx).min_gap_m)]

        requires = ("ttc",)

    s, r = two_cars  # 25.5 m apart all along
    assert evaluate(r, s, EvaluatorConfig.from_mapping({"gap": {"min_gap_m": 30.0}}))["gap_ok"] is False
    assert evaluate(r, s)["gap_ok"] is True
    with pytest.raises(EvaluatorError) as err:
        EvaluatorConfig.from_mapping({"gap": {"min_gap_m": -1.0}}, "my_suite.toml")
    assert err.value.field == "gap.min_gap_m" and "my_suite.toml" in str(err.value)


def test_thresholds_are_config_values():
    s = scene([AgentSpec("ego", 0.0, y=-1.75 - 0.5 + 0.95, speed=10.0)])
    r = Rollout.from_log(s)
    absolute = EvaluatorConfig(judge_against_log=False)
    assert evaluate(r, s, absolute)["drivable_area_compliance"] == 0.0
    assert evaluate(r, s, absolute.with_settings("drivable_area", max_distance_m=0.6))["drivable_area_compliance"] == 1.0


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda r: r.replace(x=np.where(r.valid, np.nan, 0.0)), "x"),
        (lambda r: r.replace(ego_index=1), "ego_index"),
        (lambda r: r.replace(agent_ids=np.array(["ego", "other"])), "agent_ids"),
        (lambda r: r.replace(vx=np.zeros((2, 3))), "shape"),
        (lambda r: r.replace(t_us=r.t_us[::-1].copy()), "t_us"),
        (lambda r: r.replace(valid=np.zeros_like(r.valid)), "valid"),
    ],
)
def test_bad_rollouts_are_rejected_by_name(two_cars, change, field):
    s, r = two_cars
    with pytest.raises(EvaluatorError) as err:
        evaluate(change(r), s)
    assert err.value.field == field and "synthetic" in str(err.value)


def test_on_error_row_reports_instead_of_raising(two_cars):
    s, r = two_cars
    row = evaluate(r.replace(x=np.where(r.valid, np.nan, 0.0)), s, on_error="row", variant_id="v-bad", scenario_id="base")
    assert row["status"] == "error" and "NaN" in row["error"]
    assert (row["variant_id"], row["scenario_id"], row["ego_id"]) == ("v-bad", "base", "ego")
    assert row["closed_loop_score"] is None and row["collisions"] is None


def test_tidy_rows_have_units_and_pass_fail(two_cars):
    s, r = two_cars
    rows = evaluate_all(r, s).metrics
    by_name = {row["metric"]: row for row in rows}
    assert by_name["min_ttc_s"]["unit"] == "s" and by_name["min_ttc_s"]["passed"] is True
    assert by_name["drivable_area_max_distance_m"]["unit"] == "m"
    assert by_name["ego_progress_m"]["passed"] is None  # no threshold
    assert {row["variant_id"] for row in rows} == {"synthetic"}


def test_map_geometry_is_cached_per_map(two_cars):
    s, r = two_cars
    a = Context(r, s, EvaluatorConfig()).map
    b = Context(r, s, EvaluatorConfig()).map
    assert a is b
