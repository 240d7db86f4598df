"""The example C++ planner's env steps/s over each lock-step transport: frames vs gRPC.

Usage: python examples/cpp_planner/bench.py build/cpp_planner/cpp_planner [--episodes 10] [--data ../shared/data]

What is timed (as in ``benchmarks/bench_remote.py``): whole episodes (``sim.runner.rollout``) of
the Waymo JSON scenario with the most agents (the sample's busiest when the data is absent),
``state`` observations, continuous actions, the C++ planner in its own process, one process per
transport: frames on a Unix socket (``--socket``) and on TCP loopback (``--frames-port 0``), the
gRPC ``Session`` call and unary ``Step`` calls (``--unary-only``). Every form runs in turn on
each episode. Printed per transport: the median steps/s and its ratio to gRPC's ``Session``
call, the round trip (median, p99 [ms]), CPU per env step of the twin and of the planner (/proc;
Linux); whether the rollouts of all forms are identical and which transport each client used.
Wall-clock figures depend on the machine's load: the load average is printed.
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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import numpy as np  # noqa: E402

import sim  # noqa: E402
from bench_remote import DEFAULT_DATA, busiest, cpu_s  # noqa: E402
from harness.remote import RemotePolicy  # noqa: E402
from sim.runner import rollout, rollouts_equal  # noqa: E402

#: form: (planner flags, ``RemotePolicy(session_call=...)``, the transport the client must report, label).
FORMS = {
    "frames-unix": (["--socket", "{socket}"], "inline", "frames-unix", "frames, Unix socket"),
    "frames-tcp": (["--frames-port", "0"], "inline", "frames-tcp", "frames, TCP loopback"),
    "grpc": (["--port", "0"], "inline", "session", "gRPC Session call"),
    "grpc-unary": (["--port", "0", "--unary-only"], "off", "unary", "gRPC unary Step"),
}
BASE = "grpc"
#: How long each planner has to print the address it serves on [s].
STARTUP_S = 10.0


def first_line(proc: subprocess.Popen, timeout_s: float) -> str | None:
    """The first line ``proc`` prints (``""`` when it exits first), None when none comes within
    ``timeout_s`` [s]."""
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return line[0] if line else None


def stop(procs: dict[str, subprocess.Popen]) -> None:
    """Terminate the planner processes and wait for them (killed when SIGTERM is not enough)."""
    for proc in procs.values():
        proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start(binary: str, tmp: str, timeout_s: float = STARTUP_S) -> tuple[dict[str, subprocess.Popen], dict[str, str]]:
    """One planner process per form and the address each prints (within ``timeout_s`` [s]);
    ``SystemExit`` naming the form when one does not start, with every process started stopped."""
    procs: dict[str, subprocess.Popen] = {}
    addresses = {}
    try:
        for form, (flags, _, _, _) in FORMS.items():
            argv = [binary, *(f.replace("{socket}", os.path.join(tmp, f"{form}.sock")) for f in flags)]
            procs[form] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout_s
        for form, proc in procs.items():
            line = first_line(proc, max(deadline - time.monotonic(), 0.0))
            if line is None:
                raise SystemExit(f"the {form} planner printed nothing within {timeout_s:g} s")
            match = re.search(r"serving (?:frames )?on (\S+)", line)
            if match is None:
                raise SystemExit(f"the {form} planner printed {line!r}")
            addresses[form] = match.group(1)
    except BaseException:
        stop(procs)
        raise
    return procs, addresses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary", help="the built cpp_planner")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()

    scenario = busiest(args.data)
    env = sim.DriveTwinEnv(scenario=scenario, config=sim.EnvConfig.from_mapping({"observation": ["state"], "action": "continuous"}))
    tmp = tempfile.mkdtemp(prefix="cppbench-", dir="/tmp")  # short: a socket path has at most 107 bytes
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs, addresses = start(args.binary, tmp)
        remotes = {form: RemotePolicy(addresses[form], session_call=FORMS[form][1]) for form in FORMS}
        load0 = os.getloadavg()[0]
        warm = {form: rollout(env, remote, scenario, seed=0) for form, remote in remotes.items()}
        same = all(rollouts_equal(warm[BASE], b) for b in warm.values())
        rates: dict[str, list[float]] = {form: [] for form in FORMS}
        cpu = {form: [0.0, 0.0] for form in FORMS}  # twin, planner [s]
        rtts: dict[str, list[float]] = {form: [] for form in FORMS}
        steps = 0
        for i in range(args.episodes):
            first = None
            for form, remote in remotes.items():
                t, c, c_planner = time.perf_counter(), time.process_time(), cpu_s(procs[form].pid)
                b = rollout(env, remote, scenario, seed=i)
                rates[form].append((b.num_steps - 1) / (time.perf_counter() - t))
                cpu[form][0] += time.process_time() - c
                cpu[form][1] += cpu_s(procs[form].pid) - c_planner
                rtts[form] += remote._latencies
                first = b if first is None else first
                same = same and rollouts_equal(first, b)
            steps += first.num_steps - 1
        used = {form: remote.transport for form, remote in remotes.items()}
        for remote in remotes.values():
            remote.close()
    finally:
        stop(procs)
        env.close()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"scenario {scenario.id}: {scenario.num_agents} agents; {args.episodes} episodes of each; "
          f"load average {load0:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    verified = all(used[form] == FORMS[form][2] for form in FORMS)
    print(f"rollouts identical over every transport: {same}; each client used its transport: {verified} ({used})")
    print(f"{'lock-step transport':22s} {'steps/s':>8s} {'x ' + BASE:>7s} {'rt p50':>7s} {'rt p99':>7s} {'twin CPU':>9s} {'planner':>8s}")
    print(f"{'':22s} {'':>8s} {'':>7s} {'[ms]':>7s} {'[ms]':>7s} {'[us/step]':>9s} {'':>8s}")
    base = statistics.median(rates[BASE])
    for form, (_, _, _, label) in FORMS.items():
        rate, ms = statistics.median(rates[form]), np.asarray(rtts[form]) * 1e3
        print(f"{label:22s} {rate:8,.0f} {rate / base:7.2f} {np.median(ms):7.3f} {np.percentile(ms, 99):7.3f} "
              f"{cpu[form][0] / steps * 1e6:9.0f} {cpu[form][1] / steps * 1e6:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
