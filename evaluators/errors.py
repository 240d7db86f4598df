"""The one error type of the ``evaluators`` package."""

from __future__ import annotations


class EvaluatorError(ValueError):
    """Bad evaluator input or config: names the rollout (or config), the field and the problem.

    Args:
        source: the rollout's scenario id, the config file, or the report directory.
        field: the attribute, key or column that is wrong ("" when the whole input is).
        problem: what is wrong, in a short sentence.
    """

    def __init__(self, source: object, field: str, problem: str) -> None:
        self.source = str(source)
        self.field = field
        self.problem = problem
        where = f"{self.source}: {field}: " if field else f"{self.source}: "
        super().__init__(where + problem)

    def __reduce__(self):  # keep the three parts across pickling (Ray, multiprocessing)
        return (type(self), (self.source, self.field, self.problem))
