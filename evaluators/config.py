"""The evaluators' configuration: shared scene settings, and each metric's own settings table.

``[evaluators]`` holds what every metric shares (which evaluators run, whether verdicts are judged
against the log, the collision-classification geometry that collisions and TTC both use); each
evaluator's own thresholds live in its own table, ``[evaluators.<name>]``, validated by the
frozen settings dataclass it declares (``Evaluator.settings_type``)::

    [evaluators]
    judge_against_log = true
    [evaluators.ttc]
    horizon_s = 3.0
    [evaluators.drivable_area]
    max_distance_m = 0.3

The defaults are nuPlan's closed-loop metric parameters, CARLA's infraction penalties and
Waymax's kinematic-feasibility bounds, so that a score here means what it means there. A plug-in
metric declares its settings the same way and gets its table validated with the file and key
named. The flat keys of earlier versions (``ttc_horizon_s = 3.0`` in ``[evaluators]``) are
rejected with the table and key they moved to.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from evaluators.errors import EvaluatorError
from scenarios.common import Registry, dataclass_from_mapping

#: Each evaluator's settings dataclass by evaluator name (filled by ``evaluators.base.register``).
SETTINGS: Registry[type] = Registry("evaluator settings table")

#: Where the flat ``[evaluators]`` keys of earlier versions went: old key -> (table, key).
MOVED = {
    "max_at_fault_vru": ("collisions", "max_at_fault_vru"),
    "max_at_fault_vehicle": ("collisions", "max_at_fault_vehicle"),
    "max_at_fault_object": ("collisions", "max_at_fault_object"),
    "max_offroad_m": ("drivable_area", "max_distance_m"),
    "direction_window_s": ("driving_direction", "window_s"),
    "direction_compliant_m": ("driving_direction", "compliant_m"),
    "direction_violation_m": ("driving_direction", "violation_m"),
    "min_progress_m": ("progress", "floor_m"),
    "making_progress_ratio": ("progress", "making_progress_ratio"),
    "ttc_step_s": ("ttc", "step_s"),
    "ttc_horizon_s": ("ttc", "horizon_s"),
    "min_ttc_s": ("ttc", "bound_s"),
    "ttc_ego_stopped_mps": ("ttc", "ego_stopped_mps"),
    "max_overspeed_mps": ("speed_limit", "max_overspeed_mps"),
    "min_lon_accel_mps2": ("comfort", "min_lon_accel_mps2"),
    "max_lon_accel_mps2": ("comfort", "max_lon_accel_mps2"),
    "max_abs_lat_accel_mps2": ("comfort", "max_abs_lat_accel_mps2"),
    "max_abs_yaw_rate_radps": ("comfort", "max_abs_yaw_rate_radps"),
    "max_abs_yaw_accel_radps2": ("comfort", "max_abs_yaw_accel_radps2"),
    "max_abs_lon_jerk_mps3": ("comfort", "max_abs_lon_jerk_mps3"),
    "max_abs_jerk_mps3": ("comfort", "max_abs_jerk_mps3"),
    "accel_window": ("comfort", "accel_window"),
    "jerk_window": ("comfort", "jerk_window"),
    "yaw_window": ("comfort", "yaw_window"),
    "max_abs_accel_mps2": ("kinematics", "max_abs_accel_mps2"),
    "max_abs_curvature_1pm": ("kinematics", "max_abs_curvature_1pm"),
    "kinematics_min_speed_mps": ("kinematics", "min_speed_mps"),
    "red_light_lateral_m": ("red_light", "lateral_m"),
    "weight_progress": ("closed_loop_score", "weight_progress"),
    "weight_ttc": ("closed_loop_score", "weight_ttc"),
    "weight_speed_limit": ("closed_loop_score", "weight_speed_limit"),
    "weight_comfort": ("closed_loop_score", "weight_comfort"),
    "penalty_pedestrian": ("driving_score", "penalty_pedestrian"),
    "penalty_vehicle": ("driving_score", "penalty_vehicle"),
    "penalty_object": ("driving_score", "penalty_object"),
    "penalty_red_light": ("driving_score", "penalty_red_light"),
}


def check_fields(
    obj: Any,
    source: str,
    *,
    nonneg: Iterable[str] = (),
    positive: Iterable[str] = (),
    integer: Iterable[str] = (),
    unit_interval: Iterable[str] = (),
    flags: Iterable[str] = (),
) -> None:
    """Validate a settings dataclass: every field a finite number (``flags`` booleans), with the
    sign, integrality and [0, 1] rules named; ``EvaluatorError(source, field, problem)`` else."""
    flags = set(flags)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in flags:
            if not isinstance(value, bool):
                raise EvaluatorError(source, f.name, f"must be true or false, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise EvaluatorError(source, f.name, f"must be a finite number, got {value!r}")
    for name in nonneg:
        if getattr(obj, name) < 0:
            raise EvaluatorError(source, name, f"must be >= 0, got {getattr(obj, name)!r}")
    for name in positive:
        if not getattr(obj, name) > 0:
            raise EvaluatorError(source, name, f"must be > 0, got {getattr(obj, name)!r}")
    for name in integer:
        if int(getattr(obj, name)) != getattr(obj, name):
            raise EvaluatorError(source, name, f"must be an integer, got {getattr(obj, name)!r}")
    for name in unit_interval:
        if not 0.0 <= getattr(obj, name) <= 1.0:
            raise EvaluatorError(source, name, f"must be in [0, 1], got {getattr(obj, name)!r}")


@dataclass(frozen=True, slots=True)
class EvaluatorConfig:
    """What every metric shares, and each evaluator's own settings (SI units).

    Attributes:
        evaluators: names of the evaluators to run; empty means all registered. The inputs of a
            selected composite score are added automatically.
        judge_against_log: judge a metric the logged trajectory itself fails (label noise: a
            box past a lane edge, a TTC under bound, overspeed, overlapping logged boxes)
            relative to the log for that scenario (see ``evaluators.against_log``); False gives
            absolute verdicts.
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
        tables: (evaluator name, settings) pairs given explicitly; every other evaluator uses
            its settings' defaults. Read them with ``of(name)``.
    """

    evaluators: tuple[str, ...] = ()
    judge_against_log: bool = True
    stopped_speed_mps: float = 0.05
    collision_min_overlap_m: float = 0.0
    front_edge_tolerance_m: float = 0.1
    rear_axle_offset_ratio: float = 1.461 / 5.176
    agent_ahead_deg: float = 30.0
    agent_behind_deg: float = 150.0
    tables: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        src = "[evaluators]"
        set_ = object.__setattr__
        set_(self, "evaluators", tuple(str(e) for e in self.evaluators))
        tables = self.tables.items() if isinstance(self.tables, Mapping) else self.tables
        set_(self, "tables", tuple(sorted((str(k), v) for k, v in tables)))
        shared = [f.name for f in dataclasses.fields(self) if f.name not in ("evaluators", "tables", "judge_against_log")]
        if not isinstance(self.judge_against_log, bool):
            raise EvaluatorError(src, "judge_against_log", f"must be true or false, got {self.judge_against_log!r}")
        for name in shared:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise EvaluatorError(src, name, f"must be a finite number, got {value!r}")
        for name in ("stopped_speed_mps", "collision_min_overlap_m", "front_edge_tolerance_m"):
            if getattr(self, name) < 0:
                raise EvaluatorError(src, name, f"must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.rear_axle_offset_ratio < 0.5:
            raise EvaluatorError(src, "rear_axle_offset_ratio", f"must be in [0, 0.5), got {self.rear_axle_offset_ratio!r}")
        if not 0.0 < self.agent_ahead_deg < self.agent_behind_deg < 180.0:
            raise EvaluatorError(src, "agent_behind_deg", "need 0 < agent_ahead_deg < agent_behind_deg < 180")
        for name, settings in self.tables:
            kind = SETTINGS.get(name) if name in SETTINGS else None
            if kind is None:
                raise EvaluatorError(src, name, f"no evaluator of that name has a settings table; known: {SETTINGS.names()}")
            if not isinstance(settings, kind):
                raise EvaluatorError(src, name, f"must be a {kind.__name__}, got {type(settings).__name__}")

    def of(self, name: str) -> Any:
        """The settings of evaluator ``name``: its table, or its settings' defaults (None without any)."""
        for key, settings in self.tables:
            if key == name:
                return settings
        return SETTINGS.get(name)() if name in SETTINGS else None

    def with_settings(self, name: str, **changes: Any) -> EvaluatorConfig:
        """A copy whose ``[evaluators.<name>]`` table has ``changes`` (validated)."""
        current = self.of(name)
        if current is None:
            raise EvaluatorError("[evaluators]", name, f"no evaluator of that name has a settings table; known: {SETTINGS.names()}")
        try:
            updated = dataclasses.replace(current, **changes)
        except TypeError as exc:
            raise EvaluatorError(f"[evaluators.{name}]", name, str(exc)) from None
        return dataclasses.replace(self, tables=(*((k, v) for k, v in self.tables if k != name), (name, updated)))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "evaluator config") -> EvaluatorConfig:
        """A config from a parsed ``[evaluators]`` table and its sub-tables.

        Errors name ``source`` and the key relative to ``[evaluators]`` ("ttc.horizon_s"): an
        unknown key or table, a flat key that moved to a table, a value out of range.
        """
        if not isinstance(values, Mapping):
            raise EvaluatorError(source, "", f"must be a table, got {type(values).__name__}")
        shared = {f.name for f in dataclasses.fields(cls)} - {"tables"}
        kwargs: dict[str, Any] = {}
        tables: list[tuple[str, Any]] = []
        for key, value in values.items():
            if key in shared:
                kwargs[key] = value
            elif key in MOVED:
                table, new = MOVED[key]
                raise EvaluatorError(source, key, f"moved: set it as {new} in the [evaluators.{table}] table")
            elif isinstance(value, Mapping):
                if key not in SETTINGS:
                    raise EvaluatorError(source, key, f"no evaluator of that name has a settings table; known: {SETTINGS.names()}")

                try:
                    tables.append((key, dataclass_from_mapping(SETTINGS.get(key), value, source, EvaluatorError, prefix=key)))
                except EvaluatorError as exc:  # unknown keys come named "ttc.x", __post_init__'s "x"
                    field = exc.field if exc.field == key or exc.field.startswith(f"{key}.") else f"{key}.{exc.field}"
                    raise EvaluatorError(source, field, exc.problem) from None
            else:
                known = sorted(shared | set(SETTINGS.names()))
                raise EvaluatorError(source, key, f"unknown evaluator setting or table; known: {known}")
        if "evaluators" in kwargs:
            names = kwargs["evaluators"]
            if isinstance(names, str) or not all(isinstance(n, str) for n in names):
                raise EvaluatorError(source, "evaluators", "must be a list of evaluator names")
            kwargs["evaluators"] = tuple(names)
        try:
            return cls(**kwargs, tables=tuple(tables))
        except EvaluatorError as exc:
            raise EvaluatorError(source, exc.field, exc.problem) from None

    def replace(self, **changes: Any) -> EvaluatorConfig:
        return dataclasses.replace(self, **changes)
