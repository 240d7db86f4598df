"""Kinematic feasibility (Waymax's): could a bicycle model have driven the ego's trajectory?

For each pair of consecutive valid steps the inverse of Waymax's invertible bicycle model gives
the acceleration and steering curvature that make the transition:

- acceleration = (|v(t+1)| - |v(t)|) / dt;
- curvature = wrap(heading(t+1) - heading(t)) / (|v(t)| dt + acceleration dt^2 / 2), where the
  heading is the direction of the velocity (less noisy than the recorded heading; turned by pi
  while reversing); 0 when either speed is below ``min_speed_mps`` (0.6 m/s), where
  the direction is noise.

One deviation from Waymax, on purpose: Waymax takes the heading change from the recorded heading
at t to the velocity direction at t+1, which turns any steady offset between the two (Waymo
labels' headings lag their velocity by about 0.1 rad in turns) into curvature: the expert of a
real Waymo log then "needs" 0.44 1/m. Differencing one signal does not.

Infeasible when |acceleration| > 10.4 m/s2 or |curvature| > 0.3 1/m at any transition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.base import Evaluator, MetricSpec, MetricValue, register
from evaluators.config import check_fields
from evaluators.context import Context
from scenarios.common import wrap_angle


@dataclass(frozen=True, slots=True)
class KinematicsSettings:
    """``[evaluators.kinematics]``: the inverse-bicycle bounds, acceleration [m/s2] (Waymax 10.4)
    and curvature [1/m] (0.3), and the speed below which no curvature is inferred [m/s] (0.6)."""

    max_abs_accel_mps2: float = 10.4
    max_abs_curvature_1pm: float = 0.3
    min_speed_mps: float = 0.6

    def __post_init__(self) -> None:
        check_fields(self, "[evaluators.kinematics]", positive=("max_abs_accel_mps2", "max_abs_curvature_1pm"), nonneg=("min_speed_mps",))


def inverse_bicycle(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """(S - 1,) acceleration [m/s2] and curvature [1/m] of each transition, NaN where not both steps are valid."""
    r = ctx.rollout
    e = ctx.ego
    cfg = ctx.config.of("kinematics")
    ok = ctx.ego_valid[:-1] & ctx.ego_valid[1:]
    dt = np.diff(ctx.t_s)
    speed = ctx.speed[e]
    accel = np.diff(speed) / np.where(dt > 0, dt, 1.0)
    yaw = r.yaw[e]
    vx, vy = r.vx[e], r.vy[e]
    direction = np.arctan2(vy, vx)
    reversing = (vx * np.cos(yaw) + vy * np.sin(yaw)) < 0
    direction = np.where(reversing, direction + np.pi, direction)
    slow = speed < cfg.min_speed_mps
    travel = speed[:-1] * dt + 0.5 * accel * dt**2
    turn = wrap_angle(np.diff(direction))
    curvature = turn / np.where(np.abs(travel) > 1e-9, travel, np.inf)
    curvature = np.where(slow[:-1] | slow[1:], 0.0, curvature)
    return np.where(ok, accel, np.nan), np.where(ok, curvature, np.nan)


@register("kinematics")
class KinematicFeasibility(Evaluator):
    """Largest inverse-bicycle acceleration and curvature, and whether both stay within Waymax's bounds."""

    settings_type = KinematicsSettings
    metrics = (
        MetricSpec("max_abs_inverse_accel_mps2", "m/s2", "largest |acceleration| the inverse bicycle model needs", "<= 10.4 m/s2"),
        MetricSpec("max_abs_curvature_1pm", "1/m", "largest |curvature| the inverse bicycle model needs", "<= 0.3 1/m"),
        MetricSpec("kinematically_feasible", "bool", "both within bounds at every transition", "all within bounds"),
    )

    def _compute(self, ctx: Context) -> list[MetricValue]:
        cfg = self.settings(ctx)
        accel, curvature = inverse_bicycle(ctx)
        a = float(np.nanmax(np.abs(accel))) if np.isfinite(accel).any() else 0.0
        k = float(np.nanmax(np.abs(curvature))) if np.isfinite(curvature).any() else 0.0
        a_ok, k_ok = a <= cfg.max_abs_accel_mps2, k <= cfg.max_abs_curvature_1pm
        return [
            self.value("max_abs_inverse_accel_mps2", a, a_ok),
            self.value("max_abs_curvature_1pm", k, k_ok),
            self.value("kinematically_feasible", a_ok and k_ok, a_ok and k_ok),
        ]
