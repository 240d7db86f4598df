"""Ego dynamics step time: the kinematic bicycle and the wheeled pybullet vehicle.

Usage: python benchmarks/bench_dynamics.py [--runs 5] [--dt 0.1]

Each run drives a gentle slalom (0.3 m/s2, steering 0.1 sin(t)) from 10 m/s on a flat road of
friction 0.9 and times ``step`` per call; the figure is the median over the runs of each run's
mean. As a reference measured in the same run, a bare ``resetBasePositionAndOrientation`` call
(the one pybullet call the bicycle makes per step). The bullet vehicle steps the physics
``round(dt / (1/240))`` times per call, so its time is also given per substep.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.dynamics import EgoState, VehicleParams, make  # noqa: E402
from sim.dynamics.bullet_vehicle import SUBSTEP_S  # noqa: E402


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence pybullet's C-level banners (file descriptors 1 and 2)."""
    sys.stdout.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _client() -> Any:
    with _quiet():
        import pybullet
        from pybullet_utils.bullet_client import BulletClient

        client = BulletClient(connection_mode=pybullet.DIRECT)
    client.setGravity(0.0, 0.0, -9.81)
    shape = client.createCollisionShape(client.GEOM_BOX, halfExtents=[2000.0, 2000.0, 0.5])
    road = client.createMultiBody(baseMass=0, baseCollisionShapeIndex=shape, basePosition=[0.0, 0.0, -0.5])
    client.changeDynamics(road, -1, lateralFriction=0.9)
    return client


def _time_model(client: Any, name: str, steps: int, dt: float) -> float:
    """Mean ``step`` time [s] over ``steps`` calls."""
    model = make(name)
    model.reset(client, EgoState(0.0, 0.0, 0.0, 10.0), VehicleParams(), 0.9)
    commands = [(0.3, 0.1 * math.sin(k * dt)) for k in range(steps)]
    step = model.step
    start = time.perf_counter()
    for accel, steer in commands:
        step(accel, steer, dt)
    return (time.perf_counter() - start) / steps


def _time_bare(client: Any, steps: int) -> float:
    """Mean time [s] of one ``resetBasePositionAndOrientation`` of a box."""
    shape = client.createCollisionShape(client.GEOM_BOX, halfExtents=[2.3, 0.95, 0.8])
    body = client.createMultiBody(baseMass=0, baseCollisionShapeIndex=shape, basePosition=[0.0, 50.0, 0.8])
    move = client.resetBasePositionAndOrientation
    poses = [((0.1 * k, 50.0, 0.8), (0.0, 0.0, math.sin(0.001 * k), math.cos(0.001 * k))) for k in range(steps)]
    start = time.perf_counter()
    for pos, quat in poses:
        move(body, pos, quat)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dt", type=float, default=0.1, help="env step [s]")
    parser.add_argument("--bicycle-steps", type=int, default=20000)
    parser.add_argument("--bullet-steps", type=int, default=100)
    args = parser.parse_args()

    bare, bicycle, bullet = [], [], []
    for _ in range(args.runs):
        client = _client()
        bare.append(_time_bare(client, args.bicycle_steps))
        bicycle.append(_time_model(client, "bicycle", args.bicycle_steps, args.dt))
        client.disconnect()
        client = _client()  # its own world: the two egos must not meet
        bullet.append(_time_model(client, "bullet", args.bullet_steps, args.dt))
        client.disconnect()

    substeps = max(1, round(args.dt / SUBSTEP_S))
    t_bare, t_bicycle, t_bullet = (statistics.median(t) * 1e6 for t in (bare, bicycle, bullet))
    print(f"ego dynamics step, dt = {args.dt} s, median of {args.runs} runs (us per step)")
    print(f"  reference: bare resetBasePositionAndOrientation  {t_bare:10.2f}")
    print(f"  bicycle                                         {t_bicycle:10.2f}   ({t_bicycle / t_bare:.1f}x the bare call)")
    print(f"  bullet ({substeps} substeps of 1/240 s)               {t_bullet:10.2f}   ({t_bullet / substeps:.1f} per substep)")
    print(f"  ratio bullet / bicycle                          {t_bullet / t_bicycle:10.1f}")


if __name__ == "__main__":
    main()
