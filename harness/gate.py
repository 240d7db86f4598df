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
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def _failure_reason(row: pd.Series) -> str:
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


def write_junit(result: GateResult, config: GateConfig, path: str | Path, run_dir: str | Path | None = None) -> Path:
    """JUnit XML: a test case per variant (classname = its scenario) plus one per gate check.

    A variant's case fails when the variant fails its own verdict or newly fails against the
    baseline; the failure's message names the cause(s) and its text holds the command that
    replays the variant (with ``run_dir``, the run directory).
    """
    from evaluators.verdicts import causes

    variants = result.variants
    cases = []
    for _, row in variants.sort_values("variant_id").iterrows():
        case = ET.Element("testcase", classname=str(row["scenario_id"]), name=str(row["variant_id"]))
        seconds = row.get("worker_s")
        case.set("time", f"{float(seconds):.3f}" if seconds is not None and not pd.isna(seconds) else "0")
        replay = f"replay: {_replay_command(str(row['variant_id']), run_dir)}"
        if row["status"] != "ok":
            err = ET.SubElement(case, "error", message=f"{str(row['error'])[:500]}; {replay}", type="variant_error")
            err.text = f"{row['error']}\n{replay}"
        elif not row["passed"] or row.get("newly_failing", False):
            reason = _failure_reason(row)
            found = causes(row.to_dict())
            ET.SubElement(case, "failure", message=f"{reason}; {replay}", type=found[0] if found else "score").text = f"{reason}\n{replay}"
        scores = {k: row.get(k) for k in (SCORE, "driving_score", "collisions", "at_fault_collisions", "progress_ratio", "min_ttc_s")}
        out = json.dumps({k: _finite(v) for k, v in scores.items()})
        if isinstance(row.get("against_log"), str):
            out += f"\njudged against the log: {row['against_log']}"
        ET.SubElement(case, "system-out").text = out
        cases.append(case)
    for check in result.checks:
        case = ET.Element("testcase", classname="drivetwin.gate", name=check.name, time="0")
        if not check.passed:
            ET.SubElement(case, "failure", message=check.message, type="gate").text = check.message
        ET.SubElement(case, "system-out").text = check.message
        cases.append(case)
    failures = sum(1 for c in cases if c.find("failure") is not None)
    errors = sum(1 for c in cases if c.find("error") is not None)
    suite = ET.Element(
        "testsuite", name=f"drivetwin.{result.suite or 'suite'}", tests=str(len(cases)), failures=str(failures), errors=str(errors),
        skipped="0", timestamp=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="run_id", value=result.run_id)
    ET.SubElement(props, "property", name="verdict", value="pass" if result.passed else "fail")
    suite.extend(cases)
    root = ET.Element("testsuites", name="drivetwin", tests=suite.get("tests"), failures=str(failures), errors=str(errors))
    root.append(suite)
    ET.indent(root)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path
