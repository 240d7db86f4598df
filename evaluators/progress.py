"""Progress along the expert's route, where the expert is the logged ego and its route its path.

Both progresses are arc lengths along the logged ego's path (a polyline of its valid positions):
the expert's is the path's length; the ego's is where its last valid position projects onto
the path minus where its first one does. The ratio is nuPlan's with a 2 m floor,
min(1, max(ego, 2) / max(expert, 2)), so a scene where the expert barely moves does not punish
a standing ego; the ego is making progress when the ratio is at least 0.2. Projection clamps to
the path's ends, so driving past the expert's last position cannot raise the ratio above 1.

A rollout that ended at its goal (``termination == "goal"``: the twin found the ego at the end
of the logged path, within its goal tolerance) completed the route: its ratio is 1, whatever
metre of tolerance was left (``ego_progress_m`` still says where it stopped). Without this the
expert itself scores 0.88 on a slow NGSIM car whose 8 m path ends 1 m after its goal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from evaluators.base import Evaluator, MetricSpec, MetricValue, register
from evaluators.config import check_fields
from evaluators.context import Context


def progress_ratio(ego_m: float, expert_m: float, floor_m: float) -> float:
    """min(1, max(ego, floor) / max(expert, floor))."""
    return min(1.0, max(ego_m, floor_m) / max(expert_m, floor_m))


@dataclass(frozen=True, slots=True)
class ProgressSettings:
    """``[evaluators.progress]``: the floor of both progresses in the ratio [m] (2), and the least
    ratio that counts as making progress (0.2)."""

    floor_m: float = 2.0
    making_progress_ratio: float = 0.2

    def __post_init__(self) -> None:
        check_fields(self, "[evaluators.progress]", nonneg=("floor_m",), unit_interval=("making_progress_ratio",))


@register("progress")
class Progress(Evaluator):
    """Ego and expert progress along the expert's path, their ratio and nuPlan's making-progress multiplier."""

    settings_type = ProgressSettings
    metrics = (
        MetricSpec("ego_progress_m", "m", "ego progress along the logged ego's path"),
        MetricSpec("expert_progress_m", "m", "length of the logged ego's path"),
        MetricSpec("progress_ratio", "1", "min(1, max(ego, 2 m) / max(expert, 2 m)); 1 when the rollout ended at its goal"),
        MetricSpec("making_progress", "bool", "progress ratio >= 0.2 (nuPlan multiplier)", ">= 0.2"),
    )

    def _compute(self, ctx: Context) -> list[MetricValue]:
        cfg = self.settings(ctx)
        path = ctx.expert_xy
        keep = np.r_[True, np.any(np.diff(path, axis=0) != 0, axis=1)] if len(path) else np.zeros(0, bool)
        path = path[keep]
        if len(path) >= 2:
            line = shapely.linestrings(path)
            expert = float(shapely.length(line))
            ends = ctx.ego_xy[ctx.ego_steps[[0, -1]]]
            s = shapely.line_locate_point(line, shapely.points(ends))
            ego = float(s[1] - s[0])
        else:
            expert = ego = 0.0
        ratio = 1.0 if ctx.rollout.termination == "goal" else progress_ratio(ego, expert, cfg.floor_m)
        making = ratio >= cfg.making_progress_ratio
        return [
            self.value("ego_progress_m", ego),
            self.value("expert_progress_m", expert),
            self.value("progress_ratio", ratio),
            self.value("making_progress", making, making),
        ]
