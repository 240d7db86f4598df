"""Faulty remote planners: each fails, or scores, its own variant only.

This file is also the faulty planner: ``python test_remote_faults.py --fault F --victim ID
--port P`` (gRPC; ``--socket PATH``: the frames transport) serves the expert, and misbehaves at
step ``--at`` of scenario ``ID`` only: it exits, hangs, replies for the wrong time, sends a
malformed command, reports an error, aborts the session with a status (``context.abort``), or
(real-time mode) sleeps past the step's deadline.
The tests that need no planner process of their own run on each transport (``TRANSPORTS``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("grpc")

from harness.remote import PolicyServicer  # noqa: E402
from harness.remote._proto import planner_pb2 as pb  # noqa: E402

HERE = Path(__file__).resolve()
SAMPLE = HERE.parents[2] / "scenarios" / "sample" / "ngsim_us101"
RUN_ONLY = ["run_id", "worker_s", "attempts", "planner_latency_p50_ms", "planner_latency_p99_ms", "planner_latency_max_ms"]
FAULTS = ("exit", "hang", "wrong_time", "malformed", "error", "sleep", "abort", "abort_unavailable")
#: How a suite's planner command is given its endpoint: gRPC on a port, frames on a Unix socket.
PLACEHOLDERS = {"grpc": "--port {port}", "frames": "--socket {socket}"}


class FaultyServicer(PolicyServicer):
    """The expert, misbehaving at step ``at`` of scenario ``victim``."""

    def __init__(self, fault: str, victim: str, at: int = 5, sleep_s: float = 0.6) -> None:
        super().__init__("expert")
        self.fault, self.victim, self.at, self.sleep_s = fault, victim, at, sleep_s
        self._scenario: dict[str, str] = {}

    def Reset(self, request, context):
        self._scenario[request.session] = request.scenario_id
        return super().Reset(request, context)

    def Step(self, request, context):
        if self._scenario.get(request.session) != self.victim or request.step != self.at:
            return super().Step(request, context)
        if self.fault == "exit":
            os._exit(3)
        if self.fault == "hang":
            time.sleep(3600)
        if self.fault == "sleep":
            time.sleep(self.sleep_s)
            return super().Step(request, context)
        if self.fault == "abort":  # the servicer ends the session with a status (gRPC: the call's)
            import grpc

            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "planner lost its map")
        if self.fault == "abort_unavailable":
            import grpc

            context.abort(grpc.StatusCode.UNAVAILABLE, "planner shutting down")
        command = super().Step(request, context)
        if self.fault == "wrong_time":
            command.t_us -= 100_000  # the answer to the previous step
        elif self.fault == "malformed":  # a trajectory where another action type was declared, or the reverse
            if command.WhichOneof("action") == "trajectory":
                command.continuous.accel = 0.5
            else:
                command.trajectory.xy.extend([1.0, 0.0] * 10)
        elif self.fault == "error":
            command.status, command.message = pb.STATUS_ERROR, "planner lost localisation"
        return command


def _suite(fault: str, victim: str, transport: str = "grpc", **run):
    from harness.config import parse_suite

    command = f"{sys.executable} {HERE} --fault {fault} --victim {victim} {PLACEHOLDERS[transport]}"
    return parse_suite({
        "suite": {"name": f"fault-{fault}"},
        "scenarios": {"sources": [str(SAMPLE)], "limit": 4},
        "policy": {"name": "expert", "command": command, **({"realtime_factor": 2.0} if fault == "sleep" else {})},
        "env": {"observation": ["state"]},
        "run": {"seed": 1, "workers": 2, **run},
    })


@pytest.fixture(scope="module")
def ids():
    import scenarios

    return scenarios.ScenarioLibrary(SAMPLE).ids()[:4]


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    from harness.config import parse_suite
    from harness.runner import run_suite

    suite = parse_suite({
        "suite": {"name": "fault-free"}, "scenarios": {"sources": [str(SAMPLE)], "limit": 4},
        "policy": {"name": "expert"}, "env": {"observation": ["state"]}, "run": {"seed": 1},
    })
    return run_suite(suite, out=tmp_path_factory.mktemp("free") / "run", executor="sequential", progress=False).summary


def _others_unharmed(summary: pd.DataFrame, in_process: pd.DataFrame, victim: str) -> None:
    """Every variant but the victim's has exactly the in-process row."""
    others = summary[summary["variant_id"] != victim].drop(columns=RUN_ONLY).reset_index(drop=True)
    expected = in_process[in_process["variant_id"] != victim].drop(columns=RUN_ONLY).reset_index(drop=True)
    assert len(others) == 3
    pd.testing.assert_frame_equal(others, expected, check_dtype=False)  # the error row turns int columns float


