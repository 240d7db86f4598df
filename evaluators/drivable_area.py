"""Drivable-area compliance: how far an ego corner ever got outside the drivable area.

The drivable area is the union of the map's drivable-area and driveway polygons and its vehicle
lanes' polygons (see ``MapGeometry``). The metric is nuPlan's: the largest distance of any of the
ego's four corners outside it over the rollout; compliant (multiplier 1) at or below
``[evaluators.drivable_area] max_distance_m`` (0.3 m), else 0.

Two refinements keep it truthful on real maps (see ``Context.corner_offroad_m``): where the map
has road edges, a corner outside the drivable area counts only beyond a road edge, measured from
that edge (maps that derive the drivable area from lane centerlines miss parking lanes and
shoulders between the lanes and the curb); and a corner that left through the map's cut (its
way back ends on the edge of the map's extent, crossing no road edge: maps are cropped
around the log, and the road goes on beyond) is not judged; such steps are counted in
``offmap_steps``. A map without any drivable geometry cannot be judged: the distance is NaN and
the multiplier 1.

Judged against the log: the planner fails only where it is beyond ``max_distance_m`` *and*
further off than the logged ego itself within the rollout's time by more than ``log_margin_m``;
so where the log is off the road (NGSIM boxes past their lanelet's edge), or within the margin
of the bound, the log's distance plus the margin is the limit. ``log_drivable_area_max_distance_m``
holds the log's distance. The engine's own off-road flag (``rollout.offroad``, all False in a log
replay) is reported beside it, not mixed in: it depends on the twin's road mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.base import Evaluator, MetricSpec, MetricValue, register
from evaluators.config import check_fields
from evaluators.context import Context


#: Rounding below which a distance equals its limit [m].
TOLERANCE_M = 1e-9


@dataclass(frozen=True, slots=True)
class DrivableAreaSettings:
    """``[evaluators.drivable_area]``.

    Attributes:
        max_distance_m: largest distance of an ego corner outside the drivable area [m] (nuPlan 0.3).
        log_margin_m: the planner fails only beyond the log's own distance plus this [m] (0.2):
            where the log itself is off the road, or within this margin of the bound, the log
            sets the limit.
    """

    max_distance_m: float = 0.3
    log_margin_m: float = 0.2

    def __post_init__(self) -> None:
        check_fields(self, "[evaluators.drivable_area]", nonneg=("max_distance_m", "log_margin_m"))


@register("drivable_area")
class DrivableArea(Evaluator):
    """Largest corner distance outside the drivable area, and nuPlan's compliance multiplier."""

    settings_type = DrivableAreaSettings
    metrics = (
        MetricSpec("drivable_area_max_distance_m", "m", "largest distance of an ego corner outside the drivable area", "<= 0.3 m"),
        MetricSpec("drivable_area_compliance", "1", "nuPlan multiplier: 1 when the distance is <= 0.3 m, else 0", "== 1"),
        MetricSpec("offroad_engine_steps", "count", "steps the engine found an ego corner off the road surface"),
        MetricSpec("offmap_steps", "count", "steps with an ego corner off the map's cut edge (not judged)"),
        MetricSpec("log_drivable_area_max_distance_m", "m", "the logged ego's largest corner distance outside over the same time (null unless judged against the log)"),
    )

    def _compute(self, ctx: Context) -> list[MetricValue]:
        dist = ctx.corner_offroad_m
        worst = float(np.nanmax(dist)) if np.isfinite(dist).any() else float("nan")
        cfg = self.settings(ctx)
        allowed = cfg.max_distance_m
        log_worst = ctx.log.offroad_m if ctx.log is not None else float("nan")
        if log_worst + cfg.log_margin_m > cfg.max_distance_m:  # the log itself is off or near it (NaN: not judged)
            allowed = log_worst + cfg.log_margin_m
            verdict = "fails" if worst > allowed + TOLERANCE_M else "passes"
            ctx.note("drivable_area", f"log itself {log_worst:.2f} m off-road; planner {worst:.2f} m {verdict} (limit {allowed:.2f} m)")
        ok = not worst > allowed + TOLERANCE_M  # NaN (no drivable area known) is not a violation
        engine = int(np.count_nonzero(np.asarray(ctx.rollout.offroad, dtype=bool) & ctx.ego_valid))
        known = np.isfinite(dist).all(axis=1)
        series = np.full(ctx.num_steps, np.nan)
        series[known] = dist[known].max(axis=1)
        ctx.series["offroad_m"] = series
        return [
            self.value("drivable_area_max_distance_m", worst, ok if np.isfinite(worst) else None),
            self.value("drivable_area_compliance", 1.0 if ok else 0.0, ok),
            self.value("offroad_engine_steps", engine),
            self.value("offmap_steps", int((np.isnan(dist).any(axis=1) & ctx.ego_valid).sum()) if ctx.map.drivable is not None else 0),
            self.value("log_drivable_area_max_distance_m", log_worst),
        ]
