"""The planner protocol: a policy served over gRPC or frames drives exactly as it does in process.

The acceptance test runs the same suite with the in-process ``expert`` and with the ``expert``
served by ``drivetwin serve-policy`` (lock-step), as an address (gRPC and frames) and as a planner
process per worker on both executors: the summary tables are equal column for column, the
latency columns aside.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

grpc = pytest.importorskip("grpc")

import scenarios  # noqa: E402
import sim  # noqa: E402
from harness.config import ConfigError, parse_suite  # noqa: E402
from harness.remote import RemotePolicy, serve_policy  # noqa: E402
from harness.remote import protocol  # noqa: E402
from harness.remote import server as harness_server  # noqa: E402
from harness.remote._proto import planner_pb2 as pb  # noqa: E402
from harness.remote._proto import planner_pb2_grpc as pb_grpc  # noqa: E402
from harness.runner import run_suite  # noqa: E402
from sim.runner import PolicyError, rollout, rollouts_equal  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "scenarios" / "sample" / "ngsim_us101"
#: Columns that say how the run went, not what the driving was.
RUN_ONLY = ["run_id", "worker_s", "attempts", "planner_latency_p50_ms", "planner_latency_p99_ms", "planner_latency_max_ms"]
SERVE = {
    "grpc": f"{sys.executable} -m harness.cli serve-policy expert --port {{port}}",
    "frames": f"{sys.executable} -m harness.cli serve-policy expert --socket {{socket}}",
}


@pytest.fixture(scope="module")
def library():
    return scenarios.ScenarioLibrary(SAMPLE)


def _serve_expert(*flags: str):
    """``drivetwin serve-policy expert FLAGS`` in its own process: the process, its address, its server's kind."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "serve-policy", "expert", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )
    line = proc.stdout.readline()
    match = re.search(r"on (\S+) \((\w+) server\)", line)
    assert match, f"serve-policy printed {line!r}"
    return proc, match.group(1), match.group(2)


@pytest.fixture(scope="module")
def served_expert():
    """``drivetwin serve-policy expert`` (gRPC) in its own process; its address."""
    proc, address, kind = _serve_expert("--port", "0")
    assert re.fullmatch(r"127\.0\.0\.1:\d+", address) and kind == "inline"
    yield address
    proc.terminate()
    assert proc.wait(timeout=10) == 0  # SIGTERM stops it cleanly


@pytest.fixture(scope="module")
def served_expert_frames(tmp_path_factory):
    """``drivetwin serve-policy expert --socket PATH`` (frames) in its own process; its address."""
    path = tmp_path_factory.mktemp("frames") / "expert.sock"
    proc, address, kind = _serve_expert("--socket", str(path))
    assert address == f"unix+frames://{path}" and kind == "frames"
    yield address
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    assert not path.exists()  # a clean stop removes its socket


def _suite(**policy):
    return parse_suite({
        "suite": {"name": "remote"},
        "scenarios": {"sources": [str(SAMPLE)], "limit": 4},
        "policy": policy,
        "env": {"observation": ["state"]},
        "mutations": [{"operator": "lead_brake", "params": {"decel": 6.0, "onset_s": 1.0}, "variants": 1}],
        "run": {"seed": 3, "workers": 2},
    })


def _table(summary: pd.DataFrame) -> pd.DataFrame:
    return summary.drop(columns=RUN_ONLY).reset_index(drop=True)


@pytest.fixture(scope="module")
def in_process_summary(tmp_path_factory):
    out = tmp_path_factory.mktemp("inproc") / "run"
    return run_suite(_suite(name="expert"), out=out, executor="sequential", progress=False).summary


@pytest.mark.parametrize("served", ["served_expert", "served_expert_frames"])
def test_served_expert_gives_the_in_process_summary_table(served, in_process_summary, tmp_path, request):
    address = request.getfixturevalue(served)
    remote = run_suite(_suite(address=address), out=tmp_path / "run", executor="sequential", progress=False).summary
    assert len(in_process_summary) >= 5 and (in_process_summary["status"] == "ok").all()
    pd.testing.assert_frame_equal(_table(remote), _table(in_process_summary))
    assert (remote["policy"] == "expert").all()  # the planner's own name, from Describe
    assert remote["planner_latency_p50_ms"].notna().all() and remote["deadline_misses"].isna().all()  # lock-step: no deadlines
    assert in_process_summary["planner_latency_p50_ms"].isna().all()
    # a variant of the remote run replays exactly, against the same planner
    from harness.replay import Replayer

    with Replayer(tmp_path / "run") as replayer:
        replayed = replayer.replay(remote["variant_id"].iloc[-1])
    assert replayed.exact, replayed.mismatches


