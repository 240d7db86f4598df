"""Compare a run with a baseline and gate CI on the result: a verdict, an exit code, JUnit XML.

Scores: a variant whose run failed (status "error") counts as a closed-loop score of 0 in every
mean: a crash is the worst driving there is. A variant *passes* when it does not fail its own
verdict (``evaluators.verdicts.verdict_failures``): it ran, has no at-fault collision, stayed on
the drivable area, ran no red light, kept the lane's direction, made progress (each judged
against the log), and its closed-loop score reaches ``min_variant_score``.

Against a baseline, variants are paired by id (the same scenario, mutation and seed): the mean
score change has a percentile bootstrap confidence interval, and a regression is *significant*
when the whole interval lies below zero and the mean dropped by more than ``max_score_drop``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pandas as pd

from harness.config import GateConfig

SCORE = "closed_loop_score"
#: Bootstrap resamples for the confidence interval, and their fixed seed (a gate is deterministic).
BOOTSTRAP_SAMPLES = 4000
BOOTSTRAP_SEED = 0


def variant_scores(summary: pd.DataFrame, column: str = SCORE) -> pd.Series:
    """Each variant's score by id, 0 for a failed run."""
    ok = summary["status"] == "ok"
    scores = pd.to_numeric(summary[column], errors="coerce").where(ok, 0.0).fillna(0.0)
    return pd.Series(scores.to_numpy(float), index=summary["variant_id"].to_numpy())


def _failing(summary: pd.DataFrame, gate: GateConfig) -> np.ndarray:
    """(N,) whether each variant fails its own verdict (``verdict_failures`` would name a reason),
    from the cause flags alone: no message is built."""
    from evaluators.verdicts import VERDICT_CAUSES, cause_flags

    flags = cause_flags(summary)
    failing = flags[list(VERDICT_CAUSES)].to_numpy().any(axis=1)
    if gate.score_floor is not None:  # as verdict_failures: the floor applies to a row that ran
        score = pd.to_numeric(summary[SCORE], errors="coerce").to_numpy(float) if SCORE in summary else np.full(len(summary), np.nan)
        failing |= ~flags["error"].to_numpy() & (score < gate.score_floor)
    return failing


def variant_failures(summary: pd.DataFrame, gate: GateConfig) -> pd.Series:
    """Why each variant fails its own verdict, by id: its messages, empty (``()``) when it passes;
    the messages are built only for the variants that fail."""
    from evaluators.verdicts import verdict_failures

    failing = np.flatnonzero(_failing(summary, gate))
    reasons = np.empty(len(summary), dtype=object)
    reasons[:] = [()] * len(summary)  # one shared empty tuple
    for i, row in zip(failing, summary.iloc[failing].to_dict("records")):
        reasons[i] = verdict_failures(row, gate.score_floor)
    return pd.Series(reasons, index=summary["variant_id"].to_numpy(), dtype=object)


def variant_passes(summary: pd.DataFrame, gate: GateConfig) -> pd.Series:
    """Whether each variant passes its own verdict (see ``variant_failures``), by id."""
    return pd.Series(~_failing(summary, gate), index=summary["variant_id"].to_numpy())


