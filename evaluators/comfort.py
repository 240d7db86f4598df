"""Comfort (nuPlan's ``ego_is_comfortable``): accelerations, jerks and yaw rates within bounds.

Derivatives of 10 Hz samples amplify noise, so each is a Savitzky-Golay derivative (a local
least-squares polynomial, evaluated like scipy's ``mode="interp"`` at the ends), as nuPlan does:

- acceleration: d/dt of the velocity vector, window ``accel_window`` (9), degree 2; its
  projections on the heading and its normal are the longitudinal and lateral accelerations;
- longitudinal jerk: d/dt of the longitudinal acceleration, window ``jerk_window`` (15), degree 2;
- jerk: d/dt of the acceleration's magnitude (nuPlan's "jerk magnitude"), same window;
- yaw rate: d/dt of the unwrapped heading, window ``yaw_window`` (5), degree 2;
- yaw acceleration: its second derivative, window 5, degree 3.

The ego's valid steps are processed run by run (a gap restarts the filters). Comfortable: the
longitudinal acceleration stays in [-4.05, 2.40] m/s2, |lateral| <= 4.89 m/s2, |yaw rate| <=
0.95 rad/s, |yaw acceleration| <= 1.93 rad/s2, |longitudinal jerk| <= 4.13 m/s3, |jerk| <= 8.37 m/s3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.base import Evaluator, MetricSpec, MetricValue, register
from evaluators.config import check_fields
from evaluators.context import Context, valid_runs
from evaluators.errors import EvaluatorError
from evaluators.geometry import savgol

@dataclass(frozen=True, slots=True)
class ComfortSettings:
    """``[evaluators.comfort]``: nuPlan's comfort bounds and the Savitzky-Golay windows.

    Attributes:
        min_lon_accel_mps2, max_lon_accel_mps2: longitudinal acceleration bounds [m/s2] (-4.05, 2.40).
        max_abs_lat_accel_mps2: [m/s2] (4.89).  max_abs_yaw_rate_radps: [rad/s] (0.95).
        max_abs_yaw_accel_radps2: [rad/s2] (1.93).  max_abs_lon_jerk_mps3: [m/s3] (4.13).
        max_abs_jerk_mps3: [m/s3] (8.37).
        accel_window, jerk_window, yaw_window: window lengths [samples] for the acceleration
            (from velocity), the jerks (from acceleration) and the yaw rate and acceleration
            (from heading) (9, 15, 5: nuPlan's, the 8-sample acceleration smoothing made odd).
        log_margin_ratio: where the log itself breaks a bound, the planner breaks it only beyond
            the log's own extreme times 1 + this (0.25).
    """

    min_lon_accel_mps2: float = -4.05
    max_lon_accel_mps2: float = 2.40
    max_abs_lat_accel_mps2: float = 4.89
    max_abs_yaw_rate_radps: float = 0.95
    max_abs_yaw_accel_radps2: float = 1.93
    max_abs_lon_jerk_mps3: float = 4.13
    max_abs_jerk_mps3: float = 8.37
    accel_window: int = 9
    jerk_window: int = 15
    yaw_window: int = 5
    log_margin_ratio: float = 0.25

    def __post_init__(self) -> None:
        src = "[evaluators.comfort]"
        windows = ("accel_window", "jerk_window", "yaw_window")
        positive = ("max_lon_accel_mps2", "max_abs_lat_accel_mps2", "max_abs_yaw_rate_radps", "max_abs_yaw_accel_radps2",
                    "max_abs_lon_jerk_mps3", "max_abs_jerk_mps3")  # fmt: skip
        check_fields(self, src, positive=positive, integer=windows, nonneg=("log_margin_ratio",))
        if not self.min_lon_accel_mps2 < 0:
            raise EvaluatorError(src, "min_lon_accel_mps2", f"must be negative, got {self.min_lon_accel_mps2!r}")
        for name in windows:
            w = getattr(self, name)
            if w < 3 or w % 2 == 0:
                raise EvaluatorError(src, name, f"must be an odd window of at least 3 samples, got {w}")


#: Series names of ``ego_dynamics``.
DYNAMICS = ("speed_mps", "lon_accel_mps2", "lat_accel_mps2", "lon_jerk_mps3", "jerk_mps3", "yaw_rate_radps", "yaw_accel_radps2")


def ego_dynamics(ctx: Context) -> dict[str, np.ndarray]:
    """(S,) series of the ego's smoothed dynamics, NaN where the ego is invalid (cached in ``ctx.series``)."""
    if "lon_accel_mps2" in ctx.series:
        return {k: ctx.series[k] for k in DYNAMICS}
    cfg = ctx.config.of("comfort")
    r = ctx.rollout
    e = ctx.ego
    dt = ctx.dt_s
    out = {k: np.full(ctx.num_steps, np.nan) for k in DYNAMICS}
    for run in valid_runs(ctx.ego_valid):
        v = np.stack([r.vx[e, run], r.vy[e, run]])  # (2, n)
        yaw = np.unwrap(r.yaw[e, run])
        h = np.stack([np.cos(yaw), np.sin(yaw)])
        a = savgol(v, cfg.accel_window, 2, 1, dt)
        lon = np.sum(a * h, axis=0)
        lat = -a[0] * h[1] + a[1] * h[0]
        out["speed_mps"][run] = np.hypot(v[0], v[1])
        out["lon_accel_mps2"][run] = lon
        out["lat_accel_mps2"][run] = lat
        out["lon_jerk_mps3"][run] = savgol(lon, cfg.jerk_window, 2, 1, dt)
        out["jerk_mps3"][run] = savgol(np.hypot(a[0], a[1]), cfg.jerk_window, 2, 1, dt)
        out["yaw_rate_radps"][run] = savgol(yaw, cfg.yaw_window, 2, 1, dt)
        out["yaw_accel_radps2"][run] = savgol(yaw, cfg.yaw_window, 3, 2, dt)
    ctx.series.update(out)
    return out


def _max_abs(x: np.ndarray) -> float:
    return float(np.nanmax(np.abs(x))) if np.isfinite(x).any() else 0.0


@register("comfort")
class Comfort(Evaluator):
    """The extremes of the ego's smoothed dynamics and whether all lie within nuPlan's comfort bounds."""

    settings_type = ComfortSettings
    metrics = (
        MetricSpec("lon_accel_min_mps2", "m/s2", "most negative longitudinal acceleration", ">= -4.05 m/s2"),
        MetricSpec("lon_accel_max_mps2", "m/s2", "largest longitudinal acceleration", "<= 2.40 m/s2"),
        MetricSpec("max_abs_lat_accel_mps2", "m/s2", "largest |lateral acceleration|", "<= 4.89 m/s2"),
        MetricSpec("max_abs_yaw_rate_radps", "rad/s", "largest |yaw rate|", "<= 0.95 rad/s"),
        MetricSpec("max_abs_yaw_accel_radps2", "rad/s2", "largest |yaw acceleration|", "<= 1.93 rad/s2"),
        MetricSpec("max_abs_lon_jerk_mps3", "m/s3", "largest |longitudinal jerk|", "<= 4.13 m/s3"),
        MetricSpec("max_abs_jerk_mps3", "m/s3", "largest |jerk| (derivative of the acceleration magnitude)", "<= 8.37 m/s3"),
        MetricSpec("comfortable", "bool", "every comfort quantity within its bound", "all within bounds"),
    )

    def _compute(self, ctx: Context) -> list[MetricValue]:
        cfg = self.settings(ctx)
        d = ego_dynamics(ctx)
        lon = d["lon_accel_mps2"]
        lo = float(np.nanmin(lon)) if np.isfinite(lon).any() else 0.0
        hi = float(np.nanmax(lon)) if np.isfinite(lon).any() else 0.0
        checks = {
            "lon_accel_min_mps2": (lo, lo >= cfg.min_lon_accel_mps2),
            "lon_accel_max_mps2": (hi, hi <= cfg.max_lon_accel_mps2),
            "max_abs_lat_accel_mps2": (_max_abs(d["lat_accel_mps2"]), None),
            "max_abs_yaw_rate_radps": (_max_abs(d["yaw_rate_radps"]), None),
            "max_abs_yaw_accel_radps2": (_max_abs(d["yaw_accel_radps2"]), None),
            "max_abs_lon_jerk_mps3": (_max_abs(d["lon_jerk_mps3"]), None),
            "max_abs_jerk_mps3": (_max_abs(d["jerk_mps3"]), None),
        }
        bounds = {
            "max_abs_lat_accel_mps2": cfg.max_abs_lat_accel_mps2,
            "max_abs_yaw_rate_radps": cfg.max_abs_yaw_rate_radps,
            "max_abs_yaw_accel_radps2": cfg.max_abs_yaw_accel_radps2,
            "max_abs_lon_jerk_mps3": cfg.max_abs_lon_jerk_mps3,
            "max_abs_jerk_mps3": cfg.max_abs_jerk_mps3,
        }
        for name, bound in bounds.items():
            checks[name] = (checks[name][0], checks[name][0] <= bound)
        comfortable = all(ok for _, ok in checks.values())
        return [*(self.value(n, v, ok) for n, (v, ok) in checks.items()), self.value("comfortable", comfortable, comfortable)]
