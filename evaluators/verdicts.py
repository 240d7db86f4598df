"""What a summary row's verdict is: its failures by cause, their severity, what set its score.

Reports, JUnit and the run's output read the summary table through these, so that every tool
names a variant's failure the same way. Every rule reads the row's judged columns (see
``evaluators.against_log``): a flag the log itself raised is not a failure here.

Causes, most severe first (``CAUSES``): an error, an at-fault collision, another collision,
leaving the drivable area, running a red light, driving the wrong way, making no progress, a TTC
under bound, speeding, discomfort. A variant *fails its own verdict* (``verdict_failures``) on an
error, an at-fault collision, leaving the drivable area, a red light, the wrong way, no progress,
or a closed-loop score under a minimum: the failures a CI gate should name; a TTC under bound,
speeding and discomfort lower the score and count in ``failures_by_cause`` but do not fail a
variant by themselves.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from evaluators.config import EvaluatorConfig

#: cause -> what it means, in order of severity.
CAUSES = {
    "error": "the variant did not run to the end (policy, scenario or evaluation error)",
    "at_fault_collision": "a collision the ego caused (nuPlan's rules) and could have avoided",
    "collision": "a collision the ego did not cause, or could not have avoided (unavoidable_collisions)",
    "off_road": "left the drivable area (beyond the log, where the log itself is off)",
    "red_light": "ran a red light",
    "wrong_way": "drove against the lane's direction (beyond the log, where the log itself does)",
    "no_progress": "made less than 20% of the expert's progress",
    "ttc": "time to collision under bound (beyond the log's)",
    "overspeed": "over the speed limit (beyond the log's)",
    "uncomfortable": "outside nuPlan's comfort bounds (beyond the log's)",
}

#: Causes that fail a variant's own verdict (JUnit, the run's failure count).
VERDICT_CAUSES = ("error", "at_fault_collision", "off_road", "red_light", "wrong_way", "no_progress")

#: The closed-loop score's multipliers and its weighted terms (see ``evaluators.scores``).
MULTIPLIERS = ("no_at_fault_collisions", "drivable_area_compliance", "making_progress", "driving_direction_compliance")
WEIGHTED = {"progress_ratio": "weight_progress", "ttc_within_bound": "weight_ttc", "speed_limit_compliance": "weight_speed_limit",
            "comfortable": "weight_comfort"}  # fmt: skip


def _num(row: Mapping[str, Any], name: str) -> float:
    """The row's value of ``name`` as a float; NaN when missing or null (bools are 1/0)."""
    return _as_float(row.get(name))


def _as_float(value: Any) -> float:
    if value is None or value is pd.NA:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


#: Each cause but "error" as a test of one summary column: (column, comparison, threshold), the
#: threshold a number or another column. A missing or null value fails no test (NaN compares false).
RULES: dict[str, tuple[str, str, float | str]] = {
    "at_fault_collision": ("at_fault_collisions", ">", 0.0),
    "collision": ("collisions", ">", "at_fault_collisions"),  # one the ego did not cause
    "off_road": ("drivable_area_compliance", "<", 1.0),
    "red_light": ("red_light_violations", ">", 0.0),
    "wrong_way": ("driving_direction_compliance", "<", 1.0),
    "no_progress": ("making_progress", "==", 0.0),
    "ttc": ("ttc_within_bound", "==", 0.0),
    "overspeed": ("speed_limit_compliance", "<", 1.0),
    "uncomfortable": ("comfortable", "==", 0.0),
}
_COMPARE = {">": operator.gt, "<": operator.lt, "==": operator.eq}
#: The causes that order ``severity_key`` before the score, most severe first.
SEVERE_CAUSES = ("error", "at_fault_collision", "collision", "off_road", "red_light")


def _is_error(status: Any) -> bool:
    """A row with a status other than "ok" (a missing status is none)."""
    return not (status is None or status is pd.NA or (isinstance(status, float) and math.isnan(status)) or status == "ok")


def causes(row: Mapping[str, Any]) -> list[str]:
    """Every cause (``CAUSES``) of one summary row, most severe first; [] for a clean variant."""
    if _is_error(row.get("status")):
        return ["error"]
    out = []
    for cause, (column, op, bound) in RULES.items():
        if _COMPARE[op](_num(row, column), _num(row, bound) if isinstance(bound, str) else bound):
            out.append(cause)
    return out


def _column(summary: pd.DataFrame, name: str) -> np.ndarray:
    """``name`` as floats (NaN where missing, null or not a number; bools are 1/0)."""
    if name not in summary:
        return np.full(len(summary), np.nan)
    values = summary[name]
    if values.dtype == object:
        return np.fromiter(map(_as_float, values), dtype=float, count=len(values))
    return values.to_numpy(dtype=float, na_value=np.nan)


def cause_flags(summary: pd.DataFrame) -> pd.DataFrame:
    """``causes`` of every row at once: a bool table, a column per cause (``CAUSES`` order), the
    summary's index; the same rules, without a Python call per row."""
    status = summary["status"] if "status" in summary else pd.Series(None, index=summary.index, dtype=object)
    error = (status.notna() & status.ne("ok")).to_numpy(bool)
    flags = {"error": error}
    with np.errstate(invalid="ignore"):
        for cause, (column, op, bound) in RULES.items():
            other = _column(summary, bound) if isinstance(bound, str) else bound
            flags[cause] = _COMPARE[op](_column(summary, column), other) & ~error
    return pd.DataFrame(flags, index=summary.index)


