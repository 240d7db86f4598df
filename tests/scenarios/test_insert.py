"""Inserted actors: a braking lead, a cut-in, a red-light runner, a pedestrian, placed from the map.

Hand-built scenes with known answers (gaps, crossing times, signal states), the marking that
tells an inserted road user apart, and the refusals with their reasons.
"""

from __future__ import annotations

import numpy as np
import pytest

import scenarios.mutations as m
from evaluators.summary import evaluate
from scenarios.geometry import boxes_overlap
from scenarios.model import AgentType, FeatureKind, Lane, MapFeature, RoadMap, Scenario, Signals, SignalState
from scenarios.mutations.operators.insert import DEFAULT_BOX, KERB_M, inserted_agents, typical_box
from scenarios.rollout import Rollout
from scenarios.synthetic import AgentSpec, scene, straight_road

DT = 0.1


def highway(ego_speed: float = 15.0) -> Scenario:
    """Two lanes along +x: the ego at ``ego_speed`` in lane 0, a car 60 m ahead in lane 1 (4.8 x 2.0 m)."""
    return scene(
        [AgentSpec("ego", 0.0, speed=ego_speed), AgentSpec("side", 60.0, y=3.5, speed=ego_speed, length=4.8, width=2.0)],
        scenario_id="highway",
    )


def intersection(state: SignalState = SignalState.STOP, crosswalk: bool = False) -> Scenario:
    """The ego along +x at 10 m/s (x = 50 at 5.0 s); a signalled lane along +y at x = 50 (stop point y = -8).

    With ``crosswalk``: a crosswalk across the ego's road at x in [48, 52], y in [-4, 8].
    """
    base = straight_road()
    cross = Lane("cross", np.column_stack([np.full(21, 50.0), np.linspace(-80.0, 80.0, 21)]), speed_limit=13.0)
    features = list(base.features)
    if crosswalk:
        features.append(MapFeature("cw", FeatureKind.CROSSWALK, [[48.0, -4.0], [52.0, -4.0], [52.0, 8.0], [48.0, 8.0]]))
    road = RoadMap((*base.lanes, cross), tuple(features))
    s = scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("far", 200.0, y=3.5, speed=10.0)], road=road, scenario_id="junction")
    signals = Signals(np.array(["cross"]), np.full((1, s.num_steps), int(state), np.int8), np.array([[50.0, -8.0, 0.0]]))
    return s.replace(signals=signals)


def assert_inserted(v: Scenario, source: Scenario, agent_type: AgentType) -> int:
    """The one new road user: unique id not in the log, tagged, replayed, its type; returns its row."""
    new = sorted(set(v.tracks.agent_ids.tolist()) - set(source.tracks.agent_ids.tolist()))
    assert len(new) == 1 and new[0].startswith("inserted-")
    assert inserted_agents(v) == (new[0],) and new[0] in v.conditions.replay_agents
    row = v.tracks.index_of(new[0])
    assert v.tracks.agent_types[row] == agent_type
    m.check_plausible(source, v)
    return row


def test_typical_boxes_are_the_scenes_median_or_the_defaults():
    s = scene([AgentSpec("ego", 0.0), AgentSpec("a", 20.0, length=4.0, width=1.8), AgentSpec("b", 40.0, length=5.0, width=2.0),
               AgentSpec("bus", 60.0, length=12.0, width=2.6)])
    assert typical_box(s, int(AgentType.VEHICLE))[:2] == (4.5, 1.9)  # median of 4.0 and 5.0; the bus is not typical
    assert typical_box(s, int(AgentType.PEDESTRIAN)) == DEFAULT_BOX[int(AgentType.PEDESTRIAN)]


@pytest.mark.parametrize("gap_m", [5.0, 20.0])
def test_an_inserted_lead_starts_at_the_asked_gap_and_brakes(gap_m):
    s = highway()
    v = m.mutate(s, [("insert_lead_brake", {"gap_m": gap_m, "rel_speed": -1.0, "spawn_s": 1.0, "brake_s": 2.0, "decel": 5.0})])
    row = assert_inserted(v, s, AgentType.VEHICLE)
    tr = v.tracks
    first = int(np.argmax(tr.valid[row]))
    assert first == 10 and tr.valid[row, first:].all()
    length = tr.length[row]
    gap = (tr.x[row, first] - length / 2) - (tr.x[0, first] + tr.length[0] / 2)
    assert gap == pytest.approx(gap_m, abs=0.1)
    assert np.allclose(tr.y[row, first:], 0.0)  # on the ego's lane
    assert tr.vx[row, first] == pytest.approx(14.0)
    # at 14 m/s until 3.0 s (step 30), then 5 m/s2 to a stop (2.8 s later), standing to the end
    speed = tr.vx[row]
    assert np.allclose(speed[first:31], 14.0, atol=1e-6)
    assert speed[40] == pytest.approx(9.0, abs=1e-6) and speed[59:].max() == 0.0
    assert tr.x[row, -1] - tr.x[row, 30] == pytest.approx(14.0**2 / (2 * 5.0), abs=1e-6)


