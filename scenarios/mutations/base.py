"""The operator registry: named, seeded, pure ``Scenario -> Scenario`` functions with typed parameters.

An operator is a function ``fn(scenario, rng, **params) -> Scenario`` registered with the
parameters it takes (``Param``: name, unit, default, range or choices). ``Operator.__call__``
enforces the rules around it: parameters are checked and completed with their defaults before
the function runs, and what it returns must still be the same scene (same steps, same ego).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from scenarios.common import Registry
from scenarios.errors import ScenarioError
from scenarios.model import Scenario

#: Unit spellings accepted for the same unit; the key is the canonical one.
UNIT_ALIASES: dict[str, tuple[str, ...]] = {
    "m/s2": ("m/s^2", "m/s**2", "m/s²", "m s-2"),
    "m/s": ("m s-1",),
    "rad/s": ("rad s-1",),
    "-": ("1", "", "ratio", "dimensionless"),
}
_ALIAS_TO_UNIT = {alias: unit for unit, aliases in UNIT_ALIASES.items() for alias in (unit, *aliases)}

#: Parameter kinds and the Python types their values are stored as.
KINDS: dict[str, type] = {"float": float, "int": int, "str": str, "bool": bool, "strs": tuple}


def canonical_unit(unit: str) -> str:
    """``unit`` spelled the canonical way (``"m/s^2"`` -> ``"m/s2"``, ``""`` -> ``"-"``)."""
    unit = str(unit).strip()
    return _ALIAS_TO_UNIT.get(unit, unit)


class MutationError(ScenarioError):
    """A mutation was asked for wrongly: unknown operator, unknown or out-of-range parameter.

    This is a configuration error: it is raised, never counted as a rejected variant.
    """


class RejectedVariant(ScenarioError):
    """A variant that must not be simulated; ``reason`` is a short code to count rejections by.

    Args:
        source: the scenario the variant was made from.
        reason: e.g. ``"accel"``, ``"overlap_at_start"``, ``"no_lead"``.
        problem: what is wrong, in a short sentence.
    """

    def __init__(self, source: object, reason: str, problem: str) -> None:
        super().__init__(source, reason, problem)

    @property
    def reason(self) -> str:
        return self.field


class ImplausibleVariant(RejectedVariant):
    """The mutated scene breaks a plausibility rule (kinematic limits, overlapping agents)."""


class NotApplicable(RejectedVariant):
    """The operator cannot apply to this scene (no lead vehicle, no adjacent lane, no room)."""


@dataclass(frozen=True, slots=True)
class Param:
    """A typed operator parameter.

    Attributes:
        name: keyword name in the operator function.
        unit: SI unit ("m", "s", "m/s", "m/s2", "rad", "-"); "" for names and choices.
        default: value when not given; ``None`` means "not used unless given".
        kind: one of ``KINDS``: "float", "int", "str", "bool", "strs" (a tuple of strings).
        low, high: inclusive bounds for numbers (None: unbounded).
        choices: the allowed values of a "str" parameter (empty: any string).
        doc: one line saying what it does.
    """

    name: str
    unit: str
    default: Any
    kind: str = "float"
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"parameter {self.name!r}: unknown kind {self.kind!r}")
        object.__setattr__(self, "unit", canonical_unit(self.unit) if self.unit else "")

    def check(self, value: Any, source: str) -> Any:
        """``value`` converted to this parameter's type; ``MutationError`` when it is not allowed."""
        field = f"params.{self.name}"
        if value is None:
            if self.default is None:
                return None
            raise MutationError(source, field, "must not be None")
        try:
            if self.kind == "float":
                if isinstance(value, (bool, str)):
                    raise TypeError(type(value).__name__)
                out: Any = float(value)
                if not math.isfinite(out):
                    raise ValueError("not finite")
            elif self.kind == "int":
                if isinstance(value, (bool, str)) or float(value) != int(value):
                    raise TypeError(f"{value!r} is not an integer")
                out = int(value)
            elif self.kind == "bool":
                if not isinstance(value, (bool, np.bool_)):
                    raise TypeError(type(value).__name__)
                out = bool(value)
            elif self.kind == "str":
                if not isinstance(value, (str, np.str_)):
                    raise TypeError(type(value).__name__)
                out = str(value)
            else:
                if isinstance(value, (str, np.str_)):
                    value = (value,)
                out = tuple(sorted(str(v) for v in value))
        except (TypeError, ValueError) as exc:
            raise MutationError(source, field, f"must be {self.kind}, got {value!r} ({exc})") from None
        if self.kind in ("float", "int"):
            if self.low is not None and out < self.low:
                raise MutationError(source, field, f"{out} {self.unit} is below the minimum {self.low}")
            if self.high is not None and out > self.high:
                raise MutationError(source, field, f"{out} {self.unit} is above the maximum {self.high}")
        if self.kind == "str" and self.choices and out not in self.choices:
            raise MutationError(source, field, f"{out!r} is not one of {list(self.choices)}")
        return out


