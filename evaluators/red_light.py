"""Red-light running (CARLA's rule), for scenarios that carry traffic-signal states.

Each signal controls one lane and has a stop point on it; its stop line is the line through the
stop point across the lane's direction there. The ego passes a signal when a point near its tail
(0.8 x half its length behind the centre, as CARLA's test uses) crosses that line between two
valid steps, moving along the lane's direction, within ``lateral_m`` of the stop point.
It runs the light when the signal's state at the crossing step is STOP (red). Of signals sharing
a stop point (a through lane and a turn lane parting at the line), the ego is held to those of the
lanes it went on along, as ``evaluators.avoidability`` holds it (``stop_lines.held_to``): when
neither its path nor its heading tells which, it ran a red there only if all of them showed red
(one violation). Signals whose lane is not a vehicle lane of the map cannot be oriented and are
skipped. Each signal counts once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.base import Evaluator, MetricSpec, MetricValue, register
from evaluators.config import check_fields
from evaluators.context import Context
from evaluators.stop_lines import held_to, stop_line_crossings
from scenarios.model import SignalState

#: CARLA measures the crossing at this fraction of the half length behind the centre.
TAIL_FRACTION = 0.8


def signal_crossings(ctx: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K,) signal rows and (K,) steps at which the ego's tail crossed their stop lines
    (``evaluators.stop_lines.stop_line_crossings``), and (K,) the group of each in
    ``stop_lines.held_to`` (-1: a signal sharing its stop point the ego did not follow)."""
    controls = [c for c in ctx.stop_controls if c.signal_row >= 0]
    if not controls:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows = np.array([c.signal_row for c in controls], dtype=np.int64)
    stop = np.array([c.stop for c in controls])
    d = np.array([c.direction for c in controls])
    r = ctx.rollout
    tail = ctx.ego_xy - (TAIL_FRACTION * r.length[ctx.ego] / 2) * ctx.ego_heading  # (S, 2)
    k, t, _ = stop_line_crossings(tail, ctx.ego_heading, ctx.ego_valid, stop, d, ctx.config.of("red_light").lateral_m)
    group = np.full(k.size, -1, dtype=np.int64)
    yaw = np.arctan2(ctx.ego_heading[:, 1], ctx.ego_heading[:, 0])
    for g, members in enumerate(held_to(controls, k, t, ctx.ego_xy, yaw, ctx.ego_valid)):
        group[np.isin(k, members)] = g
    return rows[k], t, group


@dataclass(frozen=True, slots=True)
class RedLightSettings:
    """``[evaluators.red_light]``: the ego passes a signal's stop point when its tail crosses the
    stop line within ``lateral_m`` of it [m] (2.0, about half a lane either side)."""

    lateral_m: float = 2.0

    def __post_init__(self) -> None:
        check_fields(self, "[evaluators.red_light]", positive=("lateral_m",))


@register("red_light")
class RedLight(Evaluator):
    """Red lights run and signal stop lines passed."""

    settings_type = RedLightSettings
    metrics = (
        MetricSpec("red_light_violations", "count", "signals whose stop line the ego crossed on red", "== 0"),
        MetricSpec("signals_passed", "count", "signal stop lines the ego crossed, whatever their state"),
    )

    def _compute(self, ctx: Context) -> list[MetricValue]:
        rows, steps, group = signal_crossings(ctx)
        if rows.size == 0:
            return [self.value("red_light_violations", 0, True), self.value("signals_passed", 0)]
        red_row = ctx.scenario.signals.states[rows, ctx.log_step_of[steps]] == SignalState.STOP
        # a group is run on red when each of its signals was crossed on red at least once
        red = sum(all(red_row[(group == g) & (rows == row)].any() for row in np.unique(rows[group == g]))
                  for g in np.unique(group[group >= 0]))  # fmt: skip
        return [self.value("red_light_violations", red, red == 0), self.value("signals_passed", np.unique(rows).size)]
