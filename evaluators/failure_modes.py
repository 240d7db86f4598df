"""Distinct failure modes: at-fault collisions counted once per way and place they happen.

A search finds the same failure many times over: variants a little apart in their parameters in
which the ego hits the same agent at the same moment. Two variants fail the same way at the same
place, one *failure mode*, when they are of the same scenario, their first at-fault collision is
with the same agent, and those collisions are within ``MODE_TIME_S`` of each other and the ego
within ``MODE_DISTANCE_M`` of where it was (the summary's ``first_at_fault_agent``,
``first_at_fault_collision_s``, ``first_at_fault_x_m``, ``first_at_fault_y_m``).

Each mode names one variant to replay, and every variant of the mode fails within 1 s and 2 m
of that one: the variants are taken most severe first (``evaluators.verdicts.severity_key``:
lowest score, then id); each joins the first mode whose replayable variant it is that close to,
or else starts a mode of its own (a chain of collisions each 1.5 m from the next is not one
place, so it is not one mode).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from evaluators.verdicts import severity_key

#: Collisions of one scenario with one agent closer than this in time [s] are one failure mode.
MODE_TIME_S = 1.0
#: ... and closer than this [m] in the ego's position.
MODE_DISTANCE_M = 2.0

#: Columns of the ``failure_modes`` table.
MODE_COLUMNS = ("mode", "scenario_id", "agent_id", "t_s", "x_m", "y_m", "count", "variant_id", "mutation", "closed_loop_score", "variants")

#: Summary columns a failure mode is found from.
NEEDED = ("status", "scenario_id", "variant_id", "at_fault_collisions", "first_at_fault_agent",
          "first_at_fault_collision_s", "first_at_fault_x_m", "first_at_fault_y_m")  # fmt: skip


def collision_of(row: Mapping[str, Any]) -> tuple[str, str, float, float, float] | None:
    """(scenario, agent, t [s], x [m], y [m]) of a summary row's first at-fault collision; None without one."""
    try:
        faults = float(row.get("at_fault_collisions") or 0)
        where = [float(row[c]) for c in ("first_at_fault_collision_s", "first_at_fault_x_m", "first_at_fault_y_m")]
    except (KeyError, TypeError, ValueError):
        return None
    agent = row.get("first_at_fault_agent")
    if row.get("status") != "ok" or not faults > 0 or not isinstance(agent, str) or not all(map(math.isfinite, where)):
        return None
    return (str(row.get("scenario_id")), agent, *where)


class ModeIndex:
    """The failure modes seen so far, to tell a new one from one more variant of a known one
    (the rule of ``failure_modes``: same scenario and agent, within ``time_s`` and
    ``distance_m`` of a mode's first variant, here in the order they are added)."""

    def __init__(self, time_s: float = MODE_TIME_S, distance_m: float = MODE_DISTANCE_M) -> None:
        self.time_s, self.distance_m = time_s, distance_m
        self._seen: dict[tuple[str, str], list[tuple[float, float, float]]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._seen.values())

    def add(self, row: Mapping[str, Any]) -> bool | None:
        """Record the row's at-fault collision: True when it is close to no collision seen yet
        (a new mode), False when it is; None when the row has no at-fault collision."""
        hit = collision_of(row)
        if hit is None:
            return None
        scenario, agent, t, x, y = hit
        seen = self._seen.setdefault((scenario, agent), [])
        if any(same_place(t, x, y, t0, x0, y0, self.time_s, self.distance_m) for t0, x0, y0 in seen):
            return False
        seen.append((t, x, y))
        return True


def same_place(t: float, x: float, y: float, t0: float, x0: float, y0: float, time_s: float, distance_m: float) -> bool:
    """Whether a collision at time ``t`` [s] and ego position (x, y) [m] is one failure with one at
    (t0, x0, y0): within ``time_s`` and ``distance_m``."""
    return abs(t - t0) <= time_s and math.hypot(x - x0, y - y0) <= distance_m


def at_fault_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``summary`` with an at-fault collision whose agent, time and place are known."""
    missing = [c for c in NEEDED if c not in summary.columns]
    if missing or summary.empty:
        return summary.iloc[0:0]
    rows = summary[(summary["status"] == "ok") & (pd.to_numeric(summary["at_fault_collisions"], errors="coerce").fillna(0) > 0)]
    rows = rows[rows["first_at_fault_agent"].notna()]
    numeric = rows[["first_at_fault_collision_s", "first_at_fault_x_m", "first_at_fault_y_m"]].apply(pd.to_numeric, errors="coerce")
    return rows[numeric.notna().all(axis=1)]


def failure_modes(summary: pd.DataFrame, *, time_s: float = MODE_TIME_S, distance_m: float = MODE_DISTANCE_M) -> pd.DataFrame:
    """The distinct at-fault failure modes of a summary table, most severe first.

    Args:
        summary: a run's summary (rows of any status; only ok rows with an at-fault collision
            count; a table without the ``first_at_fault_*`` columns has no modes).
        time_s, distance_m: how close two collisions with one agent are to be one mode.

    Returns:
        One row per mode (``MODE_COLUMNS``): a number from 1, the scenario, the agent, the
        representative variant's collision time [s] and ego position [m], how many variants
        fail this way, the representative ``variant_id`` (replay it to see the failure), its
        sweep (``mutation``, when the summary has one) and score, and every variant id.
    """
    if not (time_s >= 0 and distance_m >= 0):
        raise ValueError(f"time_s and distance_m must be >= 0, got {time_s}, {distance_m}")
    rows = at_fault_rows(summary)
    found: list[dict[str, Any]] = []
    if rows.empty:
        return pd.DataFrame(found, columns=list(MODE_COLUMNS))
    for (scenario_id, agent_id), group in rows.groupby(["scenario_id", "first_at_fault_agent"], sort=True):
        groups: list[list[dict[str, Any]]] = []
        for record in sorted(group.to_dict("records"), key=severity_key):
            t, x, y = (float(record[c]) for c in ("first_at_fault_collision_s", "first_at_fault_x_m", "first_at_fault_y_m"))
            for members in groups:
                head = members[0]
                t0, x0, y0 = (float(head[c]) for c in ("first_at_fault_collision_s", "first_at_fault_x_m", "first_at_fault_y_m"))
                if same_place(t, x, y, t0, x0, y0, time_s, distance_m):
                    members.append(record)
                    break
            else:
                groups.append([record])
        for members in groups:
            best = members[0]
            score = best.get("closed_loop_score")
            found.append(
                {
                    "scenario_id": str(scenario_id),
                    "agent_id": str(agent_id),
                    "t_s": float(best["first_at_fault_collision_s"]),
                    "x_m": float(best["first_at_fault_x_m"]),
                    "y_m": float(best["first_at_fault_y_m"]),
                    "count": len(members),
                    "variant_id": str(best["variant_id"]),
                    "mutation": best.get("mutation") if isinstance(best.get("mutation"), str) else None,
                    "closed_loop_score": float(score) if score is not None and not pd.isna(score) else math.nan,
                    "variants": sorted(str(r["variant_id"]) for r in members),
                    "_key": severity_key(best),
                }
            )
    found.sort(key=lambda mode: mode["_key"])
    for i, mode in enumerate(found, 1):
        mode.pop("_key")
        mode["mode"] = i
    return pd.DataFrame(found, columns=list(MODE_COLUMNS))


__all__ = ["MODE_COLUMNS", "MODE_DISTANCE_M", "MODE_TIME_S", "ModeIndex", "at_fault_rows", "collision_of", "failure_modes", "same_place"]