def test_an_address_list_gives_the_worker_the_first_free_address(served_expert, in_process_summary, tmp_path):
    suite = _suite(address=[served_expert, "127.0.0.1:1"])
    remote = run_suite(suite, out=tmp_path / "run", executor="sequential", progress=False).summary
    pd.testing.assert_frame_equal(_table(remote), _table(in_process_summary))
    assert list((tmp_path / "run" / "planners").glob("claim-*.lock"))


@pytest.mark.parametrize(("transport", "executor"), [("grpc", "sequential"), ("grpc", "ray"), ("frames", "sequential")])
def test_planner_process_per_worker_gives_the_in_process_table(transport, executor, in_process_summary, tmp_path, request):
    if executor == "ray":
        request.getfixturevalue("ray_local")
    result = run_suite(_suite(command=SERVE[transport]), out=tmp_path / "run", executor=executor, progress=False)
    pd.testing.assert_frame_equal(_table(result.summary), _table(in_process_summary))
    logs = sorted((tmp_path / "run" / "planners").glob("planner-*.log"))
    workers = 1 if executor == "sequential" else 2
    assert 1 <= len(logs) <= workers
    assert all("serving 'expert'" in log.read_text() and f"({'frames' if transport == 'frames' else 'inline'} server)" in log.read_text() for log in logs)


@pytest.mark.parametrize("action", ["trajectory", "continuous"])
def test_rollouts_are_bit_identical_over_the_wire(library, action):
    server, port = serve_policy("expert")
    try:
        env = sim.DriveTwinEnv(config=sim.EnvConfig.from_mapping({"action": action, "observation": ["state", "lidar"]}), library=library)
        remote = RemotePolicy(f"127.0.0.1:{port}")
        for scenario_id in library.ids()[:2]:
            a = rollout(env, "expert", scenario_id, seed=5)
            b = rollout(env, remote, scenario_id, seed=5)
            assert rollouts_equal(a, b)
            assert b.policy == "expert"
        stats = remote.episode_stats()
        assert stats["deadline_misses"] is None and stats["planner_latency_max_ms"] >= stats["planner_latency_p50_ms"] > 0
        remote.close()
        env.close()
    finally:
        server.stop(0)


def test_idm_served_reads_the_state_observation_identically(library):
    server, port = serve_policy("idm", options={"desired_speed": 12.0})
    try:
        env = sim.DriveTwinEnv(config=sim.EnvConfig.from_mapping({"observation": ["state"], "agents_mode": "reactive"}), library=library)
        scenario_id = library.ids()[0]
        a = rollout(env, sim.policies.make_policy("idm", desired_speed=12.0), scenario_id, seed=1)
        b = rollout(env, RemotePolicy(f"127.0.0.1:{port}"), scenario_id, seed=1)
        assert rollouts_equal(a, b)
    finally:
        server.stop(0)