def _victim(summary: pd.DataFrame, victim: str) -> pd.Series:
    return summary.set_index("variant_id").loc[victim]


#: (transport, executor) pairs of the tests that start planner processes: gRPC on both executors,
#: frames on the sequential one (the planner process and the retry are the transport's; the
#: executor's part is the same for both).
PROCESS_CASES = [("grpc", "sequential"), ("grpc", "ray"), ("frames", "sequential")]


@pytest.mark.parametrize(("transport", "executor"), PROCESS_CASES)
def test_a_planner_that_exits_mid_episode_fails_its_variant_after_a_retry(transport, executor, ids, in_process, tmp_path, request):
    from harness.runner import run_suite

    if executor == "ray":
        request.getfixturevalue("ray_local")
    victim = ids[1]
    result = run_suite(_suite("exit", victim, transport, retries=1), out=tmp_path / "run", executor=executor, progress=False)
    row = _victim(result.summary, victim)
    assert row["status"] == "error"
    assert "step 5" in row["error"] and "exit code 3" in row["error"] and "gave up after 2 attempts" in row["error"]
    _others_unharmed(result.summary, in_process, victim)
    # the planner was started again for the retry, and again for the variants after it
    logs = list((tmp_path / "run" / "planners").glob("planner-*.log"))
    assert len(logs) >= 3
    if transport == "frames" and executor == "sequential":  # the killed planners' socket dirs are gone with them
        import tempfile

        assert list(Path(tempfile.gettempdir()).glob(f"drivetwin-sock-{os.getpid()}-*")) == []


def test_a_planner_that_hangs_fails_its_variant_not_the_run(ids, in_process, tmp_path):
    """gRPC only (16 s); a hang on frames: test_remote.py's in-process hang test."""
    from harness.runner import run_suite

    victim = ids[2]
    result = run_suite(_suite("hang", victim, retries=1, timeout_s=24.0), out=tmp_path / "run", executor="sequential", progress=False)
    row = _victim(result.summary, victim)
    assert row["status"] == "error"
    # 24 s over 2 attempts, half of each for one reply: 6 s, slack for a loaded machine to start a planner
    assert "did not reply within 6 s (hung)" in row["error"] and "gave up after 2 attempts" in row["error"]
    _others_unharmed(result.summary, in_process, victim)


_WRONG_TIME = r"step 5 \(t_us=(?P<t>\d+)\): the planner replied for t_us=\d+, the twin asked for t_us=(?P=t)"
_MALFORMED = r"step 5 .*malformed command: a continuous action was declared, the planner sent trajectory"
_ERROR = r"step 5 .*the planner replied STATUS_ERROR: planner lost localisation"
_ABORT = r"step 5 \(t_us=\d+\): planner \S+ \(process running, log \S+\) failed the call: FAILED_PRECONDITION: planner lost its map$"


