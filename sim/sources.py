"""Where the env's scenarios come from: a ``Scenario``, an id in a library, or the built-in scene.

A library is any object with ``.load(id)`` and ``.ids()`` (``scenarios.ScenarioLibrary``), or a
list of scenarios. The env holds it behind a ``SharedLibrary`` handle, which copies of the env's
``spec`` share instead of copying (``gymnasium``'s checker and ``spec.make`` deep-copy a spec's
arguments; a library is a read-only view of data on disk with open files and caches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from scenarios.errors import ScenarioError
from scenarios.model import Scenario
from sim.config import ConfigError


def default_scenario() -> Scenario:
    """The built-in scene: a 3-lane road, the ego at 12 m/s among four vehicles."""
    from scenarios.synthetic import AgentSpec, scene, straight_road

    agents = [
        AgentSpec("ego", x=0.0, y=3.5, speed=12.0),
        AgentSpec("lead", x=30.0, y=3.5, speed=10.0),
        AgentSpec("left", x=-10.0, y=7.0, speed=14.0),
        AgentSpec("right", x=15.0, y=0.0, speed=11.0, accel=0.3),
        AgentSpec("slow", x=70.0, y=0.0, speed=6.0),
    ]
    return scene(agents, road=straight_road(3, length=400.0), num_steps=91, scenario_id="builtin-highway")


class SharedLibrary:
    """A library handle that copies share (``copy.deepcopy`` returns the handle itself).

    Args:
        library: an object with ``.load(id)`` and ``.ids()``.
    """

    __slots__ = ("library",)

    def __init__(self, library: Any) -> None:
        self.library = library

    def ids(self) -> list[str]:
        return list(self.library.ids())

    def load(self, scenario_id: str) -> Any:
        return self.library.load(scenario_id)

    def __deepcopy__(self, memo: dict) -> SharedLibrary:
        return self

    def __repr__(self) -> str:
        return f"SharedLibrary({self.library!r})"


class ListLibrary:
    """A list of scenarios behind the library interface."""

    def __init__(self, scenarios: Sequence[Scenario]) -> None:
        self._by_id = {s.id: s for s in scenarios}

    def ids(self) -> list[str]:
        return list(self._by_id)

    def load(self, scenario_id: str) -> Scenario:
        try:
            return self._by_id[scenario_id]
        except KeyError:
            raise ScenarioError(scenario_id, "scenario", f"not in the library (known: {sorted(self._by_id)[:5]}...)") from None


def as_library(library: Any) -> SharedLibrary | None:
    """``library`` behind a ``SharedLibrary`` handle (None stays None); ``ConfigError`` for anything else."""
    if library is None or isinstance(library, SharedLibrary):
        return library
    if hasattr(library, "load") and hasattr(library, "ids"):
        return SharedLibrary(library)
    if isinstance(library, Sequence) and all(isinstance(s, Scenario) for s in library):
        return SharedLibrary(ListLibrary(library))
    raise ConfigError("DriveTwinEnv", "library", "must have .load(id) and .ids(), or be a list of Scenarios")


class ScenarioSource:
    """Picks an episode's scenario: the reset option, else the default, else one drawn from the
    library, else the built-in scene."""

    def __init__(self, default: Scenario | str | None, library: SharedLibrary | None) -> None:
        self.default = default
        self.library = library
        self._builtin: Scenario | None = None

    def resolve(self, options: Mapping[str, Any] | None, rng: np.random.Generator) -> Scenario:
        """The scenario for ``reset(options=...)``; a library draw uses ``rng``."""
        choice = (options or {}).get("scenario")
        if choice is None:
            choice = self.default
        if choice is None and self.library is not None:
            ids = self.library.ids()
            if not ids:
                raise ScenarioError("library", "ids", "the scenario library is empty")
            choice = ids[int(rng.integers(len(ids)))]
        if choice is None:
            if self._builtin is None:
                self._builtin = default_scenario()
            choice = self._builtin
        if isinstance(choice, Scenario):
            return choice
        if isinstance(choice, str):
            if self.library is None:
                raise ScenarioError(choice, "scenario", "a scenario id was given but the env has no library to load it from")
            scenario = self.library.load(choice)
            if not isinstance(scenario, Scenario):
                raise ScenarioError(choice, "scenario", f"the library returned {type(scenario).__name__}, not a Scenario")
            return scenario
        raise ScenarioError(str(choice), "scenario", f"expected a Scenario or a scenario id, got {type(choice).__name__}")