def test_scenario_init_carries_the_map_route_and_vehicle(library):
    env = sim.DriveTwinEnv(config=sim.EnvConfig.from_mapping({"action": "trajectory", "trajectory_points": 6}), library=library)
    first, _ = env.reset(seed=11, options={"scenario": library.ids()[0]})
    info = env.scenario_info()
    facts = protocol.episode_facts(info)
    assert facts.seed == 11  # the episode's seed reaches the planner
    init = protocol.scenario_init(facts, "s", 7)
    scenario = info["scenario"]
    assert init.protocol_version == 1 and init.scenario_id == scenario.id and init.seed == 7
    assert init.dt_us == 100_000 and init.dt_s == info["dt_s"]
    assert list(init.action.shape) == [6, 2] and init.action.type == pb.ACTION_TYPE_TRAJECTORY
    assert init.vehicle.length == info["vehicle"].length and init.vehicle.wheelbase == info["vehicle"].wheelbase
    assert list(init.agent_ids) == [str(a) for a in scenario.tracks.agent_ids]
    route = np.asarray(init.route.xy).reshape(-1, 2)
    np.testing.assert_array_equal(route, info["view"].route.xy)
    # the ego starts at the local origin; the origin is its first logged position in the scenario frame
    e = scenario.ego_index
    assert (init.origin_x, init.origin_y) == (scenario.tracks.x[e, 0], scenario.tracks.y[e, 0])
    # every lane sent is near the route, and the lane under the ego's start is among them
    assert 0 < len(init.lanes) <= len(scenario.road_map.lanes)
    starts = [np.asarray(lane.centerline.xy).reshape(-1, 2) for lane in init.lanes]
    assert min(np.hypot(*c.T).min() for c in starts) < 10.0
    by_id = {lane.id: lane for lane in scenario.road_map.lanes}
    for lane in init.lanes:
        source = by_id[lane.id]
        assert list(lane.successors) == list(source.successors) and lane.speed_limit == pytest.approx(source.speed_limit, nan_ok=True)
        np.testing.assert_allclose(np.asarray(lane.centerline.xy).reshape(-1, 2), source.centerline[:, :2] - (init.origin_x, init.origin_y))
    # one step's observation: ego state and the present road users, time on the scenario clock
    obs = protocol.observation(facts, "s", first)
    assert obs.t_us == int(scenario.t_us[0]) and obs.step == 0
    assert obs.ego.x == info["view"].ego.x and len(obs.agents.index) == int(info["view"].agents()["row"].size)
    assert len(obs.state) == env.observation_space["state"].shape[0]
    env.close()


def test_replies_are_checked_for_time_status_and_action():
    space = sim.DriveTwinEnv(config=sim.EnvConfig.from_mapping({"action": "trajectory", "trajectory_points": 3})).action_space
    ok = protocol.encode_action(np.ones((3, 2), np.float32), "trajectory", 100)
    protocol.check_reply(ok, 100, "step 1")
    np.testing.assert_array_equal(protocol.decode_command(ok, "trajectory", space, "step 1"), np.ones((3, 2), np.float32))
    with pytest.raises(protocol.RemoteError, match=r"replied for t_us=100, the twin asked for t_us=200"):
        protocol.check_reply(ok, 200, "step 2")
    with pytest.raises(protocol.RemoteError, match=r"STATUS_ERROR: boom"):
        protocol.check_reply(pb.Command(status=pb.STATUS_ERROR, message="boom", t_us=100), 100, "step 1")
    with pytest.raises(protocol.RemoteError, match=r"STATUS_UNSPECIFIED"):
        protocol.check_reply(pb.Command(t_us=100), 100, "step 1")
    with pytest.raises(protocol.RemoteError, match=r"a trajectory action was declared, the planner sent continuous"):
        protocol.decode_command(pb.Command(status=pb.STATUS_OK, continuous=pb.ContinuousAction()), "trajectory", space, "s")
    with pytest.raises(protocol.RemoteError, match=r"5 trajectory values, the action space needs 6"):
        protocol.decode_command(pb.Command(status=pb.STATUS_OK, trajectory=pb.TrajectoryAction(xy=[0.0] * 5)), "trajectory", space, "s")
    with pytest.raises(protocol.RemoteError, match=r"non-finite"):
        bad = pb.Command(status=pb.STATUS_OK, trajectory=pb.TrajectoryAction(xy=[0.0] * 5 + [float("nan")]))
        protocol.decode_command(bad, "trajectory", space, "s")


@pytest.mark.parametrize("transport", ["grpc", "frames"])
def test_an_unreachable_planner_fails_the_variant_with_the_address(library, transport, tmp_path):
    from harness.remote.process import free_port

    env = sim.DriveTwinEnv(library=library)
    address = f"127.0.0.1:{free_port()}" if transport == "grpc" else f"unix+frames://{tmp_path}/nobody.sock"
    policy = RemotePolicy(address, name="nobody", step_timeout_s=2.0)
    with pytest.raises(PolicyError, match=rf"planner {re.escape(address)} is unreachable"):
        rollout(env, policy, library.ids()[0], seed=0)
    env.close()


