"""The scenario model rejects what would make a scenario meaningless."""

from __future__ import annotations

import numpy as np
import pytest

from scenarios import AgentType, ScenarioError, Signals, scenarios_equal
from scenarios.synthetic import AgentSpec, scene


def two_cars():
    return scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("lead", 30.0, speed=5.0)], num_steps=11)


def test_synthetic_scene_has_closed_form_positions():
    s = two_cars()
    assert s.num_agents == 2 and s.num_steps == 11 and s.dt_us == 100_000
    assert s.ego_id == "ego"
    np.testing.assert_allclose(s.tracks.x[0, -1], 10.0)  # 10 m/s for 1 s
    np.testing.assert_allclose(s.tracks.x[1, -1], 35.0)
    assert s.tracks.x.flags.writeable is False


def test_invalid_entries_are_canonical_zero():
    s = scene([AgentSpec("ego", 5.0, speed=1.0, valid_from=3)], num_steps=5)
    assert (s.tracks.x[0, :3] == 0).all() and s.tracks.x[0, 3] > 0


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda s: s.replace(t_us=s.t_us[::-1].copy()), "t_us"),
        (lambda s: s.replace(t_us=np.r_[s.t_us[:5], s.t_us[4:-1]]), "t_us"),
        (lambda s: s.replace(tracks=s.tracks.replace(x=np.where(s.tracks.valid, np.nan, 0))), "x"),
        (lambda s: s.replace(tracks=s.tracks.replace(yaw=np.full(s.tracks.valid.shape, np.inf))), "yaw"),
        (lambda s: s.replace(tracks=s.tracks.replace(agent_ids=["a", "a"])), "agent_ids"),
        (lambda s: s.replace(tracks=s.tracks.replace(vx=np.zeros((2, 3)))), "vx"),
        (lambda s: s.replace(tracks=s.tracks.replace(valid=np.array([[False] * 11, [True] * 11]))), "valid"),
        (lambda s: s.replace(ego_index=5), "ego_index"),
        (lambda s: s.replace(signals=Signals(["lane0"], np.zeros((1, 3), np.int8), [[0, 0, 0]])), "signals.states"),
    ],
)
def test_validate_rejects(change, field):
    with pytest.raises(ScenarioError) as err:
        change(two_cars())
    assert err.value.field == field
    assert "<synthetic>" in str(err.value)  # names the source


def test_ego_never_valid_is_rejected():
    s = two_cars()
    valid = s.tracks.valid.copy()
    valid[0] = False
    valid[0, 0] = True
    ok = s.replace(tracks=s.tracks.replace(valid=valid))  # valid once: fine
    valid[0, 0] = False
    with pytest.raises(ScenarioError, match="never valid|empty tracks"):
        ok.replace(tracks=ok.tracks.replace(valid=valid))


def test_window_and_with_ego():
    s = two_cars()
    w = s.window(5, 10, "w")
    assert w.num_steps == 5 and w.t_us[0] == 500_000 and w.id == "w"
    np.testing.assert_array_equal(w.tracks.x, s.tracks.x[:, 5:10])
    other = s.with_ego("lead", "s2")
    assert other.ego_id == "lead" and other.tracks.agent_types[other.ego_index] == AgentType.VEHICLE
    assert scenarios_equal(s, two_cars()) and not scenarios_equal(s, other)


def test_error_pickles_with_its_parts():
    import pickle

    err = ScenarioError("a.json", "objects", "missing")
    back = pickle.loads(pickle.dumps(err))
    assert (back.source, back.field, back.problem) == ("a.json", "objects", "missing")
    assert str(back) == "a.json: objects: missing"


def test_pick_ego_passes_over_parked_cars():
    from scenarios.importers.base import pick_ego

    s = scene(
        [
            AgentSpec("parked", 0.0, speed=0.0),  # valid for all 11 steps, never moves
            AgentSpec("mover", 20.0, y=3.5, speed=10.0, valid_from=2),  # 9 steps, 8 m
            AgentSpec("walker", 5.0, y=7.0, speed=1.0, agent_type=AgentType.PEDESTRIAN),
        ],
        num_steps=11,
    )
    assert s.tracks.agent_ids[pick_ego(s.tracks)] == "mover"


