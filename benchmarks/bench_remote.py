"""A planner over gRPC on loopback against the same planner in process, measured in the same run.

Usage: python benchmarks/bench_remote.py [--episodes 20] [--policy expert] [--data ../shared/data]

What is timed: whole episodes (``sim.runner.rollout``: reset, every step, the rollout record) of
the ``expert`` on ``state`` observations, in the Waymo JSON scenario with the most agents (the
sample's busiest scenario when ../shared/data is absent), log-replay agents, the kinematic
bicycle. In process: the policy is called directly. Remote: the same policy served by
``drivetwin serve-policy`` in its own process, driven lock-step by ``RemotePolicy`` over
127.0.0.1, over each lock-step transport: the ``Session`` call driven on the twin's thread (the
default), the same call through grpcio's public stream API, and one unary ``Step`` call per step
(what a planner without ``Session`` gets); and the default transport against the same policy on
grpcio's public server (``make_server(server="threads")``, the fallback of the inline server that
``serve-policy`` runs). Printed, per transport:

- env steps/s (median over the episodes, every form run in turn on each episode) and how many
  times slower than in process (target: within 3x), also as the median of per-episode ratios;
- the per-step round trip (median, p99 [ms]): the twin's wait for the reply;
- CPU time per env step of the twin and of the server (/proc; Linux), which depends less on the
  machine's load than wall time does;
- the client's own message cost (building the ``Observation``, decoding the ``Command``) and the
  messages' sizes [bytes].

Wall-clock figures depend on what else runs on the machine: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
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
#: The forms compared: (``RemotePolicy(session_call=...)``, the server's kind); the first is the default.
FORMS = {"inline": ("inline", "inline"), "threaded": ("threaded", "inline"), "off": ("off", "inline"), "threads-server": ("inline", "threads")}
LABELS = {"inline": "Session call, twin's thread", "threaded": "Session call, grpcio stream API", "off": "unary Step per step",
          "threads-server": "Session call, grpcio's public server"}
#: A planner process serving ``sys.argv[1]`` on grpcio's public server, printing its port.
THREADS_SERVER = (
    "import sys, threading\n"
    "from harness.remote.server import serve_policy\n"
    "server, port = serve_policy(sys.argv[1], 0, server='threads')\n"
    "print(f'serving on 127.0.0.1:{port}', flush=True)\n"
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--policy", default="expert")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()

    scenario = busiest(args.data)
    env = sim.DriveTwinEnv(scenario=scenario, config=sim.EnvConfig.from_mapping({"observation": ["state"]}))
    env_vars = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    servers = {
        "inline": subprocess.Popen([sys.executable, "-m", "harness.cli", "serve-policy", args.policy, "--port", "0"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env_vars),
        "threads": subprocess.Popen([sys.executable, "-c", THREADS_SERVER, args.policy],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env_vars),
    }
    try:
        addresses = {kind: re.search(r"on (\S+:\d+)", proc.stdout.readline()).group(1) for kind, proc in servers.items()}
        local = Timed(make_policy(args.policy))
        remotes = {form: RemotePolicy(addresses[kind], session_call=call) for form, (call, kind) in FORMS.items()}
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
                server = servers[FORMS[form][1]]
                t, c, c_server = time.perf_counter(), time.process_time(), cpu_s(server.pid)
                b = rollout(env, remote, scenario, seed=i)
                rates[form].append((b.num_steps - 1) / (time.perf_counter() - t))
                cpu[form][0] += time.process_time() - c
                cpu[form][1] += cpu_s(server.pid) - c_server
                rtts[form] += remote._latencies
                same = same and rollouts_equal(a, b)
        # the client's own message cost per step
        obs, _ = env.reset(seed=0)
        facts = protocol.episode_facts(env.scenario_info())
        n = 2000
        t = time.perf_counter()
        for _ in range(n):
            msg = protocol.observation(facts, "0" * 32, obs)
        build_us = (time.perf_counter() - t) / n * 1e6
        command = protocol.encode_action(np.zeros(2, np.float32), facts.action_type, msg.t_us)
        t = time.perf_counter()
        for _ in range(n):
            protocol.decode_command(command, facts.action_type, facts.action_space, "")
        decode_us = (time.perf_counter() - t) / n * 1e6
        transport = remotes["inline"].transport
        for remote in remotes.values():
            remote.close()
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(timeout=10)
        env.close()

    act_ms = np.asarray(local.times) * 1e3
    inp = statistics.median(rates["in"])
    print(f"scenario {scenario.id}: {scenario.num_agents} agents, {env.unwrapped.plan.log.num_steps} steps; policy {args.policy!r}; "
          f"{args.episodes} episodes of each; load average {load0:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"rollouts identical to in process over every transport: {same}; the policy's own act in process: median {np.median(act_ms):.3f} ms")
    print(f"{'lock-step transport':42s} {'steps/s':>8s} {'x slower':>8s} {'(paired)':>8s} {'rt p50':>7s} {'rt p99':>7s} {'twin CPU':>8s} {'server':>7s} [us/step]")
    print(f"{'in process':42s} {inp:8,.0f} {1:8.2f} {1:8.2f} {'':7s} {'':7s} {cpu['in'][0] / steps * 1e6:8.0f} {'':7s}")
    for form in FORMS:
        rem = statistics.median(rates[form])
        paired = statistics.median(x / y for x, y in zip(rates["in"], rates[form]))
        ms = np.asarray(rtts[form]) * 1e3
        label = LABELS[form] + (f" ({transport})" if form == "inline" else "")
        print(f"{label:42s} {rem:8,.0f} {inp / rem:8.2f} {paired:8.2f} {np.median(ms):7.3f} {np.percentile(ms, 99):7.3f} "
              f"{cpu[form][0] / steps * 1e6:8.0f} {cpu[form][1] / steps * 1e6:7.0f}")
    rem = statistics.median(rates["inline"])
    print(f"remote (default transport) {rem:,.0f} steps/s against {inp:,.0f} in process: {inp / rem:.2f}x slower (target within 3x); "
          f"round trip (ms) is the twin's wait for a reply, x slower (paired) the median of per-episode ratios")
    print(f"client message cost per step: Observation built in {build_us:.1f} us, Command decoded in {decode_us:.1f} us; "
          f"sizes {msg.ByteSize()} B and {command.ByteSize()} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
