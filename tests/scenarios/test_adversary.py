"""The adversary operator: conflict points from the paths' geometry, retiming within the limits, replay.

Hand-built scenes with known answers (a crossing, an oncoming lane, a turn too tight for the
asked speed, a standing ego) and the real logs of ``../shared/data``.
"""

from __future__ import annotations

import numpy as np
import pytest

import scenarios.mutations as m
from evaluators.config import EvaluatorConfig
from evaluators.summary import evaluate
from scenarios.model import AgentType, Scenario, Tracks
from scenarios.mutations.geometry import conflicts
from scenarios.mutations.operators.adversary import peak_accel
from scenarios.rollout import Rollout
from scenarios.synthetic import AgentSpec, scene

DT = 0.1
ABSOLUTE = EvaluatorConfig(judge_against_log=False)


def crossing(cross_speed: float = 8.0, start_y: float = -48.0) -> Scenario:
    """The ego along +x at 10 m/s (x = 50 at 5.0 s); a car along +y at x = 50 from ``start_y``.

    Expected: one crossing conflict at (50, 0), the ego there at 5.0 s, the car in its log at
    (0 - start_y) / cross_speed s (6.0 s by default: their boxes never touch in the log).
    """
    return scene(
        [
            AgentSpec("ego", 0.0, speed=10.0),
            AgentSpec("crosser", 50.0, y=start_y, speed=cross_speed, yaw=np.pi / 2),
            AgentSpec("far", 200.0, y=3.5, speed=10.0),
        ],
        scenario_id="crossing",
    )


def passing_time(track: np.ndarray, valid: np.ndarray, level: float, t: np.ndarray) -> float:
    """When an increasing coordinate ``track`` first reaches ``level`` (linear between steps) [s]."""
    k = int(np.argmax(valid & (track >= level)))
    return float(np.interp(level, track[k - 1 : k + 1], t[k - 1 : k + 1]))


def test_conflict_points_of_a_crossing_are_where_and_when_the_paths_meet():
    (c,) = conflicts(crossing())
    assert c.agent_id == "crosser" and c.kind == "crossing"
    assert c.x == pytest.approx(50.0) and abs(c.y) < 1e-9 and c.gap_m < 1e-9 and c.s_agent == pytest.approx(48.0)
    assert c.t_ego_s == pytest.approx(5.0, abs=1e-9)
    assert c.t_agent_s == pytest.approx(6.0, abs=1e-9) and c.mismatch_s == pytest.approx(1.0, abs=1e-9)
    assert abs(c.angle - np.pi / 2) < 0.01


@pytest.mark.parametrize("offset_s", [-0.5, 0.0, 0.7])
@pytest.mark.parametrize("aggressiveness", [0.3, 1.0])
def test_the_adversary_reaches_the_conflict_point_at_the_asked_time_within_its_limits(offset_s, aggressiveness):
    s = crossing()
    v = m.mutate(s, [("adversary", {"offset_s": offset_s, "aggressiveness": aggressiveness})])
    tr = v.tracks
    row = tr.index_of("crosser")
    t = np.arange(v.num_steps) * DT
    # the car's centre crosses the ego's path (y = 0) when the logged ego's centre passes x = 50, + offset
    assert passing_time(tr.y[row], tr.valid[row], 0.0, t) == pytest.approx(5.0 + offset_s, abs=DT)
    # on its own path (x = 50, heading +y) from first to last, valid from its first step to the end
    assert np.allclose(tr.x[row], 50.0) and np.allclose(tr.yaw[row], np.pi / 2) and tr.valid[row].all()
    # speed: consistent with the positions, never reversing, acceleration within the peak for its aggressiveness
    speed = np.diff(tr.y[row]) / DT
    assert (speed >= -1e-9).all()
    assert np.allclose((tr.vy[row, 1:] + tr.vy[row, :-1]) / 2, speed, atol=0.05)
    accel = np.abs(np.diff(tr.vy[row])) / DT
    assert accel.max() <= peak_accel(int(AgentType.VEHICLE), aggressiveness, 0.9) * 1.02
    # the log before the retiming starts is kept, the other agents are untouched, it replays
    assert np.array_equal(tr.y[tr.index_of("far")], s.tracks.y[s.tracks.index_of("far")])
    assert "crosser" in v.conditions.replay_agents and "adversary:crosser" in v.tags
    assert "adversary_conflict:crossing" in v.tags
    m.check_plausible(s, v)


