"""Mutation operators: what each does to a scene, plausibility, and variant ids that reproduce.

Every named check runs on hand-built scenes (closed-form answers) and on the real logs in
``../shared/data`` (skipped only when no importer can read them yet).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import scenarios
import scenarios.mutations as m
from scenarios import Scenario, ScenarioError, scenarios_equal
from scenarios.synthetic import AgentSpec, scene

DT = 0.1


# ----------------------------------------------------------------------------- scenes


def highway() -> Scenario:
    """Two lanes along +x (lane0 at y=0, lane1 at y=3.5): ego and a lead in lane0, two cars in lane1.

    Expected: the lead is "lead" (30 m ahead, same lane), not "far" (lane1).
    """
    return scene(
        [
            AgentSpec("ego", 0.0, speed=15.0),
            AgentSpec("lead", 30.0, speed=15.0),
            AgentSpec("side", 10.0, y=3.5, speed=14.0),
            AgentSpec("far", 80.0, y=3.5, speed=13.0),
        ],
        num_steps=91,
        scenario_id="highway",
    )


@pytest.fixture(scope="module")
def real(data_dir) -> list[Scenario]:
    """Every real log that imports (one scenario per file); skip when none does yet."""
    out = []
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file() and p.suffix != ".md"):
        try:
            out.extend(scenarios.load(path)[:1])
        except ScenarioError:
            continue  # not a scenario file (an AV2 map), or its importer is not written yet
    if not out:
        pytest.skip("no real log imports yet")
    return out


def first_accepted(candidates, chain_of):
    """The first (scenario, variant, extra) for which ``mutate`` accepts ``chain_of(scenario, extra)``."""
    for scenario, extra in candidates:
        try:
            return scenario, m.mutate(scenario, chain_of(scenario, extra), seed=0), extra
        except m.RejectedVariant:
            continue
    return None


def onsets(scns: list[Scenario], margin_s: float = 3.0, step_s: float = 0.5):
    return [(s, float(t)) for s in scns for t in np.arange(0.0, max(s.duration_s - margin_s, 0.0), step_s)]


def polyline_distance(px: np.ndarray, py: np.ndarray, lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    """Distance [m] of points to a polyline (independent of the library's geometry)."""
    ax, ay, bx, by = lx[:-1], ly[:-1], lx[1:], ly[1:]
    dx, dy = bx - ax, by - ay
    seg2 = np.where(dx * dx + dy * dy > 0, dx * dx + dy * dy, 1.0)
    t = np.clip(((px[:, None] - ax) * dx + (py[:, None] - ay) * dy) / seg2, 0, 1)
    d = np.hypot(px[:, None] - ax - t * dx, py[:, None] - ay - t * dy)
    return d.min(axis=1) if len(lx) > 1 else np.hypot(px - lx[0], py - ly[0])


def arc_position(px: float, py: float, lx: np.ndarray, ly: np.ndarray) -> float:
    """Arc length [m] along a polyline of the point's nearest point on it."""
    ax, ay, dx, dy = lx[:-1], ly[:-1], np.diff(lx), np.diff(ly)
    seg2 = np.where(dx * dx + dy * dy > 0, dx * dx + dy * dy, 1.0)
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / seg2, 0, 1)
    k = int(np.argmin(np.hypot(px - ax - t * dx, py - ay - t * dy)))
    return float(np.concatenate([[0.0], np.cumsum(np.hypot(dx, dy))])[k] + t[k] * np.sqrt(seg2[k]))


def _yaw_error(tracks, row: int) -> np.ndarray:
    """(T,) |yaw - direction of the velocity| [rad] of agent ``row``."""
    heading = np.arctan2(tracks.vy[row], tracks.vx[row])
    return np.abs((tracks.yaw[row] - heading + np.pi) % (2 * np.pi) - np.pi)


