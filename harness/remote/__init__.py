"""The controller under test in another process or language, over gRPC or frames (planner protocol v1).

- ``RemotePolicy``: the env-side client, a policy like the baselines (lock-step or real time);
  over gRPC lock-step messages go on one ``Session`` stream call (``harness.remote.stream``),
  unary calls for planners without it; over frames (``harness.remote.frames``) the same
  messages are length-prefixed on one Unix or TCP socket.
- ``serve_policy`` / ``drivetwin serve-policy``: any Python policy served over the protocol
  (``serve_policy_frames`` / ``serve-policy --socket``: on frames).
- ``PlannerProcess``: one planner process per worker, started on a free port or Unix socket.

The protocol is ``proto/drivetwin/planner/v1/planner.proto``; its Python code is shipped in
``harness.remote._proto`` (regenerate with ``python proto/generate.py``).
"""

from harness.remote.client import RemotePolicy, rollout_retrying
from harness.remote.process import PlannerProcess
from harness.remote.protocol import PROTOCOL_VERSION, PlannerLost, RemoteError
from harness.remote.server import PolicyServicer, serve_policy, serve_policy_frames

__all__ = [
    "PROTOCOL_VERSION",
    "PlannerLost",
    "PlannerProcess",
    "PolicyServicer",
    "RemoteError",
    "RemotePolicy",
    "rollout_retrying",
    "serve_policy",
    "serve_policy_frames",
]
