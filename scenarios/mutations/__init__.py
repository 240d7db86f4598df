"""Scenario mutations: seeded operators, parameter spaces and samplers that turn a log into variants.

``mutate(scenario, [("lead_brake", {"decel": 6.0, "onset_s": 2.0})], seed=0)`` returns the
variant, whose id is ``variant_id`` of its ``VariantSpec`` and reproduces it. ``names()`` lists
the operators; ``register`` adds one. Implausible or inapplicable variants raise
``RejectedVariant`` (``ImplausibleVariant``, ``NotApplicable``); ``generate_variants`` counts them.

Operators (parameters [unit]; ``get(name).params`` has the ranges and defaults):

- ``retime``: agent, scale [-], from_s [s], ramp_s [s]: speed factor along the agent's own path.
- ``time_shift``: agent, shift_s [s]. ``lateral_offset``: agent, offset_m [m], from_s, ramp_s [s].
- ``lead_brake``: decel [m/s2], onset_s [s], agent (default "lead").
- ``cut_in``: gap_m [m] or ttc_s [s], rel_speed [m/s], onset_s, duration_s, lead_in_s [s],
  side, source.
- ``remove_agents``: agents, fraction [-], agent_type. ``traffic_density``: scale [-],
  min_headway_s, max_headway_s [s].
- ``road_friction``: mu [-]. ``ego_latency``: latency_s [s]. ``perception_noise``:
  position_m [m], heading_rad [rad], dropout [-]. ``agents_mode``: mode. ``reactive_agents``:
  agents, fraction [-]. (These set ``scenario.conditions``, which the twin applies.)
- ``ego_speed_offset``: delta [m/s].
- ``adversary``: conflict [index], kind, agent, offset_s [s], aggressiveness [-], lateral_m [m]:
  a logged road user retimed along its own path to meet the ego at a conflict point.
- ``insert_lead_brake``: gap_m [m], rel_speed [m/s], spawn_s, brake_s [s], decel [m/s2].
  ``insert_cut_in``: gap_m [m], rel_speed [m/s], onset_s, duration_s, lead_in_s [s], side.
  ``insert_red_light_runner``: conflict [index], offset_s [s], speed [m/s], lead_in_s [s].
  ``insert_pedestrian``: where, crosswalk [index], conflict_s, offset_s [s], speed [m/s], side.
  ``insert_priority_crossing``: conflict [index], offset_s [s], speed [m/s], lead_in_s [s],
  accel [m/s2]: a crossing car with the right of way where the logged ego stops.
  (A new road user tagged ``inserted:<id>``.)

Staged road users (lead_brake's lead, cut_in's cutter, the adversary, inserted actors) replay
their tracks whatever the agents mode (``conditions.replay_agents``).
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
    REJECTED,
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
from scenarios.mutations.spaces import (
    Choice,
    Dimension,
    Grid,
    SearchSpace,
    TruncNormal,
    Uniform,
    parse_dimension,
)
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
    "REJECTED",
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
