"""Baseline vs candidate: per-variant differences of two runs' summary tables, and what regressed.

A variant regressed when the candidate failed where the baseline did not, has more at-fault
collisions, or scores lower than the baseline by more than ``tolerance`` (closed-loop score by
default); a variant of the baseline missing from the candidate regressed too. Variants new in
the candidate are listed, never regressions.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from evaluators.errors import EvaluatorError
from evaluators.report import (
    AT_FAULT_COLLISIONS,
    CLOSED_LOOP_SCORE,
    DRIVING_SCORE,
    STATUS,
    VARIANT_ID,
)
from evaluators.summary import STATUS_ERROR, STATUS_OK

#: Columns ``compare_runs`` adds.
REGRESSED = "regressed"
REASON = "reason"


def compare_runs(
    baseline: pd.DataFrame,
    candidate: pd.DataFrame,
    *,
    score: str = CLOSED_LOOP_SCORE,
    tolerance: float = 0.0,
    columns: Sequence[str] = (CLOSED_LOOP_SCORE, DRIVING_SCORE, AT_FAULT_COLLISIONS),
) -> pd.DataFrame:
    """One row per variant in either run: ``<col>_baseline``, ``<col>_candidate``, ``<col>_delta``
    for each of ``columns`` (and ``score``), both statuses, ``regressed`` and its ``reason``.

    Args:
        baseline, candidate: summary tables (``read_summary``), one row per variant each.
        score: the score a drop of which is a regression.
        tolerance: a drop of at most this much is not a regression.
        columns: numeric columns to put side by side.
    """
    cols = list(dict.fromkeys([score, *columns]))
    for name, df in (("baseline", baseline), ("candidate", candidate)):
        missing = [c for c in (VARIANT_ID, STATUS, *cols) if c not in df.columns]
        if missing:
            raise EvaluatorError(name, missing[0], "not a column of this summary table")
        if df[VARIANT_ID].duplicated().any():
            dup = df[VARIANT_ID][df[VARIANT_ID].duplicated()].iloc[0]
            raise EvaluatorError(name, VARIANT_ID, f"variant {dup!r} appears more than once")
    left = baseline[[VARIANT_ID, STATUS, *cols]].set_index(VARIANT_ID)
    right = candidate[[VARIANT_ID, STATUS, *cols]].set_index(VARIANT_ID)
    out = left.merge(right, how="outer", left_index=True, right_index=True, suffixes=("_baseline", "_candidate"))
    for c in cols:
        out[f"{c}_delta"] = out[f"{c}_candidate"].astype("Float64") - out[f"{c}_baseline"].astype("Float64")
    sb, sc = out[f"{STATUS}_baseline"], out[f"{STATUS}_candidate"]
    base_score = out[f"{score}_baseline"].astype("Float64")
    cand_score = out[f"{score}_candidate"].astype("Float64")
    fault_b = out[f"{AT_FAULT_COLLISIONS}_baseline"].astype("Float64") if AT_FAULT_COLLISIONS in cols else None
    fault_c = out[f"{AT_FAULT_COLLISIONS}_candidate"].astype("Float64") if AT_FAULT_COLLISIONS in cols else None
    reasons = []
    for v in out.index:
        reason = ""
        if pd.isna(sc[v]):
            reason = "missing in candidate"
        elif pd.isna(sb[v]):
            reason = ""  # new variant
        elif sc[v] == STATUS_ERROR and sb[v] != STATUS_ERROR:
            reason = "error"
        elif sc[v] == STATUS_OK and sb[v] == STATUS_OK:
            if fault_b is not None and _gt(fault_c[v], fault_b[v]):
                reason = "new at-fault collision"
            elif _gt(base_score[v] - tolerance, cand_score[v]):
                reason = f"{score} dropped by {float(base_score[v] - cand_score[v]):.3g}"
        reasons.append(reason)
    out[REASON] = reasons
    out[REGRESSED] = out[REASON] != ""
    return out.reset_index()


def _gt(a: object, b: object) -> bool:
    return not (pd.isna(a) or pd.isna(b)) and float(a) > float(b)  # type: ignore[arg-type]


def regressions(comparison: pd.DataFrame) -> pd.DataFrame:
    """The regressed variants of a ``compare_runs`` table."""
    return comparison[comparison[REGRESSED]]


__all__ = ["REASON", "REGRESSED", "compare_runs", "regressions"]
