"""Parameter spaces of mutation chains: what a sampler draws operator parameters from.

A dimension (``Uniform``, ``TruncNormal``, ``Choice``, ``Grid``) maps a coordinate in [0, 1) to
a value, and back; samplers work in the unit cube and a ``SearchSpace`` decodes their points into
operator chains. Each dimension carries a unit, checked against the unit its operator declares.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from scenarios.mutations.base import MutationError, Param, canonical_unit, get

_STD_NORMAL = NormalDist()


class Dimension(ABC):
    """One sampled parameter: a map from u in [0, 1) to a value [``unit``]."""

    unit: str

    @abstractmethod
    def from_unit(self, u: float) -> Any:
        """The value at coordinate ``u`` in [0, 1)."""

    @abstractmethod
    def to_unit(self, value: Any) -> float:
        """The coordinate of ``value`` (the inverse of ``from_unit``)."""

    @abstractmethod
    def grid(self, points: int) -> list[Any]:
        """The values a grid sampler visits (``points`` of them for continuous dimensions)."""

    def bounds(self) -> list[Any]:
        """Values whose validity implies every value's (checked against the operator's parameter)."""
        return self.grid(2)


def _u(u: float) -> float:
    return min(max(float(u), 0.0), np.nextafter(1.0, 0.0))


@dataclass(frozen=True, slots=True)
class Uniform(Dimension):
    """Uniform on ``[low, high]`` [unit]."""

    low: float
    high: float
    unit: str = "-"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise ValueError(f"uniform: need finite low <= high, got [{self.low}, {self.high}]")

    def from_unit(self, u: float) -> float:
        return float(self.low + _u(u) * (self.high - self.low))

    def to_unit(self, value: Any) -> float:
        return 0.5 if self.high == self.low else _u((float(value) - self.low) / (self.high - self.low))

    def grid(self, points: int) -> list[float]:
        return [float(v) for v in np.linspace(self.low, self.high, max(points, 1))]


@dataclass(frozen=True, slots=True)
class TruncNormal(Dimension):
    """Normal(``mean``, ``std``) truncated to ``[low, high]`` [unit]."""

    mean: float
    std: float
    low: float
    high: float
    unit: str = "-"

    def __post_init__(self) -> None:
        if not (self.std > 0 and self.low < self.high):
            raise ValueError(f"normal: need std > 0 and low < high, got std={self.std}, [{self.low}, {self.high}]")

    def _cdf(self, x: float) -> float:
        return _STD_NORMAL.cdf((x - self.mean) / self.std)

    def from_unit(self, u: float) -> float:
        lo, hi = self._cdf(self.low), self._cdf(self.high)
        p = lo + _u(u) * (hi - lo)
        p = min(max(p, 1e-15), 1 - 1e-15)
        return float(min(max(self.mean + self.std * _STD_NORMAL.inv_cdf(p), self.low), self.high))

    def to_unit(self, value: Any) -> float:
        lo, hi = self._cdf(self.low), self._cdf(self.high)
        return _u((self._cdf(float(value)) - lo) / (hi - lo)) if hi > lo else 0.5

    def grid(self, points: int) -> list[float]:
        return [self.from_unit((k + 0.5) / points) for k in range(max(points, 1))]

    def bounds(self) -> list[float]:
        return [self.low, self.high]


@dataclass(frozen=True, slots=True)
class Choice(Dimension):
    """One of ``values``, equally likely (numbers or names) [unit]; "" is the unit of names."""

    values: tuple[Any, ...]
    unit: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        if not self.values:
            raise ValueError("choice: needs at least one value")

    def from_unit(self, u: float) -> Any:
        return self.values[min(int(_u(u) * len(self.values)), len(self.values) - 1)]

    def to_unit(self, value: Any) -> float:
        for i, v in enumerate(self.values):
            if v == value:
                return (i + 0.5) / len(self.values)
        raise ValueError(f"{value!r} is not one of {self.values}")

    def grid(self, points: int) -> list[Any]:
        return list(self.values)

    def bounds(self) -> list[Any]:
        return list(self.values)


@dataclass(frozen=True, slots=True)
class Grid(Choice):
    """Exactly ``values``, which a grid sampler visits in order (others draw them like a choice)."""

    @classmethod
    def linspace(cls, low: float, high: float, num: int, unit: str = "-") -> Grid:
        return cls(tuple(float(v) for v in np.linspace(low, high, num)), unit)


def _check_dimension(param: Param, dim: Dimension, where: str) -> None:
    """The dimension's unit must be the parameter's, and every value it gives must be allowed."""
    # names and choices have no unit; "" on a number means dimensionless ("-")
    ok = dim.unit == "" if param.unit == "" else canonical_unit(dim.unit) == param.unit
    if not ok:
        raise MutationError(where, f"params.{param.name}", f"unit {dim.unit!r} does not match the operator's {param.unit or 'no unit'!r}")
    for value in dim.bounds():
        param.check(value, where)


@dataclass(frozen=True, slots=True)
class Axis:
    """One dimension of a ``SearchSpace``: the ``param`` of chain step ``step`` drawn from ``dim``."""

    key: str
    step: int
    param: str
    dim: Dimension


class SearchSpace:
    """A chain of operators whose parameters are constants or ``Dimension``\\ s.

    Points are flat dicts keyed ``"operator.param"`` (``"operator#k.param"`` for the k-th repeat of
    an operator in the chain); ``chain(point)`` turns one into a mutation chain.
    """

    def __init__(self, chain: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        self.steps: list[tuple[str, dict[str, Any]]] = []
        axes: list[Axis] = []
        seen: dict[str, int] = {}
        for i, (name, params) in enumerate(chain):
            op = get(name)
            where = f"mutation {name!r}"
            label = name if name not in seen else f"{name}#{seen[name]}"
            seen[name] = seen.get(name, 0) + 1
            constants: dict[str, Any] = {}
            for pname, value in dict(params).items():
                param = op.param(pname)
                if isinstance(value, Dimension):
                    _check_dimension(param, value, where)
                    axes.append(Axis(f"{label}.{pname}", i, pname, value))
                else:
                    constants[pname] = param.check(value, where)
            op.canonical(constants)  # constants alone must make a valid call
            self.steps.append((name, constants))
        self.axes: tuple[Axis, ...] = tuple(axes)

    @classmethod
    def single(cls, operator: str, **params: Any) -> SearchSpace:
        """The space of one operator: ``SearchSpace.single("lead_brake", decel=Uniform(2, 9, "m/s2"))``."""
        return cls([(operator, params)])

    @property
    def dim(self) -> int:
        return len(self.axes)

    @property
    def keys(self) -> list[str]:
        return [a.key for a in self.axes]

    def decode(self, u: Sequence[float] | np.ndarray) -> dict[str, Any]:
        """The point at unit-cube coordinates ``u`` (d,)."""
        u = np.asarray(u, float)
        if u.shape != (self.dim,):
            raise ValueError(f"expected {self.dim} coordinates, got shape {u.shape}")
        return {a.key: a.dim.from_unit(float(x)) for a, x in zip(self.axes, u)}

    def encode(self, point: Mapping[str, Any]) -> np.ndarray:
        """Unit-cube coordinates (d,) of a point."""
        return np.array([a.dim.to_unit(point[a.key]) for a in self.axes], float)

    def chain(self, point: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The mutation chain at ``point``."""
        steps = [(name, dict(constants)) for name, constants in self.steps]
        for a in self.axes:
            value = point[a.key]
            steps[a.step][1][a.param] = value.item() if isinstance(value, np.generic) else value
        return steps