def test_road_users_and_state_cross_the_wire_bit_for_bit():
    """The client writes RoadUsers' arrays from one block, the server reads them and the ``state``
    vector from the wire form (``packed_arrays``): the values, their order, their dtypes and the
    types by index are the sent ones."""
    agents = {"x": np.array([1.5, -2.25, 1e300]), "y": np.array([0.1, 0.2, -0.0]), "yaw": np.array([np.pi, -1.0, 0.5]),
              "vx": np.array([3.0, 0.0, -1.0]), "vy": np.array([0.0, 1.0, 2.0]), "length": np.array([4.5, 0.8, 12.0]),
              "width": np.array([1.9, 0.8, 2.6]), "row": np.array([4, 0, 200])}
    obs = pb.Observation()
    obs.agents.MergeFromString(protocol._road_user_arrays(agents))
    obs.agents.index.extend(agents["row"].tolist())
    for key in protocol._ROAD_USER_FIELDS:
        assert list(getattr(obs.agents, key)) == agents[key].tolist()  # what a planner in any language parses
    vehicle = pb.VehicleParams(length=4.5, width=1.9, height=1.5, wheelbase=2.8, max_accel=3.0, max_decel=8.0, max_steer=0.6, max_steer_rate=0.5, mass=1500.0)
    init = pb.ScenarioInit(vehicle=vehicle, agent_types=[pb.AGENT_TYPE_PEDESTRIAN if i == 0 else pb.AGENT_TYPE_VEHICLE for i in range(201)])
    view = protocol.ServedView(init)
    view.update(pb.Observation.FromString(obs.SerializeToString()))
    served = view.agents()
    for key in protocol._ROAD_USER_FIELDS:
        np.testing.assert_array_equal(served[key], agents[key])
        assert served[key].dtype == np.float64 and served[key].flags.writeable
    assert served["row"].tolist() == [4, 0, 200] and served["type"].tolist() == [0, 1, 0]
    empty = protocol.ServedView(init)
    empty.update(pb.Observation())
    assert all(len(v) == 0 for v in empty.agents().values())
    state = np.array([0.1, -3.5, 1e30, 0.0, 7.25], np.float32)
    sent = pb.Observation(session="s", t_us=5, route_s=2.5, signal_states=[1, 3], state=state.tolist(), agents=obs.agents)
    sent.parts.append(pb.Tensor(name="lidar", dtype="float32", shape=[2], data=np.array([1.0, 2.0], np.float32).tobytes()))
    got = protocol.served_observation(pb.Observation.FromString(sent.SerializeToString()))
    assert got["state"].dtype == np.float32 and got["state"].flags.writeable and got["state"].tobytes() == state.tobytes()
    np.testing.assert_array_equal(got["lidar"], [1.0, 2.0])


def test_messages_are_small(library):
    env = sim.DriveTwinEnv(config=sim.EnvConfig.from_mapping({"observation": ["state"]}), library=library)
    obs, _ = env.reset(seed=0, options={"scenario": library.ids()[0]})
    facts = protocol.episode_facts(env.scenario_info())
    msg = protocol.observation(facts, "0" * 32, obs)
    # packed arrays: 8 bytes per float64, 4 per float32, plus a few bytes of framing per field
    agents = len(msg.agents.index)
    assert msg.ByteSize() < 100 + 7 * 8 + agents * (7 * 8 + 2) + len(msg.state) * 4 + 40
    env.close()


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        ({"address": "localhost"}, "policy.address: 'localhost' is not \"host:port\""),
        ({"address": "unix+frames://run/p.sock"}, "policy.address: 'unix+frames://run/p.sock': a unix+frames address needs an absolute path"),
        ({"address": "tcp+frames://host"}, "policy.address: 'tcp+frames://host': a tcp+frames address is tcp+frames://host:port"),
        ({"address": "a:1", "command": "x {port}"}, "policy.command: give address or command, not both"),
        ({"command": "./planner"}, "policy.command: must contain {port}"),
        ({"command": "./planner --port {port} --socket {socket}"}, "policy.command: must contain {port}"),
        ({"address": "a:1", "options": {"k": 1}}, "policy.options: not used with address or command"),
        ({"address": "a:1", "realtime_factor": -1.0}, "policy.realtime_factor: must be 0"),
        ({"address": "a:1", "fallback": "swerve"}, "policy.fallback: must be one of"),
        ({"address": ["a:1", 5]}, "policy.address: must be"),
    ],
)
def test_bad_remote_policy_tables_name_the_key(policy, problem):
    with pytest.raises(ConfigError) as info:
        parse_suite({"policy": policy}, "suite.toml")
    assert str(info.value).startswith("suite.toml: ") and problem in str(info.value)


