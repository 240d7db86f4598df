"""Writable copies of a scenario's tracks, for operators to edit and turn back into a ``Scenario``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from scenarios.model import Scenario, Tracks

_PER_AGENT = ("agent_ids", "agent_types", *Tracks.SIZE_FIELDS)
_PER_STEP = (*Tracks.STATE_FIELDS, "valid")


class TrackEditor:
    """Mutable ``(N, T)`` arrays copied from a scenario's tracks; ``scenario()`` builds the result."""

    def __init__(self, scenario: Scenario) -> None:
        self.base = scenario
        tracks = scenario.tracks
        self.arrays: dict[str, np.ndarray] = {name: np.array(getattr(tracks, name)) for name in (*_PER_AGENT, *_PER_STEP)}
        self.ego_id = scenario.ego_id

    @property
    def num_agents(self) -> int:
        return int(self.arrays["agent_ids"].shape[0])

    def row(self, agent_id: str) -> int:
        return int(np.flatnonzero(self.arrays["agent_ids"] == agent_id)[0])

    def set_state(self, row: int, steps: np.ndarray | slice, state: Mapping[str, np.ndarray]) -> None:
        """Write ``state`` (any of x, y, z, yaw, vx, vy, valid) of agent ``row`` at ``steps``."""
        for name, value in state.items():
            self.arrays[name][row, steps] = value

    def add_agent(self, agent_id: str, agent_type: int, length: float, width: float, height: float) -> int:
        """Append an agent, never valid until its state is set; returns its row."""
        if agent_id in set(self.arrays["agent_ids"].tolist()):
            raise ValueError(f"agent id {agent_id!r} exists")
        width_ids = max(self.arrays["agent_ids"].dtype.itemsize // 4, len(agent_id))
        self.arrays["agent_ids"] = np.append(self.arrays["agent_ids"].astype(f"<U{width_ids}"), agent_id)
        for name, value in (("agent_types", agent_type), ("length", length), ("width", width), ("height", height)):
            self.arrays[name] = np.append(self.arrays[name], value).astype(self.arrays[name].dtype)
        num_steps = self.arrays["valid"].shape[1]
        for name in _PER_STEP:
            arr = self.arrays[name]
            self.arrays[name] = np.concatenate([arr, np.zeros((1, num_steps), arr.dtype)])
        return self.num_agents - 1

    def unique_id(self, stem: str) -> str:
        """``stem`` or ``stem-2``, ``stem-3``, ... whichever is not an agent id yet."""
        taken = set(self.arrays["agent_ids"].tolist())
        if stem not in taken:
            return stem
        k = 2
        while f"{stem}-{k}" in taken:
            k += 1
        return f"{stem}-{k}"

    def drop(self, rows: Sequence[int] | np.ndarray) -> None:
        """Remove agents ``rows`` (never the ego)."""
        keep = np.ones(self.num_agents, bool)
        keep[np.asarray(rows, int)] = False
        if not keep[self.row(self.ego_id)]:
            raise ValueError("the ego cannot be removed")
        for name in (*_PER_AGENT, *_PER_STEP):
            self.arrays[name] = self.arrays[name][keep]

    def scenario(self, *, tags: tuple[str, ...] = ()) -> Scenario:
        """The edited scenario (validated by construction), with ``tags`` added."""
        tracks = Tracks(**self.arrays)
        return self.base.replace(tracks=tracks, ego_index=tracks.index_of(self.ego_id), tags=(*self.base.tags, *tags))


def mark_replayed(scenario: Scenario, agent_id: str) -> Scenario:
    """``scenario`` with ``agent_id`` in ``conditions.replay_agents`` (and out of ``reactive_agents``)."""
    cond = scenario.conditions
    replay = tuple(dict.fromkeys((*cond.replay_agents, agent_id)))
    reactive = tuple(a for a in cond.reactive_agents if a != agent_id)
    return scenario.replace(conditions=dataclasses.replace(cond, replay_agents=replay, reactive_agents=reactive))
