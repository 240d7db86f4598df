"""Reactive agents: named scenes with known answers (a red light, a crossing, a pedestrian, a stop
sign), the path tables against plain interpolation, and log reproduction on real logs."""

from __future__ import annotations

import numpy as np
import pytest

from scenarios.model import AgentType, Conditions, FeatureKind, Lane, MapFeature, RoadMap, Signals, SignalState
from scenarios.synthetic import AgentSpec, scene, straight_road
from sim.agents import S0, PathBank, ReactiveAgents
from sim.config import EnvConfig
from sim.plan import compile_plan
from sim.runner import rollout

HALF_LEN = 2.25  # half of AgentSpec's default 4.5 m length


def box_gap(rec, a: int, b: int) -> np.ndarray:
    """(S,) a lower bound of the distance between two agents' boxes: centre distance minus both half diagonals [m]."""
    d = np.hypot(rec.x[a] - rec.x[b], rec.y[a] - rec.y[b])
    return d - 2 * 0.5 * np.hypot(4.5, 1.9)


def red_light(red_steps: int = 80, num_steps: int = 141):
    """``red_light``: a car at 10 m/s logged to drive through lane 0's stop line at x = 40 m, red
    for the first ``red_steps`` steps, then green; the ego stands in lane 1 far behind."""
    s = scene([AgentSpec("ego", x=-40.0, y=3.5), AgentSpec("car", x=0.0, speed=10.0)], num_steps=num_steps,
              scenario_id="red_light")
    states = np.full((1, num_steps), int(SignalState.GO), np.int8)
    states[0, :red_steps] = int(SignalState.STOP)
    return s.replace(signals=Signals(np.array(["lane0"]), states, np.array([[40.0, 0.0, 0.0]])))


def test_a_vehicle_stops_within_1_m_of_a_red_lights_stop_line_and_leaves_on_green(make_env) -> None:
    s = red_light()
    replay = rollout(make_env(s), "constant_velocity", seed=0)
    assert replay.x[1, 79] + HALF_LEN > 40.0  # the log runs the red light
    rec = rollout(make_env(s, agents_mode="reactive"), "constant_velocity", seed=0)
    front = rec.x[1] + HALF_LEN
    assert front[:80].max() <= 40.0  # never past the line while red
    assert 39.0 <= front[79] <= 40.0 and abs(rec.vx[1, 79]) < 0.05  # stopped within 1 m of it
    assert front[-1] > 60.0 and rec.vx[1, -1] > 5.0  # and gone on green


def test_yellow_stops_a_vehicle_that_can_stop_and_lets_one_through_that_cannot(make_env) -> None:
    far = red_light(red_steps=0).replace(id="yellow_far")
    states = np.array(far.signals.states)
    states[0, :80] = int(SignalState.CAUTION)  # yellow while the car is 37.75 m away at 10 m/s: it can stop
    far = far.replace(signals=Signals(far.signals.lane_ids, states, far.signals.stop_points))
    rec = rollout(make_env(far, agents_mode="reactive"), "constant_velocity", seed=0)
    assert rec.x[1, 79] + HALF_LEN <= 40.0
    near = far.replace(id="yellow_near", signals=Signals(far.signals.lane_ids, states, np.array([[12.0, 0.0, 0.0]])))
    rec = rollout(make_env(near, agents_mode="reactive"), "constant_velocity", seed=0)  # 9.75 m at 10 m/s: it cannot
    assert np.allclose(rec.x[1], near.tracks.x[1, : rec.num_steps], atol=1e-6)


def crossing():
    """``crossing``: car a along +x reaches the crossing at (20, 0) at 5.0 s, car b along +y at 5.4 s;
    logged, their boxes overlap there."""
    a = AgentSpec("a", x=-30.0, speed=10.0)
    b = AgentSpec("b", x=20.0, y=-54.0, speed=10.0, yaw=np.pi / 2)
    return scene([AgentSpec("ego", x=-45.0, y=3.5), a, b], num_steps=101, scenario_id="crossing")


