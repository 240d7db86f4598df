"""The ``discrete`` meta-action controller keeps a safe gap to the road user ahead."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

import sim  # noqa: F401  (registers the ids)
from scenarios.synthetic import AgentSpec, scene
from sim.actions import MetaAction
from sim.runner import rollout, rollouts_equal


def _lead(lead_speed: float) -> object:
    """The ego at 15 m/s in lane 0, a car 60 m ahead (centres) at ``lead_speed``; 12 s."""
    return scene(
        [AgentSpec("ego", x=0.0, speed=15.0), AgentSpec("lead", x=60.0, speed=lead_speed)],
        num_steps=121,
        scenario_id=f"lead_{lead_speed:g}",
    )


class _Always:
    """Chooses one meta-action every step (``first`` at the first step, if given)."""

    name = "always"

    def __init__(self, action: MetaAction, first: MetaAction | None = None) -> None:
        self.action, self.first = int(action), first

    def reset(self, scenario_info) -> None:
        self.k = 0

    def act(self, observation):
        self.k += 1
        if self.k == 1 and self.first is not None:
            return int(self.first)
        return self.action


def _gap(record) -> np.ndarray:
    """Bumper-to-bumper gap [m] from the ego (row 0) to the lead (row 1), both 4.5 m long."""
    return record.x[1] - record.x[0] - 4.5


def test_keep_lane_stops_behind_a_stopped_lead() -> None:
    env = gymnasium.make("drivetwin/Discrete-v0", scenario=_lead(0.0))
    try:
        record = rollout(env, _Always(MetaAction.KEEP_LANE), seed=0)
        again = rollout(env, _Always(MetaAction.KEEP_LANE), seed=0)
    finally:
        env.close()
    assert record.termination == "log_end"
    assert not record.contact.any()
    gap = _gap(record)
    assert gap.min() > 1.0, gap.min()
    assert record.ego_speed[-1] < 0.2 and gap[-1] < 8.0, (record.ego_speed[-1], gap[-1])
    assert rollouts_equal(record, again)  # deterministic


def test_keep_lane_follows_a_moving_lead_at_its_speed(make_env) -> None:
    record = rollout(make_env(_lead(10.0), action="discrete"), _Always(MetaAction.KEEP_LANE), seed=0)
    assert record.termination == "log_end" and not record.contact.any()
    assert _gap(record).min() > 1.0
    assert record.ego_speed[-1] == pytest.approx(10.0, abs=1.0), record.ego_speed[-1]


def test_faster_does_not_override_the_gap(make_env) -> None:
    record = rollout(make_env(_lead(0.0), action="discrete"), _Always(MetaAction.FASTER), seed=0)
    assert record.termination == "log_end" and not record.contact.any()
    assert _gap(record).min() > 1.0


def test_lane_change_to_a_free_lane_passes_the_stopped_lead(make_env) -> None:
    env = make_env(_lead(0.0), action="discrete", terminate_on_goal=False)
    record = rollout(env, _Always(MetaAction.KEEP_LANE, first=MetaAction.CHANGE_LEFT), seed=0)
    assert record.termination == "log_end" and not record.contact.any()
    assert record.y[0, -1] == pytest.approx(3.5, abs=0.2)
    assert record.x[0, -1] > record.x[1, -1] + 50.0  # went past it
    assert record.ego_speed[-1] == pytest.approx(15.0, abs=0.5)  # no braking once in the free lane