def test_aggressiveness_scales_the_peak_acceleration():
    s = crossing()
    peaks = []
    for aggressiveness in (0.0, 0.5, 1.0):
        v = m.mutate(s, [("adversary", {"aggressiveness": aggressiveness, "offset_s": 1.5})])
        row = v.tracks.index_of("crosser")
        peaks.append(float(np.max(np.abs(np.diff(v.tracks.vy[row])) / DT)))
    assert peaks[0] < peaks[1] < peaks[2] <= peak_accel(int(AgentType.VEHICLE), 1.0, 0.9) * 1.02


def test_a_conflict_out_of_reach_is_not_applicable_with_its_reason():
    # a crawling car 60 m away cannot reach the crossing by 5 s at a gentle acceleration
    with pytest.raises(m.NotApplicable, match="unreachable|too_fast") as info:
        m.mutate(crossing(cross_speed=1.0, start_y=-20.0), [("adversary", {"aggressiveness": 0.0})])
    assert info.value.reason in ("unreachable", "too_fast")
    with pytest.raises(m.NotApplicable) as info:
        m.mutate(crossing(), [("adversary", {"conflict": 1})])
    assert info.value.reason == "conflict_index"
    with pytest.raises(m.NotApplicable) as info:
        m.mutate(crossing(), [("adversary", {"kind": "pedestrian"})])
    assert info.value.reason == "no_conflict"


def test_a_standing_ego_or_no_nearby_path_has_no_conflict():
    standing = scene([AgentSpec("ego", 0.0), AgentSpec("crosser", 50.0, y=-60.0, speed=8.0, yaw=np.pi / 2)])
    with pytest.raises(m.NotApplicable, match="travels 0.0 m") as info:
        m.mutate(standing, [("adversary", {})])
    assert info.value.reason == "no_conflict"
    parallel = scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("side", 10.0, y=3.5, speed=10.0)])
    assert conflicts(parallel) == []  # a neighbour driving alongside never comes near the ego's path
    lead = scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("lead", 30.0, speed=8.0)])
    assert conflicts(lead) == []  # a lead in the ego's lane is lead_brake's, not a conflict


def test_an_oncoming_adversary_moves_sideways_at_most_to_its_lane_edge():
    """Oncoming car in lane 1 (y = 3.5, towards -x); lane half width 1.75 m: asked 2 m, it moves 1.75 m."""
    s = scene(
        [AgentSpec("ego", 0.0, speed=10.0), AgentSpec("oncoming", 140.0, y=3.5, speed=10.0, yaw=np.pi)],
        scenario_id="oncoming",
    )
    (c,) = conflicts(s)
    assert c.kind == "oncoming" and c.gap_m == pytest.approx(3.5)
    assert c.t_ego_s == pytest.approx(7.0, abs=0.06)  # where the log has them pass each other: x = 70
    v = m.mutate(s, [("adversary", {"lateral_m": 2.0})])
    row = v.tracks.index_of("oncoming")
    k = int(round((c.t_ego_s) / DT))
    assert v.tracks.y[row, k] == pytest.approx(3.5 - 1.75, abs=0.02)
    assert v.tracks.y[row].min() >= 3.5 - 1.75 - 1e-9 and v.tracks.y[row, -1] == pytest.approx(3.5, abs=1e-6)
    m.check_plausible(s, v)
    # the logged ego meets it: boxes 1.9 m wide 1.75 m apart overlap at the conflict
    r = Rollout.from_log(v)
    assert evaluate(r, v, log=s)["collisions"] == 1


