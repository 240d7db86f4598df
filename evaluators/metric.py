"""What a metric is and what it produced: ``MetricSpec`` and ``MetricValue``.

Both the evaluator base class (``evaluators.base``) and the shared per-rollout context
(``evaluators.context``, whose ``results`` hold the values) need these; they live here, below
both, so that neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Units a metric may declare: SI, plus "1" (a ratio or score in [0, 1]), "bool" and "count".
UNITS = frozenset({"m", "s", "m/s", "m/s2", "m/s3", "rad/s", "rad/s2", "1/m", "1", "bool", "count"})


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A metric an evaluator produces.

    Attributes:
        name: unique over all evaluators; also the summary table's column name.
        unit: one of ``UNITS``.
        description: what it measures, in a line.
        threshold: the pass rule in words ("<= 0.3 m"), "" when the metric has none.
    """

    name: str
    unit: str
    description: str
    threshold: str = ""

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"metric {self.name!r}: unit {self.unit!r} is not one of {sorted(UNITS)}")


@dataclass(frozen=True, slots=True)
class MetricValue:
    """One metric's value for one rollout.

    Attributes:
        name: the metric's name.  value: float (a bool is 1.0 or 0.0; NaN when undefined).
        unit: the declared unit.  passed: whether it meets its threshold; None when it has none.
    """

    name: str
    value: float
    unit: str
    passed: bool | None = None