def severity_key(row: Mapping[str, Any]) -> tuple:
    """Sort key, worst first: errors, at-fault collisions, other collisions, off-road, red light,
    then the closed-loop score (lowest first)."""
    found = set(causes(row))
    score = _num(row, "closed_loop_score")
    return (*(cause not in found for cause in SEVERE_CAUSES), 0.0 if math.isnan(score) else score, str(row.get("variant_id", "")))


def severity_order(summary: pd.DataFrame, flags: pd.DataFrame | None = None) -> np.ndarray:
    """The positions of the summary's rows sorted by ``severity_key``, worst first, without a
    Python call per row (``flags``: its ``cause_flags``, when already made)."""
    flags = cause_flags(summary) if flags is None else flags
    score = np.nan_to_num(_column(summary, "closed_loop_score"), nan=0.0)
    ids = summary["variant_id"].astype(str).to_numpy() if "variant_id" in summary else np.full(len(summary), "")
    keys = [ids, score, *(~flags[cause].to_numpy() for cause in reversed(SEVERE_CAUSES))]  # lexsort: last key first
    return np.lexsort(keys) if len(summary) else np.zeros(0, dtype=np.intp)


def rank(summary: pd.DataFrame, head: int | None = None) -> pd.DataFrame:
    """The summary's rows ordered by ``severity_key``, worst first; only the ``head`` worst when given."""
    if summary.empty:
        return summary
    return summary.iloc[severity_order(summary)[:head]]


def score_drivers(row: Mapping[str, Any], config: EvaluatorConfig | None = None) -> list[str]:
    """The metric(s) that set the row's closed-loop score, as "name value" texts.

    A multiplier below 1 sets it (an at-fault collision, off-road, no progress, the wrong way);
    without one, the weighted terms that cost the most, each with the score it cost.
    """
    if row.get("status") not in (None, "ok"):
        return []
    low = [f"{name} {_num(row, name):g}" for name in MULTIPLIERS if _num(row, name) < 1]
    if low:
        return low
    weights = (config or EvaluatorConfig()).of("closed_loop_score")
    total = sum(getattr(weights, w) for w in WEIGHTED.values())
    costs = []
    for name, weight in WEIGHTED.items():
        value = _num(row, name)
        if value < 1:
            costs.append((getattr(weights, weight) * (1 - value) / total, name, value))
    return [f"{name} {value:.2f} (-{cost:.2f})" for cost, name, value in sorted(costs, reverse=True)]


def verdict_failures(row: Mapping[str, Any], min_variant_score: float | None = None) -> list[str]:
    """Why a variant fails its own verdict, one message per cause (``VERDICT_CAUSES``, and a
    closed-loop score under ``min_variant_score``); [] when it passes."""
    found = causes(row)
    out = []
    for cause in found:
        if cause not in VERDICT_CAUSES:
            continue
        if cause == "error":
            out.append(f"error: {row.get('error') or 'unknown'}")
        elif cause == "at_fault_collision":
            n = int(_num(row, "at_fault_collisions"))
            t = _num(row, "first_at_fault_collision_s")  # an unavoidable collision may come first
            t = _num(row, "first_collision_s") if math.isnan(t) else t
            out.append(f"{n} at-fault collision{'s' if n > 1 else ''}, the first at {t:.1f} s")
        elif cause == "off_road":
            text = f"{_num(row, 'drivable_area_max_distance_m'):.2f} m off the drivable area"
            judged = "drivable_area:" in str(row.get("against_log") or "")  # the log itself is off
            log = _num(row, "log_drivable_area_max_distance_m")
            out.append(text + (f", beyond the log's own {log:.2f} m" if judged else ""))
        elif cause == "red_light":
            out.append(f"{int(_num(row, 'red_light_violations'))} red light(s) run")
        elif cause == "wrong_way":
            text = f"{_num(row, 'wrong_way_max_m'):.1f} m against the lane's direction"
            judged = "driving_direction:" in str(row.get("against_log") or "")  # the log itself drives against it
            out.append(text + (f", beyond the log's own {_num(row, 'log_wrong_way_max_m'):.1f} m" if judged else ""))
        elif cause == "no_progress":
            out.append(f"progress ratio {_num(row, 'progress_ratio'):.2f} (no progress)")
    score = _num(row, "closed_loop_score")
    if min_variant_score is not None and "error" not in found and score < min_variant_score:
        out.append(f"closed-loop score {score:.3f} under min_variant_score {min_variant_score:g}")
    return out


def failures_by_cause(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per cause with at least one variant: cause, what it means, count, variant ids
    (worst first), in order of severity."""
    flags = cause_flags(summary)
    order = severity_order(summary, flags)
    ids = summary["variant_id"].astype(str).to_numpy()[order] if len(summary) else np.array([], dtype=str)
    found = {c: ids[flags[c].to_numpy()[order]].tolist() for c in CAUSES}
    rows = [{"cause": c, "meaning": CAUSES[c], "count": len(ids), "variants": ids} for c, ids in found.items() if ids]
    return pd.DataFrame(rows, columns=["cause", "meaning", "count", "variants"])


__all__ = ["CAUSES", "RULES", "SEVERE_CAUSES", "VERDICT_CAUSES", "cause_flags", "causes", "failures_by_cause", "rank", "score_drivers", "severity_key", "severity_order", "verdict_failures"]