def bootstrap_mean(values: np.ndarray, confidence: float, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile bootstrap interval at ``confidence``."""
    values = np.asarray(values, float)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(samples, values.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(values.mean()), float(lo), float(hi)


@dataclass(slots=True)
class Comparison:
    """Baseline vs candidate.

    Attributes:
        table: one row per variant in either run (``evaluators.compare.compare_runs``).
        paired: variants in both runs.
        mean_baseline, mean_candidate: mean closed-loop score over the paired variants.
        delta, delta_lo, delta_hi: mean paired change and its bootstrap interval.
        newly_failing, newly_passing: variant ids whose pass/fail flipped.
        missing, added: variants only in the baseline / only in the candidate.
        per_scenario: mean score change per base scenario.
    """

    table: pd.DataFrame
    paired: int
    mean_baseline: float
    mean_candidate: float
    delta: float
    delta_lo: float
    delta_hi: float
    confidence: float
    newly_failing: list[str]
    newly_passing: list[str]
    missing: list[str]
    added: list[str]
    per_scenario: pd.DataFrame

    def significant_regression(self, max_drop: float) -> bool:
        return bool(self.paired and self.delta_hi < 0.0 and self.delta < -max_drop)


def compare(baseline: pd.DataFrame, candidate: pd.DataFrame, gate: GateConfig | None = None) -> Comparison:
    """Pair two runs' summaries by variant id and measure the change."""
    from evaluators.compare import compare_runs

    gate = gate or GateConfig()
    table = compare_runs(baseline, candidate)
    base_scores, cand_scores = variant_scores(baseline), variant_scores(candidate)
    common = sorted(set(base_scores.index) & set(cand_scores.index))
    deltas = (cand_scores[common] - base_scores[common]).to_numpy(float)
    delta, lo, hi = bootstrap_mean(deltas, gate.confidence)
    base_pass, cand_pass = variant_passes(baseline, gate), variant_passes(candidate, gate)
    newly_failing = [v for v in common if base_pass[v] and not cand_pass[v]]
    newly_passing = [v for v in common if cand_pass[v] and not base_pass[v]]
    scenario_of = dict(zip(candidate["variant_id"], candidate["scenario_id"]))
    per = pd.DataFrame({"scenario_id": [scenario_of[v] for v in common], "delta": deltas})
    per_scenario = (
        per.groupby("scenario_id", sort=True)["delta"].agg(["mean", "count"]).rename(columns={"mean": "mean_delta", "count": "variants"})
        .reset_index().sort_values(["mean_delta", "scenario_id"])
    )
    return Comparison(
        table=table,
        paired=len(common),
        mean_baseline=float(base_scores[common].mean()) if common else float("nan"),
        mean_candidate=float(cand_scores[common].mean()) if common else float("nan"),
        delta=delta,
        delta_lo=lo,
        delta_hi=hi,
        confidence=gate.confidence,
        newly_failing=newly_failing,
        newly_passing=newly_passing,
        missing=sorted(set(base_scores.index) - set(cand_scores.index)),
        added=sorted(set(cand_scores.index) - set(base_scores.index)),
        per_scenario=per_scenario,
    )


@dataclass(frozen=True, slots=True)
class Check:
    """One gate condition: its name, the measured value, the bound, and whether it held."""

    name: str
    value: float
    bound: float
    passed: bool
    message: str


@dataclass(slots=True)
class GateResult:
    """The verdict: every check, the per-variant verdicts and the comparison (with a baseline)."""

    checks: list[Check]
    variants: pd.DataFrame
    comparison: Comparison | None = None
    run_id: str = ""
    suite: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def gate(summary: pd.DataFrame, config: GateConfig, baseline: pd.DataFrame | None = None, *, run_id: str = "", suite: str = "") -> GateResult:
    """Check a run's summary against ``config`` (and, given one, against a baseline's)."""
    n = len(summary)
    ok = summary["status"] == "ok"
    scores = variant_scores(summary)
    driving = variant_scores(summary, "driving_score")
    at_fault = pd.to_numeric(summary["at_fault_collisions"], errors="coerce").fillna(0) > 0
    error_rate = float((~ok).mean()) if n else 1.0
    fault_rate = float(at_fault.mean()) if n else 0.0
    reasons = variant_failures(summary, config)
    passes = reasons.map(lambda found: not found).astype(bool)
    checks = [
        Check("variants", float(n), 1.0, n > 0, f"{n} variants ran"),
        Check(
            "mean_closed_loop_score", float(scores.mean()) if n else float("nan"), config.min_mean_closed_loop_score,
            bool(n) and scores.mean() >= config.min_mean_closed_loop_score,
            f"mean closed-loop score {scores.mean():.4f} (at least {config.min_mean_closed_loop_score})" if n else "no variants",
        ),
        Check(
            "mean_driving_score", float(driving.mean()) if n else float("nan"), config.min_mean_driving_score,
            bool(n) and driving.mean() >= config.min_mean_driving_score,
            f"mean driving score {driving.mean():.4f} (at least {config.min_mean_driving_score})" if n else "no variants",
        ),
        Check(
            "at_fault_collision_rate", fault_rate, config.max_at_fault_collision_rate, fault_rate <= config.max_at_fault_collision_rate,
            f"{int(at_fault.sum())} of {n} variants with an at-fault collision ({fault_rate:.1%}, at most {config.max_at_fault_collision_rate:.1%})",
        ),
        Check(
            "error_rate", error_rate, config.max_error_rate, error_rate <= config.max_error_rate,
            f"{int((~ok).sum())} of {n} variants failed to run ({error_rate:.1%}, at most {config.max_error_rate:.1%})",
        ),
    ]
    if config.min_variant_score > 0:
        failing = int((~passes).sum())
        checks.append(Check("variants_below_min_score", float(failing), 0.0, failing == 0, f"{failing} variants below {config.min_variant_score} or failing their own verdict"))
    comparison = None
    if baseline is not None:
        comparison = compare(baseline, summary, config)
        c = comparison
        checks.append(
            Check(
                "score_change_vs_baseline", c.delta, -config.max_score_drop, not c.significant_regression(config.max_score_drop),
                f"mean closed-loop score {c.mean_baseline:.4f} -> {c.mean_candidate:.4f} over {c.paired} paired variants: "
                f"change {c.delta:+.4f}, {c.confidence:.0%} CI [{c.delta_lo:+.4f}, {c.delta_hi:+.4f}]"
                f" (a regression when the CI is below 0 and the drop exceeds {config.max_score_drop})",
            )
        )
        checks.append(
            Check(
                "newly_failing_variants", float(len(c.newly_failing)), float(config.max_new_failures),
                len(c.newly_failing) <= config.max_new_failures,
                f"{len(c.newly_failing)} variants newly fail (at most {config.max_new_failures})"
                + (f": {', '.join(c.newly_failing[:5])}" + (" ..." if len(c.newly_failing) > 5 else "") if c.newly_failing else ""),
            )
        )
    variants = summary.assign(passed=passes.to_numpy(), reasons=reasons.to_numpy())
    if comparison is not None:
        variants = variants.assign(newly_failing=variants["variant_id"].isin(comparison.newly_failing))
    return GateResult(checks, variants, comparison, run_id=run_id, suite=suite)


def _failure_reason(row: Mapping[str, Any]) -> str:
    reasons = [r for r in row["reasons"] if not r.startswith("error")]
    if row.get("newly_failing"):
        reasons.append("regressed: passed in the baseline")
    return "; ".join(reasons) or "failed"


def _replay_command(variant_id: str, run_dir: str | Path | None) -> str:
    import shlex

    where = f" --run {shlex.quote(str(run_dir))}" if run_dir is not None else " --run <run directory>"
    return f"drivetwin replay {shlex.quote(variant_id)}{where}"


def _finite(value: Any) -> float | None:
    """A JSON-safe number: None for missing, NaN or infinite (e.g. no TTC at all)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


#: Characters XML 1.0 cannot hold (control characters from a policy's error message, say).
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: The score columns each variant's case prints in its ``system-out``.
_CASE_SCORES = (SCORE, "driving_score", "collisions", "at_fault_collisions", "progress_ratio", "min_ttc_s")


def _xml_text(value: object) -> str:
    """``value`` as XML character data (escaped; characters XML cannot hold become U+FFFD)."""
    return escape(_NOT_XML.sub("\ufffd", str(value)))


def _xml_attr(value: object) -> str:
    """``value`` as a quoted XML attribute value."""
    return quoteattr(_NOT_XML.sub("\ufffd", str(value)))


def write_junit(result: GateResult, path: str | Path, run_dir: str | Path | None = None) -> Path:
    """JUnit XML: a test case per variant (classname = its scenario) plus one per gate check.

    A variant's case fails when the variant fails its own verdict or newly fails against the
    baseline; the failure's message names the cause(s) and its text holds the command that
    replays the variant (with ``run_dir``, the run directory). Written case by case to a
    temporary file renamed into place: what it holds in memory is a few columns and the failing
    rows, not a tree of every case, and a reader never sees half a file.
    """
    from evaluators.verdicts import causes

    variants = result.variants
    n = len(variants)
    order = np.argsort(variants["variant_id"].astype(str).to_numpy(object), kind="stable")  # by id; no copy of the table

    def column(name: str, numeric: bool = False, default: Any = np.nan) -> np.ndarray:
        if name not in variants:
            return np.full(n, default, dtype=float if numeric else object)
        values = pd.to_numeric(variants[name], errors="coerce").to_numpy(float) if numeric else variants[name].to_numpy(object)
        return values[order]

    ok = column("status") == "ok"
    newly = column("newly_failing", default=False)
    failing = ok & ((column("passed") == False) | (newly == True))  # noqa: E712 (object columns)
    failures = int(failing.sum()) + sum(not c.passed for c in result.checks)
    errors = int((~ok).sum())
    tests = n + len(result.checks)
    seconds = column("worker_s", numeric=True)
    scores = {k: column(k, numeric=True) for k in _CASE_SCORES}
    against = column("against_log", default=None)
    ids = column("variant_id").astype(str)
    scenarios = column("scenario_id").astype(str)
    marked = np.flatnonzero(~ok | failing)
    flagged = dict(zip(marked.tolist(), variants.iloc[order[marked]].to_dict("records")))  # rows with a failure or an error

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # two writers of one path never share a temporary
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    suite = f"drivetwin.{result.suite or 'suite'}"
    try:
        with open(tmp, "w", encoding="utf-8", buffering=1 << 20) as out:
            out.write("<?xml version='1.0' encoding='utf-8'?>\n")
            out.write(f'<testsuites name="drivetwin" tests="{tests}" failures="{failures}" errors="{errors}">\n')
            out.write(
                f'  <testsuite name={_xml_attr(suite)} tests="{tests}" failures="{failures}" errors="{errors}" skipped="0" timestamp="{stamp}">\n'
                f"    <properties>\n      <property name=\"run_id\" value={_xml_attr(result.run_id)} />\n"
                f'      <property name="verdict" value="{"pass" if result.passed else "fail"}" />\n    </properties>\n'
            )
            for i in range(n):
                time_s = f"{seconds[i]:.3f}" if np.isfinite(seconds[i]) else "0"
                out.write(f"    <testcase classname={_xml_attr(scenarios[i])} name={_xml_attr(ids[i])} time=\"{time_s}\">\n")
                if not ok[i] or failing[i]:
                    row = flagged[i]
                    replay = f"replay: {_replay_command(ids[i], run_dir)}"
                    if not ok[i]:
                        error = str(row["error"])
                        message, body = _xml_attr(f"{error[:500]}; {replay}"), _xml_text(error + "\n" + replay)
                        out.write(f'      <error message={message} type="variant_error">{body}</error>\n')
                    else:
                        reason = _failure_reason(row)
                        found = causes(row)
                        kind = found[0] if found else "score"
                        message, body = _xml_attr(f"{reason}; {replay}"), _xml_text(reason + "\n" + replay)
                        out.write(f"      <failure message={message} type={_xml_attr(kind)}>{body}</failure>\n")
                text = json.dumps({k: _finite(scores[k][i]) for k in _CASE_SCORES})
                if isinstance(against[i], str):
                    text += f"\njudged against the log: {against[i]}"
                out.write(f"      <system-out>{_xml_text(text)}</system-out>\n    </testcase>\n")
            for check in result.checks:
                out.write(f'    <testcase classname="drivetwin.gate" name={_xml_attr(check.name)} time="0">\n')
                if not check.passed:
                    out.write(f'      <failure message={_xml_attr(check.message)} type="gate">{_xml_text(check.message)}</failure>\n')
                out.write(f"      <system-out>{_xml_text(check.message)}</system-out>\n    </testcase>\n")
            out.write("  </testsuite>\n</testsuites>\n")
    except BaseException:  # an error or an interrupt mid-write leaves no temporary behind
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path
