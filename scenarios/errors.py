"""The one error type of the ``scenarios`` package, and the shape every package's error shares."""

from __future__ import annotations


class SourcedError(ValueError):
    """Bad input that names where it was found, the field and the problem.

    Each package has its own subclass (``ScenarioError``, ``evaluators.EvaluatorError``), so a
    caller can tell whose input was bad; all print as ``"<source>: <field>: <problem>"``.

    Args:
        source: the file path, scenario id or config the problem was found in.
        field: the column, key or attribute that is wrong ("" when the whole input is).
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


class ScenarioError(SourcedError):
    """Bad scenario input: names the file (or scenario), the field and the problem."""


class UnknownScenarioError(ScenarioError, KeyError):
    """A scenario id that is not in the library; also a ``KeyError``, as a missing id always was."""

    def __str__(self) -> str:  # KeyError would quote the message
        return ScenarioError.__str__(self)