@pytest.mark.parametrize(
    ("transport", "fault", "message"),
    [("grpc", "wrong_time", _WRONG_TIME), ("grpc", "malformed", _MALFORMED), ("grpc", "error", _ERROR), ("grpc", "abort", _ABORT),
     ("frames", "wrong_time", _WRONG_TIME), ("frames", "malformed", _MALFORMED), ("frames", "abort", _ABORT)],  # a status is checked as the time is
)
def test_a_bad_reply_fails_its_own_variant_only(transport, fault, message, ids, in_process, tmp_path):
    from harness.runner import run_suite

    victim = ids[0]
    result = run_suite(_suite(fault, victim, transport), out=tmp_path / "run", executor="sequential", progress=False)
    row = _victim(result.summary, victim)
    assert row["status"] == "error"
    assert re.search(message, row["error"]), row["error"]
    assert row["attempts"] == 1  # a bad reply, not a lost planner: not retried
    _others_unharmed(result.summary, in_process, victim)


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("abort", "RemoteError", "step 3 (t_us=T): planner ADDRESS failed the call: FAILED_PRECONDITION: planner lost its map"),
        ("abort_unavailable", "PlannerLost", "step 3 (t_us=T): planner ADDRESS is unreachable: UNAVAILABLE: planner shutting down"),
    ],
)
def test_a_servicer_that_aborts_fails_alike_on_every_transport(fault, error, message, tmp_path):
    """``context.abort(code, details)`` in a servicer: the twin raises the same error, with the
    same message but for the address, on gRPC and on frames (which sends ``SessionReply.end``)."""
    import scenarios
    import sim
    from harness.remote import RemotePolicy
    from sim.runner import PolicyError, rollout

    library = scenarios.ScenarioLibrary(SAMPLE)
    victim = library.ids()[0]
    env = sim.DriveTwinEnv(config=sim.EnvConfig.from_mapping({"observation": ["state"]}), library=library)
    seen = {}
    for transport in PLACEHOLDERS:
        server, address = _served(FaultyServicer(fault, victim, at=3), transport, tmp_path)
        try:
            policy = RemotePolicy(address, step_timeout_s=10.0)
            with pytest.raises(PolicyError) as info:
                rollout(env, policy, victim, seed=0)
            cause = info.value.__cause__
            seen[transport] = (type(cause).__name__, re.sub(r"t_us=\d+", "t_us=T", str(cause).replace(address, "ADDRESS")))
            assert rollout(env, policy, library.ids()[1], seed=0).num_steps > 5  # the next episode: a new session
            policy.close()
        finally:
            server.stop(0)
    env.close()
    assert seen == {"grpc": (error, message), "frames": (error, message)}


def test_a_reply_past_its_deadline_is_a_miss_and_the_run_goes_on(ids, tmp_path):
    """gRPC only (7 s); misses on frames: the two in-process real-time tests below."""
    from harness.runner import run_suite

    victim = ids[3]
    result = run_suite(_suite("sleep", victim), out=tmp_path / "run", executor="sequential", progress=False)
    summary = result.summary
    assert (summary["status"] == "ok").all()
    row = _victim(summary, victim)
    assert row["deadline_misses"] >= 1  # a 0.6 s sleep against a 0.05 s step
    assert summary["deadline_misses"].notna().all() and summary["planner_latency_max_ms"].notna().all()


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("Raises", r"step 4 .*STATUS_ERROR: policy 'faulty_policies:Raises' raised RuntimeError: planner blew up"),
        ("ReturnsNaN", r"step 4 .*malformed command: non-finite values in the continuous action"),
    ],
)
def test_a_served_module_policy_that_fails_fails_its_own_variant(policy, message, ids, in_process, tmp_path, monkeypatch):
    """``serve-policy package.module:Name --options JSON``: the policy's own failure (at its 5th act,
    step 4) comes back as the variant's error."""
    from harness.config import parse_suite
    from harness.runner import run_suite

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    victim = ids[2]
    options = '{"target": "%s"}' % victim
    command = f"{sys.executable} -m harness.cli serve-policy faulty_policies:{policy} --options '{options}' --port {{port}}"
    suite = parse_suite({
        "suite": {"name": f"served-{policy}"}, "scenarios": {"sources": [str(SAMPLE)], "limit": 4},
        "policy": {"name": "expert", "command": command}, "env": {"observation": ["state"]}, "run": {"seed": 1},
    })
    result = run_suite(suite, out=tmp_path / "run", executor="sequential", progress=False)
    row = _victim(result.summary, victim)
    assert row["status"] == "error" and re.search(message, row["error"]), row["error"]
    _others_unharmed(result.summary, in_process, victim)


