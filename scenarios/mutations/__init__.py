"""Scenario mutations: seeded operators, parameter spaces and samplers that turn a log into variants.

``mutate(scenario, [("lead_brake", {"decel": 6.0, "onset_s": 2.0})], seed=0)`` returns the
variant, whose id is ``variant_id`` of its ``VariantSpec`` and reproduces it. ``names()`` lists
the operators; ``register`` adds one. Implausible or inapplicable variants raise
``RejectedVariant`` (``ImplausibleVariant``, ``NotApplicable``); ``generate_variants`` counts them.
"""

from scenarios.mutations import operators as _operators  # noqa: F401  (registers the built-in operators)
from scenarios.mutations.base import (
    ImplausibleVariant,
    MutationError,
    NotApplicable,
    Operator,
    Param,
    RejectedVariant,
    get,
    names,
    operators,
    register,
    tagged_agent,
)
from scenarios.mutations.plan import MutationPlan
from scenarios.mutations.plausibility import DEFAULT_LIMITS, Limits, check_plausible
from scenarios.mutations.samplers import (
    SAMPLERS,
    CrossEntropySampler,
    GridSampler,
    HaltonSampler,
    LatinHypercubeSampler,
    RandomSampler,
    Sampler,
    centered_l2_discrepancy,
    halton,
    latin_hypercube,
    make_sampler,
)
from scenarios.mutations.spaces import Choice, Dimension, Grid, SearchSpace, TruncNormal, Uniform, parse_dimension
from scenarios.mutations.variants import (
    VariantBatch,
    VariantSpec,
    apply,
    generate_variants,
    mutate,
    reproduce,
    spec_of,
    variant_id,
    variant_seeds,
)

__all__ = [
    "DEFAULT_LIMITS",
    "SAMPLERS",
    "Choice",
    "CrossEntropySampler",
    "Dimension",
    "Grid",
    "GridSampler",
    "HaltonSampler",
    "ImplausibleVariant",
    "LatinHypercubeSampler",
    "Limits",
    "MutationError",
    "MutationPlan",
    "NotApplicable",
    "Operator",
    "Param",
    "RandomSampler",
    "RejectedVariant",
    "Sampler",
    "SearchSpace",
    "TruncNormal",
    "Uniform",
    "VariantBatch",
    "VariantSpec",
    "apply",
    "centered_l2_discrepancy",
    "check_plausible",
    "generate_variants",
    "get",
    "halton",
    "latin_hypercube",
    "make_sampler",
    "mutate",
    "names",
    "operators",
    "parse_dimension",
    "register",
    "reproduce",
    "spec_of",
    "tagged_agent",
    "variant_id",
    "variant_seeds",
]
