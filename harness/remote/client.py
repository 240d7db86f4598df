"""``RemotePolicy``: a policy whose decisions come from a planner server over the protocol.

It is a policy like the baselines (``reset(context)``, ``act(observation)``), so the env, the
rollout loop and the runner drive it unchanged. Lock-step by default: each ``act`` waits for the
planner's reply to this step, so a run is as deterministic as the planner. With
``realtime_factor`` > 0 the steps are paced to the wall clock (one step every
``dt / realtime_factor`` seconds) and a reply later than its step's end is a deadline miss: the
twin executes the previous command (``fallback="previous"``) or brakes (``"brake"``).

A reply for another time, a non-OK status or a malformed action raises ``RemoteError`` (the
variant fails with that message); an unreachable, dead or silent planner raises ``PlannerLost``
(the variant is tried again on a restarted planner, see ``rollout_retrying``).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np

from harness.remote import protocol
from harness.remote._proto import planner_pb2 as pb
from harness.remote._proto import planner_pb2_grpc as pb_grpc
from harness.remote.process import AddressClaim, PlannerProcess
from harness.remote.protocol import PlannerLost, RemoteError
from scenarios.common import LRU

FALLBACKS = ("previous", "brake")
#: Scenarios whose map near the route is kept for the next episode.
MAP_CACHE_SIZE = 8
#: One step is a small request answered at once: tune the channel for latency.
CHANNEL_OPTIONS = [("grpc.optimization_target", "latency")]
#: gRPC codes that mean the planner is gone or hung, not that it answered badly.
_LOST_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN}


class RemotePolicy:
    """A planner served over the planner protocol, as a policy.

    Give exactly one of ``address``, ``addresses`` or ``command``.

    Args:
        address: ``"host:port"`` of a running planner (it may serve many sessions at once).
        addresses: one address per worker: each worker claims one (``AddressClaim``).
        command: a planner to start per worker, ``"./my_planner --port {port}"``.
        name: the policy name the rollouts record ("" : the planner's own name, else the address).
        realtime_factor: 0 for lock-step; else wall-clock pacing (1.0: real time).
        fallback: on a deadline miss, "previous" (the last command; braking before the first) or "brake".
        step_timeout_s: lock-step: the longest wait for one reply before the planner counts as hung [s].
        log_dir: where planner processes write their logs and address claims their locks.
        cwd: working directory of planner processes.
    """

    def __init__(
        self,
        address: str = "",
        *,
        addresses: Sequence[str] = (),
        command: str = "",
        name: str = "",
        realtime_factor: float = 0.0,
        fallback: str = "previous",
        step_timeout_s: float = 60.0,
        log_dir: str = "",
        cwd: str = "",
    ) -> None:
        if sum(bool(x) for x in (address, addresses, command)) != 1:
            raise ValueError("RemotePolicy needs exactly one of address, addresses or command")
        if not (math.isfinite(realtime_factor) and realtime_factor >= 0):
            raise ValueError(f"realtime_factor must be >= 0, got {realtime_factor}")
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        self._address, self._claim = address, AddressClaim(addresses, log_dir) if addresses else None
        self._process = PlannerProcess(command, log_dir, cwd) if command else None
        self._name = name
        self.realtime_factor = float(realtime_factor)
        self.fallback = fallback
        self.step_timeout_s = float(step_timeout_s)
        self.session = uuid.uuid4().hex
        self._channel: grpc.Channel | None = None
        self._channel_address = ""
        self._stub: Any = None
        self._facts: protocol.EpisodeFacts | None = None
        self._open_t_us: int | None = None
        self._latencies: list[float] = []
        self._misses = 0
        self._previous: Any = None
        self._wall0 = 0.0
        self._maps: LRU = LRU(MAP_CACHE_SIZE)

    # --- connection ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The name the rows record: the given one, else the planner's own (asked with ``Describe``)."""
        if not self._name:
            info = self.describe()
            self._name = info.name or f"remote:{self.address}"
        return self._name

    def describe(self) -> Any:
        """The planner's ``PlannerInfo`` (``RemoteError`` when it is not OK or speaks another protocol)."""
        stub = self._connect()
        info = self._call(stub.Describe, pb.DescribeRequest(protocol_version=protocol.PROTOCOL_VERSION), self.step_timeout_s, "Describe")
        if info.status != pb.STATUS_OK:
            raise RemoteError(f"Describe: the planner replied {protocol.STATUS_NAMES.get(info.status, info.status)}: {info.message}")
        if info.protocol_version != protocol.PROTOCOL_VERSION:
            raise RemoteError(f"Describe: the planner speaks protocol {info.protocol_version}, the twin {protocol.PROTOCOL_VERSION}")
        return info

    @property
    def address(self) -> str:
        """The planner this policy talks to ("" before the first reset with ``command``)."""
        if self._process is not None:
            return self._process.address
        return self._claim.address if self._claim is not None else self._address

    def _where(self) -> str:
        where = f"planner {self.address or self._name}"
        if self._process is not None:
            where += f" (process {self._process.exit_status()}, log {self._process.log_path})"
        return where

    def _connect(self) -> Any:
        if self._process is not None and not self._process.alive():
            self._process.start()
        elif self._claim is not None:
            self._claim.claim()
        address = self.address
        if self._stub is None or self._channel_address != address:
            if self._channel is not None:
                self._channel.close()
            self._channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
            self._stub, self._channel_address = pb_grpc.PlannerStub(self._channel), address
        return self._stub

    def restart(self) -> None:
        """After ``PlannerLost``: stop a planner process (the next reset starts a fresh one) and reconnect."""
        if self._process is not None:
            self._process.stop()
        if self._channel is not None:
            self._channel.close()
        self._channel, self._stub, self._open_t_us = None, None, None

    def _call(self, method: Any, request: Any, timeout: float, what: str) -> Any:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise self._lost_or_error(exc, what) from None

    def _lost_or_error(self, exc: grpc.RpcError, what: str) -> RemoteError:
        code = exc.code() if hasattr(exc, "code") else None
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return PlannerLost(f"{what}: {self._where()} did not reply within {self.step_timeout_s:g} s (hung)")
        if code in _LOST_CODES:
            if self._process is not None and code == grpc.StatusCode.UNAVAILABLE:
                self._process.wait_exit(1.0)  # a planner that dropped the connection is usually exiting
            return PlannerLost(f"{what}: {self._where()} is unreachable: {code.name}: {detail}")
        return RemoteError(f"{what}: {self._where()} failed the call: {getattr(code, 'name', code)}: {detail}")

    # --- the policy ----------------------------------------------------------------------
    def reset(self, scenario_info: Mapping[str, Any]) -> None:
        """Start an episode on the planner (``Reset``), closing the previous one."""
        stub = self._connect()
        self._close_episode(stub)
        facts = protocol.episode_facts(scenario_info)
        init = protocol.scenario_init(facts, self.session, facts.seed, self._maps)
        what = f"Reset of {facts.scenario.id}"
        reply = self._call(stub.Reset, init, self.step_timeout_s, what)
        protocol.check_reply(reply, facts.t0_us, what)
        self._facts, self._open_t_us = facts, facts.t0_us
        self._latencies, self._misses, self._previous = [], 0, None
        self._wall0 = time.perf_counter()

    def act(self, observation: Any) -> Any:
        facts = self._facts
        if facts is None:
            raise RuntimeError("RemotePolicy.act before reset")
        msg = protocol.observation(facts, self.session, observation)
        what = f"step {msg.step} (t_us={msg.t_us})"
        self._open_t_us = msg.t_us
        if self.realtime_factor > 0:
            return self._act_realtime(msg, what)
        start = time.perf_counter()
        reply = self._call(self._stub.Step, msg, self.step_timeout_s, what)
        self._latencies.append(time.perf_counter() - start)
        protocol.check_reply(reply, msg.t_us, what)
        action = protocol.decode_command(reply, facts.action_type, facts.action_space, what)
        self._previous = action
        return action

    def _act_realtime(self, msg: Any, what: str) -> Any:
        facts = self._facts
        assert facts is not None
        period = facts.dt_s / self.realtime_factor
        scheduled = self._wall0 + msg.step * period
        now = time.perf_counter()
        if now < scheduled:
            time.sleep(scheduled - now)
        elif now - scheduled > period:  # the twin itself fell behind: pace from now on
            self._wall0 = now - msg.step * period
            scheduled = now
        start = time.perf_counter()
        deadline = max(scheduled, start) + period
        future = self._stub.Step.future(msg, timeout=max(deadline - start, 1e-4))
        try:
            reply = future.result()
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise self._lost_or_error(exc, what) from None
            self._misses += 1
            return self._fallback_action()
        self._latencies.append(time.perf_counter() - start)
        protocol.check_reply(reply, msg.t_us, what)
        action = protocol.decode_command(reply, facts.action_type, facts.action_space, what)
        self._previous = action
        return action

    def _fallback_action(self) -> Any:
        if self.fallback == "previous" and self._previous is not None:
            return self._previous
        return brake_action(self._facts)

    def _close_episode(self, stub: Any) -> None:
        if self._open_t_us is None:
            return
        t_us, self._open_t_us = self._open_t_us, None
        try:
            stub.Close(pb.CloseRequest(session=self.session, t_us=t_us), timeout=min(self.step_timeout_s, 5.0))
        except grpc.RpcError:
            pass  # the episode is over either way; a dead planner shows at the next Reset

    def close(self) -> None:
        """End the episode, stop a planner process, release a claimed address."""
        if self._stub is not None:
            self._close_episode(self._stub)
        self.restart()
        if self._claim is not None:
            self._claim.release()

    def episode_stats(self) -> dict[str, Any]:
        """The planner columns of the episode's summary row: reply latency p50/p99/max [ms] and, in
        real-time mode, the deadline misses (None in lock-step: it has no deadlines)."""
        lat = np.asarray(self._latencies) * 1e3
        have = lat.size > 0
        return {
            "planner_latency_p50_ms": float(np.percentile(lat, 50)) if have else None,
            "planner_latency_p99_ms": float(np.percentile(lat, 99)) if have else None,
            "planner_latency_max_ms": float(lat.max()) if have else None,
            "deadline_misses": int(self._misses) if self.realtime_factor > 0 else None,
        }


def brake_action(facts: protocol.EpisodeFacts | None) -> Any:
    """The action that brakes hardest and steers straight in ``facts``' action type."""
    if facts is None:
        return None
    if facts.action_type == "continuous":
        return np.array([-1.0, 0.0], np.float32)
    if facts.action_type == "trajectory":
        return np.zeros(facts.action_space.shape, np.float32)  # every waypoint where the ego is: stop
    from sim.actions import MetaAction

    return int(MetaAction.SLOWER)


def rollout_retrying(env: Any, policy: Any, scenario: Any, seed: int | None, retries: int = 1) -> Any:
    """``sim.runner.rollout``, tried again on a restarted planner when the planner was lost.

    A ``PlannerLost`` (the planner died, hung or could not be reached) restarts the planner and
    runs the episode again, up to ``retries`` more times; then the last error stands. Any other
    failure (a bad reply, the policy's own error) fails at once.
    """
    from sim.runner import PolicyError, rollout

    attempts = 0
    while True:
        attempts += 1
        try:
            return rollout(env, policy, scenario, seed=seed)
        except PolicyError as exc:
            lost = isinstance(exc.__cause__, PlannerLost)
            if not lost or attempts > retries:
                if lost:
                    raise PolicyError(exc.scenario_id, exc.step, f"{exc.problem}; gave up after {attempts} attempts") from exc.__cause__
                raise
        except PlannerLost as exc:  # before the episode: the planner could not be started or asked its name
            if attempts > retries:
                raise PlannerLost(f"{exc}; gave up after {attempts} attempts") from None
        policy.restart()