def test_an_inserted_lead_never_appears_on_someone():
    s = scene([AgentSpec("ego", 0.0, speed=15.0), AgentSpec("lead", 20.0, speed=15.0)])
    with pytest.raises(m.NotApplicable) as info:
        m.mutate(s, [("insert_lead_brake", {"gap_m": 13.0})])  # its box would cover the logged lead's
    assert info.value.reason == "overlap_at_start"
    slower = highway(ego_speed=15.0)
    with pytest.raises(m.NotApplicable) as info:  # 10 m/s slower, 2 m ahead: the logged ego runs into it before it brakes
        m.mutate(slower, [("insert_lead_brake", {"gap_m": 2.0, "rel_speed": -10.0, "brake_s": 5.0})])
    assert info.value.reason == "overlap_ego"


def test_an_inserted_lead_is_judged_as_the_egos_fault_when_it_drives_into_it():
    s = highway()
    v = m.mutate(s, [("insert_lead_brake", {"gap_m": 8.0, "brake_s": 1.0, "decel": 8.0})])
    row = evaluate(Rollout.from_log(v), v, log=s)  # the logged ego keeps going into the stopped lead
    assert row["collisions"] == 1 and row["at_fault_collisions"] == 1 and row["excused_collisions"] == 0


def test_an_inserted_cut_in_comes_from_the_adjacent_lane_to_the_asked_gap():
    s = highway()
    v = m.mutate(s, [("insert_cut_in", {"gap_m": 10.0, "rel_speed": -2.0, "onset_s": 2.0, "duration_s": 2.0, "side": "left"})])
    row = assert_inserted(v, s, AgentType.VEHICLE)
    tr = v.tracks
    first = int(np.argmax(tr.valid[row]))
    assert first == 0 and tr.y[row, 0] == pytest.approx(3.5)  # from the adjacent lane's centre
    k_ins = 30  # insertion halfway through the move: 3.0 s
    gap = (tr.x[row, k_ins] - tr.length[row] / 2) - (tr.x[0, k_ins] + tr.length[0] / 2)
    assert gap == pytest.approx(10.0, abs=0.1) and tr.y[row, 40] == pytest.approx(0.0, abs=1e-6)
    ego_box = (tr.x[0], tr.y[0], tr.yaw[0], tr.length[0], tr.width[0])
    assert not boxes_overlap(tr.x[row, :k_ins], tr.y[row, :k_ins], tr.yaw[row, :k_ins], tr.length[row], tr.width[row],
                             *(a[:k_ins] if np.ndim(a) else a for a in ego_box)).any()


def test_an_inserted_cut_in_needs_an_adjacent_lane():
    s = scene([AgentSpec("ego", 0.0, speed=15.0)], road=straight_road(num_lanes=1))
    with pytest.raises(m.NotApplicable) as info:
        m.mutate(s, [("insert_cut_in", {})])
    assert info.value.reason == "no_adjacent_lane"


@pytest.mark.parametrize("offset_s", [-0.5, 0.0, 0.8])
def test_a_red_light_runner_reaches_the_egos_path_at_the_asked_time(offset_s):
    s = intersection()
    v = m.mutate(s, [("insert_red_light_runner", {"offset_s": offset_s, "speed": 12.0, "lead_in_s": 3.0})])
    row = assert_inserted(v, s, AgentType.VEHICLE)
    tr = v.tracks
    t = np.arange(v.num_steps) * DT
    valid = tr.valid[row]
    assert np.allclose(tr.x[row, valid], 50.0) and np.allclose(tr.yaw[row, valid], np.pi / 2)
    k = int(np.argmax(valid & (tr.y[row] >= 0.0)))
    crossed = float(np.interp(0.0, tr.y[row, k - 1 : k + 1], t[k - 1 : k + 1]))
    assert crossed == pytest.approx(5.0 + offset_s, abs=DT)  # the logged ego's centre passes x = 50 at 5.0 s
    first = int(np.argmax(valid))
    assert t[first] == pytest.approx(5.0 + offset_s - 3.0, abs=DT) and tr.y[row, first] < -8.0  # before its stop point
    assert np.allclose(tr.vy[row, first : k + 1], 12.0)


