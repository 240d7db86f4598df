"""Env steps per second on the real Waymo JSON scenario with the most agents (single process).

Usage: python benchmarks/bench_env.py [--runs 5] [--steps 3000] [--data ../shared/data] [--only-ids]

What is timed: ``gymnasium.make("drivetwin/Replay-v0", ...)`` with log-replay agents, the
kinematic bicycle, continuous zero actions (the ego coasts), terminations off so that every
episode runs the log's full length, and resets included (``reset()`` at every episode's end).
Configurations: ``state`` observations; ``state`` + ``lidar`` with 1024 beams; ``state`` +
``bev`` 84x84. Each figure is the median over ``--runs`` runs. Also printed:

- the reset time on a known scenario (median of 200), and the first (cold) reset, which builds
  the road mesh and the scenario's plan;
- pybullet's raw cost of one step's engine work: ``resetBasePositionAndOrientation`` for every
  agent box + ``performCollisionDetection`` + ``getContactPoints``, and the ratio of the env's
  step time to it (the distance to the engine's limit).

Every registered env id (``sim.ENV_IDS``) is timed the same way on ``state`` observations,
beside highway-env's ``highway-fast-v0`` (random discrete actions, resets included) in the same
run when highway-env is installed, the multi-agent env's agent-steps/s with every vehicle
controlled (``sim.multi``, the rest reactive), ``Reactive-v0`` driven by the ``expert`` (the ego on
its log, so the agents replay wherever nothing holds them back), and ``Reactive-v0``'s ratio to
highway-fast-v0 (the target is >= 40x), ``Reactive-v0`` with the agents on their numpy reference
path (``sim.agent_kernels`` off), and the wall time of a new process's first ``Reactive-v0``
episode (what each Ray worker pays once) with the kernels compiled from an empty numba cache,
loaded from the cache, and on the numpy path, and after ``agent_kernels.warm()`` (on an empty
cache and on a filled one, with warm()'s own time);
without highway-env the ratio is taken to ``Replay-v0`` and says so. ``--only-ids`` prints
only that table.

Wall-clock figures depend on what else runs on the machine, so CPU-time figures
(``time.process_time``) are printed beside them, with the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium  # noqa: E402
import numpy as np  # noqa: E402

import scenarios  # noqa: E402
import sim  # noqa: E402,F401  (registers the env ids)
from sim import agent_kernels  # noqa: E402
from sim.agents import ReactiveAgents  # noqa: E402
from sim.multi import MultiAgentTwinEnv  # noqa: E402
from sim.policies import make_policy  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

CONFIGS: dict[str, dict[str, Any]] = {
    "state": {"observation": ["state"]},
    "state+lidar1024": {"observation": ["state", "lidar"], "lidar_beams": 1024},
    "state+bev84": {"observation": ["state", "bev"], "bev_size": (84, 84)},
}
COMMON = {"terminate_on_collision": False, "terminate_on_offroad": False, "terminate_on_goal": False}


def busiest_waymo(data: Path) -> scenarios.Scenario:
    """The Waymo JSON scenario with the most agents."""
    found = []
    for path in sorted((data / "waymo_json").glob("*.json")):
        found.extend(scenarios.load(path))
    if not found:
        raise SystemExit(f"no Waymo JSON scenario under {data / 'waymo_json'}")
    return max(found, key=lambda s: (s.num_agents, s.id))


def run(env: gymnasium.Env, steps: int, action: Any = None) -> tuple[float, float, int]:
    """(wall s, cpu s, resets) for ``steps`` steps of ``action`` (default zeros (2,)) with resets at episode ends."""
    if action is None:
        action = np.zeros(2, np.float32)
    env.reset(seed=0)
    resets = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
            resets += 1
    return time.perf_counter() - wall, time.process_time() - cpu, resets


def highway_fast(steps: int) -> tuple[float, float] | None:
    """(steps/s wall, steps/s cpu) of highway-env's ``highway-fast-v0``, None without highway-env."""
    try:
        import highway_env
    except ImportError:
        return None
    gymnasium.register_envs(highway_env)
    env = gymnasium.make("highway-fast-v0")
    env.action_space.seed(0)
    env.reset(seed=0)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    env.close()
    return steps / wall, steps / cpu