def assert_consistent(v: Scenario, row: int, tol: float, log: Scenario | None = None) -> None:
    """Positions, velocities and yaw of ``row`` agree: displacement / dt = mean velocity (within ``tol`` [m/s]),
    and the yaw follows the velocity within 0.2 rad, or, given the ``log`` the variant came from, within
    the most the log's own labels show for that agent (annotated boxes can point 0.4 rad off their
    motion, and a mutated agent moves along its logged path at other times)."""
    tr = v.tracks
    both = tr.valid[row, 1:] & tr.valid[row, :-1]
    dt = np.diff(v.t_us) / 1e6
    ex = np.diff(tr.x[row]) / dt - (tr.vx[row, 1:] + tr.vx[row, :-1]) / 2
    ey = np.diff(tr.y[row]) / dt - (tr.vy[row, 1:] + tr.vy[row, :-1]) / 2
    assert np.hypot(ex, ey)[both].max(initial=0) < tol
    moving = tr.valid[row] & (np.hypot(tr.vx[row], tr.vy[row]) > 1.0)
    bound = 0.2
    if log is not None:
        original = log.tracks.index_of(tr.agent_ids[row])
        logged = log.tracks.valid[original] & (log.tracks.speed[original] > 1.0)
        bound = max(bound, float(_yaw_error(log.tracks, original)[logged].max(initial=0.0)) + 0.01)
    assert _yaw_error(tr, row)[moving].max(initial=0) < bound


# ----------------------------------------------------------------------------- registry


def test_registry_lists_every_operator_and_rejects_duplicates():
    assert set(m.names()) >= {
        "retime", "time_shift", "lateral_offset", "lead_brake", "cut_in", "remove_agents", "traffic_density",
        "perception_noise", "road_friction", "ego_latency", "ego_speed_offset", "agents_mode", "reactive_agents",
    }
    assert m.get("lead_brake").param("decel").unit == "m/s2"
    with pytest.raises(ValueError, match="already registered"):
        m.register("lead_brake")(lambda scenario, rng: scenario)
    with pytest.raises(ValueError, match="do not match"):
        m.register("new_op_with_typo", m.Param("gain", "-", 1.0))(lambda scenario, rng, *, gian: scenario)


@pytest.mark.parametrize(
    "chain, field",
    [
        ([("no_such_op", {})], "operator"),
        ([("lead_brake", {"decel_mps2": 6.0})], "params.decel_mps2"),
        ([("lead_brake", {"decel": 60.0})], "params.decel"),
        ([("lead_brake", {"decel": "hard"})], "params.decel"),
        ([("agents_mode", {"mode": "sometimes"})], "params.mode"),
        ([("cut_in", {"ttc_s": 2.0, "rel_speed": 1.0})], "params.ttc_s"),
    ],
)
def test_bad_chains_are_config_errors_not_rejections(chain, field):
    with pytest.raises(m.MutationError) as err:
        m.mutate(highway(), chain)
    assert err.value.field == field
    assert not isinstance(err.value, m.RejectedVariant)


# ----------------------------------------------------------------------------- lead brake


def test_lead_brake_decelerates_at_the_asked_rate_synthetic():
    s = highway()
    v = m.mutate(s, [("lead_brake", {"decel": 6.0, "onset_s": 2.0})])
    assert m.tagged_agent(v, "lead_brake") == "lead"
    row = v.tracks.index_of("lead")
    speed = v.tracks.speed[row]
    accel = np.diff(speed) / DT
    # 15 m/s at step 20, -0.6 m/s per step: stopped 2.5 s later (step 45), standing to the end
    np.testing.assert_allclose(accel[20:45], -6.0, atol=1e-9)
    np.testing.assert_allclose(accel[:20], 0.0, atol=1e-9)
    assert speed[45:].max() == 0 and v.tracks.valid[row].all()
    np.testing.assert_allclose(v.tracks.x[row, -1], 30 + 15 * 2.0 + 15**2 / (2 * 6.0))  # stopping distance
    assert_consistent(v, row, 1e-6)
    untouched = [v.tracks.index_of(a) for a in ("ego", "side", "far")]
    np.testing.assert_array_equal(v.tracks.x[untouched], s.tracks.x[untouched])


