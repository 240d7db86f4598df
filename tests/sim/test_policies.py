"""Policies: the registry and loading by path, the baselines' behaviour, the expert on real logs."""

from __future__ import annotations

import numpy as np
import pytest

from sim.policies import ConstantVelocityPolicy, make_policy, policy_names, register_policy
from sim.runner import PolicyError, rollout

#: The expert's reproduction of a real logged ego: mean and worst centre error [m].
EXPERT_MEAN_ERROR_M = 0.2
EXPERT_MAX_ERROR_M = 0.5
#: ... and mean speed error [m/s].
EXPERT_MEAN_SPEED_ERROR = 0.3


def test_registry_names_and_loading_by_path() -> None:
    assert {"expert", "idm", "constant_velocity"} <= set(policy_names())
    assert isinstance(make_policy("sim.policies:ConstantVelocityPolicy"), ConstantVelocityPolicy)
    instance = ConstantVelocityPolicy()
    assert make_policy(instance) is instance
    with pytest.raises(ValueError, match="already registered"):
        register_policy("expert")(type("Again", (), {}))
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        make_policy("nope")
    with pytest.raises(ValueError, match="cannot import"):
        make_policy("no_such_package.mod:Thing")
    with pytest.raises(ValueError, match="has no attribute"):
        make_policy("sim.policies:Nothing")
    with pytest.raises(ValueError, match="reset"):
        make_policy("sim.policies:policy_names")


@pytest.mark.parametrize("name", ["tfrecord-00000-of-01000_222.json", "tfrecord-00000-of-01000_4.json"])
@pytest.mark.parametrize("action", ["trajectory", "continuous"])
def test_expert_reproduces_the_logged_ego_on_a_real_scenario(name: str, action: str, make_env, scenes, data_dir) -> None:
    path = data_dir / "waymo_json" / name
    (s,) = scenes.load_real(path)[:1]
    record = rollout(make_env(s, action=action), "expert", seed=0)
    assert record.termination in ("goal", "log_end")
    e = s.ego_index
    n = record.num_steps
    assert n > 80  # 9 s at 10 Hz, maybe a few steps short at the goal
    valid = s.tracks.valid[e, :n]
    err = np.hypot(record.x[e] - s.tracks.x[e, :n], record.y[e] - s.tracks.y[e, :n])[valid]
    assert err.mean() < EXPERT_MEAN_ERROR_M and err.max() < EXPERT_MAX_ERROR_M, (err.mean(), err.max())
    speed_err = np.abs(record.ego_speed - s.tracks.speed[e, :n])[valid]
    assert speed_err.mean() < EXPERT_MEAN_SPEED_ERROR, speed_err.mean()
    assert not record.contact.any() and not record.offroad.any()


def test_idm_stops_behind_a_stopped_lead(make_env, scenes) -> None:
    for action in ("continuous", "trajectory"):
        record = rollout(make_env(scenes.lead_stopped(gap_m=60.0, speed=15.0), action=action), "idm", seed=0)
        assert record.termination == "log_end", action
        gap = record.x[1, -1] - record.x[0, -1] - 4.5
        assert 0.5 < gap < 8.0 and record.ego_speed[-1] < 0.2, (action, gap, record.ego_speed[-1])
    record = rollout(make_env(scenes.cruise(speed=10.0), action="discrete"), "idm", seed=0)
    assert record.termination in ("goal", "log_end")


def test_idm_needs_state_observations(make_env, scenes) -> None:
    env = make_env(scenes.cruise(), observation=["lidar"])
    with pytest.raises(PolicyError, match="state"):
        rollout(env, "idm", seed=0)


def test_constant_velocity_trajectory_collides_at_the_same_step(make_env, scenes) -> None:
    record = rollout(make_env(scenes.lead_stopped(gap_m=50.0, speed=15.0), action="trajectory"), "constant_velocity", seed=0)
    assert record.termination == "collision" and record.num_steps - 1 == 31


class _Raises:
    name = "raises"

    def reset(self, scenario_info) -> None:
        self.calls = 0

    def act(self, observation):
        self.calls += 1
        if self.calls == 4:
            raise RuntimeError("planner crashed")
        return np.zeros(2, np.float32)