def test_address_lists_give_each_worker_its_own_planner(tmp_path):
    from harness.remote.process import AddressClaim

    a, b = AddressClaim(["h:1", "h:2"], str(tmp_path)), AddressClaim(["h:1", "h:2"], str(tmp_path))
    assert a.claim() == "h:1" and b.claim() == "h:2"
    c = AddressClaim(["h:1", "h:2"], str(tmp_path))
    with pytest.raises(protocol.PlannerLost, match="every planner address is held by another worker"):
        c.claim()
    a.release()
    assert c.claim() == "h:1"


def test_shipped_code_matches_the_proto():
    pytest.importorskip("grpc_tools")
    done = subprocess.run([sys.executable, str(ROOT / "proto" / "generate.py"), "--check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_serve_policy_rejects_an_unknown_policy():
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "serve-policy", "no_such_policy", "--port", "0"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert done.returncode == 2 and "unknown policy 'no_such_policy'" in done.stderr


class _CountingServicer(harness_server.PolicyServicer):
    """The expert; counts the calls it serves by rpc."""

    def __init__(self, spec: str = "expert") -> None:
        super().__init__(spec)
        self.calls: dict[str, int] = {}

    def _count(self, rpc: str) -> None:
        self.calls[rpc] = self.calls.get(rpc, 0) + 1

    def Reset(self, request, context):
        self._count("Reset")
        return super().Reset(request, context)

    def Step(self, request, context):
        self._count("Step")
        return super().Step(request, context)

    def Session(self, request_iterator, context):
        self._count("Session")
        yield from super().Session(request_iterator, context)


class _UnaryOnlyServicer(_CountingServicer):
    """A planner that implements only the unary rpcs (as planners written before ``Session``)."""

    def Session(self, request_iterator, context):
        self._count("Session")
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")  # the generated default's answer


def _make_server(servicer, server_kind: str, tmp_path: Path) -> tuple[object, str]:
    """``servicer`` served in this process by ``server_kind`` (one of ``harness_server.SERVERS``,
    "frames-unix" or "frames-tcp"): the server and the address a ``RemotePolicy`` takes."""
    if server_kind == "frames-unix":
        server = harness_server.make_frames_server(servicer, f"unix+frames://{tmp_path}/planner.sock")
        return server, server.address
    if server_kind == "frames-tcp":
        server = harness_server.make_frames_server(servicer, "tcp+frames://127.0.0.1:0")
        return server, server.address
    server, port = harness_server.make_server(servicer, server=server_kind)
    return server, f"127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("servicer", "session_call", "transport", "server_kind"),
    [(_CountingServicer, "inline", "session", "inline"), (_CountingServicer, "threaded", "session-threads", "inline"),
     (_CountingServicer, "off", "unary", "inline"), (_UnaryOnlyServicer, "inline", "unary", "inline"),
     (_CountingServicer, "inline", "session", "threads"), (_UnaryOnlyServicer, "inline", "unary", "threads"),
     (_CountingServicer, "inline", "frames-unix", "frames-unix"), (_CountingServicer, "inline", "frames-tcp", "frames-tcp")],
)
def test_every_lock_step_transport_drives_identically(library, servicer, session_call, transport, server_kind, tmp_path):
    """The Session call carries every episode of a policy on one call; the unary rpcs are used when
    asked for or when the planner has no Session rpc (it answers UNIMPLEMENTED); the frames
    transport carries the same messages on one socket: the rollouts are the in-process ones
    every way, on the inline server, on grpcio's public one and on the frames server."""
    served = servicer()
    server, address = _make_server(served, server_kind, tmp_path)
    assert harness_server.served_by(server) == server_kind.split("-")[0]
    try:
        env = sim.DriveTwinEnv(config=sim.EnvConfig.from_mapping({"observation": ["state"]}), library=library)
        remote = RemotePolicy(address, session_call=session_call)
        steps = 0
        for scenario_id in library.ids()[:2]:
            a = rollout(env, "expert", scenario_id, seed=2)
            b = rollout(env, remote, scenario_id, seed=2)
            assert rollouts_equal(a, b)
            steps += b.num_steps - 1
        assert remote.transport == transport
        assert served.calls["Reset"] == 2 and served.calls["Step"] == steps
        # one Session call (or connection) for both episodes; the unary-only planner was asked once, then never again
        assert served.calls.get("Session", 0) == (1 if transport.startswith(("session", "frames")) else int(session_call != "off"))
        remote.close()
        if transport.startswith(("session", "frames")):  # the call's (the connection's) end frees the worker's policy
            assert _wait_for(lambda: served.session_count == 0)
        env.close()
    finally:
        server.stop(0)


def test_a_session_request_without_a_kind_is_refused():
    server, port = harness_server.make_server(_CountingServicer())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            replies = pb_grpc.PlannerStub(channel).Session(iter([pb.SessionRequest()]), timeout=10)
            with pytest.raises(grpc.RpcError) as info:
                list(replies)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "none of reset, step, close" in info.value.details()
    finally:
        server.stop(0)


@pytest.mark.parametrize("server_kind", ["inline", "frames-unix"])
def test_a_planner_that_hangs_on_the_session_call_is_lost_after_the_timeout(library, server_kind, tmp_path):
    """The watchdog cancels a Session call whose reply is overdue (frames: the socket's timeout):
    ``PlannerLost`` naming the wait, as a unary call past its deadline; the next episode opens a
    new call (a new connection)."""
    from harness.remote.protocol import PlannerLost

    class Hangs(_CountingServicer):
        def Step(self, request, context):
            if request.step == 2 and self.calls.get("Session", 0) == 1:
                time.sleep(3.0)
            return super().Step(request, context)

    served = Hangs()
    server, address = _make_server(served, server_kind, tmp_path)
    try:
        env = sim.DriveTwinEnv(library=library)
        remote = RemotePolicy(address, step_timeout_s=0.4)
        obs, _ = env.reset(seed=0, options={"scenario": library.ids()[0]})
        remote.reset(env.scenario_info())
        for _ in range(2):
            obs, *_ = env.step(remote.act(obs))
        start = time.perf_counter()
        with pytest.raises(PlannerLost, match=rf"step 2 \(t_us=\d+\): planner {re.escape(address)} did not reply within 0\.4 s \(hung\)"):
            remote.act(obs)
        assert time.perf_counter() - start < 2.5  # 0.4 s and the watchdog's tick, not the 3 s sleep
        b = rollout(env, remote, library.ids()[0], seed=0)  # a new call for the next episode
        assert rollouts_equal(b, rollout(env, "expert", library.ids()[0], seed=0))
        assert served.calls["Session"] == 2
        remote.close()
        env.close()
    finally:
        server.stop(0)


def test_the_reference_server_is_the_inline_one():
    """``serve-policy`` drives each call on the thread that computes its replies (one completion
    per step). If a grpcio upgrade changed the Cython layer it needs, the public server would
    serve instead, correctly but with more server CPU per step (bench_remote.py prints both): this fails so that is not silent."""
    from harness.remote import inline

    assert inline.AVAILABLE, "grpc._cython.cygrpc lacks what harness.remote.inline needs: the planner server fell back to grpcio's public server"
    server, _ = serve_policy("expert")
    try:
        assert harness_server.served_by(server) == "inline"
    finally:
        server.stop(0)


def _wait_for(predicate, timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize("server_kind", harness_server.SERVERS)
@pytest.mark.parametrize("ending", ["closed", "cancelled"])
def test_a_session_call_that_ends_frees_its_sessions(library, server_kind, ending):
    """A worker's policy lives as long as its Session call: closing the call or cancelling it (as
    the watchdog does, or a worker that dies) frees it; a policy of a unary session stays."""
    from harness.remote.stream import open_session

    served = harness_server.PolicyServicer("expert")
    server, port = harness_server.make_server(served, server=server_kind)
    try:
        env = sim.DriveTwinEnv(library=library)
        obs, _ = env.reset(seed=0, options={"scenario": library.ids()[0]})
        facts = protocol.episode_facts(env.scenario_info())
        unary = RemotePolicy(f"127.0.0.1:{port}", session_call="off")
        unary.reset(env.scenario_info())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = open_session(channel)
            reset = pb.SessionReply.FromString(call.exchange(pb.SessionRequest(reset=protocol.scenario_init(facts, "worker-1", 0)).SerializeToString()))
            assert reset.reset.status == pb.STATUS_OK
            request = pb.SessionRequest()
            protocol.observation(facts, "worker-1", obs, request.step)
            command = pb.SessionReply.FromString(call.exchange(request.SerializeToString())).step
            assert command.status == pb.STATUS_OK and command.t_us == request.step.t_us
            assert served.session_count == 2
            call.cancel() if ending == "cancelled" else call.close()
            assert _wait_for(lambda: served.session_count == 1), f"the {ending} call's session is still held"
        assert unary.session in served._sessions
        unary.close()
        env.close()
    finally:
        server.stop(0)


def test_the_inline_server_drives_more_open_calls_than_it_keeps_threads(library):
    """No pool to queue on: every open Session call has its thread, however many are open at once
    (grpcio's public server would serve only ``threads`` of them and make the others wait)."""
    from harness.remote import inline
    from harness.remote.stream import open_session

    served = harness_server.PolicyServicer("constant_velocity")
    server, port = harness_server.make_server(served)
    try:
        env = sim.DriveTwinEnv(library=library)
        env.reset(seed=0, options={"scenario": library.ids()[0]})
        facts = protocol.episode_facts(env.scenario_info())
        n = inline.KEEP_IDLE_THREADS + 4
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            calls = [open_session(channel) for _ in range(n)]
            for i, call in enumerate(calls):  # every call stays open while the next ones are asked
                init = protocol.scenario_init(facts, f"worker-{i}", 0)
                reply = pb.SessionReply.FromString(call.exchange(pb.SessionRequest(reset=init).SerializeToString()))
                assert reply.reset.status == pb.STATUS_OK and reply.reset.t_us == facts.t0_us
            assert served.session_count == n
            for call in calls:
                call.close()
        assert _wait_for(lambda: served.session_count == 0)
        env.close()
    finally:
        server.stop(0)


def test_a_stopped_inline_server_leaves_no_call_thread_behind(library):
    """Threads still serving a call when the server stops end with it (they used to go back to
    an idle list nobody would wake, one leaked thread per open call)."""
    import threading

    from harness.remote.stream import open_session

    def planner_threads() -> set:
        return {t for t in threading.enumerate() if t.name == "drivetwin-planner-call"}

    before = planner_threads()  # (threads of servers stopped by earlier tests may still be ending)
    served = harness_server.PolicyServicer("constant_velocity")
    server, port = harness_server.make_server(served)
    env = sim.DriveTwinEnv(library=library)
    env.reset(seed=0, options={"scenario": library.ids()[0]})
    facts = protocol.episode_facts(env.scenario_info())
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        calls = [open_session(channel) for _ in range(3)]
        for i, call in enumerate(calls):
            call.exchange(pb.SessionRequest(reset=protocol.scenario_init(facts, f"worker-{i}", 0)).SerializeToString())
        ours = planner_threads() - before
        assert len(ours) >= 3
        assert server.stop(0).wait(10)
    env.close()
    assert _wait_for(lambda: not any(t.is_alive() for t in ours))


def test_frames_addresses_and_socket_commands_are_accepted():
    config = parse_suite({"policy": {"address": ["unix+frames:///run/a.sock", "tcp+frames://[::1]:7000", "h:1"]}}, "suite.toml")
    assert config.policy.address == ("unix+frames:///run/a.sock", "tcp+frames://[::1]:7000", "h:1")
    assert parse_suite({"policy": {"command": "./planner --socket {socket}"}}, "suite.toml").policy.remote


def test_the_frames_wire_is_a_big_endian_length_then_a_session_message(tmp_path):
    """What a planner in another language must speak: a 4-byte big-endian length, then a
    serialised SessionRequest; the reply the same with a SessionReply. A frame announcing more
    than the limit ends that connection only."""
    import socket
    import struct

    from harness.remote import frames

    server = harness_server.make_frames_server(harness_server.PolicyServicer("expert"), f"unix+frames://{tmp_path}/p.sock")
    try:
        def ask(sock: socket.socket, payload: bytes) -> bytes:
            sock.sendall(struct.pack(">I", len(payload)) + payload)
            head = sock.recv(4, socket.MSG_WAITALL)
            (n,) = struct.unpack(">I", head)
            return sock.recv(n, socket.MSG_WAITALL)

        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(tmp_path / "p.sock"))
            reply = pb.SessionReply.FromString(ask(sock, pb.SessionRequest(describe=pb.DescribeRequest(protocol_version=1)).SerializeToString()))
            assert reply.describe.status == pb.STATUS_OK and reply.describe.name == "expert" and reply.describe.protocol_version == 1
            close = pb.SessionReply.FromString(ask(sock, pb.SessionRequest(close=pb.CloseRequest(session="s", t_us=42)).SerializeToString()))
            assert close.WhichOneof("reply") == "close" and close.close.t_us == 42
            sock.sendall(struct.pack(">I", frames.MAX_FRAME_BYTES + 1))
            sock.settimeout(5.0)
            assert sock.recv(1) == b""  # the server closed this connection
        with socket.socket(socket.AF_UNIX) as sock:  # and serves the next one
            sock.connect(str(tmp_path / "p.sock"))
            assert pb.SessionReply.FromString(ask(sock, pb.SessionRequest(describe=pb.DescribeRequest()).SerializeToString())).describe.name == "expert"
    finally:
        assert server.stop(0).wait(5)
    assert not (tmp_path / "p.sock").exists()


@pytest.mark.parametrize(
    ("sent", "error", "message"),
    [
        (b"\xff\xff\xff\xff", protocol.RemoteError, r"Describe: planner unix\+frames://\S+ broke the framing: a frame of 4294967295 bytes"),
        (b"\x00\x00\x00\x10abc", protocol.PlannerLost, r"Describe: planner unix\+frames://\S+ closed the connection \(the stream ended inside a frame \(3 of 16 bytes\)\)"),
        (b"\x00\x00\x00\x02\xff\xff", protocol.RemoteError, r"Describe: planner unix\+frames://\S+ sent a frame that is no SessionReply"),
    ],
)
def test_a_frames_planner_that_breaks_the_framing_fails_with_what_it_sent(tmp_path, sent, error, message):
    """A planner (here a raw socket) that announces an oversized frame, dies inside one or sends
    bytes that are no message: the twin names the planner and the problem."""
    import socket
    import threading

    path = tmp_path / "bad.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)

    def planner() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1 << 16)
            conn.sendall(sent)

    thread = threading.Thread(target=planner, daemon=True)
    thread.start()
    try:
        with pytest.raises(error, match=message):
            RemotePolicy(f"unix+frames://{path}", step_timeout_s=5.0).describe()
    finally:
        thread.join(5)
        listener.close()


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--socket", "/tmp/x.sock", "--transport", "grpc"], "--socket serves the frames transport; drop --transport grpc"),
        (["--socket", "/tmp/" + "d" * 120 + ".sock"], "the socket path is longer than 107 bytes"),
    ],
)
def test_serve_policy_refuses_a_socket_it_cannot_serve(flags, problem, capsys):
    from harness.cli import main

    assert main(["serve-policy", "expert", *flags]) == 2
    assert problem in capsys.readouterr().err