def test_lead_brake_decelerates_at_the_asked_rate_real(real):
    def moving_lead(scn, onset):
        row = m.geometry.lead_of(scn, m.geometry.nearest_step(scn, onset))
        return row is not None and scn.tracks.speed[row, m.geometry.nearest_step(scn, onset)] > 3.0

    found = first_accepted([c for c in onsets(real) if moving_lead(*c)], lambda s, t: [("lead_brake", {"decel": 5.0, "onset_s": t})])
    if found is None:
        pytest.skip("no real scenario has a moving lead vehicle")
    s, v, onset = found
    row = v.tracks.index_of(m.tagged_agent(v, "lead_brake"))
    k = m.geometry.nearest_step(s, onset)
    speed = v.tracks.speed[row, k:]
    braking = (speed[1:] > 0) & (speed[:-1] > 0)
    accel = np.diff(speed) / (np.diff(v.t_us[k:]) / 1e6)
    assert braking.sum() >= 5
    np.testing.assert_allclose(accel[braking], -5.0, atol=1e-6)
    assert speed[-1] == 0 or not (speed > 0).all()
    np.testing.assert_array_equal(v.tracks.x[row, :k], s.tracks.x[s.tracks.index_of(m.tagged_agent(v, "lead_brake")), :k])
    assert_consistent(v, row, 0.2, log=s)


def test_lead_brake_needs_a_lead():
    alone = scene([AgentSpec("ego", 0.0, speed=10.0), AgentSpec("other_lane", 20.0, y=3.5, speed=10.0)])
    with pytest.raises(m.NotApplicable) as err:
        m.mutate(alone, [("lead_brake", {})])
    assert err.value.reason == "no_lead"


# ----------------------------------------------------------------------------- cut-in


@pytest.mark.parametrize("source", ["clone", "neighbour", "auto"])
def test_cut_in_leaves_the_asked_gap_synthetic(source):
    s = highway()
    v = m.mutate(s, [("cut_in", {"gap_m": 8.0, "rel_speed": -1.0, "onset_s": 2.0, "duration_s": 3.0, "source": source})])
    cutter = m.tagged_agent(v, "cut_in")
    assert cutter == ("cut_in" if source == "clone" else "side")
    row, ego = v.tracks.index_of(cutter), v.ego_index
    tr = v.tracks
    k = 35  # insertion: onset + duration / 2 = 3.5 s
    gap = tr.x[row, k] - tr.x[ego, k] - (tr.length[row] + tr.length[ego]) / 2
    assert gap == pytest.approx(8.0, abs=1e-9)
    assert tr.y[row, k] == pytest.approx(1.75)  # crossing the lane line
    assert tr.y[row, 20] == pytest.approx(3.5) and tr.y[row, 50:].max() == pytest.approx(0.0, abs=1e-12)
    assert tr.vx[row, k] == pytest.approx(14.0, abs=1e-9)  # ego speed + rel_speed
    assert_consistent(v, row, 0.05)


def test_cut_in_by_time_to_collision():
    v = m.mutate(highway(), [("cut_in", {"ttc_s": 2.5, "rel_speed": -4.0, "source": "clone"})])
    tr, row, k = v.tracks, v.tracks.index_of("cut_in"), 35
    gap = tr.x[row, k] - tr.x[0, k] - (tr.length[row] + tr.length[0]) / 2
    assert gap / (tr.vx[0, k] - tr.vx[row, k]) == pytest.approx(2.5, abs=1e-9)


