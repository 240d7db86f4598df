"""A planner over gRPC on loopback against the same planner in process, measured in the same run.

Usage: python benchmarks/bench_remote.py [--episodes 20] [--policy expert] [--data ../shared/data]

What is timed: whole episodes (``sim.runner.rollout``: reset, every step, the rollout record) of
the ``expert`` on ``state`` observations, in the Waymo JSON scenario with the most agents (the
sample's busiest scenario when ../shared/data is absent), log-replay agents, the kinematic
bicycle. In process: the policy is called directly. Remote: the same policy served by
``drivetwin serve-policy`` in its own process, driven lock-step by ``RemotePolicy`` over
127.0.0.1. Printed:

- env steps/s both ways (median over the episodes, run alternately) and their ratio (target: remote
  within 3x of in process);
- the per-step round trip of ``Step`` (median, p99, max), the in-process ``act`` time beside it,
  and the client's own message cost (building the ``Observation`` and decoding the ``Command``);
- the size of one ``Observation`` and one ``Command`` [bytes];
- CPU time per env step in process against the twin's plus the server's with the planner
  remote (/proc; Linux), which does not depend on the machine's load as wall time does.

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
    server = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "serve-policy", args.policy, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    try:
        line = server.stdout.readline()
        address = re.search(r"on (\S+:\d+)", line).group(1)
        local = Timed(make_policy(args.policy))
        remote = RemotePolicy(address)
        rollout(env, local, scenario, seed=0)  # warm: plans, caches, the connection
        rollout(env, remote, scenario, seed=0)
        local.times.clear()
        rtts: list[float] = []
        in_rates, remote_rates, same = [], [], True
        cpu = {"in": 0.0, "client": 0.0, "server": 0.0}
        steps = 0
        for i in range(args.episodes):  # interleaved episodes: both see the same machine load
            t, c = time.perf_counter(), time.process_time()
            a = rollout(env, local, scenario, seed=i)
            in_rates.append((a.num_steps - 1) / (time.perf_counter() - t))
            cpu["in"] += time.process_time() - c
            t, c, c_server = time.perf_counter(), time.process_time(), cpu_s(server.pid)
            b = rollout(env, remote, scenario, seed=i)
            remote_rates.append((b.num_steps - 1) / (time.perf_counter() - t))
            cpu["client"] += time.process_time() - c
            cpu["server"] += cpu_s(server.pid) - c_server
            steps += b.num_steps - 1
            rtts += remote._latencies
            same = same and rollouts_equal(a, b)
        # the client's own message cost per step
        obs, _ = env.reset(seed=0)
        facts = protocol.episode_facts(env.scenario_info())
        n = 2000
        t = time.perf_counter()
        for _ in range(n):
            msg = protocol.observation(facts, remote.session, obs)
        build_us = (time.perf_counter() - t) / n * 1e6
        command = protocol.encode_action(np.zeros(2, np.float32), facts.action_type, msg.t_us)
        t = time.perf_counter()
        for _ in range(n):
            protocol.decode_command(command, facts.action_type, facts.action_space, "")
        decode_us = (time.perf_counter() - t) / n * 1e6
        remote.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
        env.close()

    ms = np.asarray(rtts) * 1e3
    act_ms = np.asarray(local.times) * 1e3
    inp, rem = statistics.median(in_rates), statistics.median(remote_rates)
    print(f"scenario {scenario.id}: {scenario.num_agents} agents, {env.unwrapped.plan.log.num_steps} steps; policy {args.policy!r}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"env steps/s, state observations: in process {inp:,.0f}, remote {rem:,.0f}: remote at {rem / inp:.2f}x "
          f"of in process ({inp / rem:.2f}x slower; target within 3x); rollouts identical: {same}")
    print(f"Step round trip on loopback: median {np.median(ms):.3f} ms, p99 {np.percentile(ms, 99):.3f} ms, "
          f"max {ms.max():.3f} ms over {ms.size} steps (the policy's own act in process: median {np.median(act_ms):.3f} ms)")
    us = {k: v / steps * 1e6 for k, v in cpu.items()}
    print(f"CPU per env step (load-independent): in process {us['in']:.0f} us; remote {us['client']:.0f} us in the twin + "
          f"{us['server']:.0f} us in the server = {us['client'] + us['server']:.0f} us "
          f"({(us['client'] + us['server']) / us['in']:.2f}x; the twin's own share {us['client'] / us['in']:.2f}x)")
    print(f"client message cost per step: Observation built in {build_us:.1f} us, Command decoded in {decode_us:.1f} us; "
          f"sizes {msg.ByteSize()} B and {command.ByteSize()} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