def test_a_red_light_runner_needs_a_red_signal_across_the_egos_path():
    with pytest.raises(m.NotApplicable) as info:
        m.mutate(intersection(SignalState.GO), [("insert_red_light_runner", {})])
    assert info.value.reason == "no_crossing_signal"
    with pytest.raises(m.NotApplicable) as info:
        m.mutate(highway(), [("insert_red_light_runner", {})])
    assert info.value.reason == "no_signal"


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_pedestrian_steps_out_on_the_crosswalk_into_the_egos_path(side):
    s = intersection(crosswalk=True)
    v = m.mutate(s, [("insert_pedestrian", {"side": side, "speed": 1.5, "offset_s": 0.0})])
    row = assert_inserted(v, s, AgentType.PEDESTRIAN)
    tr = v.tracks
    t = np.arange(v.num_steps) * DT
    valid = tr.valid[row]
    assert np.allclose(tr.x[row, valid], 50.0)  # along the crosswalk's long axis through the ego's path
    y = tr.y[row] if side == "right" else -tr.y[row]
    start = 4.0 + KERB_M if side == "right" else 8.0 + KERB_M  # beyond the crosswalk's end on that side
    first = int(np.argmax(valid))
    assert y[first] == pytest.approx(-start + 1.5 * max(0.0, t[first] - (5.0 - start / 1.5)), abs=1e-6)
    k = int(np.argmax(valid & (y >= 0.0)))
    assert float(np.interp(0.0, y[k - 1 : k + 1], t[k - 1 : k + 1])) == pytest.approx(5.0, abs=DT)
    assert tr.length[row] == DEFAULT_BOX[int(AgentType.PEDESTRIAN)][0]
    # it walks on towards the far kerb (and stands there: see the road-edge test)
    far = 8.0 + KERB_M if side == "right" else 4.0 + KERB_M
    assert y[-1] == pytest.approx(min(far, -start + 1.5 * (t[-1] - (5.0 - start / 1.5))), abs=1e-6)


def test_a_pedestrian_steps_out_from_the_road_edge_where_there_is_no_crosswalk():
    s = highway()  # road edges at y = -1.75 and y = 5.25
    v = m.mutate(s, [("insert_pedestrian", {"side": "right", "conflict_s": 4.0, "speed": 1.4})])
    row = assert_inserted(v, s, AgentType.PEDESTRIAN)
    tr = v.tracks
    valid = tr.valid[row]
    assert np.allclose(tr.x[row, valid], 60.0)  # where the logged ego is at 4.0 s
    first = int(np.argmax(valid))
    assert tr.y[row, first] == pytest.approx(-(1.75 + KERB_M) + 1.4 * (first * DT - (4.0 - (1.75 + KERB_M) / 1.4)), abs=1e-6)
    assert tr.y[row, 40] == pytest.approx(0.0, abs=1e-6) and tr.y[row, -1] == pytest.approx(5.25 + KERB_M)
    with pytest.raises(m.NotApplicable) as info:
        m.mutate(s, [("insert_pedestrian", {"where": "crosswalk"})])
    assert info.value.reason == "no_crosswalk"


def test_inserted_ids_never_collide_with_log_ids_and_variants_reproduce():
    s = scene([AgentSpec("ego", 0.0, speed=15.0), AgentSpec("inserted-lead", -30.0, y=3.5, speed=15.0)])
    v = m.mutate(s, [("insert_lead_brake", {"gap_m": 10.0}), ("insert_lead_brake", {"gap_m": 40.0})])
    ids = v.tracks.agent_ids.tolist()
    assert len(set(ids)) == len(ids) == 4 and set(inserted_agents(v)) == {"inserted-lead-2", "inserted-lead-3"}
    again = m.reproduce(s, m.spec_of(v))
    assert np.array_equal(again.tracks.x, v.tracks.x) and again.id == v.id


def test_every_staged_manoeuvre_replays_in_a_reactive_world():
    """lead_brake's lead and cut_in's cutter are marked as the adversary's and the inserted actors are:
    with every other agent reactive, the staged ones still replay their tracks."""
    from sim.config import EnvConfig
    from sim.plan import compile_plan

    s = scene([AgentSpec("ego", 0.0, speed=15.0), AgentSpec("lead", 30.0, speed=15.0), AgentSpec("side", 20.0, y=3.5, speed=15.0)])
    for chain, staged in (
        ([("lead_brake", {"onset_s": 1.0})], "lead"),
        ([("cut_in", {"source": "neighbour", "side": "left", "gap_m": 10.0, "rel_speed": 0.0})], "side"),
        ([("insert_lead_brake", {"gap_m": 5.0})], "inserted-lead"),
    ):
        v = m.mutate(s, chain)
        assert staged in v.conditions.replay_agents
        plan = compile_plan(v, EnvConfig(agents_mode="reactive"))
        reactive = {str(v.tracks.agent_ids[r]) for r in plan.reactive_rows}
        assert staged not in reactive and reactive, chain
