"""``RemotePolicy``: a policy whose decisions come from a planner server over the protocol.

It is a policy like the baselines (``reset(context)``, ``act(observation)``), so the env, the
rollout loop and the runner drive it unchanged. Lock-step by default: each ``act`` waits for the
planner's reply to this step, so a run is as deterministic as the planner. Over gRPC
(``"host:port"``) lock-step messages go on one ``Session`` call (``SessionStream``), opened at the
first reset and kept for the episodes after it; a planner without that rpc is driven with the
unary ``Reset``/``Step``/``Close``. A frames address (``unix+frames:///path``,
``tcp+frames://host:port``; ``harness.remote.frames``) sends the same messages as frames on one
socket, read and written on the twin's thread. With ``realtime_factor`` > 0 the steps are paced
to the wall clock (one step every ``dt / realtime_factor`` seconds) and a reply later than its
step's end is a deadline miss: the twin executes the previous command (``fallback="previous"``)
or brakes (``"brake"``).

A reply for another time, a non-OK status or a malformed action raises ``RemoteError`` (the
variant fails with that message); an unreachable, dead or silent planner raises ``PlannerLost``
(the variant is tried again on a restarted planner, see ``rollout_retrying``).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from harness.remote import frames, protocol
from harness.remote._proto import planner_pb2 as pb
from harness.remote._proto import planner_pb2_grpc as pb_grpc
from harness.remote.process import AddressClaim, PlannerProcess
from harness.remote.protocol import PlannerLost, RemoteError
from harness.remote.stream import ThreadedSessionCall, open_session
from scenarios.common import LRU

FALLBACKS = ("previous", "brake")
#: How lock-step messages travel: on one Session call driven on the caller's thread, on one
#: Session call through grpcio's public stream API, or one unary call each.
SESSION_CALLS = ("inline", "threaded", "off")
#: Scenarios whose map near the route is kept for the next episode.
MAP_CACHE_SIZE = 8
#: One step is a small request answered at once: tune the channel for latency.
#: No bandwidth probes (a ping per burst read) and no retry buffering of stream messages.
CHANNEL_OPTIONS = [("grpc.optimization_target", "latency"), ("grpc.http2.bdp_probe", 0), ("grpc.enable_retries", 0)]
#: gRPC status codes by number (a frames planner's ``SessionEnd.code``). OK is left out: an end
#: with code 0 reads as UNKNOWN, as a gRPC call aborted with OK ends.
_CODES = {code.value[0]: code for code in grpc.StatusCode if code != grpc.StatusCode.OK}
#: gRPC codes that mean the planner is gone or hung, not that it answered badly.
_LOST_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN}


class SessionStream:
    """One ``Session`` call: each ``ask`` writes a request and waits for its reply.

    The call outlives episodes (Reset, Steps, Close, Reset, ...). A reply not there within the
    ``ask``'s timeout has the call cancelled (by a watchdog thread that wakes a few times per
    timeout, not once per step) and raises ``PlannerLost``, as a unary call past its deadline.
    ``unimplemented`` is set when the planner has no ``Session`` rpc (its first reply says so).

    Args:
        channel: the planner's channel.
        describe: names the planner in error messages (called only on an error).
        threaded: use grpcio's public stream API (``stream.ThreadedSessionCall``), not the
            single-threaded call.
    """

    def __init__(self, channel: grpc.Channel, describe: Any, threaded: bool = False) -> None:
        self._call = open_session(channel, threaded)
        self.threaded = isinstance(self._call, ThreadedSessionCall)
        self._describe = describe
        self._due = math.inf  # perf_counter time the pending reply is due by
        self._timeout = 0.0
        self._overdue = False
        self._closed = threading.Event()
        self._watchdog: threading.Thread | None = None
        self.unimplemented = False
        self.broken = False

    def ask(self, request: Any, timeout: float, what: str) -> Any:
        """The ``SessionReply`` to ``request`` (a ``SessionRequest``); ``PlannerLost`` past
        ``timeout`` [s], ``grpc.RpcError`` when the call fails."""
        if self.broken:
            raise PlannerLost(f"{what}: the session with {self._describe()} was lost earlier")
        if self._watchdog is None or timeout != self._timeout:
            self._arm(timeout)
        self._due = time.perf_counter() + timeout
        try:
            reply = self._call.exchange(request.SerializeToString())
        except grpc.RpcError as exc:
            self.broken = True
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                self.unimplemented = True
            if self._overdue:
                raise PlannerLost(f"{what}: {self._describe()} did not reply within {timeout:g} s (hung)") from None
            raise
        finally:
            self._due = math.inf
        return pb.SessionReply.FromString(reply)

    def _arm(self, timeout: float) -> None:
        self._timeout = timeout
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="drivetwin-session-watchdog", daemon=True)
            self._watchdog.start()

    def _watch(self) -> None:
        while not self._closed.wait(min(max(self._timeout / 8, 0.01), 1.0)):
            if time.perf_counter() > self._due:
                self._overdue = self.broken = True
                self._call.cancel()
                return

    def close(self) -> None:
        """End the call (the planner sees the end of its requests) and stop the watchdog."""
        self._closed.set()
        self._call.close()


class RemotePolicy:
    """A planner served over the planner protocol, as a policy.

    Give exactly one of ``address``, ``addresses`` or ``command``.

    Args:
        address: ``"host:port"`` of a running gRPC planner (it may serve many sessions at once),
            or a frames address: ``"unix+frames:///path.sock"``, ``"tcp+frames://host:port"``.
        addresses: one address per worker: each worker claims one (``AddressClaim``).
        command: a planner to start per worker: ``"./my_planner --port {port}"`` (gRPC) or
            ``"./my_planner --socket {socket}"`` (frames on a Unix socket drivetwin names).
        name: the policy name the rollouts record ("" : the planner's own name, else the address).
        realtime_factor: 0 for lock-step; else wall-clock pacing (1.0: real time).
        fallback: on a deadline miss, "previous" (the last command; braking before the first) or "brake".
        step_timeout_s: lock-step: the longest wait for one reply before the planner counts as hung [s].
        session_call: gRPC lock-step transport, one of ``SESSION_CALLS`` ("off": unary calls only).
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
        session_call: str = "inline",
        log_dir: str = "",
        cwd: str = "",
    ) -> None:
        if sum(bool(x) for x in (address, addresses, command)) != 1:
            raise ValueError("RemotePolicy needs exactly one of address, addresses or command")
        if not (math.isfinite(realtime_factor) and realtime_factor >= 0):
            raise ValueError(f"realtime_factor must be >= 0, got {realtime_factor}")
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        if session_call not in SESSION_CALLS:
            raise ValueError(f"session_call must be one of {SESSION_CALLS}, got {session_call!r}")
        for given in ([address] if address else list(addresses or ())):
            if frames.is_frames_address(given):
                frames.parse_address(given)  # a ValueError naming the address and what is wrong (a path over 107 bytes)
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
        self._stream: SessionStream | None = None
        self._frames: frames.FramesClient | None = None
        self.session_call = session_call
        self._unary = session_call == "off"  # or the planner has no Session rpc: unary calls only

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
        request = pb.DescribeRequest(protocol_version=protocol.PROTOCOL_VERSION)
        if stub is None:
            info = self._frames_ask("describe", pb.SessionRequest(describe=request), self.step_timeout_s, "Describe")
        else:
            info = self._call(stub.Describe, request, self.step_timeout_s, "Describe")
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

    @property
    def transport(self) -> str:
        """How the last lock-step messages travelled: "frames-unix" or "frames-tcp" (frames on one
        socket), "session" (one gRPC Session call on the twin's thread), "session-threads" (one
        Session call through grpcio's stream API), "unary" (the planner has no Session rpc, or
        ``session_call="off"``), "" before any."""
        if self._frames is not None:
            return "frames-unix" if self._frames.address.startswith(frames.UNIX_SCHEME) else "frames-tcp"
        if self._unary:
            return "unary"
        if self._stream is None:
            return ""
        return "session-threads" if self._stream.threaded else "session"

    def _where(self) -> str:
        where = f"planner {self.address or self._name}"
        if self._process is not None:
            where += f" (process {self._process.exit_status()}, log {self._process.log_path})"
        return where

    def _connect(self) -> Any:
        """The planner's gRPC stub; None for a frames planner (its connection is ``self._frames``)."""
        if self._process is not None and not self._process.alive():
            self._process.start()
        elif self._claim is not None:
            self._claim.claim()
        address = self.address
        if frames.is_frames_address(address):
            if self._frames is None or self._frames.broken or self._frames.address != address:
                self._drop_frames()
                try:
                    self._frames = frames.FramesClient(address, min(self.step_timeout_s, 10.0))
                except (OSError, ValueError) as exc:
                    raise PlannerLost(f"{self._where()} is unreachable: {exc}") from None
            return None
        if self._stub is None or self._channel_address != address:
            self._drop_stream()
            if self._channel is not None:
                self._channel.close()
            self._channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
            self._stub, self._channel_address = pb_grpc.PlannerStub(self._channel), address
        return self._stub

    def restart(self) -> None:
        """After ``PlannerLost``: stop a planner process (the next reset starts a fresh one) and reconnect."""
        self._drop_stream()
        self._drop_frames()
        if self._process is not None:
            self._process.stop()
        if self._channel is not None:
            self._channel.close()
        self._channel, self._stub, self._open_t_us = None, None, None
        self._unary = self.session_call == "off"  # a restarted planner may be another build

    def _drop_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _drop_frames(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None

    def _frames_ask(self, kind: str, request: Any, timeout: float, what: str) -> Any:
        """The reply of kind ``kind`` to ``request`` (a ``SessionRequest``) on the frames connection."""
        conn = self._frames
        if conn is None or conn.broken:
            self._connect()
            conn = self._frames
        assert conn is not None
        try:
            reply = conn.ask(request, timeout)
        except (OSError, frames.FrameError, DecodeError) as exc:
            raise self._frames_error(exc, what, timeout) from None
        return self._reply_of(kind, reply, what)

    def _frames_error(self, exc: BaseException, what: str, timeout: float) -> RemoteError:
        """What a failed frames exchange means: a hang or a lost connection (``PlannerLost``,
        the connection dropped), a broken frame or a frame that is no message (``RemoteError``)."""
        if isinstance(exc, DecodeError):  # the frame was read whole: the stream is still in step
            return RemoteError(f"{what}: {self._where()} sent a frame that is no SessionReply: {exc}")
        self._drop_frames()
        if isinstance(exc, frames.FrameError):
            return RemoteError(f"{what}: {self._where()} broke the framing: {exc}")
        if isinstance(exc, TimeoutError):
            return PlannerLost(f"{what}: {self._where_after_loss()} did not reply within {timeout:g} s (hung)")
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return PlannerLost(f"{what}: {self._where_after_loss()} closed the connection ({detail})")

    def _reply_of(self, kind: str, reply: Any, what: str) -> Any:
        if reply.WhichOneof("reply") == "end":  # a frames planner ended the session with a status
            self._drop_frames()
            number = reply.end.code
            code = _CODES.get(number, grpc.StatusCode.UNKNOWN)
            name = code.name if number in _CODES else f"UNKNOWN (code {number})"
            raise self._status_error(code, frames.cap_details(reply.end.details), what, name)
        if reply.WhichOneof("reply") != kind:
            self._drop_frames()
            self._drop_stream()
            raise RemoteError(f"{what}: the planner answered a {kind} with a {reply.WhichOneof('reply') or 'empty'} session reply")
        return getattr(reply, kind)

    def _where_after_loss(self) -> str:
        if self._process is not None:
            self._process.wait_exit(1.0)  # a planner that dropped the connection is usually exiting
        return self._where()

    def _ask(self, kind: str, message: Any, unary: Any, timeout: float, what: str, request: Any = None) -> Any:
        """The reply to ``message`` on the session stream (``SessionRequest.<kind>``; ``request``
        when it is already built around ``message``), or by the unary ``unary`` rpc when the
        planner has no ``Session`` rpc."""
        if self._frames is not None:
            return self._frames_ask(kind, request if request is not None else pb.SessionRequest(**{kind: message}), timeout, what)
        if not self._unary:
            if self._stream is None or self._stream.broken:
                self._drop_stream()
                self._stream = SessionStream(self._channel, self._where, self.session_call == "threaded")
            try:
                reply = self._stream.ask(request if request is not None else pb.SessionRequest(**{kind: message}), timeout, what)
            except grpc.RpcError as exc:
                if not self._stream.unimplemented:
                    raise self._lost_or_error(exc, what) from None
                self._drop_stream()
                self._unary = True
            else:
                return self._reply_of(kind, reply, what)
        return self._call(unary, message, timeout, what)

    def _call(self, method: Any, request: Any, timeout: float, what: str) -> Any:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise self._lost_or_error(exc, what) from None

    def _lost_or_error(self, exc: grpc.RpcError, what: str) -> RemoteError:
        code = exc.code() if hasattr(exc, "code") else None
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        return self._status_error(code, detail, what)

    def _status_error(self, code: Any, detail: str, what: str, name: str | None = None) -> RemoteError:
        """What a call (or a frames session) ended with status ``code`` (a ``grpc.StatusCode``)
        means: ``PlannerLost`` for the codes of a planner gone or hung, else ``RemoteError``.
        ``name`` is the code as the message names it (default: its name)."""
        name = name if name is not None else getattr(code, "name", str(code))
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return PlannerLost(f"{what}: {self._where()} did not reply within {self.step_timeout_s:g} s (hung)")
        if code in _LOST_CODES:
            if self._process is not None and code == grpc.StatusCode.UNAVAILABLE:
                self._process.wait_exit(1.0)  # a planner that dropped the connection is usually exiting
            return PlannerLost(f"{what}: {self._where()} is unreachable: {name}: {detail}")
        return RemoteError(f"{what}: {self._where()} failed the call: {name}: {detail}")

    # --- the policy ----------------------------------------------------------------------
    def reset(self, scenario_info: Mapping[str, Any]) -> None:
        """Start an episode on the planner (``Reset``), closing the previous one."""
        stub = self._connect()
        self._close_episode(stub)
        facts = protocol.episode_facts(scenario_info)
        init = protocol.scenario_init(facts, self.session, facts.seed, self._maps)
        what = f"Reset of {facts.scenario.id}"
        if self.realtime_factor > 0 and stub is not None:
            reply = self._call(stub.Reset, init, self.step_timeout_s, what)
        else:
            reply = self._ask("reset", init, getattr(stub, "Reset", None), self.step_timeout_s, what)
        protocol.check_reply(reply, facts.t0_us, what)
        self._facts, self._open_t_us = facts, facts.t0_us
        self._latencies, self._misses, self._previous = [], 0, None
        self._wall0 = time.perf_counter()

    def act(self, observation: Any) -> Any:
        facts = self._facts
        if facts is None:
            raise RuntimeError("RemotePolicy.act before reset")
        if self.realtime_factor > 0:
            request = pb.SessionRequest()
            msg = protocol.observation(facts, self.session, observation, request.step)
            self._open_t_us = msg.t_us
            return self._act_realtime(request, f"step {msg.step} (t_us={msg.t_us})")
        request = pb.SessionRequest()
        msg = protocol.observation(facts, self.session, observation, request.step)  # built in place: no copy
        what = f"step {msg.step} (t_us={msg.t_us})"
        self._open_t_us = msg.t_us
        start = time.perf_counter()
        reply = self._ask("step", msg, getattr(self._stub, "Step", None), self.step_timeout_s, what, request)
        self._latencies.append(time.perf_counter() - start)
        protocol.check_reply(reply, msg.t_us, what)
        action = protocol.decode_command(reply, facts.action_type, facts.action_space, what)
        self._previous = action
        return action

    def _act_realtime(self, request: Any, what: str) -> Any:
        """One paced step: the reply by the step's deadline, else a deadline miss (the fallback).
        On gRPC a unary ``Step`` with that deadline (the planner sees it cancelled); on frames the
        step's frame, and no frame while a late reply is still due (``FramesClient.ask_by``)."""
        facts = self._facts
        assert facts is not None
        msg = request.step
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
        if self._frames is not None:
            try:
                session_reply = self._frames.ask_by(request, deadline)
            except (OSError, frames.FrameError, DecodeError) as exc:
                raise self._frames_error(exc, what, period) from None
            if session_reply is None:
                self._misses += 1
                return self._fallback_action()
            reply = self._reply_of("step", session_reply, what)
        else:
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
        request = pb.CloseRequest(session=self.session, t_us=t_us)
        timeout = min(self.step_timeout_s, 5.0)
        try:
            if stub is None:
                if self._frames is not None and not self._frames.broken:
                    self._frames_ask("close", pb.SessionRequest(close=request), timeout, "Close")
            elif self._stream is not None and not self._stream.broken and not self._unary:
                self._ask("close", request, stub.Close, timeout, "Close")
            else:
                stub.Close(request, timeout=timeout)
        except (grpc.RpcError, RemoteError):
            pass  # the episode is over either way; a dead planner shows at the next Reset

    def close(self) -> None:
        """End the episode, stop a planner process, release a claimed address."""
        if self._stub is not None or self._frames is not None:
            self._close_episode(self._stub if self._frames is None else None)
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