OperatorFn = Callable[..., Scenario]


@dataclass(frozen=True, slots=True)
class Operator:
    """A registered operator: its name, parameters and function."""

    name: str
    params: tuple[Param, ...]
    fn: OperatorFn
    doc: str = ""

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise MutationError(self.name, f"params.{name}", f"unknown parameter; {self.name!r} takes {self.param_names}")

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    def canonical(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Every parameter, checked, typed and with defaults filled in, in sorted key order."""
        params = dict(params or {})
        source = f"mutation {self.name!r}"
        unknown = sorted(set(params) - set(self.param_names))
        if unknown:
            raise MutationError(source, f"params.{unknown[0]}", f"unknown parameter; {self.name!r} takes {self.param_names}")
        return {p.name: p.check(params.get(p.name, p.default), source) for p in sorted(self.params, key=lambda p: p.name)}

    def __call__(self, scenario: Scenario, params: Mapping[str, Any] | None = None, *, rng: np.random.Generator | int = 0) -> Scenario:
        """Apply the operator; ``rng`` is a generator or a seed. Raises ``RejectedVariant`` subclasses."""
        values = self.canonical(params)
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        out = self.fn(scenario, rng, **values)
        if not isinstance(out, Scenario):
            raise TypeError(f"operator {self.name!r} returned {type(out).__name__}, not a Scenario")
        if out.num_steps != scenario.num_steps or out.ego_id != scenario.ego_id:
            raise TypeError(f"operator {self.name!r} changed the steps or the ego")
        return out


def tag(operator: str, agent_id: str) -> str:
    """The tag an operator adds to say which agent it rewrote, e.g. ``"lead_brake:42"``."""
    return f"{operator}:{agent_id}"


def tagged_agent(scenario: Scenario, operator: str) -> str | None:
    """The agent id the last ``operator`` in a variant's chain tagged as the one it rewrote, or None."""
    hits = [t.split(":", 1)[1] for t in scenario.tags if t.startswith(operator + ":")]
    return hits[-1] if hits else None


_REGISTRY: Registry[Operator] = Registry("operator", unknown=lambda name, message: MutationError("mutation", "operator", message))


def register(name: str, *params: Param) -> Callable[[OperatorFn], OperatorFn]:
    """Decorator: register ``fn(scenario, rng, **params)`` as operator ``name``.

    The function's keyword-only arguments must be exactly the declared parameters; a duplicate
    name is an error.
    """

    def decorate(fn: OperatorFn) -> OperatorFn:
        kwonly = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        declared = [p.name for p in params]
        if sorted(kwonly) != sorted(declared):
            raise ValueError(f"operator {name!r}: keyword arguments {kwonly} do not match declared parameters {declared}")
        doc = (inspect.getdoc(fn) or "").split("\n")[0]
        _REGISTRY.add(name, Operator(name, tuple(params), fn, doc))
        return fn

    return decorate


def names() -> list[str]:
    """Names of every registered operator, sorted."""
    return _REGISTRY.names()


def get(name: str) -> Operator:
    """The operator registered as ``name``; ``MutationError`` when there is none."""
    return _REGISTRY.get(name)


def operators() -> dict[str, Operator]:
    """Every registered operator by name."""
    return _REGISTRY.as_dict()
