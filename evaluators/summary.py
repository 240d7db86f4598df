"""Score one rollout on every selected metric: the summary row, the tidy rows, the per-step series.

``evaluate`` gives one variant's summary row (identity columns, then one column per metric),
``evaluate_metrics`` the tidy rows (one per metric with value, unit and pass/fail) and
``evaluate_all`` both plus, optionally, the per-step series, sharing one ``Context``.
"""

from __future__ import annotations

import dataclasses
import traceback
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import shapely

from evaluators.against_log import LogBaseline, rewritten_agents, rollout_duration
from evaluators.base import MetricSpec, MetricValue, metric_specs, select
from evaluators.comfort import ego_dynamics
from evaluators.config import EvaluatorConfig
from evaluators.context import Context
from evaluators.errors import EvaluatorError
from scenarios.model import Scenario
from scenarios.rollout import Rollout

#: Summary columns that identify the variant and the run conditions, before the metric columns.
IDENTITY_COLUMNS = (
    "variant_id",
    "scenario_id",
    "ego_id",
    "dataset",
    "policy",
    "dynamics",
    "agents_mode",
    "termination",
    "num_steps",
    "duration_s",
    "status",
    "error",
    "traceback",
)

#: Text summary columns after the metric columns, with what they hold: why verdicts were judged
#: against the log ("evaluator: reason; ...", null when no metric was), and the agent of the first
#: at-fault collision (its time and place are the metric columns ``first_at_fault_*``).
TEXT_COLUMNS = {
    "against_log": "why verdicts were judged against the log",
    "first_at_fault_agent": "id of the agent in the first at-fault collision, null when none",
}
VERDICT_COLUMNS = tuple(TEXT_COLUMNS)

STATUS_OK = "ok"
STATUS_ERROR = "error"

