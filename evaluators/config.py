"""Thresholds, weights and penalties of every metric: one frozen config with the standard defaults.

The defaults are nuPlan's closed-loop metric parameters, CARLA's infraction penalties and
Waymax's kinematic-feasibility bounds, so that a score here means what it means there.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evaluators.errors import EvaluatorError


@dataclass(frozen=True, slots=True)
class EvaluatorConfig:
    """Every threshold, weight and penalty the evaluators use (SI units).

    Attributes:
        evaluators: names of the evaluators to run; empty means all registered. The inputs of a
            selected composite score are added automatically.
        stopped_speed_mps: at or below this speed an agent or the ego is stopped, for the
            collision classification [m/s] (nuPlan 0.05).
        collision_min_overlap_m: boxes overlap when they interpenetrate by more than this [m];
            0 counts any overlap, as nuPlan does.
        front_edge_tolerance_m: a collision is a front collision when the ego's front edge is
            within this distance of the other box [m] (needed when only the engine saw the contact).
        rear_axle_offset_ratio: the rear axle sits this fraction of the length behind the box
            centre; "ahead" and "behind" are judged from it (nuPlan's vehicle: 1.461 m of 5.176 m).
        agent_ahead_deg, agent_behind_deg: an agent is ahead below, behind above this angle
            between the ego's heading and the direction to it [deg] (nuPlan 30 and 150).
        max_at_fault_vru, max_at_fault_vehicle, max_at_fault_object: at-fault collisions tolerated
            per class; the class score is max(0, 1 - n / (max + 1)) (nuPlan 0, 0, 1).
        max_offroad_m: largest distance of an ego corner outside the drivable area [m] (0.3).
        direction_window_s: window of the wrong-way progress sum [s] (1.0).
        direction_compliant_m, direction_violation_m: wrong-way progress below the first scores 1,
            below the second 0.5, else 0 [m] (2, 6).
        min_progress_m: floor of both progresses in the progress ratio [m] (2).
        making_progress_ratio: least progress ratio that counts as making progress (0.2).
        ttc_step_s, ttc_horizon_s: projection step and horizon of the time to collision [s] (0.1, 3).
        min_ttc_s: the TTC is within bound when it never drops to this or below [s] (0.95).
        ttc_ego_stopped_mps: no TTC is computed while the ego is this slow [m/s] (nuPlan 5e-3).
        max_overspeed_mps: overspeed that, held for the whole rollout, makes the speed-limit
            compliance 0 [m/s] (2.23).
        min_lon_accel_mps2, max_lon_accel_mps2: longitudinal acceleration bounds [m/s2] (-4.05, 2.40).
        max_abs_lat_accel_mps2: [m/s2] (4.89).  max_abs_yaw_rate_radps: [rad/s] (0.95).
        max_abs_yaw_accel_radps2: [rad/s2] (1.93).  max_abs_lon_jerk_mps3: [m/s3] (4.13).
        max_abs_jerk_mps3: [m/s3] (8.37).
        accel_window, jerk_window, yaw_window: Savitzky-Golay window lengths [samples] for the
            acceleration (from velocity), the jerks (from acceleration) and the yaw rate and yaw
            acceleration (from heading) (9, 15, 5: nuPlan's, the 8-sample acceleration smoothing
            made odd).
        max_abs_accel_mps2: inverse-bicycle acceleration bound [m/s2] (Waymax 10.4).
        max_abs_curvature_1pm: inverse-bicycle curvature bound [1/m] (Waymax 0.3).
        kinematics_min_speed_mps: below this speed no curvature is inferred [m/s] (Waymax 0.6).
        red_light_lateral_m: the ego passes a signal's stop point when its tail crosses the stop line
            within this lateral distance of it [m] (2.0, about half a lane either side).
        weight_progress, weight_ttc, weight_speed_limit, weight_comfort: weights of the closed-loop
            score's weighted mean (5, 5, 4, 2).
        penalty_pedestrian: driving-score factor per collision with a pedestrian or cyclist (0.5).
        penalty_vehicle: per collision with a vehicle (0.6).
        penalty_object: per collision with a static object or other obstacle (0.65).
        penalty_red_light: per red light run (0.7).
    """

    evaluators: tuple[str, ...] = ()
    stopped_speed_mps: float = 0.05
    collision_min_overlap_m: float = 0.0
    front_edge_tolerance_m: float = 0.1
    rear_axle_offset_ratio: float = 1.461 / 5.176
    agent_ahead_deg: float = 30.0
    agent_behind_deg: float = 150.0
    max_at_fault_vru: int = 0
    max_at_fault_vehicle: int = 0
    max_at_fault_object: int = 1
    max_offroad_m: float = 0.3
    direction_window_s: float = 1.0
    direction_compliant_m: float = 2.0
    direction_violation_m: float = 6.0
    min_progress_m: float = 2.0
    making_progress_ratio: float = 0.2
    ttc_step_s: float = 0.1
    ttc_horizon_s: float = 3.0
    min_ttc_s: float = 0.95
    ttc_ego_stopped_mps: float = 5e-3
    max_overspeed_mps: float = 2.23
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
    max_abs_accel_mps2: float = 10.4
    max_abs_curvature_1pm: float = 0.3
    kinematics_min_speed_mps: float = 0.6
    red_light_lateral_m: float = 2.0
    weight_progress: float = 5.0
    weight_ttc: float = 5.0
    weight_speed_limit: float = 4.0
    weight_comfort: float = 2.0
    penalty_pedestrian: float = 0.5
    penalty_vehicle: float = 0.6
    penalty_object: float = 0.65
    penalty_red_light: float = 0.7

    def __post_init__(self) -> None:
        object.__setattr__(self, "evaluators", tuple(str(e) for e in self.evaluators))
        src = "EvaluatorConfig"
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "evaluators":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise EvaluatorError(src, f.name, f"must be a finite number, got {value!r}")
        nonneg = (
            "stopped_speed_mps", "collision_min_overlap_m", "front_edge_tolerance_m", "max_offroad_m",
            "min_progress_m", "making_progress_ratio", "min_ttc_s", "ttc_ego_stopped_mps",
            "max_at_fault_vru", "max_at_fault_vehicle", "max_at_fault_object", "kinematics_min_speed_mps",
            "weight_progress", "weight_ttc", "weight_speed_limit", "weight_comfort",
        )  # fmt: skip
        positive = (
            "direction_window_s", "direction_compliant_m", "ttc_step_s", "ttc_horizon_s", "max_overspeed_mps",
            "max_lon_accel_mps2", "max_abs_lat_accel_mps2", "max_abs_yaw_rate_radps", "max_abs_yaw_accel_radps2",
            "max_abs_lon_jerk_mps3", "max_abs_jerk_mps3", "max_abs_accel_mps2", "max_abs_curvature_1pm",
            "red_light_lateral_m",
        )  # fmt: skip
        for name in nonneg:
            if getattr(self, name) < 0:
                raise EvaluatorError(src, name, f"must be >= 0, got {getattr(self, name)!r}")
        for name in positive:
            if not getattr(self, name) > 0:
                raise EvaluatorError(src, name, f"must be > 0, got {getattr(self, name)!r}")
        for name in ("max_at_fault_vru", "max_at_fault_vehicle", "max_at_fault_object", "accel_window", "jerk_window", "yaw_window"):
            if int(getattr(self, name)) != getattr(self, name):
                raise EvaluatorError(src, name, f"must be an integer, got {getattr(self, name)!r}")
        for name in ("accel_window", "jerk_window", "yaw_window"):
            w = getattr(self, name)
            if w < 3 or w % 2 == 0:
                raise EvaluatorError(src, name, f"must be an odd window of at least 3 samples, got {w}")
        for name in ("penalty_pedestrian", "penalty_vehicle", "penalty_object", "penalty_red_light"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise EvaluatorError(src, name, f"must be in [0, 1], got {getattr(self, name)!r}")
        if not 0.0 <= self.rear_axle_offset_ratio < 0.5:
            raise EvaluatorError(src, "rear_axle_offset_ratio", f"must be in [0, 0.5), got {self.rear_axle_offset_ratio!r}")
        if not 0.0 < self.agent_ahead_deg < self.agent_behind_deg < 180.0:
            raise EvaluatorError(src, "agent_behind_deg", "need 0 < agent_ahead_deg < agent_behind_deg < 180")
        if not self.direction_violation_m > self.direction_compliant_m:
            raise EvaluatorError(src, "direction_violation_m", "must be larger than direction_compliant_m")
        if not self.min_lon_accel_mps2 < 0:
            raise EvaluatorError(src, "min_lon_accel_mps2", f"must be negative, got {self.min_lon_accel_mps2!r}")
        if self.ttc_step_s > self.ttc_horizon_s:
            raise EvaluatorError(src, "ttc_step_s", "must not exceed ttc_horizon_s")
        if self.weight_progress + self.weight_ttc + self.weight_speed_limit + self.weight_comfort <= 0:
            raise EvaluatorError(src, "weight_progress", "the closed-loop weights must not all be 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "evaluator config") -> EvaluatorConfig:
        """A config from a parsed TOML table; an unknown key is an error naming the key and ``source``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise EvaluatorError(source, unknown[0], f"unknown evaluator setting; known: {sorted(known)}")
        values = dict(values)
        if "evaluators" in values:
            names = values["evaluators"]
            if isinstance(names, str) or not all(isinstance(n, str) for n in names):
                raise EvaluatorError(source, "evaluators", "must be a list of evaluator names")
            values["evaluators"] = tuple(names)
        try:
            return cls(**values)
        except EvaluatorError as exc:
            raise EvaluatorError(source, exc.field, exc.problem) from None

    def replace(self, **changes: Any) -> EvaluatorConfig:
        return dataclasses.replace(self, **changes)
