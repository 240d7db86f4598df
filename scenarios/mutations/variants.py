"""Variants: a mutation chain applied with a seed, identified by a hash that reproduces it.

A ``VariantSpec`` (scenario id, ego id, operator chain with every parameter canonical, seed) is
all it takes to rebuild a variant from its source scenario, bit for bit. Its JSON goes into the
variant's ``provenance.notes``, and its hash is the variant's id:
``f"{scenario_id}~{sha1(spec json)[:12]}"``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scenarios.model import Scenario
from scenarios.mutations.base import MutationError, RejectedVariant, get
from scenarios.mutations.plausibility import DEFAULT_LIMITS, Limits, check_plausible

#: Bumped when an operator's meaning changes, so that old ids no longer claim to reproduce.
SPEC_VERSION = 1
#: How a variant's spec is introduced in ``provenance.notes``.
NOTES_PREFIX = "variant spec: "

Chain = Sequence[tuple[str, Mapping[str, Any]]]


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """Everything that makes a variant.

    Attributes:
        scenario_id: the source scenario's id.
        ego_id: the source scenario's ego agent id.
        chain: ((operator name, {param: value} with every parameter, typed), ...) in order.
        seed: the variant's seed (operator i draws from ``default_rng([seed, i])``).
        version: ``SPEC_VERSION`` when it was made.
    """

    scenario_id: str
    ego_id: str
    chain: tuple[tuple[str, dict[str, Any]], ...]
    seed: int
    version: int = SPEC_VERSION

    @classmethod
    def create(cls, scenario: Scenario, chain: Chain, seed: int = 0) -> VariantSpec:
        """The spec of ``chain`` on ``scenario``; parameters checked, typed and completed (``MutationError``)."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise MutationError(scenario.source, "seed", f"must be a non-negative integer, got {seed!r}")
        steps = []
        for i, item in enumerate(chain):
            try:
                name, params = item
            except (TypeError, ValueError):
                raise MutationError(scenario.source, f"chain[{i}]", f"must be (operator name, params), got {item!r}") from None
            steps.append((str(name), get(str(name)).canonical(params)))
        return cls(scenario.id, scenario.ego_id, tuple(steps), int(seed))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "scenario_id": self.scenario_id,
            "ego_id": self.ego_id,
            "seed": self.seed,
            "chain": [[name, {k: _json_value(v) for k, v in sorted(params.items())}] for name, params in self.chain],
        }

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces, floats as their shortest exact repr."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> VariantSpec:
        """The spec ``to_json`` wrote; parameters are re-checked against the operators."""
        try:
            data = json.loads(text)
            chain = tuple((str(n), get(str(n)).canonical(p)) for n, p in data["chain"])
            spec = cls(str(data["scenario_id"]), str(data["ego_id"]), chain, int(data["seed"]), int(data["version"]))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, MutationError):
                raise
            raise MutationError("variant spec", "", f"not a variant spec: {exc}") from None
        return spec

    @property
    def id(self) -> str:
        return variant_id(self)


def variant_id(spec: VariantSpec) -> str:
    """``f"{scenario_id}~{first 12 hex digits of sha1(spec.to_json())}"``."""
    return variant_id_of(spec.scenario_id, spec.to_json())


def variant_id_of(scenario_id: str, spec_json: str) -> str:
    """``variant_id`` of the spec whose ``to_json`` is ``spec_json`` (without parsing it)."""
    return f"{scenario_id}~{hashlib.sha1(spec_json.encode()).hexdigest()[:12]}"


def spec_of(variant: Scenario) -> VariantSpec:
    """The spec stored in a variant's ``provenance.notes``; ``MutationError`` when it has none."""
    for line in reversed(variant.provenance.notes.splitlines()):
        if line.startswith(NOTES_PREFIX):
            return VariantSpec.from_json(line[len(NOTES_PREFIX) :])
    raise MutationError(variant.source, "provenance.notes", "the scenario is not a variant (no variant spec)")