def test_cut_in_leaves_the_asked_gap_real(real):
    # replayed traffic would not brake for the cutter: the logged vehicles react, the cutter replays
    def chain(s, onset):
        return [("reactive_agents", {"fraction": 1.0}), ("cut_in", {"gap_m": 8.0, "rel_speed": -1.0, "onset_s": onset, "source": "clone"})]

    found = first_accepted(onsets(real, margin_s=4.0), chain)
    if found is None:
        pytest.skip("no real scenario has an adjacent lane beside a moving ego")
    s, v, onset = found
    tr, ego = v.tracks, v.ego_index
    row = tr.index_of(m.tagged_agent(v, "cut_in"))
    k = m.geometry.nearest_step(s, onset + 1.5)
    idx = np.flatnonzero(tr.valid[ego])
    lx, ly = tr.x[ego, idx], tr.y[ego, idx]
    heading = np.arctan2(ly[-1] - ly[-2], lx[-1] - lx[-2])
    lx, ly = np.r_[lx, lx[-1] + 500 * np.cos(heading)], np.r_[ly, ly[-1] + 500 * np.sin(heading)]
    along = arc_position(tr.x[row, k], tr.y[row, k], lx, ly) - arc_position(tr.x[ego, k], tr.y[ego, k], lx, ly)
    assert along - (tr.length[row] + tr.length[ego]) / 2 == pytest.approx(8.0, abs=0.1)
    assert_consistent(v, row, 1.0)
    assert m.tagged_agent(v, "cut_in") not in v.conditions.reactive_agents


# ----------------------------------------------------------------------------- retime and friends


@pytest.mark.parametrize("scale, from_s", [(0.6, 0.0), (1.4, 0.0), (0.75, 2.0), (1.3, 3.5)])
def test_retimed_agent_keeps_its_path_synthetic(scale, from_s):
    s = highway()
    v = m.mutate(s, [("retime", {"agent": "lead", "scale": scale, "from_s": from_s})])
    row = v.tracks.index_of("lead")
    ok = v.tracks.valid[row]
    assert polyline_distance(v.tracks.x[row, ok], v.tracks.y[row, ok], s.tracks.x[row], s.tracks.y[row]).max() < 0.01
    k = m.geometry.nearest_step(s, from_s) + 20  # after the ramp
    assert v.tracks.speed[row, k] == pytest.approx(15.0 * scale)
    assert_consistent(v, row, 0.1)


def test_retimed_agent_keeps_its_path_real(real):
    checked = 0
    for s in real:
        for seed in range(4):
            for scale in (0.7, 1.3):
                try:
                    v = m.mutate(s, [("retime", {"agent": "random", "scale": scale, "from_s": 1.0})], seed=seed)
                except m.RejectedVariant:
                    continue
                agent = m.tagged_agent(v, "retime")
                row, src = v.tracks.index_of(agent), s.tracks.index_of(agent)
                ok, was = v.tracks.valid[row], s.tracks.valid[src]
                dist = polyline_distance(v.tracks.x[row, ok], v.tracks.y[row, ok], s.tracks.x[src, was], s.tracks.y[src, was])
                assert dist.max() < 0.01, (s.id, agent)
                checked += 1
    assert checked >= 5


def test_time_shift_and_lateral_offset():
    s = highway()
    v = m.mutate(s, [("time_shift", {"agent": "far", "shift_s": 1.0})])
    row = v.tracks.index_of("far")
    assert not v.tracks.valid[row, :10].any() and v.tracks.valid[row, 10:].all()
    np.testing.assert_allclose(v.tracks.x[row, 10:], s.tracks.x[row, :-10])
    v = m.mutate(s, [("lateral_offset", {"agent": "far", "offset_m": -0.8, "from_s": 1.0, "ramp_s": 2.0})])
    np.testing.assert_allclose(v.tracks.y[row, [0, 10, 20, 30, 90]], [3.5, 3.5, 3.1, 2.7, 2.7])
    assert_consistent(v, row, 0.01)