def test_a_vehicle_yields_to_a_crossing_one(make_env) -> None:
    s = crossing()
    replay = rollout(make_env(s), "constant_velocity", seed=0)
    assert box_gap(replay, 1, 2).min() < -1.0  # the log's boxes overlap at the crossing
    rec = rollout(make_env(s, agents_mode="reactive"), "constant_velocity", seed=0)
    # a came first and keeps its log; b waits short of a's lane, then crosses after it
    assert np.abs(rec.x[1] - s.tracks.x[1, : rec.num_steps]).max() < 1e-6
    ahead_of_zone = rec.y[2] + HALF_LEN
    passing = np.abs(rec.x[1] - 20.0) < HALF_LEN + 0.95  # a's box covers b's path
    assert passing.any() and ahead_of_zone[passing].max() < -0.95  # b's front stays out of a's lane
    assert box_gap(rec, 1, 2).min() > 0.0
    assert rec.y[2, -1] > 10.0  # and b crosses afterwards


def test_the_first_to_arrive_goes_first_whichever_row_it_has(make_env) -> None:
    s = crossing()
    tr = s.tracks
    # swap the rows of a and b: b still arrives later and still yields
    order = [0, 2, 1]
    swapped = s.replace(id="crossing_swapped", tracks=tr.replace(
        agent_ids=tr.agent_ids[order], agent_types=tr.agent_types[order], length=tr.length[order], width=tr.width[order],
        height=tr.height[order], x=tr.x[order], y=tr.y[order], z=tr.z[order], yaw=tr.yaw[order], vx=tr.vx[order],
        vy=tr.vy[order], valid=tr.valid[order]))
    rec = rollout(make_env(swapped, agents_mode="reactive"), "constant_velocity", seed=0)
    assert np.abs(rec.x[2] - swapped.tracks.x[2, : rec.num_steps]).max() < 1e-6  # a (now row 2) keeps its log
    assert box_gap(rec, 1, 2).min() > 0.0


def test_a_pedestrian_stops_for_the_ego_in_its_way(make_env) -> None:
    """``pedestrian_ego``: a pedestrian logged to walk at 1.4 m/s across lane 0 through a standing ego."""
    ped = AgentSpec("ped", x=0.0, y=-8.0, speed=1.4, yaw=np.pi / 2, length=0.5, width=0.5, agent_type=AgentType.PEDESTRIAN)
    s = scene([AgentSpec("ego", x=0.0), ped], num_steps=121, scenario_id="pedestrian_ego")
    replay = rollout(make_env(s), "constant_velocity", seed=0)
    assert replay.termination == "collision"
    rec = rollout(make_env(s, agents_mode="reactive"), "constant_velocity", seed=0)
    assert rec.termination == "log_end"
    gap = -0.95 - (rec.y[1] + 0.25)  # ego's right side minus the pedestrian's front [m]
    assert gap.min() > 0.0 and abs(rec.vy[1, -1]) < 0.05  # stopped short of the ego
    assert 1.8 < gap[-1] <= S0  # after walking up to IDM's jam distance from it (not frozen at its start)


def test_a_vehicle_stops_at_a_stop_sign_then_proceeds(make_env) -> None:
    road = straight_road()
    sign = MapFeature("stop", FeatureKind.STOP_SIGN, [[40.0, -2.5, 0.0]], lane_ids=("lane0",))
    s = scene([AgentSpec("ego", x=-40.0, y=3.5), AgentSpec("car", x=0.0, speed=10.0)], num_steps=121,
              road=RoadMap(road.lanes, (*road.features, sign)), scenario_id="stop_sign")
    rec = rollout(make_env(s, agents_mode="reactive"), "constant_velocity", seed=0)
    front = rec.x[1] + HALF_LEN
    stopped = np.flatnonzero(np.abs(rec.vx[1]) < 0.5)
    assert stopped.size and 37.0 <= front[stopped[0]] <= 40.0  # stops at the line
    assert front[: stopped[0]].max() <= 40.0
    assert front[-1] > 50.0  # then proceeds


def test_rules_match_only_paths_through_a_stop_point() -> None:
    """Lane 0's signal governs the car through its stop point, not a car in lane 1 nor one driving
    the other way through it; the stop lies 40 m along the car's path (it starts at x = 0)."""
    both = scene([AgentSpec("ego", x=-40.0, y=3.5), AgentSpec("car", x=0.0, speed=10.0), AgentSpec("other", x=0.0, y=3.5,
                 speed=10.0), AgentSpec("back", x=80.0, speed=-10.0, yaw=np.pi)], num_steps=141)
    both = both.replace(signals=red_light().signals)
    agents = ReactiveAgents.from_plan(compile_plan(both, EnvConfig(agents_mode="reactive")))
    governed = [str(both.tracks.agent_ids[agents.rows[j]]) for j in agents.rules.stop_agent]
    assert governed == ["car"]
    assert agents.rules.stop_s[0] == pytest.approx(40.0, abs=1e-6)
    assert agents.rules.stop_signal.tolist() == [0]