FIRST_EPISODE = """
import sys, time
t0 = time.perf_counter()
import gymnasium, numpy as np
import sim
from sim import agent_kernels
from sim.agents import ReactiveAgents
sys.path.insert(0, {bench!r})
from bench_env import COMMON, CONFIGS, busiest_waymo
from pathlib import Path
ReactiveAgents.compiled = {compiled}
env = gymnasium.make("drivetwin/Reactive-v0", scenario=busiest_waymo(Path({data!r})), config={{**COMMON, **CONFIGS["state"]}})
tw, cw = time.perf_counter(), time.process_time()
if {warm}:
    agent_kernels.warm()
t1, c1 = time.perf_counter(), time.process_time()
env.reset(seed=0)
zero = np.zeros(2, np.float32)
while not any(env.step(zero)[2:4]):
    pass
print(time.perf_counter() - t0, t1 - tw, c1 - cw, time.perf_counter() - t1, time.process_time() - c1)
"""

#: (label, compiled, warm first, a new numba cache): in this order, each in a new process
FIRST_EPISODES = (
    ("empty numba cache (compiling)", True, False, True),
    ("numba cache", True, False, False),
    ("numpy reference", False, False, False),
    ("warm() on an empty cache, then", True, True, True),
    ("warm() on the cache, then", True, True, False),
)