#: Names of the per-step series, each (S,), with their units.
SERIES_UNITS = {
    "step": "count",
    "t_s": "s",
    "speed_mps": "m/s",
    "lon_accel_mps2": "m/s2",
    "lat_accel_mps2": "m/s2",
    "ttc_s": "s",
    "road_edge_distance_m": "m",
}


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Everything computed for one rollout.

    Attributes:
        summary: the summary row (``IDENTITY_COLUMNS`` then every metric column).
        metrics: the tidy rows, one per computed metric.
        series: the per-step series by name (``SERIES_UNITS``), or None when not asked for.
    """

    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    series: dict[str, np.ndarray] | None = None


def summary_columns() -> list[MetricSpec]:
    """The metric columns of the summary: every registered metric, in evaluation order."""
    return metric_specs()


def _identity(rollout: Rollout, scenario: Scenario, variant_id: str | None, scenario_id: str | None) -> dict[str, Any]:
    t = np.asarray(rollout.t_us)
    return {
        "variant_id": str(variant_id if variant_id is not None else rollout.scenario_id),
        "scenario_id": str(scenario_id if scenario_id is not None else scenario.id),
        "ego_id": scenario.ego_id,
        "dataset": scenario.provenance.dataset,
        "policy": rollout.policy,
        "dynamics": rollout.dynamics,
        "agents_mode": rollout.agents_mode,
        "termination": rollout.termination,
        "num_steps": int(rollout.num_steps),
        "duration_s": float(t[-1] - t[0]) / 1e6 if t.size else 0.0,
    }


def _column_value(v: MetricValue) -> Any:
    if np.isnan(v.value):
        return None
    if v.unit == "bool":
        return bool(v.value)
    if v.unit == "count":
        return int(v.value)
    return float(v.value)


def error_summary(
    variant_id: str, scenario_id: str, ego_id: str, message: str, **identity: Any
) -> dict[str, Any]:
    """The summary row of a variant that failed: status "error", the message, every metric null."""
    row: dict[str, Any] = {name: None for name in IDENTITY_COLUMNS}
    row.update(identity)
    row.update(variant_id=str(variant_id), scenario_id=str(scenario_id), ego_id=str(ego_id), status=STATUS_ERROR, error=str(message))
    row.update({spec.name: None for spec in metric_specs()})
    row.update({name: None for name in VERDICT_COLUMNS})
    return row


def evaluate_all(
    rollout: Rollout,
    scenario: Scenario,
    config: EvaluatorConfig | None = None,
    *,
    variant_id: str | None = None,
    scenario_id: str | None = None,
    series: bool = False,
    log: Scenario | None = None,
) -> Evaluation:
    """Summary row, tidy rows and (when ``series``) per-step series of one rollout.

    Args:
        rollout: the episode.
        scenario: the variant's scenario (map, agent types, the logged ego).
        config: thresholds and the evaluators to run (default: all, standard thresholds).
        variant_id: defaults to ``rollout.scenario_id``.
        scenario_id: the base scenario's id; defaults to ``scenario.id``.
        series: also compute the per-step series.
        log: the scenario whose recorded trajectory verdicts are judged against (with
            ``config.judge_against_log``): a variant's unmutated source, so that a mutation (a
            lead braking into the logged ego) is never taken for the log's own defect. Default:
            ``scenario`` itself.

    Raises:
        EvaluatorError: the rollout does not fit the scenario, or holds NaN where valid.
    """
    config = config or EvaluatorConfig()
    ctx = Context(rollout, scenario, config)
    if config.judge_against_log:
        ctx.log = LogBaseline.of(log if log is not None else scenario, config).over(rollout_duration(ctx))
        if log is not None and ctx.log.overlapping:  # the log excuses no collision with an agent the variant rewrote
            ctx.log = dataclasses.replace(ctx.log, overlapping=ctx.log.overlapping - rewritten_agents(log, scenario))
    values: list[MetricValue] = []
    for cls in select(config.evaluators):
        values.extend(cls(config).evaluate(rollout, scenario, ctx))
    ident = _identity(rollout, scenario, variant_id, scenario_id)
    summary = {**ident, "status": STATUS_OK, "error": None, "traceback": None}
    summary.update({spec.name: None for spec in metric_specs()})
    summary.update({v.name: _column_value(v) for v in values})
    summary["against_log"] = "; ".join(f"{name}: {reason}" for name, reason in ctx.notes) or None
    fault_at = ctx.first_at_fault if "at_fault_collisions" in ctx.results else None
    summary["first_at_fault_agent"] = fault_at["agent_id"] if fault_at else None
    keys = {k: ident[k] for k in ("variant_id", "scenario_id", "ego_id")}
    metrics = [
        {**keys, "metric": v.name, "value": v.value, "unit": v.unit, "passed": v.passed}
        for v in values
    ]
    return Evaluation(summary, metrics, step_series(ctx) if series else None)


def evaluate(
    rollout: Rollout,
    scenario: Scenario,
    config: EvaluatorConfig | None = None,
    *,
    variant_id: str | None = None,
    scenario_id: str | None = None,
    on_error: Literal["raise", "row"] = "raise",
    log: Scenario | None = None,
) -> dict[str, Any]:
    """One variant's summary row: identity columns, status, error, one column per metric.

    With ``on_error="row"`` any failure gives the error row (status "error", the message,
    metrics null) instead of raising, so a batch never stops on one bad rollout.
    """
    if on_error not in ("raise", "row"):
        raise EvaluatorError("evaluate", "on_error", f"must be 'raise' or 'row', got {on_error!r}")
    try:
        return evaluate_all(rollout, scenario, config, variant_id=variant_id, scenario_id=scenario_id, log=log).summary
    except Exception as exc:
        if on_error == "raise":
            raise
        message = str(exc) if isinstance(exc, EvaluatorError) else "".join(traceback.format_exception_only(exc)).strip()
        ident: dict[str, Any] = {}
        try:
            ident = _identity(rollout, scenario, variant_id, scenario_id)
        except Exception:  # noqa: BLE001  (the inputs themselves may be broken)
            ident = {"variant_id": variant_id or getattr(rollout, "scenario_id", ""), "scenario_id": scenario_id or getattr(scenario, "id", "")}
        return error_summary(
            ident.pop("variant_id"), ident.pop("scenario_id"), ident.pop("ego_id", getattr(scenario, "ego_id", "")), message,
            traceback="".join(traceback.format_exception(exc)), **ident,
        )  # fmt: skip


def evaluate_metrics(
    rollout: Rollout,
    scenario: Scenario,
    config: EvaluatorConfig | None = None,
    *,
    variant_id: str | None = None,
    scenario_id: str | None = None,
    log: Scenario | None = None,
) -> list[dict[str, Any]]:
    """The tidy rows of one rollout: variant_id, scenario_id, ego_id, metric, value, unit, passed."""
    return evaluate_all(rollout, scenario, config, variant_id=variant_id, scenario_id=scenario_id, log=log).metrics


def step_series(ctx: Context) -> dict[str, np.ndarray]:
    """(S,) per-step series: speed, longitudinal and lateral acceleration, TTC, distance to the road edge.

    ``road_edge_distance_m`` is the ego footprint's signed margin to the drivable area's outline:
    the smallest over its corners of the distance to the edge, positive inside, negative outside.
    """
    from evaluators.ttc import projected_ttc

    dyn = ego_dynamics(ctx)
    ttc = ctx.series["ttc_s"] if "ttc_s" in ctx.series else projected_ttc(ctx)
    edge = np.full(ctx.num_steps, np.nan)
    g = ctx.map
    steps = ctx.ego_steps
    if g.drivable is not None and steps.size:
        pts = ctx.ego_corners[steps].reshape(-1, 2)
        inside = shapely.contains_xy(g.drivable, pts[:, 0], pts[:, 1])
        _, dist = g.drivable_boundary.nearest(pts)
        edge[steps] = np.where(inside, dist, -dist).reshape(-1, 4).min(axis=1)
    return {
        "step": np.arange(ctx.num_steps, dtype=np.int64),
        "t_s": ctx.t_s.copy(),
        "speed_mps": dyn["speed_mps"],
        "lon_accel_mps2": dyn["lon_accel_mps2"],
        "lat_accel_mps2": dyn["lat_accel_mps2"],
        "ttc_s": ttc,
        "road_edge_distance_m": edge,
    }