_DIMENSION_KEYS = ("uniform", "normal", "choice", "grid")


def _numbers(arg: Any, count: int, form: str) -> list[float]:
    """``arg`` as a list of ``count`` numbers, or ValueError naming the expected ``form``."""
    if not isinstance(arg, (list, tuple)) or len(arg) != count:
        raise ValueError(f"expected {form}, {count} numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in arg):
        raise ValueError(f"expected {form}, numbers only")
    return [float(v) for v in arg]


def parse_dimension(value: Any, where: str, field: str) -> Dimension | Any:
    """A dimension from a config value, or the value itself when it is a constant.

    Tables: ``{uniform = [low, high], unit = "m/s2"}``, ``{normal = {mean, std, low, high}, unit}``,
    ``{choice = [...], unit}``, ``{grid = [...] | {low, high, num}, unit}``.
    """
    if not isinstance(value, Mapping):
        return value
    kinds = [k for k in _DIMENSION_KEYS if k in value]
    unknown = sorted(set(value) - {*_DIMENSION_KEYS, "unit"})
    if unknown:
        raise MutationError(where, f"{field}.{unknown[0]}", f"unknown key; a parameter space has one of {list(_DIMENSION_KEYS)} and 'unit'")
    if len(kinds) != 1:
        raise MutationError(where, field, f"a parameter space needs exactly one of {list(_DIMENSION_KEYS)}, got {kinds}")
    kind = kinds[0]
    arg = value[kind]
    unit = str(value.get("unit", "" if kind == "choice" else "-"))
    try:
        if kind == "uniform":
            low, high = _numbers(arg, 2, "[low, high]")
            return Uniform(low, high, unit)
        if kind == "normal":
            if isinstance(arg, Mapping):
                extra = sorted(set(arg) - {"mean", "std", "low", "high"})
                if extra:
                    raise ValueError(f"unknown key {extra[0]!r}")
                return TruncNormal(float(arg["mean"]), float(arg["std"]), float(arg["low"]), float(arg["high"]), unit)
            mean, std, low, high = _numbers(arg, 4, "[mean, std, low, high] or {mean, std, low, high}")
            return TruncNormal(mean, std, low, high, unit)
        if kind == "choice":
            return Choice(tuple(arg), unit)
        if isinstance(arg, Mapping):
            return Grid.linspace(float(arg["low"]), float(arg["high"]), int(arg["num"]), unit)
        return Grid(tuple(arg), unit)
    except (TypeError, ValueError, KeyError) as exc:
        raise MutationError(where, f"{field}.{kind}", f"bad {kind} space {arg!r}: {exc}") from None