def child(code: str, env: dict[str, str], what: str) -> str:
    """The stdout of ``python -c code``; where it fails, its stderr is printed and the benchmark stops."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"bench_env: the child process timing {what} failed (exit code {out.returncode}; its stderr above)")
    return out.stdout


def first_episode(data: Path) -> None:
    """Wall time of a new process's first ``Reactive-v0`` episode (what a Ray worker pays once): with
    the agent kernels compiled from scratch (an empty numba cache), loaded from the cache, and on
    the numpy reference path; and with ``agent_kernels.warm()`` first (as the workers do), on an
    empty cache and on a filled one, and what ``warm()`` itself took."""
    import tempfile

    from sim import agent_kernels

    if not agent_kernels.AVAILABLE:
        print("  numba not installed: the agents run the numpy reference path")
        return
    figures = []
    with tempfile.TemporaryDirectory() as root:
        cache = root
        for n, (label, compiled, warm, new_cache) in enumerate(FIRST_EPISODES):
            if new_cache:
                cache = os.path.join(root, str(n))
            code = FIRST_EPISODE.format(bench=str(Path(__file__).resolve().parent), compiled=compiled, warm=warm,
                                        data=str(data))
            out = child(code, {**os.environ, "NUMBA_CACHE_DIR": cache}, f"the first episode ({label})")
            total, warm_s, warm_cpu, episode, episode_cpu = (float(v) for v in out.split())
            warmed = f" warm() {warm_s:.2f} s (cpu {warm_cpu:.2f}) +" if warm else ""
            figures.append(f"{label}{warmed} {episode:.2f} s (cpu {episode_cpu:.2f}; {total:.2f} s with imports)")
    print("  first Reactive-v0 episode of a new process (reset + 90 steps, wall and cpu s): " + "; ".join(figures))


def env_ids(scenario: scenarios.Scenario, runs: int, steps: int) -> None:
    """Steps/s of every registered env id (``state`` observations) and of ``highway-fast-v0``."""
    print("every env id (state observations, zero actions, KEEP_LANE for Discrete-v0, resets included):")
    cpu_of: dict[str, float] = {}
    for env_id in sim.ENV_IDS:
        env = gymnasium.make(env_id, scenario=scenario, config={**COMMON, **CONFIGS["state"]})
        action = 0 if env_id.endswith("Discrete-v0") else np.zeros(env.action_space.shape, np.float32)
        walls, cpus = [], []
        for _ in range(runs):
            wall, cpu, _ = run(env, steps, action)
            walls.append(steps / wall)
            cpus.append(steps / cpu)
        env.close()
        cpu_of[env_id] = statistics.median(cpus)
        print(f"  {env_id:26s} {statistics.median(walls):8.0f} steps/s wall  {cpu_of[env_id]:8.0f} steps/s cpu")
    multi_walls, multi_cpus, controlled = [], [], 0
    for _ in range(runs):
        env = MultiAgentTwinEnv(scenario, {**COMMON, **CONFIGS["state"], "agents_mode": "reactive"}, controlled="vehicles")
        controlled = len(env.possible_agents)
        zero = np.zeros(2, np.float32)
        agent_steps = 0
        env.reset(seed=0)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(max(steps // 10, 30)):
            if not env.agents:
                env.reset()
            env.step({a: zero for a in env.agents})
            agent_steps += len(env.agents) or controlled
        multi_walls.append(agent_steps / (time.perf_counter() - wall))
        multi_cpus.append(agent_steps / (time.process_time() - cpu))
        env.close()
    print(f"  {'MultiAgentTwinEnv':26s} {statistics.median(multi_walls):8.0f} agent-steps/s wall  "
          f"{statistics.median(multi_cpus):8.0f} agent-steps/s cpu  ({controlled} vehicles controlled, the rest reactive)")
    # Reactive-v0 with the expert ego on its log (trajectory actions): the agents replay unless held back
    env = gymnasium.make("drivetwin/Reactive-v0", scenario=scenario, config={**COMMON, **CONFIGS["state"], "action": "trajectory"})
    expert = make_policy("expert")
    expert_walls, expert_cpus = [], []
    for _ in range(runs):
        obs, _ = env.reset(seed=0)
        expert.reset(env.unwrapped.policy_context())
        n = max(steps // 3, 100)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            obs, _, terminated, truncated, _ = env.step(expert.act(obs))
            if terminated or truncated:
                obs, _ = env.reset()
                expert.reset(env.unwrapped.policy_context())
        expert_walls.append(n / (time.perf_counter() - wall))
        expert_cpus.append(n / (time.process_time() - cpu))
    env.close()
    print(f"  {'Reactive-v0, expert ego':26s} {statistics.median(expert_walls):8.0f} steps/s wall  "
          f"{statistics.median(expert_cpus):8.0f} steps/s cpu  (trajectory actions, the expert's own time included)")
    # the same zero-action Reactive-v0 on the agents' numpy reference path (``sim.agent_kernels`` off)
    env = gymnasium.make("drivetwin/Reactive-v0", scenario=scenario, config={**COMMON, **CONFIGS["state"]})
    ReactiveAgents.compiled = False
    try:
        ref = statistics.median(steps / run(env, steps)[1] for _ in range(runs))
    finally:
        ReactiveAgents.compiled = agent_kernels.AVAILABLE
    env.close()
    print(f"  {'Reactive-v0, numpy agents':26s} {ref:8.0f} steps/s cpu  (the agents' numpy reference path; the kernels "
          f"{cpu_of['drivetwin/Reactive-v0'] / ref:.2f}x faster)")
    hw = [highway_fast(max(steps // 20, 50)) for _ in range(runs)]
    reactive = cpu_of["drivetwin/Reactive-v0"]
    if hw[0] is None:
        print(f"  highway-env not installed: Reactive-v0 / Replay-v0 = {reactive / cpu_of['drivetwin/Replay-v0']:.2f} (cpu)")
        return
    hw_wall, hw_cpu = statistics.median(h[0] for h in hw), statistics.median(h[1] for h in hw)
    print(f"  {'highway-fast-v0':26s} {hw_wall:8.1f} steps/s wall  {hw_cpu:8.1f} steps/s cpu")
    print(f"  Reactive-v0 / highway-fast-v0 = {reactive / hw_cpu:.1f}x (cpu; target >= 40x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3000, help="steps per run for `state` (a third for the others)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--only-ids", action="store_true", help="only the table of every env id")
    args = parser.parse_args()

    scenario = busiest_waymo(args.data)
    print(f"scenario {scenario.id}: {scenario.num_agents} agents, {scenario.num_steps} steps at {scenario.dt_us / 1e6:g} s")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {args.runs} runs each, medians\n")
    env_ids(scenario, args.runs, args.steps)
    first_episode(args.data)
    if args.only_ids:
        return
    print()

    results: dict[str, tuple[float, float]] = {}
    for name, extra in CONFIGS.items():
        steps = args.steps if name == "state" else max(args.steps // 3, 100)
        env = gymnasium.make("drivetwin/Replay-v0", scenario=scenario, config={**COMMON, **extra})
        env.reset(seed=0)
        walls, cpus = [], []
        resets = 0
        for _ in range(args.runs):
            wall, cpu, resets = run(env, steps)
            walls.append(steps / wall)
            cpus.append(steps / cpu)
        env.close()
        results[name] = (statistics.median(walls), statistics.median(cpus))
        print(f"{name:18s} {results[name][0]:8.0f} steps/s wall  {results[name][1]:8.0f} steps/s cpu   "
              f"({steps} steps, {resets} resets per run)")

    # reset time and pybullet's raw cost, on the `state` env
    env = gymnasium.make("drivetwin/Replay-v0", scenario=scenario, config={**COMMON, **CONFIGS["state"]})
    base = env.unwrapped
    t0 = time.perf_counter()
    env.reset(seed=0)
    cold = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(200):
        w, c = time.perf_counter(), time.process_time()
        env.reset()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    print(f"\nreset (known scenario) {statistics.median(walls) * 1e3:7.3f} ms wall  {statistics.median(cpus) * 1e3:7.3f} ms cpu;"
          f" first (cold) reset {cold * 1e3:.1f} ms")

    # the env's pure step time (no resets) on the same env, against the raw engine work
    action = np.zeros(2, np.float32)
    step_w, step_c, raw_w = [], [], []
    for _ in range(args.runs):
        env.reset(seed=0)
        n = 0
        w, c = time.perf_counter(), time.process_time()
        while True:
            _, _, terminated, truncated, _ = env.step(action)
            n += 1
            if terminated or truncated:
                break
        step_w.append((time.perf_counter() - w) / n)
        step_c.append((time.process_time() - c) / n)
        plan = base.plan
        k = plan.log.num_steps // 2
        state = plan.stack[k]
        raw_w.append(base.world.raw_step_cost(state[0], state[1], state[2], repeats=200))
    env.close()
    step, step_cpu, raw = statistics.median(step_w), statistics.median(step_c), statistics.median(raw_w)
    bodies = int((base.world.bodies >= 0).sum())
    print(f"step (no resets)       {step * 1e6:7.1f} us wall  {step_cpu * 1e6:7.1f} us cpu")
    print(f"pybullet raw step      {raw * 1e6:7.1f} us wall  (move {bodies} boxes + performCollisionDetection + getContactPoints)")
    print(f"ratio env step / raw   {step / raw:7.2f}")

    # the lidar's engine cost alone: one rayTestBatch of 1024 beams amid the scene's boxes
    env = gymnasium.make("drivetwin/Replay-v0", scenario=scenario, config={**COMMON, **CONFIGS["state+lidar1024"]})
    base = env.unwrapped
    env.reset(seed=0)
    for _ in range(base.plan.log.num_steps // 2):
        env.step(action)
    ego = base.ego
    dirs = base.sensors.lidar_dirs
    origin = np.array([ego.x, ego.y])
    cfg = base.config
    times = []
    for _ in range(args.runs):
        w = time.perf_counter()
        for _ in range(20):
            base.world.lidar(origin, dirs, cfg.lidar_height_m, cfg.lidar_range_m)
        times.append((time.perf_counter() - w) / 20)
    env.close()
    print(f"rayTestBatch 1024 beams {statistics.median(times) * 1e6:6.0f} us wall (the lidar's engine cost per step)")


if __name__ == "__main__":
    main()