def test_a_turn_too_tight_for_the_needed_speed_is_refused():
    """A car on a quarter circle of radius 8 m at 3 m/s, crossing the ego's path; meeting the ego needs ~12 m/s."""
    base = scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("turner", 0.0, speed=3.0)], scenario_id="turn")
    t = np.arange(base.num_steps) * DT
    radius, speed = 8.0, 3.0
    theta = np.clip(speed * t / radius, 0.0, np.pi / 2)
    # centre (42, -8): from (42, -16) heading +x, turning left to (50, -8) heading +y, then straight +y
    extra = np.maximum(speed * t - radius * np.pi / 2, 0.0)
    x = 42.0 + radius * np.sin(theta) + 0 * extra
    x = np.where(extra > 0, 50.0, x)
    y = -8.0 - radius * np.cos(theta) + extra
    yaw = np.where(extra > 0, np.pi / 2, theta)
    tr = base.tracks
    arrays = {n: np.array(getattr(tr, n)) for n in ("x", "y", "z", "yaw", "vx", "vy", "valid")}
    arrays["x"][1], arrays["y"][1], arrays["yaw"][1] = x, y, yaw
    arrays["vx"][1], arrays["vy"][1] = speed * np.cos(yaw), speed * np.sin(yaw)
    s = base.replace(tracks=Tracks(tr.agent_ids, tr.agent_types, tr.length, tr.width, tr.height, **arrays))
    (c,) = conflicts(s)
    assert c.kind == "crossing" and abs(c.x - 50.0) <= 0.5
    with pytest.raises(m.NotApplicable) as info:
        m.mutate(s, [("adversary", {"aggressiveness": 1.0, "offset_s": -2.0})])
    assert info.value.reason in ("curvature", "unreachable")
    # reached slowly enough (later), its turn stays within the limit: v^2 / r <= the peak
    v = m.mutate(s, [("adversary", {"aggressiveness": 0.2, "offset_s": 3.0})])
    row = v.tracks.index_of("turner")
    sp = np.hypot(v.tracks.vx[row], v.tracks.vy[row])
    turning = v.tracks.valid[row] & (np.abs(v.tracks.yaw[row] - np.pi / 2) > 0.05)
    assert (sp[turning] ** 2 / radius).max() <= peak_accel(int(AgentType.VEHICLE), 1.0, 0.9)
    m.check_plausible(s, v)


def test_a_collision_with_the_adversary_is_judged_not_excused():
    """The log has no overlap (the car passes 1 s after the ego). Retimed to 0.1 s before the
    ego, it is hit by the logged ego's front: counted, not excused by the log, at fault by nuPlan's
    geometry but unavoidable (it crossed into the ego's path 0.1 s before contact); 0.3 s after the
    ego, it hits the ego's side: counted, not at fault (the ego keeps its lane)."""
    s = crossing()
    early = m.mutate(s, [("adversary", {"offset_s": -0.1, "aggressiveness": 1.0})])
    row = evaluate(Rollout.from_log(early), early, log=s)
    assert row["collisions"] == 1 and row["at_fault_collisions"] == 0 and row["excused_collisions"] == 0
    assert row["unavoidable_collisions"] == 1
    geometric = EvaluatorConfig().with_settings("collisions", avoidability=False)
    assert evaluate(Rollout.from_log(early), early, geometric, log=s)["at_fault_collisions"] == 1
    late = m.mutate(s, [("adversary", {"offset_s": 0.3, "aggressiveness": 1.0})])
    row = evaluate(Rollout.from_log(late), late, log=s)
    assert row["collisions"] == 1 and row["at_fault_collisions"] == 0 and row["excused_collisions"] == 0


def test_the_log_does_not_excuse_a_collision_with_an_agent_the_variant_rewrote():
    """Here the log itself has the car touch the ego (it passes 0.2 s after it): the log's own
    collision is excused, but once the adversary rewrote the car, a collision with it is counted."""
    s = crossing(start_y=-41.6)
    assert evaluate(Rollout.from_log(s), s)["excused_collisions"] == 1
    v = m.mutate(s, [("adversary", {"offset_s": -0.1, "aggressiveness": 1.0})])
    row = evaluate(Rollout.from_log(v), v, log=s)
    assert row["collisions"] == 1 and row["excused_collisions"] == 0
    assert row["at_fault_collisions"] == 0 and row["unavoidable_collisions"] == 1  # it crossed 0.1 s before contact
    geometric = EvaluatorConfig().with_settings("collisions", avoidability=False)
    assert evaluate(Rollout.from_log(v), v, geometric, log=s)["at_fault_collisions"] == 1
    assert evaluate(Rollout.from_log(v), v, ABSOLUTE.with_settings("collisions", avoidability=False))["at_fault_collisions"] == 1


def test_the_adversary_replays_in_a_reactive_world():
    from sim.config import EnvConfig
    from sim.plan import compile_plan

    v = m.mutate(crossing(), [("adversary", {})])
    plan = compile_plan(v, EnvConfig(agents_mode="reactive"))
    ids = v.tracks.agent_ids
    assert "crosser" not in {str(ids[r]) for r in plan.reactive_rows} and "far" in {str(ids[r]) for r in plan.reactive_rows}
    assert plan.agents_mode == "mixed"
