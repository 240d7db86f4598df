"""Plug-ins: user modules that register metrics, operators, policies, dynamics models, importers
or executors without editing drivetwin.

Two ways in, loaded the same way on the driver and on every worker (sequential or Ray):

- a suite names modules: ``[suite] plugins = ["my_metrics", "my_operators"]``; they are imported
  before the rest of the suite is validated, so its tables may name what they register;
- an installed package declares entry points in the ``drivetwin.plugins`` group (in its
  ``pyproject.toml``: ``[project.entry-points."drivetwin.plugins"] my_pkg = "my_pkg.drivetwin"``);
  each names a module (imported) or a callable (imported and called once per process).

A module registers with the packages' own decorators: ``evaluators.base.register``,
``scenarios.mutations.base.register``, ``sim.policies.register_policy``,
``sim.dynamics.register``, ``scenarios.importers.base.register``,
``harness.executor.EXECUTORS.decorator``. Importing a module twice is a no-op (``sys.modules``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from importlib import metadata

from harness.config import MEMORY, ConfigError

#: The entry-point group installed packages declare their plug-ins in.
ENTRY_POINT_GROUP = "drivetwin.plugins"

#: Entry points that named a callable and have been called in this process ("name = value").
_CALLED: set[str] = set()


def load_plugins(modules: Sequence[str] = (), source: str = MEMORY) -> list[str]:
    """Import ``modules``, then every installed ``drivetwin.plugins`` entry point; their names.

    Raises:
        ConfigError: a module or entry point cannot be imported (or its setup raised): names
            ``source`` (the suite file), the module and the ImportError.
    """
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - ImportError, or the module failing as it runs
            raise ConfigError(source, "suite.plugins", f"cannot import plug-in module {name!r}: {type(exc).__name__}: {exc}") from exc
        loaded.append(name)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        label = f"{entry.name} = {entry.value}"
        try:
            target = entry.load()
            if callable(target) and label not in _CALLED:
                target()
                _CALLED.add(label)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(
                source, f"entry point {ENTRY_POINT_GROUP}", f"cannot load plug-in {label!r}: {type(exc).__name__}: {exc}"
            ) from exc
        loaded.append(entry.value)
    return loaded


__all__ = ["ENTRY_POINT_GROUP", "load_plugins"]
