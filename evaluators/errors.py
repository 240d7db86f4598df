"""The one error type of the ``evaluators`` package."""

from __future__ import annotations

from scenarios.errors import SourcedError


class EvaluatorError(SourcedError):
    """Bad evaluator input or config: names the rollout (or config, or report directory), the
    field and the problem."""
