"""A planner in another process over each lock-step transport against the same planner in process, in the same run.

Usage: python benchmarks/bench_remote.py [--episodes 20] [--policy expert] [--data ../shared/data]

What is timed: whole episodes (``sim.runner.rollout``: reset, every step, the rollout record) of
the ``expert`` on ``state`` observations, in the Waymo JSON scenario with the most agents (the
sample's busiest scenario when ../shared/data is absent), log-replay agents, the kinematic
bicycle. In process: the policy is called directly. Remote: the same policy served by
``drivetwin serve-policy`` in its own process, driven lock-step by ``RemotePolicy``, over each
transport: frames on a Unix socket and on TCP loopback (``harness.remote.frames``); gRPC's
``Session`` call driven on the twin's thread (gRPC's default), the same call through grpcio's
public stream API, one unary ``Step`` call per step (what a planner without ``Session`` gets),
and the default call against grpcio's public server (``make_server(server="threads")``). Each
server says which server it runs (``served_by``) and each client which transport it used
(``RemotePolicy.transport``): the bench checks both. Printed, per transport:

- env steps/s (median over the episodes, every form run in turn on each episode) and how many
  times slower than in process, also as the median of per-episode ratios;
- the per-step round trip (median, p99 [ms]): the twin's wait for the reply;
- CPU time per env step of the twin and of the server (/proc; Linux), which depends less on the
  machine's load than wall time does;
- the target (within 3x of in process) read off frames on the Unix socket: "met" only when the
  remote rollouts equal the in-process ones and the servers and transports are verified, else
  which check failed; and what frames on TCP and gRPC give;
- each side's message work per step without a transport (building, parsing, unpacking) [us].

Wall-clock figures depend on what else runs on the machine: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import scenarios  # noqa: E402
import sim  # noqa: E402
from harness.remote import RemotePolicy, protocol  # noqa: E402
from sim.policies import make_policy  # noqa: E402
from sim.runner import rollout, rollouts_equal  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
#: The planner servers, each in its own process: (serve-policy flags or None for THREADS_SERVER, the
#: kind of server it must say it runs (``served_by``)). "{socket}" is a path in a temp dir.
SERVERS = {
    "frames-unix": (["--socket", "{socket}"], "frames"),
    "frames-tcp": (["--transport", "frames", "--port", "0"], "frames"),
    "inline": (["--port", "0"], "inline"),
    "threads": (None, "threads"),
}
#: The forms compared: (the server, ``RemotePolicy(session_call=...)``, the transport the client
#: must report having used (``RemotePolicy.transport``), its label).
FORMS = {
    "frames-unix": ("frames-unix", "inline", "frames-unix", "frames, Unix socket"),
    "frames-tcp": ("frames-tcp", "inline", "frames-tcp", "frames, TCP loopback"),
    "inline": ("inline", "inline", "session", "gRPC Session call, twin's thread"),
    "threaded": ("inline", "threaded", "session-threads", "gRPC Session call, stream API"),
    "off": ("inline", "off", "unary", "gRPC unary Step per step"),
    "threads-server": ("threads", "inline", "session", "gRPC Session, grpcio's server"),
}
FRAMES_FORMS = ("frames-unix", "frames-tcp")
#: The issue's target: the remote path within this many times in process's steps/s, read off this form.
TARGET_X, TARGET_FORM = 3.0, "frames-unix"
#: A planner process serving ``sys.argv[1]`` on grpcio's public server, printing its address as serve-policy does.
THREADS_SERVER = (
    "import sys, threading\n"
    "from harness.remote.server import serve_policy, served_by\n"
    "server, port = serve_policy(sys.argv[1], 0, server='threads')\n"
    "print(f'serving on 127.0.0.1:{port} ({served_by(server)} server)', flush=True)\n"
    "threading.Event().wait()\n"
)


def busiest(data: Path) -> scenarios.Scenario:
    found = []
    for path in sorted((data / "waymo_json").glob("*.json")) if data.exists() else []:
        found.extend(scenarios.load(path))
    if not found:
        library = scenarios.ScenarioLibrary(ROOT / "scenarios" / "sample" / "ngsim_us101")
        found = [library.load(i) for i in library.ids()]
    return max(found, key=lambda s: (s.num_agents, s.id))


def cpu_s(pid: int) -> float:
    """CPU time [s] process ``pid`` has used (user + system, from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Timed:
    """Wraps a policy and times its ``act`` calls [s]."""

    def __init__(self, policy) -> None:
        self.policy, self.times = policy, []
        self.name = getattr(policy, "name", "")

    def reset(self, info) -> None:
        self.policy.reset(info)

    def act(self, obs):
        t = time.perf_counter()
        action = self.policy.act(obs)
        self.times.append(time.perf_counter() - t)
        return action


def start_servers(policy: str, tmp: str) -> tuple[dict, dict, dict]:
    """Every server of ``SERVERS`` in its own process: the processes, their addresses, the kind of
    server each says it runs."""
    env_vars = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs, addresses, kinds = {}, {}, {}
    for name, (flags, _) in SERVERS.items():
        if flags is None:
            argv = [sys.executable, "-c", THREADS_SERVER, policy]
        else:
            argv = [sys.executable, "-m", "harness.cli", "serve-policy", policy,
                    *(f.replace("{socket}", os.path.join(tmp, f"{name}.sock")) for f in flags)]
        procs[name] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env_vars)
    for name, proc in procs.items():
        line = proc.stdout.readline()
        match = re.search(r"on (\S+) \((\w+) server\)", line)
        if match is None:
            raise SystemExit(f"server {name} printed {line!r}")
        addresses[name], kinds[name] = match.group(1), match.group(2)
    return procs, addresses, kinds