def apply(scenario: Scenario, spec: VariantSpec, *, check: bool = True, limits: Limits = DEFAULT_LIMITS) -> Scenario:
    """Build the variant ``spec`` describes from its source ``scenario``.

    Raises:
        MutationError: ``scenario`` is not the spec's source, or the spec is malformed.
        RejectedVariant: an operator does not apply (``NotApplicable``) or, with ``check``, the
            result is implausible (``ImplausibleVariant``).
    """
    if spec.scenario_id != scenario.id or spec.ego_id != scenario.ego_id:
        raise MutationError(
            scenario.source, "scenario_id", f"the spec is for {spec.scenario_id!r} (ego {spec.ego_id!r}), not this scenario"
        )
    if spec.version != SPEC_VERSION:
        raise MutationError(scenario.source, "version", f"spec version {spec.version} cannot be reproduced by version {SPEC_VERSION}")
    out = scenario
    for i, (name, params) in enumerate(spec.chain):
        out = get(name)(out, params, rng=np.random.default_rng([spec.seed, i]))
    vid = variant_id(spec)
    notes = "\n".join(n for n in (scenario.provenance.notes, NOTES_PREFIX + spec.to_json()) if n)
    tags = (*out.tags, "variant", *(f"mutation:{name}" for name, _ in spec.chain))
    out = out.replace(id=vid, provenance=dataclasses.replace(out.provenance, notes=notes), tags=tuple(dict.fromkeys(tags)))
    if check:
        check_plausible(scenario, out, limits)
    return out


def mutate(
    scenario: Scenario, chain: Chain, seed: int = 0, *, check: bool = True, limits: Limits = DEFAULT_LIMITS
) -> Scenario:
    """Apply operators in order, e.g. ``[("lead_brake", {"decel": 6.0, "onset_s": 2.0})]``.

    The result's id is its variant id; its ``provenance.notes`` hold the spec that reproduces it.
    Same arguments, bit-identical result.

    Raises:
        MutationError: unknown operator or bad parameters.
        RejectedVariant: ``NotApplicable`` or ``ImplausibleVariant`` (with ``check``).
    """
    return apply(scenario, VariantSpec.create(scenario, chain, seed), check=check, limits=limits)


def reproduce(scenario: Scenario, spec: VariantSpec | str) -> Scenario:
    """Rebuild a variant from its source and its spec (a ``VariantSpec`` or its JSON)."""
    return apply(scenario, VariantSpec.from_json(spec) if isinstance(spec, str) else spec)


@dataclass(slots=True)
class VariantBatch:
    """Variants generated from one scenario.

    Attributes:
        accepted: plausible variants, in order.
        rejected: number of rejected variants by reason (e.g. ``{"no_lead": 3, "accel": 1}``).
        rejected_specs: the specs that were rejected, with their reasons.
    """

    accepted: list[Scenario] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    rejected_specs: list[tuple[VariantSpec, str]] = field(default_factory=list)

    @property
    def num_rejected(self) -> int:
        return sum(self.rejected.values())


def variant_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent variant seeds derived from ``seed`` (the same prefix for any count)."""
    return [int(np.random.SeedSequence([seed, i]).generate_state(1)[0]) for i in range(count)]


def generate_variants(
    scenario: Scenario, chains: Iterable[Chain], *, seed: int = 0, limits: Limits = DEFAULT_LIMITS
) -> VariantBatch:
    """Build one variant per chain (variant i seeded with ``variant_seeds(seed, n)[i]``).

    Rejected variants (``RejectedVariant``: not applicable or implausible) are counted by reason,
    never returned; a ``MutationError`` (a bad chain) is raised.
    """
    chains = list(chains)
    batch = VariantBatch()
    for chain, s in zip(chains, variant_seeds(seed, len(chains))):
        spec = VariantSpec.create(scenario, chain, s)
        try:
            batch.accepted.append(apply(scenario, spec, limits=limits))
        except RejectedVariant as exc:
            batch.rejected[exc.reason] += 1
            batch.rejected_specs.append((spec, exc.reason))
    return batch
