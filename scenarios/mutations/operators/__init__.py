"""The built-in operators; importing this package registers them."""

from scenarios.mutations.operators import adversary, agents, conditions, ego, insert, interactions, priority  # noqa: F401  (registration)
