"""Evaluators: score rollouts on the metrics the field trusts (nuPlan, CARLA, Waymax), into tidy Parquet.

``evaluate(rollout, scenario)`` gives one variant's summary row; ``evaluate_metrics`` the tidy
rows; ``evaluate_all`` both and the per-step series. Evaluators are registered by name in
``evaluators.base``; ``EvaluatorConfig`` holds the shared settings and each metric's own table;
verdicts are judged against the scenario's own log (``evaluators.against_log``); a summary row's
failures by cause and severity are read with ``evaluators.verdicts``; the Parquet report schemas
and writer are in ``evaluators.report``.
"""

# Import order is registration order: the order of evaluation and of the summary's columns.
# isort: off
from evaluators import (  # noqa: F401  (registration)
    collisions,
    drivable_area,
    driving_direction,
    progress,
    ttc,
    speed_limit,
    comfort,
    divergence,
    kinematics,
    red_light,
    scores,
)

# isort: on
from evaluators.base import (
    Evaluator,
    MetricSpec,
    MetricValue,
    get,
    metric_specs,
    register,
    registered,
    select,
)
from evaluators.config import EvaluatorConfig
from evaluators.context import Context, MapGeometry
from evaluators.errors import EvaluatorError
from evaluators.summary import (
    IDENTITY_COLUMNS,
    STATUS_ERROR,
    STATUS_OK,
    Evaluation,
    error_summary,
    evaluate,
    evaluate_all,
    evaluate_metrics,
    summary_columns,
)

__all__ = [
    "IDENTITY_COLUMNS",
    "STATUS_ERROR",
    "STATUS_OK",
    "Context",
    "Evaluation",
    "Evaluator",
    "EvaluatorConfig",
    "EvaluatorError",
    "MapGeometry",
    "MetricSpec",
    "MetricValue",
    "error_summary",
    "evaluate",
    "evaluate_all",
    "evaluate_metrics",
    "get",
    "metric_specs",
    "register",
    "registered",
    "select",
    "summary_columns",
]