def test_path_tables_equal_plain_interpolation() -> None:
    rng = np.random.default_rng(0)
    paths = []
    for n in (1, 2, 7, 30):
        pts = np.cumsum(rng.uniform(0.2, 2.0, (n, 2)), axis=0)
        paths.append((pts, np.unwrap(rng.uniform(-np.pi, np.pi, n))))
    bank = PathBank(paths)
    for row, (pts, yaw) in enumerate(paths):
        seg = np.hypot(*np.diff(pts, axis=0).T)
        s_pts = np.concatenate([[0.0], np.cumsum(seg)])
        s = np.linspace(0.0, s_pts[-1], 50)
        xy, yw, _ = bank.at(np.full(50, row), s)
        assert np.allclose(xy[:, 0], np.interp(s, s_pts, pts[:, 0]), atol=1e-6)
        assert np.allclose(xy[:, 1], np.interp(s, s_pts, pts[:, 1]), atol=1e-6)
        assert np.allclose(yw, np.interp(s, s_pts, yaw), atol=1e-6)
        if len(pts) >= 2:  # beyond the end: straight on along the last segment
            u = (pts[-1] - pts[-2]) / seg[-1]
            xy, _, travel = bank.at(np.array([row]), np.array([s_pts[-1] + 5.0]))
            assert np.allclose(xy[0], pts[-1] + 5.0 * u) and travel[0] == pytest.approx(np.arctan2(u[1], u[0]))


def test_reactive_agents_reproduce_real_logs_with_the_ego_on_its_log(make_env, scenes, data_dir) -> None:
    """With the expert ego (its own log), the reactive agents' mean displacement from their logs
    stays below 0.1 m on every real log (they replay it where nothing holds them back)."""
    import scenarios

    ran = 0
    for path in sorted((data_dir / "waymo_json").glob("*.json")):
        s = scenarios.load(path)[0]
        rec = rollout(make_env(s, agents_mode="reactive", action="trajectory"), "expert", seed=0)
        n = rec.num_steps
        rows = [r for r in range(s.num_agents) if r != s.ego_index]
        v = rec.valid[rows] & s.tracks.valid[rows, :n]
        err = np.hypot(rec.x[rows] - s.tracks.x[rows, :n], rec.y[rows] - s.tracks.y[rows, :n])[v]
        assert err.mean() < 0.1, (s.id, err.mean())
        ran += 1
    if not ran:
        pytest.skip("no Waymo JSON logs in the data directory")


def box_overlaps(x: np.ndarray, y: np.ndarray, yaw: np.ndarray, length: np.ndarray, width: np.ndarray,
                 valid: np.ndarray, skip: int) -> set[tuple[int, int]]:
    """The pairs of rows (row ``skip`` left out) whose oriented boxes overlap at some step."""
    import shapely

    pairs: set[tuple[int, int]] = set()
    c, s = np.cos(yaw), np.sin(yaw)
    for k in range(x.shape[1]):
        rows = np.flatnonzero(valid[:, k] & (np.arange(len(x)) != skip))
        hl, hw = 0.5 * length[rows], 0.5 * width[rows]
        cx, cy, ck, sk = x[rows, k], y[rows, k], c[rows, k], s[rows, k]
        corners = np.stack([np.stack([cx + ck * a * hl - sk * b * hw, cy + sk * a * hl + ck * b * hw], -1)
                            for a, b in ((1, 1), (1, -1), (-1, -1), (-1, 1))], axis=1)
        polys = shapely.polygons(corners)
        i, j = shapely.STRtree(polys).query(polys, predicate="intersects")
        pairs |= {(int(rows[a]), int(rows[b])) for a, b in zip(i, j) if a < b}
    return pairs


@pytest.mark.parametrize("name", ["scenarionet/sd_nuscenes_v1.0-mini_scene-0061.pkl",
                                  "argoverse2/scenario_0a1e6f0a-1817-4a98-b02e-db8c9327d151.parquet"])