class _NaN(_Raises):
    name = "nan"

    def act(self, observation):
        return np.array([np.nan, 0.0], np.float32)


def test_a_failing_policy_fails_its_scenario_with_the_step(make_env, scenes) -> None:
    env = make_env(scenes.cruise())
    with pytest.raises(PolicyError, match=r"cruise: step 3: policy 'raises' raised RuntimeError: planner crashed"):
        rollout(env, _Raises(), seed=0)
    with pytest.raises(PolicyError, match=r"cruise: step 0: .*NaN"):
        rollout(env, _NaN(), seed=0)
    with pytest.raises(PolicyError, match="does not support 'discrete'"):
        rollout(make_env(scenes.cruise(), action="discrete"), "expert", seed=0)


def test_discrete_meta_actions_change_lane_and_speed(make_env) -> None:
    """``two_lane_cruise``: the ego in lane 0 (y = 0) at 10 m/s; lane 1 is at y = 3.5."""
    from scenarios.synthetic import AgentSpec, scene

    from sim.actions import MetaAction

    s = scene([AgentSpec("ego", x=0.0, speed=10.0)], num_steps=81, scenario_id="two_lane_cruise")
    env = make_env(s, action="discrete", terminate_on_goal=False)
    env.reset(seed=0)
    env.step(int(MetaAction.CHANGE_LEFT))
    for _ in range(3):
        env.step(int(MetaAction.FASTER))
    for _ in range(50):
        env.step(int(MetaAction.KEEP_LANE))
    assert env.ego.y == pytest.approx(3.5, abs=0.2) and abs(env.ego.yaw) < 0.02
    assert env.ego.speed == pytest.approx(16.0, abs=0.3)
    env.step(int(MetaAction.CHANGE_LEFT))  # no lane further left: nothing changes
    for _ in range(20):
        env.step(int(MetaAction.SLOWER))
    assert env.ego.y == pytest.approx(3.5, abs=0.2) and env.ego.speed < 5.0  # P control towards 0 m/s


def test_the_experts_trajectory_is_as_smooth_as_the_log_it_drives(make_env, scenes, data_dir) -> None:
    """The AV2 log whose logged positions jitter: the expert handing them over as waypoints made the
    tracker chase the noise (longitudinal jerk 26 m/s3, braking at 8 m/s2, against the log's 4.4 and
    4.5). Its trajectory now carries the continuous law's speeds: its ride stays within the log's
    own extremes x 1.25 (comfort's ``log_margin_ratio``) and it still follows the log."""
    from evaluators.comfort import ComfortSettings, dynamics_series, extremes

    path = data_dir / "argoverse2" / "scenario_0a1e6f0a-1817-4a98-b02e-db8c9327d151.parquet"
    if not path.exists():
        pytest.skip("the AV2 log is not in the data directory")
    s = scenes.load_real(path)[0]
    record = rollout(make_env(s, action="trajectory", agents_mode="reactive"), "expert", seed=0)
    e, n, tr = s.ego_index, record.num_steps, s.tracks
    cfg = ComfortSettings()
    mine = extremes(dynamics_series(record.vx[e], record.vy[e], record.yaw[e], record.valid[e], record.dt_s, cfg))
    log = extremes(dynamics_series(tr.vx[e, :n], tr.vy[e, :n], tr.yaw[e, :n], tr.valid[e, :n], record.dt_s, cfg))
    for name in ("max_abs_lon_jerk_mps3", "max_abs_jerk_mps3", "lon_accel_max_mps2"):
        assert mine[name] <= max(1.25 * log[name], 2.0), (name, mine[name], log[name])
    assert mine["lon_accel_min_mps2"] >= 1.25 * log["lon_accel_min_mps2"], (mine["lon_accel_min_mps2"], log["lon_accel_min_mps2"])
    valid = tr.valid[e, :n]
    err = np.hypot(record.x[e] - tr.x[e, :n], record.y[e] - tr.y[e, :n])[valid]
    assert err.mean() < EXPERT_MEAN_ERROR_M, err.mean()
