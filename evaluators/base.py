"""The evaluator registry and base class.

An evaluator is a class registered by name with ``@register("name")``; it declares the metrics it
produces (``MetricSpec``: name, unit, pass rule) and implements ``_compute(ctx)``. The public
``Evaluator.evaluate`` builds or checks the shared ``Context``, makes sure the evaluators it
depends on ran, calls the hook and checks that what came back is exactly what was declared.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from evaluators.config import SETTINGS, EvaluatorConfig
from evaluators.context import Context
from evaluators.errors import EvaluatorError
from evaluators.metric import UNITS, MetricSpec, MetricValue
from scenarios.common import Registry
from scenarios.model import Scenario
from scenarios.rollout import Rollout

__all__ = ["REGISTRY", "UNITS", "Evaluator", "MetricSpec", "MetricValue", "get", "metric_specs", "register", "registered", "select"]


class Evaluator(abc.ABC):
    """Base of every evaluator: subclasses set ``metrics`` (and ``requires``) and write ``_compute``.

    Attributes:
        name: the registry name (set by ``register``).
        metrics: the metrics ``_compute`` returns, in order.
        requires: names of evaluators whose metrics ``_compute`` reads from ``ctx.results``.
        settings_type: the frozen dataclass of this evaluator's own settings, the
            ``[evaluators.<name>]`` table (None: it has none); it validates in ``__post_init__``.
    """

    name: ClassVar[str] = ""
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    requires: ClassVar[tuple[str, ...]] = ()
    settings_type: ClassVar[type | None] = None

    def __init__(self, config: EvaluatorConfig | None = None) -> None:
        self.config = config or EvaluatorConfig()

    def evaluate(self, rollout: Rollout, scenario: Scenario, ctx: Context | None = None) -> list[MetricValue]:
        """This evaluator's metrics for ``rollout`` of ``scenario``.

        ``ctx`` is the shared context of this rollout (built when None); the evaluators named in
        ``requires`` run first when their results are not in it yet. The values are also stored
        in ``ctx.results``.

        Raises:
            EvaluatorError: bad input, or a metric that does not match its declaration.
        """
        if ctx is None:
            ctx = Context(rollout, scenario, self.config)
        elif ctx.rollout is not rollout or ctx.scenario is not scenario:
            raise EvaluatorError(f"rollout {rollout.scenario_id}", "ctx", "the context belongs to another rollout or scenario")
        for dep in self.requires:
            cls = get(dep)
            if not all(spec.name in ctx.results for spec in cls.metrics):
                cls(ctx.config).evaluate(rollout, scenario, ctx)
        values = self._compute(ctx)
        declared = {spec.name: spec for spec in self.metrics}
        got = [v.name for v in values]
        if got != list(declared):
            raise EvaluatorError(ctx.source, self.name, f"returned metrics {got}, declared {list(declared)}")
        for v in values:
            spec = declared[v.name]
            if v.unit != spec.unit:
                raise EvaluatorError(ctx.source, v.name, f"unit {v.unit!r}, declared {spec.unit!r}")
            if not isinstance(v.value, float):
                raise EvaluatorError(ctx.source, v.name, f"value must be a float, got {type(v.value).__name__}")
            if spec.unit in ("bool", "count") and not (math.isnan(v.value) or v.value == int(v.value) >= 0):
                raise EvaluatorError(ctx.source, v.name, f"a {spec.unit} must be a non-negative whole number, got {v.value}")
            if spec.unit == "1" and not (math.isnan(v.value) or 0.0 <= v.value <= 1.0):
                raise EvaluatorError(ctx.source, v.name, f"a ratio must lie in [0, 1], got {v.value}")
            ctx.results[v.name] = v
        return values

    def settings(self, ctx: Context) -> Any:
        """This evaluator's settings in the config of ``ctx``."""
        return ctx.config.of(self.name)

    @abc.abstractmethod
    def _compute(self, ctx: Context) -> list[MetricValue]:
        """The metrics, in the order of ``metrics``; build each with ``self.value``."""

    def value(self, name: str, value: float | bool, passed: bool | None = None) -> MetricValue:
        """A ``MetricValue`` of the declared metric ``name`` (its unit filled in)."""
        for spec in self.metrics:
            if spec.name == name:
                return MetricValue(name, float(value), spec.unit, None if passed is None else bool(passed))
        raise KeyError(f"{self.name}: undeclared metric {name!r}")


#: Every evaluator class by name, in registration order (the order of evaluation and of columns).
REGISTRY: Registry[type[Evaluator]] = Registry(
    "evaluator", lambda name, _: EvaluatorError("evaluators", name, f"no evaluator of that name; registered: {REGISTRY.names()}")
)


def register(name: str) -> Callable[[type[Evaluator]], type[Evaluator]]:
    """Class decorator: register an evaluator under ``name``; a duplicate name or metric is an error."""

    def decorate(cls: type[Evaluator]) -> type[Evaluator]:
        if name in REGISTRY:
            raise ValueError(f"evaluator {name!r} is already registered")
        if not (isinstance(cls, type) and issubclass(cls, Evaluator)):
            raise TypeError(f"evaluator {name!r} must subclass evaluators.base.Evaluator")
        taken = {spec.name: other for other, c in REGISTRY.items() for spec in c.metrics}
        for spec in cls.metrics:
            if spec.name in taken:
                raise ValueError(f"evaluator {name!r}: metric {spec.name!r} is already produced by {taken[spec.name]!r}")
        settings = cls.settings_type
        if settings is not None and not (dataclasses.is_dataclass(settings) and isinstance(settings, type)):
            raise TypeError(f"evaluator {name!r}: settings_type must be a dataclass")
        cls.name = name
        REGISTRY.add(name, cls)
        if settings is not None:
            SETTINGS.add(name, settings)
        return cls

    return decorate


def registered() -> dict[str, type[Evaluator]]:
    """Every registered evaluator class by name, in registration order."""
    return REGISTRY.as_dict()


def get(name: str) -> type[Evaluator]:
    """The evaluator class registered as ``name``; ``EvaluatorError`` when none is."""
    return REGISTRY.get(name)


def select(names: Iterable[str] = ()) -> list[type[Evaluator]]:
    """The evaluators named (all when empty) plus what they require, dependencies first."""
    key = (tuple(names), tuple(REGISTRY.items()))
    hit = _SELECTED.get(key)
    if hit is None:
        hit = _SELECTED[key] = _select(key[0])
    return list(hit)


_SELECTED: dict[tuple[tuple[str, ...], tuple[tuple[str, type[Evaluator]], ...]], list[type[Evaluator]]] = {}


def _select(names: tuple[str, ...]) -> list[type[Evaluator]]:
    wanted = list(names) or list(REGISTRY)
    out: list[type[Evaluator]] = []

    def add(name: str, chain: tuple[str, ...]) -> None:
        cls = get(name)
        if cls in out:
            return
        if name in chain:
            raise EvaluatorError("evaluators", name, f"circular requirement {' -> '.join((*chain, name))}")
        for dep in cls.requires:
            add(dep, (*chain, name))
        out.append(cls)

    for name in wanted:
        add(name, ())
    return out


def metric_specs(names: Iterable[str] = ()) -> list[MetricSpec]:
    """The metrics of the selected evaluators (all when empty), in evaluation order."""
    return [spec for cls in select(names) for spec in cls.metrics]