def test_ego_speed_offset_changes_the_initial_state_and_keeps_the_path():
    s = highway()
    v = m.mutate(s, [("ego_speed_offset", {"delta": 3.0})])
    assert v.tracks.speed[0, 0] == pytest.approx(18.0) and v.tracks.x[0, 0] == 0.0
    np.testing.assert_allclose(v.tracks.x[0], 18.0 * np.arange(91) * DT)
    np.testing.assert_array_equal(v.tracks.y[0], 0.0)
    assert_consistent(v, 0, 1e-6)


def test_remove_agents_and_density():
    s = highway()
    v = m.mutate(s, [("remove_agents", {"agents": ["lead"]})])
    assert "lead" not in v.tracks.agent_ids and v.ego_id == "ego"
    v = m.mutate(s, [("remove_agents", {"fraction": 1.0})])
    assert v.tracks.agent_ids.tolist() == ["ego"]
    v = m.mutate(s, [("traffic_density", {"scale": 2.0})], seed=3)
    assert v.num_agents == 7 and sum("~clone" in a for a in v.tracks.agent_ids) == 3
    v = m.mutate(s, [("traffic_density", {"scale": 1 / 3})], seed=3)
    assert v.num_agents == 2 and v.ego_id == "ego"


def test_density_clones_follow_their_source_on_real_logs(real):
    s = max(real, key=lambda x: x.num_agents)
    batch = m.generate_variants(s, [[("traffic_density", {"scale": 1.2})]] * 4, seed=1)
    assert batch.accepted or batch.rejected["no_room"] == 4
    for v in batch.accepted:
        clones = [a for a in v.tracks.agent_ids if "~clone" in a]
        assert len(clones) == round(0.2 * (int((s.tracks.agent_types == 0).sum()) - 1))
        for a in clones:
            row, src = v.tracks.index_of(a), s.tracks.index_of(a.split("~clone")[0])
            ok = v.tracks.valid[row]
            assert polyline_distance(v.tracks.x[row, ok], v.tracks.y[row, ok], s.tracks.x[src, s.tracks.valid[src]], s.tracks.y[src, s.tracks.valid[src]]).max() < 0.01


# ----------------------------------------------------------------------------- conditions


def test_friction_reaches_the_scenario_conditions():
    s = highway()
    v = m.mutate(s, [("road_friction", {"mu": 0.35})])
    assert v.conditions.road_friction == 0.35
    assert v.tracks is s.tracks  # conditions only: the recorded world is untouched
    v = m.mutate(
        s,
        [
            ("ego_latency", {"latency_s": 0.25}),
            ("perception_noise", {"position_m": 0.4, "heading_rad": 0.05, "dropout": 0.1}),
            ("agents_mode", {"mode": "reactive"}),
            ("reactive_agents", {"agents": ["lead", "far"]}),
        ],
    )
    c = v.conditions
    assert (c.ego_latency_s, c.position_noise_m, c.heading_noise_rad, c.detection_dropout) == (0.25, 0.4, 0.05, 0.1)
    assert c.agents_mode == "reactive" and c.reactive_agents == ("far", "lead") and c.road_friction == 0.9


def test_friction_reaches_the_twins_road_surface():
    env_mod = pytest.importorskip("sim.env")
    v = m.mutate(scene([AgentSpec("ego", 0.0, speed=10.0)], num_steps=11), [("road_friction", {"mu": 0.35})])
    env = env_mod.DriveTwinEnv(v)
    try:
        env.reset(seed=0)
        world = getattr(env.unwrapped, "world", None)
        if world is None or getattr(world, "road", None) is None:
            pytest.skip("the twin does not expose its road bodies")
        frictions = [world.p.getDynamicsInfo(b, -1, physicsClientId=world.cid)[1] for b in world.road.road]
        assert frictions and np.allclose(frictions, 0.35)
    finally:
        env.close()


# ----------------------------------------------------------------------------- variant ids