def message_costs(env, n: int = 2000) -> dict[str, float]:
    """Per-step cost [us] of each side's message work, without a transport: the twin builds and
    serialises the Observation and parses and decodes the Command; the server parses the request,
    unpacks it for the policy, encodes and serialises its reply."""
    from harness.remote._proto import planner_pb2 as pb

    obs, _ = env.reset(seed=0)
    facts = protocol.episode_facts(env.scenario_info())
    init = protocol.scenario_init(facts, "0" * 32, 0)
    view = protocol.ServedView(init)

    def per(fn) -> float:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t) / n * 1e6

    request = pb.SessionRequest()
    protocol.observation(facts, "0" * 32, obs, request.step)
    data = request.SerializeToString()
    action = np.zeros(2, np.float32)
    reply = pb.SessionReply(step=protocol.encode_action(action, facts.action_type, request.step.t_us)).SerializeToString()

    def build() -> None:
        r = pb.SessionRequest()
        protocol.observation(facts, "0" * 32, obs, r.step)
        r.SerializeToString()

    def unpack() -> None:
        msg = pb.SessionRequest.FromString(data).step
        view.update(msg)
        protocol.served_observation(msg)

    def road_users() -> None:
        view.update(msg)
        view.agents()

    msg = pb.SessionRequest.FromString(data).step

    return {
        "twin: build + serialise Observation": per(build),
        "twin: parse + decode Command": per(lambda: protocol.decode_command(pb.SessionReply.FromString(reply).step, facts.action_type, facts.action_space, "")),
        "server: parse + unpack Observation": per(unpack),
        "server: road users to arrays (for a policy that reads them)": per(road_users),
        "server: encode + serialise Command": per(lambda: pb.SessionReply(step=protocol.encode_action(action, facts.action_type, 0)).SerializeToString()),
        "request bytes": float(len(data)),
    }