def test_a_session_keeps_the_env_spaces_while_the_config_stays(library):
    """As in process (where they are the env's), a served session's episodes get the same config
    and space objects while ScenarioInit's config and action spec stay; new ones when they change."""
    served = harness_server.PolicyServicer("expert")
    inits = []
    for config in ({"action": "trajectory"}, {"action": "trajectory"}, {"action": "continuous"}):
        env = sim.DriveTwinEnv(config=sim.EnvConfig.from_mapping(config), library=library)
        env.reset(seed=0, options={"scenario": library.ids()[0]})
        inits.append(protocol.scenario_init(protocol.episode_facts(env.scenario_info()), "s", 0))
        env.close()
    spaces = []
    for init in inits:
        assert served.Reset(init, None).status == pb.STATUS_OK
        spaces.append(served._sessions["s"].spaces)
    assert spaces[1] is spaces[0] and spaces[2] is not spaces[1]
    assert spaces[0].action_space.shape == (10, 2) and spaces[2].action_space.shape == (2,)
    assert str(spaces[2].action_type.value) == "continuous"


def test_a_frames_planner_that_trickles_its_reply_is_timed_out_on_the_whole_frame(tmp_path):
    """A reply sent a byte every 0.15 s never trips the per-read timeout (0.5 s); the frame's
    deadline ends the wait anyway, well before the trickle would finish."""
    import socket
    import threading
    import time

    from harness.remote import frames

    path = str(tmp_path / "t.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            frames.FrameSocket(conn).recv()
            try:
                for byte in frames.HEADER.pack(40) + b"\x00" * 40:
                    conn.sendall(bytes([byte]))
                    time.sleep(0.15)
            except OSError:  # the twin gave up and closed: as it should
                pass

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    client = frames.FramesClient(f"unix+frames://{path}", 5.0)
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        client.ask(pb.SessionRequest(), timeout_s=0.5)
    assert time.perf_counter() - started < 1.2  # the trickle would take 6.6 s
    listener.close()