def test_vehicle_egos_skip_tracks_that_overlap_another_in_the_log():
    """``duplicate_track``: a second track of the same car (an id switch) 1 m from it: neither
    can be driven without a collision, so neither becomes an ego; a car 0.1 m from the next in a
    jam (touching within the tolerance) still does."""
    from scenarios.importers import _vehicle_egos

    s = scene(
        [
            AgentSpec("car", 0.0, speed=5.0),
            AgentSpec("ghost", 1.0, y=0.3, speed=5.0),  # overlaps "car" all along
            AgentSpec("jam_a", 0.0, y=3.5, speed=5.0),
            AgentSpec("jam_b", 4.5 + 0.1, y=3.5, speed=5.0),  # 0.1 m gap... and one touching:
            AgentSpec("jam_c", 4.5 + 0.1 + 4.5 - 0.3, y=3.5, speed=5.0),  # 0.3 m into jam_b: within 2 x 0.2 m
        ],
        num_steps=41,
    )
    egos = _vehicle_egos(s, 2.0)
    assert [e.ego_id for e in egos] == ["jam_a", "jam_b", "jam_c"]
    assert "vehicles ['car', 'ghost']" in egos[0].provenance.notes


def test_vehicle_egos_skip_tracks_whose_speeds_contradict_their_positions():
    """``frozen_speed``: a car whose boxes drive 20 m in 4 s while its logged velocity is 0 (a
    tracker's 'static' flag on a moving box) is no ego; nor is one whose boxes stand while it logs
    5 m/s; a car whose log agrees with itself (5 m/s, 20 m) is."""
    import dataclasses

    from scenarios.importers import _vehicle_egos, inconsistent_rows

    s = scene(
        [AgentSpec("good", 0.0, speed=5.0), AgentSpec("frozen", 0.0, y=7.0, speed=5.0), AgentSpec("stuck", 0.0, y=14.0, speed=5.0)],
        num_steps=41,
    )
    t = s.tracks
    vx, x = t.vx.copy(), t.x.copy()
    vx[1] = 0.0  # "frozen": moves, logs standing
    x[2] = x[2, 0]  # "stuck": stands, logs 5 m/s
    s = s.replace(tracks=dataclasses.replace(t, vx=vx, x=x))
    assert inconsistent_rows(s.tracks, s.t_us, np.arange(3)).tolist() == [1, 2]
    egos = _vehicle_egos(s, 2.0, min_travel_m=0.0)  # "stuck" stands: kept as a parked car, then refused
    assert [e.ego_id for e in egos] == ["good"]
    assert "vehicles ['frozen', 'stuck']" in egos[0].provenance.notes and "contradict" in egos[0].provenance.notes


def test_vehicle_egos_are_the_vehicles_that_drive():
    """``parked``: a car that drives 20 m in 4 s is an ego; a parked one (its box jittering 3 cm)
    and one that creeps 4 m are not, unless ``min_travel_m`` is 0 (or 3 m for the creeper)."""
    import dataclasses

    from scenarios.importers import _vehicle_egos, travel_m

    s = scene(
        [AgentSpec("driver", 0.0, speed=5.0), AgentSpec("parked", 0.0, y=7.0), AgentSpec("creeper", 0.0, y=14.0, speed=1.0)],
        num_steps=41,
    )
    t = s.tracks
    x = t.x.copy()
    x[1] += 0.03 * np.sin(np.arange(41))  # label jitter, velocity 0
    s = s.replace(tracks=dataclasses.replace(t, x=x))
    assert travel_m(s.tracks, np.arange(3)) == pytest.approx([20.0, 0.03, 4.0], abs=0.001)
    assert [e.ego_id for e in _vehicle_egos(s, 2.0)] == ["driver"]
    assert [e.ego_id for e in _vehicle_egos(s, 2.0, min_travel_m=3.0)] == ["driver", "creeper"]
    assert [e.ego_id for e in _vehicle_egos(s, 2.0, min_travel_m=0.0)] == ["driver", "parked", "creeper"]
