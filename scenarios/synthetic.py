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
    Signals,
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


def _lane(lane_id: str, a: tuple[float, float], b: tuple[float, float], width: float, limit: float, **links: tuple[str, ...]) -> Lane:
    """A straight lane from ``a`` to ``b`` [m] with both boundaries ``width`` [m] apart."""
    c = np.column_stack([np.linspace(a[0], b[0], 11), np.linspace(a[1], b[1], 11)])
    d = np.subtract(b, a) / np.hypot(*np.subtract(b, a))
    n = np.array([-d[1], d[0]]) * width / 2
    return Lane(lane_id, c, left_boundary=c + n, right_boundary=c - n, speed_limit=limit, **links)


#: ``crossroads``' geometry [m]: the ego's stop line, the crossing road's centre and its stop line.
CROSSROADS_EGO_STOP_X = 40.0
CROSSROADS_CROSS_X = 50.0
CROSSROADS_CROSS_STOP_Y = -10.0


def crossroads(
    agents: Sequence[AgentSpec],
    *,
    ego_signal: int | Sequence[int] | None = None,
    cross_signal: int | Sequence[int] | None = None,
    stop_sign: bool = False,
    num_steps: int = 91,
    lane_width: float = 3.5,
    speed_limit: float = 10.0,
    scenario_id: str = "crossroads",
) -> Scenario:
    """``agents`` (the first is the ego) at two one-lane roads crossing: the ego's along +x
    through y = 0, the other along +y through x = ``CROSSROADS_CROSS_X``.

    Each road is three lanes chained by predecessors and successors: ``west_in`` (x up to
    ``CROSSROADS_EGO_STOP_X``), ``west_through`` (the junction, x 40 to 60), ``west_out``;
    ``south_in`` (y up to ``CROSSROADS_CROSS_STOP_Y``), ``south_through`` (y -10 to 10),
    ``south_out``. The junction lanes start at their stop lines. ``ego_signal`` /
    ``cross_signal`` (a ``SignalState`` per step, or one for all): signals on the junction
    lanes, stop points on their stop lines. ``stop_sign``: a stop sign at (40, -3) controlling
    ``west_through`` (the crossing road has the priority).
    """
    w, v = lane_width, speed_limit
    x0, xc, ys = CROSSROADS_EGO_STOP_X, CROSSROADS_CROSS_X, CROSSROADS_CROSS_STOP_Y
    lanes = (
        _lane("west_in", (-60.0, 0.0), (x0, 0.0), w, v, successors=("west_through",)),
        _lane("west_through", (x0, 0.0), (2 * xc - x0, 0.0), w, v, predecessors=("west_in",), successors=("west_out",)),
        _lane("west_out", (2 * xc - x0, 0.0), (250.0, 0.0), w, v, predecessors=("west_through",)),
        _lane("south_in", (xc, -90.0), (xc, ys), w, v, successors=("south_through",)),
        _lane("south_through", (xc, ys), (xc, -ys), w, v, predecessors=("south_in",), successors=("south_out",)),
        _lane("south_out", (xc, -ys), (xc, 90.0), w, v, predecessors=("south_through",)),
    )
    h = w / 2 + 1.0
    features = [
        MapFeature("drivable-ew", FeatureKind.DRIVABLE_AREA, [[-60.0, -h], [250.0, -h], [250.0, h], [-60.0, h]]),
        MapFeature("drivable-ns", FeatureKind.DRIVABLE_AREA, [[xc - h, -90.0], [xc + h, -90.0], [xc + h, 90.0], [xc - h, 90.0]]),
    ]
    if stop_sign:
        features.append(MapFeature("stop", FeatureKind.STOP_SIGN, [[x0, -3.0]], lane_ids=("west_through",)))
    out = scene(agents, num_steps=num_steps, road=RoadMap(lanes, tuple(features)), scenario_id=scenario_id)
    rows = [(lane, np.broadcast_to(np.asarray(st, np.int8), (num_steps,)), stop)
            for lane, st, stop in (("west_through", ego_signal, (x0, 0.0)), ("south_through", cross_signal, (xc, ys))) if st is not None]  # fmt: skip
    if not rows:
        return out
    signals = Signals(np.array([r[0] for r in rows]), np.array([r[1] for r in rows], np.int8), np.array([[*r[2], 0.0] for r in rows]))
    return out.replace(signals=signals)


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
