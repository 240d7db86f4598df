"""Hand-built scenes: straight multi-lane roads and agents with closed-form motion.

Tests and examples build small scenes whose right answers are known (a gap, a TTC, a stopping
distance). Each agent is given by its initial state and a constant acceleration, so every
position is a closed-form value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scenarios.model import (
    AgentType,
    FeatureKind,
    Lane,
    MapFeature,
    Provenance,
    RoadMap,
    Scenario,
    Tracks,
)


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """An agent on a straight road, moving along +x.

    Attributes:
        id: agent id.
        x, y: initial centre [m].
        speed: initial speed along +x [m/s] (negative drives towards -x).
        accel: constant acceleration [m/s2]; speed stops at 0 (no reversing) when braking.
        yaw: heading [rad].
        length, width, height: box [m].
        agent_type: ``AgentType``.
        valid_from, valid_to: steps where the agent is observed, ``[valid_from, valid_to)``.
    """

    id: str
    x: float
    y: float = 0.0
    speed: float = 0.0
    accel: float = 0.0
    yaw: float = 0.0
    length: float = 4.5
    width: float = 1.9
    height: float = 1.5
    agent_type: AgentType = AgentType.VEHICLE
    valid_from: int = 0
    valid_to: int | None = None


def straight_road(
    num_lanes: int = 2, length: float = 300.0, lane_width: float = 3.5, x0: float = -50.0, speed_limit: float = 20.0
) -> RoadMap:
    """Parallel lanes along +x; lane k's centre is at y = k * lane_width, lane 0 rightmost.

    Each lane has both boundaries, the road has two edges and a drivable-area polygon.
    """
    lanes = []
    xs = np.linspace(x0, x0 + length, 31)
    for k in range(num_lanes):
        y = k * lane_width
        lanes.append(
            Lane(
                id=f"lane{k}",
                centerline=np.column_stack([xs, np.full_like(xs, y)]),
                left_boundary=np.column_stack([xs, np.full_like(xs, y + lane_width / 2)]),
                right_boundary=np.column_stack([xs, np.full_like(xs, y - lane_width / 2)]),
                speed_limit=speed_limit,
                left_neighbors=(f"lane{k + 1}",) if k + 1 < num_lanes else (),
                right_neighbors=(f"lane{k - 1}",) if k > 0 else (),
            )
        )
    lo, hi = -lane_width / 2, (num_lanes - 0.5) * lane_width
    x1 = x0 + length
    features = [
        MapFeature("edge-right", FeatureKind.ROAD_EDGE, [[x0, lo], [x1, lo]]),
        MapFeature("edge-left", FeatureKind.ROAD_EDGE, [[x0, hi], [x1, hi]]),
        MapFeature("drivable", FeatureKind.DRIVABLE_AREA, [[x0, lo], [x1, lo], [x1, hi], [x0, hi]]),
    ]
    features += [
        MapFeature(f"line{k}", FeatureKind.ROAD_LINE, [[x0, lo + k * lane_width], [x1, lo + k * lane_width]], "broken_white")
        for k in range(1, num_lanes)
    ]
    return RoadMap(tuple(lanes), tuple(features))


def constant_accel_track(spec: AgentSpec, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, v) along the heading at times ``t_s`` [s], stopping at v = 0 when braking."""
    v0, a = spec.speed, spec.accel
    if a < 0 < v0:
        t_stop = v0 / -a
        t = np.minimum(t_s, t_stop)
        s = v0 * t + 0.5 * a * t**2
        v = np.maximum(v0 + a * t_s, 0.0)
    else:
        s = v0 * t_s + 0.5 * a * t_s**2
        v = v0 + a * t_s
    return s, v


def scene(
    agents: Sequence[AgentSpec],
    *,
    ego: str | None = None,
    num_steps: int = 91,
    dt_s: float = 0.1,
    road: RoadMap | None = None,
    scenario_id: str = "synthetic",
) -> Scenario:
    """A scenario of ``agents`` on ``road`` (default: ``straight_road()``); the ego is the first agent unless named."""
    t_s = np.arange(num_steps) * dt_s
    n = len(agents)
    x, y, yaw, vx, vy = (np.zeros((n, num_steps)) for _ in range(5))
    valid = np.zeros((n, num_steps), bool)
    for i, spec in enumerate(agents):
        s, v = constant_accel_track(spec, t_s)
        c, si = np.cos(spec.yaw), np.sin(spec.yaw)
        x[i], y[i] = spec.x + s * c, spec.y + s * si
        vx[i], vy[i] = v * c, v * si
        yaw[i] = spec.yaw
        valid[i, spec.valid_from : spec.valid_to] = True
    tracks = Tracks(
        agent_ids=[a.id for a in agents],
        agent_types=[int(a.agent_type) for a in agents],
        length=[a.length for a in agents],
        width=[a.width for a in agents],
        height=[a.height for a in agents],
        x=x,
        y=y,
        z=np.zeros((n, num_steps)),
        yaw=yaw,
        vx=vx,
        vy=vy,
        valid=valid,
    )
    ego_index = 0 if ego is None else [a.id for a in agents].index(ego)
    return Scenario(
        id=scenario_id,
        provenance=Provenance("synthetic", "<synthetic>", scenario_id, "hand-built straight road [m]"),
        t_us=np.round(t_s * 1e6).astype(np.int64),
        tracks=tracks,
        ego_index=ego_index,
        road_map=road or straight_road(),
    )
