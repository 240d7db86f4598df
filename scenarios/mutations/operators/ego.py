"""Operators on the ego's logged state."""

from __future__ import annotations

import numpy as np

from scenarios.model import Scenario
from scenarios.mutations.base import Param, register
from scenarios.mutations.edit import TrackEditor
from scenarios.mutations.geometry import Path, moving_along, times_s


@register("ego_speed_offset", Param("delta", "m/s", 2.0, low=-20.0, high=20.0, doc="added to the ego's logged speed"))
def ego_speed_offset(scenario: Scenario, rng: np.random.Generator, *, delta: float) -> Scenario:
    """Start the ego ``delta`` [m/s] faster (slower when negative) than logged.

    What changes: the ego's logged track. Its speed becomes ``max(logged speed + delta, 0)`` at
    every valid step and its positions are re-integrated from its first logged position along its
    logged path (extended straight past its end), with yaw as logged at each place. So the
    state the twin starts the ego from has the offset speed, and the rest of the logged track
    (the reference that route and progress are measured against) stays consistent with it.
    Other agents do not change.
    """
    tracks = scenario.tracks
    ego = scenario.ego_index
    idx = np.flatnonzero(tracks.valid[ego])
    path = Path.of_agent(tracks, ego, 0)
    t = times_s(scenario)[idx]
    v = np.maximum(np.hypot(tracks.vx[ego, idx], tracks.vy[ego, idx]) + delta, 0.0)
    s = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * np.diff(t))])
    edit = TrackEditor(scenario)
    edit.set_state(ego, idx, moving_along(path, s, v))
    return edit.scenario()