def test_reactive_agents_collide_only_where_the_log_does(make_env, scenes, data_dir, name) -> None:
    """Real logs where the agents used to collide with the expert ego on its log: a pedestrian
    stopping for good behind an object it walks past, one spawning into it; a parked car's
    jitter against an object 2 cm ahead of it. Now no pair overlaps that the log does not have,
    and the agents stay within 0.1 m of their logs on average."""
    path = data_dir / name
    if not path.exists():
        pytest.skip(f"{name} not in the data directory")
    s = scenes.load_real(path)[0]
    rec = rollout(make_env(s, agents_mode="reactive", action="trajectory", terminate_on_collision=False), "expert", seed=0)
    n, tr = rec.num_steps, s.tracks
    sim = box_overlaps(rec.x, rec.y, rec.yaw, tr.length, tr.width, rec.valid, s.ego_index)
    logged = box_overlaps(tr.x[:, :n], tr.y[:, :n], tr.yaw[:, :n], tr.length, tr.width, tr.valid[:, :n], s.ego_index)
    assert sim - logged == set()
    rows = [r for r in range(s.num_agents) if r != s.ego_index]
    v = rec.valid[rows] & tr.valid[rows, :n]
    err = np.hypot(rec.x[rows] - tr.x[rows, :n], rec.y[rows] - tr.y[rows, :n])[v]
    assert err.mean() < 0.1, err.mean()


def test_a_pedestrian_walks_past_an_object_its_log_walks_past(make_env) -> None:
    """``pedestrian_past_object``: a pedestrian at 1.4 m/s logged to pass 0.1 m beside a standing
    0.5 m object (both reactive, the object inside the pedestrian's corridor): it replays its log
    (it used to stop 2 m short of the object for good)."""
    ped = AgentSpec("ped", x=0.0, y=10.0, speed=1.4, length=0.5, width=0.5, agent_type=AgentType.PEDESTRIAN)
    cone = AgentSpec("cone", x=8.0, y=10.6, length=0.5, width=0.5, agent_type=AgentType.OTHER)
    s = scene([AgentSpec("ego", x=-40.0, y=-3.5), ped, cone], num_steps=101, scenario_id="pedestrian_past_object")
    rec = rollout(make_env(s, agents_mode="reactive"), "constant_velocity", seed=0)
    assert np.abs(rec.x[1] - s.tracks.x[1, : rec.num_steps]).max() < 1e-9
    assert rec.x[1, -1] > 8.0 + 1.0  # walked past it


def test_a_free_agent_replays_a_track_whose_speeds_disagree_with_its_positions(make_env) -> None:
    """``jumping_track``: positions moving at 10 m/s but logged speeds of 2 m/s (a track that
    switched objects): with nothing in its way the agent is its log, bit for bit."""
    s = scene([AgentSpec("ego", x=-40.0, y=3.5), AgentSpec("car", x=0.0, speed=10.0)], num_steps=61, scenario_id="jumping_track")
    vx = np.array(s.tracks.vx)
    vx[1] = 2.0
    s = s.replace(tracks=s.tracks.replace(vx=vx))
    rec = rollout(make_env(s, agents_mode="reactive"), "constant_velocity", seed=0)
    assert np.abs(rec.x[1] - s.tracks.x[1, : rec.num_steps]).max() < 1e-9


def crossroads(stop_sign: bool) -> RoadMap:
    """Lanes 0 and 1 along +x, and lane ``cross`` northbound along x = 20 m (vertices 1 m apart),
    with a stop sign at (21.5, -17) controlling ``cross`` when ``stop_sign``."""
    road = straight_road()
    ys = np.linspace(-60.0, 60.0, 121)
    cross = Lane("cross", np.column_stack([np.full_like(ys, 20.0), ys]), speed_limit=20.0)
    sign = (MapFeature("stop", FeatureKind.STOP_SIGN, [[21.5, -17.0, 0.0]], lane_ids=("cross",)),) if stop_sign else ()
    return RoadMap((*road.lanes, cross), (*road.features, *sign))


