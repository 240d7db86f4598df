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
        log_margin_ratio: the planner breaks a bound only beyond the log's own extreme times 1 +
            this (0.25), where that lies beyond the bound (the log breaks it, or nearly).
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


def dynamics_series(
    vx: np.ndarray, vy: np.ndarray, yaw: np.ndarray, valid: np.ndarray, dt: float, cfg: ComfortSettings
) -> dict[str, np.ndarray]:
    """(S,) series of one vehicle's smoothed dynamics (``DYNAMICS``) from its (S,) velocity [m/s],
    heading [rad] and validity at step ``dt`` [s]; NaN where invalid, each valid run filtered apart."""
    n = len(valid)
    out = {k: np.full(n, np.nan) for k in DYNAMICS}
    for run in valid_runs(np.asarray(valid, dtype=bool)):
        v = np.stack([vx[run], vy[run]])  # (2, n)
        heading = np.unwrap(yaw[run])
        h = np.stack([np.cos(heading), np.sin(heading)])
        a = savgol(v, cfg.accel_window, 2, 1, dt)
        lon = np.sum(a * h, axis=0)
        lat = -a[0] * h[1] + a[1] * h[0]
        out["speed_mps"][run] = np.hypot(v[0], v[1])
        out["lon_accel_mps2"][run] = lon
        out["lat_accel_mps2"][run] = lat
        out["lon_jerk_mps3"][run] = savgol(lon, cfg.jerk_window, 2, 1, dt)
        out["jerk_mps3"][run] = savgol(np.hypot(a[0], a[1]), cfg.jerk_window, 2, 1, dt)
        out["yaw_rate_radps"][run] = savgol(heading, cfg.yaw_window, 2, 1, dt)
        out["yaw_accel_radps2"][run] = savgol(heading, cfg.yaw_window, 3, 2, dt)
    return out


def ego_dynamics(ctx: Context) -> dict[str, np.ndarray]:
    """(S,) series of the ego's smoothed dynamics, NaN where the ego is invalid (cached in ``ctx.series``)."""
    if "lon_accel_mps2" in ctx.series:
        return {k: ctx.series[k] for k in DYNAMICS}
    r, e = ctx.rollout, ctx.ego
    out = dynamics_series(r.vx[e], r.vy[e], r.yaw[e], ctx.ego_valid, ctx.dt_s, ctx.config.of("comfort"))
    ctx.series.update(out)
    return out


def _max_abs(x: np.ndarray) -> float:
    return float(np.nanmax(np.abs(x))) if np.isfinite(x).any() else 0.0


#: The comfort quantities: name -> (its series in ``DYNAMICS``, the bound's setting, "min" when
#: the bound is a lower one).
QUANTITIES = {
    "lon_accel_min_mps2": ("lon_accel_mps2", "min_lon_accel_mps2", "min"),
    "lon_accel_max_mps2": ("lon_accel_mps2", "max_lon_accel_mps2", "max"),
    "max_abs_lat_accel_mps2": ("lat_accel_mps2", "max_abs_lat_accel_mps2", "abs"),
    "max_abs_yaw_rate_radps": ("yaw_rate_radps", "max_abs_yaw_rate_radps", "abs"),
    "max_abs_yaw_accel_radps2": ("yaw_accel_radps2", "max_abs_yaw_accel_radps2", "abs"),
    "max_abs_lon_jerk_mps3": ("lon_jerk_mps3", "max_abs_lon_jerk_mps3", "abs"),
    "max_abs_jerk_mps3": ("jerk_mps3", "max_abs_jerk_mps3", "abs"),
}


def extremes(d: dict[str, np.ndarray]) -> dict[str, float]:
    """Each comfort quantity's extreme over the series ``d`` (0 where none is defined)."""
    out = {}
    for name, (series, _, kind) in QUANTITIES.items():
        x = d[series]
        if not np.isfinite(x).any():
            out[name] = 0.0
        elif kind == "min":
            out[name] = float(np.nanmin(x))
        elif kind == "max":
            out[name] = float(np.nanmax(x))
        else:
            out[name] = _max_abs(x)
    return out


def _within(value: float, bound: float, kind: str) -> bool:
    return value >= bound if kind == "min" else value <= bound


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
        MetricSpec("comfortable", "bool", "every comfort quantity within its bound (judged against the log where it breaks one)", "all within bounds"),
        MetricSpec("log_comfortable", "bool", "the log itself within every comfort bound over the same time (null unless judged against the log)"),
    )

    def _compute(self, ctx: Context) -> list[MetricValue]:
        cfg = self.settings(ctx)
        values = extremes(ego_dynamics(ctx))
        log = ctx.log.comfort if ctx.log is not None else None
        checks, broken, widened = {}, [], []
        for name, (_, setting, kind) in QUANTITIES.items():
            bound = getattr(cfg, setting)
            allowed = bound
            if log is not None:  # the planner breaks a bound only beyond the log's own extreme x 1 + margin
                wide = log[name] * (1 + cfg.log_margin_ratio)
                if not _within(wide, bound, kind):  # the log breaks it, or is within the margin of it
                    allowed = wide
                    widened.append(f"{name} {log[name]:.2f}")
                    if not _within(log[name], bound, kind):
                        broken.append(name)
            checks[name] = (values[name], _within(values[name], allowed, kind))
        comfortable = all(ok for _, ok in checks.values())
        log_ok = float("nan") if log is None else not broken
        if widened:
            state = "uncomfortable" if broken else "near its comfort bounds"
            verdict = "within" if comfortable else "beyond"
            ctx.note("comfort", f"log itself {state} ({', '.join(widened)}); planner {verdict} the log's extremes x {1 + cfg.log_margin_ratio:g}")
        return [
            *(self.value(n, v, ok) for n, (v, ok) in checks.items()),
            self.value("comfortable", comfortable, comfortable),
            self.value("log_comfortable", log_ok),
        ]