def test_a_planner_that_cannot_start_fails_the_variants_with_its_exit_status(tmp_path):
    from harness.config import parse_suite
    from harness.runner import run_suite

    suite = parse_suite({
        "suite": {"name": "no-start"}, "scenarios": {"sources": [str(SAMPLE)], "limit": 2},
        "policy": {"command": f"{sys.executable} -c 'import sys; sys.exit(4)' {{port}}"}, "run": {"retries": 1},
    })
    result = run_suite(suite, out=tmp_path / "run", executor="sequential", progress=False)
    assert result.num_variants == 2 and (result.summary["status"] == "error").all()
    for message in result.summary["error"]:
        assert "exited before it was ready (exit code 4; log " in message and "gave up after 2 attempts" in message


def _served(servicer, transport: str, tmp_path):
    """``servicer`` served in this process: the server and its address."""
    from harness.remote.server import make_frames_server, make_server

    if transport == "frames":
        server = make_frames_server(servicer, f"unix+frames://{tmp_path}/planner.sock")
        return server, server.address
    server, port = make_server(servicer)
    return server, f"127.0.0.1:{port}"


@pytest.mark.parametrize("transport", list(PLACEHOLDERS))
def test_a_deadline_miss_executes_the_previous_command(transport, tmp_path):
    """In real time, the step whose reply is late gets the command of the step before it; on
    frames the late reply is dropped when it comes and the steps after it are the planner's."""
    import scenarios
    import sim
    from harness.remote import RemotePolicy

    library = scenarios.ScenarioLibrary(SAMPLE)
    victim = library.ids()[0]
    served = FaultyServicer("sleep", victim, at=3, sleep_s=0.5)
    server, address = _served(served, transport, tmp_path)
    try:
        env = sim.DriveTwinEnv(config=sim.EnvConfig.from_mapping({"action": "trajectory"}), library=library)
        policy = RemotePolicy(address, realtime_factor=1.0)
        obs, _ = env.reset(seed=0, options={"scenario": victim})
        policy.reset(env.scenario_info())
        actions = []
        for _ in range(12):  # 1.2 s of real time; the 0.5 s reply at step 3 is over by step 9
            actions.append(policy.act(obs))
            obs, *_ = env.step(actions[-1])
        assert actions[3] is actions[2]
        stats = policy.episode_stats()
        assert 1 <= stats["deadline_misses"] <= 7
        assert actions[-1] is not actions[2]  # the planner's own commands again once it caught up
        policy.close()
        env.close()
    finally:
        server.stop(0)


@pytest.mark.parametrize("transport", list(PLACEHOLDERS))
def test_brake_fallback_before_any_command(transport, ids, tmp_path):
    """A miss at the first step has no previous command: the twin brakes."""
    import numpy as np

    import scenarios
    import sim
    from harness.remote import RemotePolicy

    library = scenarios.ScenarioLibrary(SAMPLE)
    server, address = _served(FaultyServicer("sleep", ids[0], at=0, sleep_s=0.5), transport, tmp_path)
    try:
        env = sim.DriveTwinEnv(config=sim.EnvConfig.from_mapping({"action": "continuous"}), library=library)
        policy = RemotePolicy(address, realtime_factor=1.0)
        obs, _ = env.reset(seed=0, options={"scenario": ids[0]})
        policy.reset(env.scenario_info())
        np.testing.assert_array_equal(policy.act(obs), np.array([-1.0, 0.0], np.float32))
        assert policy.episode_stats()["deadline_misses"] == 1
        policy.close()
        env.close()
    finally:
        server.stop(0)


def main() -> int:
    from harness.remote.server import make_server

    parser = argparse.ArgumentParser(description="the expert, misbehaving once (see the module docstring)")
    parser.add_argument("--fault", choices=FAULTS, required=True)
    parser.add_argument("--victim", required=True)
    parser.add_argument("--at", type=int, default=5)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int)
    where.add_argument("--socket", help="serve the frames transport on this Unix socket")
    args = parser.parse_args()
    servicer = FaultyServicer(args.fault, args.victim, args.at)
    if args.socket:
        from harness.remote.server import make_frames_server

        address = make_frames_server(servicer, f"unix+frames://{args.socket}").address
    else:
        address = f"port {make_server(servicer, args.port)[1]}"
    print(f"faulty planner ({args.fault} at step {args.at} of {args.victim}) on {address}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