RANDOM_CHAIN = [
    ("traffic_density", {"scale": 1.5}),
    ("cut_in", {"gap_m": 12.0, "source": "clone"}),
    ("retime", {"agent": "random", "scale": 0.9}),
    ("perception_noise", {"dropout": 0.05}),
]


def test_variant_ids_are_stable_and_reproduce_the_variant():
    s = highway()
    a, b = m.mutate(s, RANDOM_CHAIN, seed=7), m.mutate(s, RANDOM_CHAIN, seed=7)
    assert scenarios_equal(a, b) and a.id == b.id
    assert a.id.startswith("highway~") and len(a.id) == len("highway~") + 12
    assert m.mutate(s, RANDOM_CHAIN, seed=8).id != a.id
    # the id is a hash of the canonical chain: defaults and number types do not change it
    assert m.mutate(s, [("lead_brake", {"decel": 6})]).id == m.mutate(s, [("lead_brake", {"decel": 6.0, "onset_s": 2.0, "agent": "lead"})]).id
    # the variant carries its spec; the spec alone rebuilds it
    spec = m.spec_of(a)
    assert (spec.scenario_id, spec.ego_id, spec.seed) == ("highway", "ego", 7) and m.variant_id(spec) == a.id
    text = json.dumps(json.loads(spec.to_json()))
    again = m.reproduce(s, text)
    assert scenarios_equal(again, a)
    assert "variant" in a.tags and "mutation:cut_in" in a.tags


def test_variant_ids_reproduce_on_real_logs(real):
    for s in real:
        batch = m.generate_variants(s, [[("retime", {"agent": "random", "scale": 1.2})], [("ego_speed_offset", {"delta": -1.0})]], seed=5)
        for v in batch.accepted:
            spec = m.VariantSpec.from_json(m.spec_of(v).to_json())
            assert spec.id == v.id
            assert scenarios_equal(m.apply(s, spec), v)


def test_a_variant_id_alone_reproduces_it_through_the_library(tmp_path):
    """A stored variant carries its spec: id -> spec -> source scenario -> the same variant."""
    library_mod = pytest.importorskip("scenarios.library")
    s = highway()
    v = m.mutate(s, RANDOM_CHAIN, seed=7)
    lib = library_mod.ScenarioLibrary.create(tmp_path / "lib")
    lib.append([s, v])
    lib.refresh()
    spec = m.spec_of(lib.load(v.id))
    assert spec.id == v.id
    assert scenarios_equal(m.reproduce(lib.load(spec.scenario_id), spec), v)


def test_a_spec_only_rebuilds_from_its_own_scenario():
    a = m.mutate(highway(), [("road_friction", {"mu": 0.5})])
    other = scene([AgentSpec("ego", 0.0, speed=5.0)], scenario_id="other")
    with pytest.raises(m.MutationError, match="the spec is for"):
        m.apply(other, m.spec_of(a))


# ----------------------------------------------------------------------------- plausibility


def test_implausible_variants_raise_a_rejection_with_a_reason():
    s = highway()
    with pytest.raises(m.ImplausibleVariant) as err:  # 8 m/s2 on a road with mu = 0.3
        m.mutate(s, [("lead_brake", {"decel": 8.0}), ("road_friction", {"mu": 0.3})])
    assert err.value.reason == "accel" and isinstance(err.value, ScenarioError)
    with pytest.raises(m.ImplausibleVariant) as err:  # the lead pushed back onto the ego
        m.mutate(s, [("time_shift", {"agent": "lead", "shift_s": 1.9})])
    assert err.value.reason == "overlap_at_start"
    with pytest.raises(m.ImplausibleVariant) as err:  # a lateral jump of 2 m within one step
        m.mutate(s, [("lateral_offset", {"agent": "far", "offset_m": 2.0, "from_s": 3.0})])
    assert err.value.reason == "jump"
    with pytest.raises(m.ImplausibleVariant) as err:  # a slow clone in lane1 in front of a faster "side"
        m.mutate(s, [("cut_in", {"gap_m": 30.0, "rel_speed": -8.0, "source": "clone", "lead_in_s": 100.0})])
    assert err.value.reason in ("agent_collision", "overlap_at_start")
    unchecked = m.mutate(s, [("lead_brake", {"decel": 8.0}), ("road_friction", {"mu": 0.3})], check=False)
    assert unchecked.conditions.road_friction == 0.3  # only for inspection: never simulated


