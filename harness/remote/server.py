"""The reference planner server: any Python policy served over the planner protocol.

``drivetwin serve-policy expert --port 50051`` (or ``package.module:Name``) serves a policy to
drivetwin's ``RemotePolicy``: the policy gets the same ``reset`` context (a view rebuilt from the
messages) and the same observations as in process, so it drives identically. Each client session
(one drivetwin worker) has its own policy instance; sessions run concurrently. The ``Session``
stream answers each message with the unary handler of its kind (``Reset``, ``Step``, ``Close``),
so a subclass that overrides those serves both forms alike. A session's policy is freed when
the ``Session`` call that reset it ends (the worker closed it, cancelled it or went away); sessions
driven by unary calls only are kept until the server stops.

The same servicer is served without gRPC on the lock-step frames transport
(``harness.remote.frames``, ``make_frames_server``): each connection is driven through ``Session``.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc

from harness.remote import frames, inline, protocol
from harness.remote._proto import planner_pb2 as pb
from harness.remote._proto import planner_pb2_grpc as pb_grpc


@dataclass(slots=True)
class _Session:
    policy: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    view: protocol.ServedView | None = None
    action_type: str = ""
    t0_us: int = 0
    dt_us: int = 0
    step: int = 0
    owner: object = None  # the Session call that reset it last (None: a unary Reset)
    spaces: protocol.ServedSpaces | None = None  # the env's config and spaces, kept while they stay the same


def _error(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(exc)).strip()


class PolicyServicer(pb_grpc.PlannerServicer):
    """Serves ``make_policy(spec, **options)``, one instance per session.

    Args:
        spec: a built-in policy name or ``"package.module:Name"``.
        options: keyword arguments of the policy's constructor.
    """

    def __init__(self, spec: str, options: Mapping[str, Any] | None = None) -> None:
        from sim.policies import make_policy, policy_name

        self.spec = spec
        self.options = dict(options or {})
        self._make = make_policy
        self.name = policy_name(make_policy(spec, **self.options))  # fails now on a bad spec
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def _session(self, key: str, create: bool = False) -> _Session | None:
        with self._lock:
            session = self._sessions.get(key)
            if session is None and create:
                session = self._sessions[key] = _Session(self._make(self.spec, **self.options))
            return session

    def Describe(self, request: pb.DescribeRequest, context: grpc.ServicerContext) -> pb.PlannerInfo:
        supports = getattr(self._make(self.spec, **self.options), "supports", ())
        types = [protocol.ACTION_TYPES[str(getattr(t, "value", t))] for t in supports]
        return pb.PlannerInfo(status=pb.STATUS_OK, name=self.name, protocol_version=protocol.PROTOCOL_VERSION, action_types=types)

    def Reset(self, request: pb.ScenarioInit, context: grpc.ServicerContext) -> pb.ResetReply:
        reply = pb.ResetReply(t_us=request.t_us, planner_name=self.name, protocol_version=protocol.PROTOCOL_VERSION)
        if request.protocol_version != protocol.PROTOCOL_VERSION:
            reply.status, reply.message = pb.STATUS_ERROR, f"protocol version {request.protocol_version} is not served (this server speaks {protocol.PROTOCOL_VERSION})"
            return reply
        try:
            session = self._session(request.session, create=True)
            assert session is not None
            with session.lock:
                view = protocol.ServedView(request)
                session.spaces = protocol.served_spaces(request, session.spaces)
                ctx = protocol.served_context(request, view, session.spaces)
                session.view, session.action_type = view, protocol.ACTION_NAMES[request.action.type]
                session.t0_us, session.dt_us, session.step = request.t_us, request.dt_us, 0
                session.owner = None  # a Session call that carried this Reset owns it (Session)
                session.policy.reset(ctx)
        except Exception as exc:  # noqa: BLE001 - the policy's failure goes back to the twin
            reply.status, reply.message = pb.STATUS_ERROR, f"policy {self.name!r} failed to reset: {_error(exc)}"
            return reply
        reply.status = pb.STATUS_OK
        return reply

    def Step(self, request: pb.Observation, context: grpc.ServicerContext) -> pb.Command:
        session = self._session(request.session)
        if session is None or session.view is None:
            return pb.Command(status=pb.STATUS_ERROR, t_us=request.t_us, message=f"no episode in session {request.session!r}: Reset first")
        with session.lock:
            if not context.is_active():  # the twin gave up on this reply (a deadline miss): do not act on a stale step
                return pb.Command(status=pb.STATUS_ERROR, t_us=request.t_us, message="cancelled by the client")
            try:
                session.view.update(request)
                action = session.policy.act(protocol.served_observation(request))
                return protocol.encode_action(action, session.action_type, request.t_us)
            except Exception as exc:  # noqa: BLE001
                return pb.Command(status=pb.STATUS_ERROR, t_us=request.t_us, message=f"policy {self.name!r} raised {_error(exc)}")

    def Close(self, request: pb.CloseRequest, context: grpc.ServicerContext) -> pb.CloseReply:
        session = self._session(request.session)
        if session is not None:
            with session.lock:
                session.view = None
        return pb.CloseReply(status=pb.STATUS_OK, t_us=request.t_us)

    def Session(self, request_iterator: Iterator[pb.SessionRequest], context: grpc.ServicerContext) -> Iterator[pb.SessionReply]:
        """Every message of the call answered in order by the unary handler of its kind. When the
        call ends (closed, cancelled, or its peer gone) the sessions it reset are freed, unless a
        later call reset them since."""
        step, reset, close = self.Step, self.Reset, self.Close
        owner, keys = object(), set()
        try:
            for request in request_iterator:
                kind = request.WhichOneof("request")
                if kind == "step":
                    yield pb.SessionReply(step=step(request.step, context))
                elif kind == "reset":
                    reply = reset(request.reset, context)
                    self._own(request.reset.session, owner)
                    keys.add(request.reset.session)
                    yield pb.SessionReply(reset=reply)
                elif kind == "close":
                    yield pb.SessionReply(close=close(request.close, context))
                elif kind == "describe":
                    yield pb.SessionReply(describe=self.Describe(request.describe, context))
                else:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a SessionRequest carries none of reset, step, close, describe")
        finally:
            with self._lock:
                for key in keys:
                    if self._sessions.get(key) is not None and self._sessions[key].owner is owner:
                        del self._sessions[key]

    def _own(self, key: str, owner: object) -> None:
        with self._lock:
            session = self._sessions.get(key)
            if session is not None:
                session.owner = owner

    @property
    def session_count(self) -> int:
        """Sessions whose policy is held (freed when their ``Session`` call ends)."""
        with self._lock:
            return len(self._sessions)


#: No bandwidth probes (a ping per burst read): each step is one small message each way.
SERVER_OPTIONS = [("grpc.so_reuseport", 0), ("grpc.optimization_target", "latency"), ("grpc.http2.bdp_probe", 0)]
#: How ``make_server`` serves: "inline" (``harness.remote.inline``: each call's thread polls the
#: call itself; no limit on concurrent calls) or "threads" (grpcio's public server: a polling
#: thread hands every message to a handler thread of a pool of ``threads``).
SERVERS = ("inline", "threads")
#: The public server's pool: most calls served at once. An open ``Session`` call holds one thread
#: for as long as its drivetwin worker runs, so this bounds the workers it drives concurrently
#: (more would wait for a free thread); the inline server has no such bound.
MAX_CALLS = 256


def make_server(
    servicer: pb_grpc.PlannerServicer, port: int = 0, host: str = "127.0.0.1", threads: int = MAX_CALLS, server: str = "inline",
) -> tuple[Any, int]:
    """A started gRPC server for ``servicer`` on ``host:port`` (0: a free port) and its port.

    ``server`` is one of ``SERVERS``; "inline" falls back to "threads" when grpcio's Cython
    layer is not the one ``harness.remote.inline`` knows (``served_by`` tells which one runs)."""
    if server not in SERVERS:
        raise ValueError(f"server must be one of {SERVERS}, got {server!r}")
    grpc_server: Any
    if server == "inline" and inline.AVAILABLE:
        grpc_server = inline.InlineServer(SERVER_OPTIONS)
    else:
        grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads), options=SERVER_OPTIONS)
    pb_grpc.add_PlannerServicer_to_server(servicer, grpc_server)
    bound = grpc_server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    grpc_server.start()
    return grpc_server, bound


def make_frames_server(servicer: pb_grpc.PlannerServicer, address: str) -> frames.FramesServer:
    """A started frames server (``harness.remote.frames``) for ``servicer`` on ``address``
    (``unix+frames:///path`` or ``tcp+frames://host:port``, port 0: a free one); its
    ``address`` is the one to connect to."""
    server = frames.FramesServer(servicer, address)
    server.start()
    return server


def served_by(server: Any) -> str:
    """Which server ``server`` is: one of ``SERVERS`` (from ``make_server``) or "frames"."""
    if isinstance(server, frames.FramesServer):
        return "frames"
    return "inline" if isinstance(server, inline.InlineServer) else "threads"


def serve_policy(
    spec: str, port: int = 0, options: Mapping[str, Any] | None = None, host: str = "127.0.0.1", server: str = "inline",
) -> tuple[Any, int]:
    """Serve the policy ``spec`` (see ``PolicyServicer``) over gRPC; returns the started server and its port."""
    return make_server(PolicyServicer(spec, options), port, host, server=server)


def serve_policy_frames(spec: str, address: str, options: Mapping[str, Any] | None = None) -> frames.FramesServer:
    """Serve the policy ``spec`` on the frames transport at ``address`` (see ``make_frames_server``)."""
    return make_frames_server(PolicyServicer(spec, options), address)