def verdict(ratio: float, same: bool, verified: bool) -> str:
    """The target's verdict: "met" only when ``ratio`` (in process's steps/s over the remote's) is
    within ``TARGET_X``, the remote rollouts equal the in-process ones and every server and
    transport was the intended one; otherwise "NOT met" and each check that failed."""
    failed = []
    if not ratio <= TARGET_X:
        failed.append(f"{ratio:.2f}x is over {TARGET_X:g}x")
    if not same:
        failed.append("the remote rollouts differ from the in-process ones")
    if not verified:
        failed.append("a server or a transport was not the intended one")
    return "met" if not failed else "NOT met (" + "; ".join(failed) + ")"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--policy", default="expert")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()

    scenario = busiest(args.data)
    env = sim.DriveTwinEnv(scenario=scenario, config=sim.EnvConfig.from_mapping({"observation": ["state"]}))
    tmp = tempfile.mkdtemp(prefix="drivetwin-bench-")
    procs: dict = {}
    try:
        procs, addresses, kinds = start_servers(args.policy, tmp)
        local = Timed(make_policy(args.policy))
        remotes = {form: RemotePolicy(addresses[server], session_call=call) for form, (server, call, _, _) in FORMS.items()}
        load0 = os.getloadavg()[0]
        for policy in (local, *remotes.values()):  # warm: plans, caches, the connection
            rollout(env, policy, scenario, seed=0)
        local.times.clear()
        rates: dict[str, list[float]] = {name: [] for name in ("in", *FORMS)}
        cpu = {name: [0.0, 0.0] for name in ("in", *FORMS)}  # twin, server [s]
        rtts: dict[str, list[float]] = {form: [] for form in FORMS}
        same, steps = True, 0
        for i in range(args.episodes):  # interleaved episodes: every form sees the same machine load
            t, c = time.perf_counter(), time.process_time()
            a = rollout(env, local, scenario, seed=i)
            rates["in"].append((a.num_steps - 1) / (time.perf_counter() - t))
            cpu["in"][0] += time.process_time() - c
            steps += a.num_steps - 1
            for form, remote in remotes.items():
                server = procs[FORMS[form][0]]
                t, c, c_server = time.perf_counter(), time.process_time(), cpu_s(server.pid)
                b = rollout(env, remote, scenario, seed=i)
                rates[form].append((b.num_steps - 1) / (time.perf_counter() - t))
                cpu[form][0] += time.process_time() - c
                cpu[form][1] += cpu_s(server.pid) - c_server
                rtts[form] += remote._latencies
                same = same and rollouts_equal(a, b)
        used = {form: remote.transport for form, remote in remotes.items()}
        for remote in remotes.values():
            remote.close()
        costs = message_costs(env)
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=10)
        env.close()
        shutil.rmtree(tmp, ignore_errors=True)

    act_us = float(np.median(local.times)) * 1e6
    inp = statistics.median(rates["in"])
    print(f"scenario {scenario.id}: {scenario.num_agents} agents, {env.unwrapped.plan.log.num_steps} steps; policy {args.policy!r}; "
          f"{args.episodes} episodes of each; load average {load0:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"rollouts identical to in process over every transport: {same}; the policy's own act in process: median {act_us:.0f} us")
    print(f"{'lock-step transport':34s} {'served by':>13s} {'steps/s':>8s} {'x slower':>8s} {'(paired)':>8s} {'rt p50':>7s} {'rt p99':>7s} "
          f"{'twin CPU':>8s} {'server':>7s} {'CPU x':>6s}")
    print(f"{'':34s} {'':>13s} {'':>8s} {'':>8s} {'':>8s} {'[ms]':>7s} {'[ms]':>7s} {'[us/step]':>8s} {'':>7s}")
    print(f"{'in process':34s} {'':>13s} {inp:8,.0f} {1:8.2f} {1:8.2f} {'':7s} {'':7s} {cpu['in'][0] / steps * 1e6:8.0f} {'':7s} {1:6.2f}")
    ratio, verified = {}, True
    for form, (server, _, transport, label) in FORMS.items():
        rem = statistics.median(rates[form])
        ratio[form] = inp / rem
        paired = statistics.median(x / y for x, y in zip(rates["in"], rates[form]))
        ms = np.asarray(rtts[form]) * 1e3
        ok = kinds[server] == SERVERS[server][1] and used[form] == transport
        verified = verified and ok
        served = f"{kinds[server]}{'' if ok else '!'}" + ("" if used[form] == transport else f"/{used[form]}")
        print(f"{label:34s} {served:>13s} {rem:8,.0f} {ratio[form]:8.2f} {paired:8.2f} {np.median(ms):7.3f} {np.percentile(ms, 99):7.3f} "
              f"{cpu[form][0] / steps * 1e6:8.0f} {cpu[form][1] / steps * 1e6:7.0f} {sum(cpu[form]) / cpu['in'][0]:6.2f}")
    print(f"servers and transports as intended (each server's own report, each client's transport): {verified}")
    best = TARGET_FORM
    grpc_best = min((f for f in FORMS if f not in FRAMES_FORMS), key=ratio.get)
    print(f"target (remote within {TARGET_X:g}x of in process) on {FORMS[best][3]}: {ratio[best]:.2f}x: "
          f"{verdict(ratio[best], same, verified)}; frames on TCP {ratio['frames-tcp']:.2f}x; gRPC gives {ratio['inline']:.2f}x "
          f"on its default transport (best gRPC form: {FORMS[grpc_best][3]}, {ratio[grpc_best]:.2f}x)")
    in_step_us = 1e6 / inp
    print(f"per step [us]: in process {in_step_us:.0f} (the policy's act {act_us:.0f}); over {FORMS[best][3]} "
          f"{1e6 / statistics.median(rates[best]):.0f} (round trip p50 {np.median(rtts[best]) * 1e6:.0f}); "
          f"over gRPC's default {1e6 / statistics.median(rates['inline']):.0f} (round trip p50 {np.median(rtts['inline']) * 1e6:.0f})")
    print("message work per step without a transport [us]: " + "; ".join(
        f"{k} {v:.1f}" for k, v in costs.items() if k != "request bytes") + f"; the Observation is {costs['request bytes']:.0f} B")
    print("x slower: median steps/s in process over remote; (paired): median of per-episode ratios; rt: the twin's wait for a reply; "
          "CPU from /proc (twin: this process, server: the planner's); CPU x: twin + server CPU over in process's, what a step "
          "costs whatever the load (in lock-step a step waits for both)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