def test_generate_variants_counts_rejections_by_reason():
    s = highway()
    chains = [
        [("lead_brake", {"decel": 4.0})],
        [("lead_brake", {"decel": 8.0}), ("road_friction", {"mu": 0.3})],
        [("lead_brake", {"decel": 9.0}), ("road_friction", {"mu": 0.2})],
        [("time_shift", {"agent": "lead", "shift_s": 1.9})],
        [("lead_brake", {"agent": "no-such-agent"})],
        [("road_friction", {"mu": 0.5})],
    ]
    batch = m.generate_variants(s, chains, seed=0)
    assert len(batch.accepted) == 2
    assert dict(batch.rejected) == {"accel": 2, "overlap_at_start": 1, "no_lead": 1}
    assert batch.num_rejected == 4 and len(batch.rejected_specs) == 4
    for v in batch.accepted:
        m.check_plausible(s, v)


def test_mutations_do_not_inherit_blame_for_noisy_logs(real):
    """A log's own noise (beyond the limits) does not make every mutation of it implausible."""
    for s in real:
        assert m.mutate(s, [("road_friction", {"mu": 0.9})]).conditions.road_friction == 0.9
        batch = m.generate_variants(s, [[("time_shift", {"agent": "random", "shift_s": 0.0})]] * 3, seed=2)
        assert not (set(batch.rejected) & {"accel", "jump", "speed", "yaw_rate"}), (s.id, dict(batch.rejected))


# ----------------------------------------------------------------------------- plans (suite config)


def test_mutation_plan_from_a_config_table():
    table = {
        "operator": "lead_brake",
        "params": {"decel": {"uniform": [2.0, 8.0], "unit": "m/s^2"}, "onset_s": {"normal": {"mean": 2.0, "std": 0.5, "low": 1.0, "high": 3.0}, "unit": "s"}},
        "sampler": "halton",
        "variants": 8,
        "seed": 3,
    }
    plan = m.MutationPlan.from_table(table, "suite.toml")
    batch = plan.generate(highway())
    assert len(batch.accepted) + batch.num_rejected == 8 and len(batch.accepted) >= 6
    decels = sorted(m.spec_of(v).chain[0][1]["decel"] for v in batch.accepted)
    assert 2.0 <= decels[0] < decels[-1] <= 8.0
    assert [v.id for v in plan.generate(highway()).accepted] == [v.id for v in batch.accepted]


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda t: t | {"bogus": 1}, "mutation.bogus"),
        (lambda t: t | {"params": {"decel": {"uniform": [2.0, 8.0], "unit": "m/s"}}}, "params.decel"),
        (lambda t: t | {"params": {"decel": {"uniform": [2.0, 80.0], "unit": "m/s2"}}}, "params.decel"),
        (lambda t: t | {"params": {"decel": {"uniform": [2.0, 8.0], "beta": 1}}}, "mutation.params.decel.beta"),
        (lambda t: t | {"sampler": "annealing"}, "mutation.sampler"),
        (lambda t: t | {"variants": 0}, "mutation.variants"),
        (lambda t: t | {"operator": "no_such_op"}, "operator"),
    ],
)
def test_mutation_plan_rejects_bad_tables(change, field):
    table = {"operator": "lead_brake", "params": {"decel": {"uniform": [2.0, 8.0], "unit": "m/s2"}}}
    with pytest.raises(m.MutationError) as err:
        m.MutationPlan.from_table(change(table), "suite.toml")
    assert err.value.field == field and "suite.toml" in str(err.value)
