"""A mutation as a suite config states it: operator(s), parameter spaces, sampler, number of variants."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scenarios.model import Scenario
from scenarios.mutations.base import MutationError
from scenarios.mutations.plausibility import DEFAULT_LIMITS, Limits
from scenarios.mutations.samplers import SAMPLERS, Sampler, make_sampler
from scenarios.mutations.spaces import SearchSpace, parse_dimension
from scenarios.mutations.variants import VariantBatch, generate_variants

_PLAN_KEYS = ("operator", "params", "chain", "sampler", "sampler_options", "variants", "seed")


@dataclass(frozen=True, slots=True)
class MutationPlan:
    """Which variants to make of each scenario.

    Attributes:
        space: the operator chain with its parameter spaces.
        sampler: a name in ``SAMPLERS``.
        variants: how many variants to propose per scenario.
        seed: seed of the sampler and of the variants.
        sampler_options: keyword options of the sampler (``elite_frac``, ``points``, ...).
    """

    space: SearchSpace
    sampler: str = "random"
    variants: int = 10
    seed: int = 0
    sampler_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_table(cls, table: Mapping[str, Any], source: str = "config") -> MutationPlan:
        """A plan from a config table; unknown keys, operators, parameters or units raise ``MutationError``.

        ``{operator = "lead_brake", params = {decel = {uniform = [3, 9], unit = "m/s2"}, onset_s = 2.0},
        sampler = "halton", variants = 50, seed = 0}``, or ``chain = [{operator, params}, ...]``
        in place of ``operator`` and ``params``.
        """
        unknown = sorted(set(table) - set(_PLAN_KEYS))
        if unknown:
            raise MutationError(source, f"mutation.{unknown[0]}", f"unknown key; known: {list(_PLAN_KEYS)}")
        if ("operator" in table) == ("chain" in table):
            raise MutationError(source, "mutation", "give exactly one of 'operator' (with 'params') or 'chain'")
        if "chain" in table:
            items = table["chain"]
            if not isinstance(items, list) or not items:
                raise MutationError(source, "mutation.chain", "must be a non-empty list of {operator, params} tables")
        else:
            items = [{"operator": table["operator"], "params": table.get("params", {})}]
        chain = []
        for i, item in enumerate(items):
            field_ = f"mutation.chain[{i}]" if "chain" in table else "mutation"
            if not isinstance(item, Mapping) or sorted(set(item) - {"operator", "params"}) or "operator" not in item:
                raise MutationError(source, field_, "must be a table with 'operator' and optional 'params'")
            params = item.get("params", {})
            if not isinstance(params, Mapping):
                raise MutationError(source, f"{field_}.params", "must be a table")
            chain.append((str(item["operator"]), {k: parse_dimension(v, source, f"{field_}.params.{k}") for k, v in params.items()}))
        try:
            space = SearchSpace(chain)
        except MutationError as exc:
            raise MutationError(source, exc.field, exc.problem) from None
        sampler = str(table.get("sampler", "random"))
        if sampler not in SAMPLERS:
            raise MutationError(source, "mutation.sampler", f"unknown sampler {sampler!r}; known: {SAMPLERS.names()}")
        variants, seed = table.get("variants", 10), table.get("seed", 0)
        for name, value, least in (("variants", variants, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise MutationError(source, f"mutation.{name}", f"must be an integer >= {least}, got {value!r}")
        options = table.get("sampler_options", {})
        if not isinstance(options, Mapping):
            raise MutationError(source, "mutation.sampler_options", "must be a table")
        plan = cls(space, sampler, variants, seed, dict(options))
        plan.make_sampler()  # reject bad options now
        return plan

    def make_sampler(self) -> Sampler:
        """A fresh sampler of this plan (seeded with ``seed``)."""
        return make_sampler(self.sampler, self.space, self.seed, **self.sampler_options)

    def generate(self, scenario: Scenario, *, limits: Limits = DEFAULT_LIMITS) -> VariantBatch:
        """``variants`` proposals of a fresh sampler, built on ``scenario`` (rejections counted)."""
        points = self.make_sampler().propose(self.variants)
        return generate_variants(scenario, [self.space.chain(p) for p in points], seed=self.seed, limits=limits)