def test_a_vehicle_yields_to_the_ego_that_left_its_log_and_arrives_first(make_env) -> None:
    """``yield_to_ego``: the ego's log brakes to a stop 33 m short of the crossing at (20, 0), but
    the ego keeps its 10 m/s and reaches it at 4.7 s; car b, logged to cross at 5.1 s, yields to
    it (first come; the ego's path goes on straight past its log's end) and crosses after it."""
    ego = AgentSpec("ego", x=-30.0, speed=10.0, accel=-3.0)
    b = AgentSpec("b", x=20.0, y=-54.0, speed=10.0, yaw=np.pi / 2)
    s = scene([ego, b], num_steps=101, road=crossroads(stop_sign=False), scenario_id="yield_to_ego")
    rec = rollout(make_env(s, agents_mode="reactive", terminate_on_collision=False, terminate_on_goal=False),
                  "constant_velocity", seed=0)
    assert rec.termination == "log_end" and rec.x[0, -1] > 60.0  # the ego went through the crossing
    passing = np.abs(rec.x[0] - 20.0) < HALF_LEN + 0.95  # the ego's box covers b's path
    assert passing.any() and (rec.y[1] + HALF_LEN)[passing].max() < -0.95  # b's front stays out of the ego's lane
    assert rec.y[1, -1] > 10.0  # and b crosses afterwards


@pytest.mark.parametrize("replayed", [True, False])
def test_a_vehicle_at_a_stop_sign_yields_to_one_with_the_right_of_way(make_env, replayed: bool) -> None:
    """``stop_sign_right_of_way``: car b on the stop-controlled lane ``cross`` (past its sign at
    8 m/s) reaches the crossing at 1.6 s, first; car c on the through lane at 2.2 s, logged to hit
    it. By the map c has the right of way: b yields and crosses after it, whether c replays its
    log or reacts (then it keeps its log: first come would have it yield)."""
    b = AgentSpec("b", x=20.0, y=-16.0, speed=8.0, yaw=np.pi / 2)
    c = AgentSpec("c", x=-5.0, speed=10.0)
    s = scene([AgentSpec("ego", x=-40.0, y=3.5), b, c], num_steps=81, road=crossroads(stop_sign=True),
              scenario_id="stop_sign_right_of_way")
    if replayed:
        s = s.replace(conditions=Conditions(replay_agents=("c",)))
    replay = rollout(make_env(s), "constant_velocity", seed=0)
    assert box_gap(replay, 1, 2).min() < -1.0  # logged, they collide
    rec = rollout(make_env(s, agents_mode="reactive"), "constant_velocity", seed=0)
    assert np.abs(rec.x[2] - s.tracks.x[2, : rec.num_steps]).max() < 1e-6  # c keeps its log
    passing = np.abs(rec.x[2] - 20.0) < HALF_LEN + 0.95
    assert passing.any() and (rec.y[1] + HALF_LEN)[passing].max() < -0.95
    assert rec.y[1, -1] > 5.0


def test_a_road_user_does_not_appear_inside_an_agent_pushed_off_its_log(make_env) -> None:
    """``spawn_on_pushed_car``: a car logged at 10 m/s through the standing ego (the log's own
    overlap, so it reacts) stops behind it, 17 m short of where its log has it at 4 s; a 1 m
    object logged from 4 s on at x = 22 m, where the car's log passed long before, would appear
    inside the stopped car. It waits while the car is there (the AV2 case: a parked car pushed off
    its jittering log and an object spawning 2 cm in front of it), and the two never overlap."""
    s = scene([AgentSpec("ego", x=30.0), AgentSpec("car", x=0.0, speed=10.0),
               AgentSpec("object", x=22.0, length=1.0, width=1.0, agent_type=AgentType.OTHER, valid_from=40)],
              num_steps=81, scenario_id="spawn_on_pushed_car")
    rec = rollout(make_env(s, agents_mode="reactive", terminate_on_collision=False), "constant_velocity", seed=0)
    n = rec.num_steps
    assert n == 81 and np.abs(rec.x[1, 40] - 23.0) < 2.0  # the car stands behind the ego, over the object's place
    assert not rec.valid[2, 40:].any()  # the object waits: the car never leaves
    from scenarios.geometry import boxes_overlap

    both = rec.valid[1] & rec.valid[2]
    assert not boxes_overlap(rec.x[1], rec.y[1], rec.yaw[1], 4.5, 1.9, rec.x[2], rec.y[2], rec.yaw[2], 1.0, 1.0)[both].any()
