"""The control laws every driver in the twin uses: IDM, the leader in a corridor, distance to a path,
pure pursuit and the trajectory tracker.

The leader search is ``corridor_leaders`` (vectorised over many followers' candidates): the
reactive agents call it for all of them at once, the ``idm`` baseline and the discrete lane
follower through ``corridor_leader`` (one follower in its own frame). Distances to corridors come
from ``project_to_paths`` for both. The reactive agents' compiled step (``sim.agent_kernels``)
carries loop copies of ``project_to_paths``, ``corridor_leaders`` and ``idm_acceleration``, held
equal to these bit for bit by ``tests/sim/test_agent_kernels.py`` and ``test_agents_pinned.py``:
change a law here and the kernel with it.

One copy each, shared by the reactive agents (``sim.agents``), the discrete meta-actions
(``sim.actions``) and the baselines (``sim.policies``). ``idm_acceleration`` takes floats (the ego) or numpy arrays (many agents) and
applies the same operations in the same order to both; numpy's vector loops for powers of
arrays may round the last bit differently from the float ``pow``, so an array element can differ
from the float answer by one ulp (each caller gets exactly what its former copy computed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from sim.dynamics.base import VehicleParams

F = TypeVar("F", float, np.ndarray)


@dataclass(frozen=True, slots=True)
class IDMParams:
    """The intelligent driver model's constants.

    Attributes:
        a_max: maximum acceleration [m/s2].
        b_comf: comfortable braking [m/s2] (positive).
        s0: jam distance [m].
        headway: desired time headway [s].
    """

    a_max: float
    b_comf: float
    s0: float
    headway: float

    def __post_init__(self) -> None:
        for name in ("a_max", "b_comf", "headway"):
            if not getattr(self, name) > 0:
                raise ValueError(f"IDMParams.{name} must be positive, got {getattr(self, name)!r}")
        if not self.s0 >= 0:
            raise ValueError(f"IDMParams.s0 must be >= 0, got {self.s0!r}")


#: The baselines' IDM (the ``idm`` policy and the ``discrete`` actions' safe gap).
BASELINE_IDM = IDMParams(a_max=2.0, b_comf=3.0, s0=2.0, headway=1.5)
#: The baselines' leader search: extra corridor half width [m], and how far the corridor goes
#: on straight beyond its last point [m].
BASELINE_CORRIDOR_MARGIN_M = 0.4
BASELINE_LEADER_LOOKAHEAD_M = 150.0


def idm_acceleration(speed: F, gap: F, closing: F, params: IDMParams, v0: F | float = math.inf) -> F:
    """IDM: ``a_max * (1 - (v / v0)^4 - (s* / gap)^2)``, ``s* = s0 + v T + v dv / (2 sqrt(a_max b))``.

    Args:
        speed: v [m/s] (negative speeds count as 0 in the headway and free-road terms).
        gap: bumper-to-bumper distance to the leader [m]; ``inf`` without one (no interaction
            term). Gaps below 0.1 m count as 0.1 m.
        closing: the ego's speed minus the leader's along the path [m/s] (dv).
        params: the model's constants.
        v0: desired speed [m/s]; ``inf`` drops the free-road term (only the interaction remains).
    """
    v = np.maximum(speed, 0.0)
    s_star = params.s0 + v * params.headway + speed * closing / (2 * math.sqrt(params.a_max * params.b_comf))
    return params.a_max * ((1.0 - (v / v0) ** 4) - (np.maximum(s_star, 0.0) / np.maximum(gap, 0.1)) ** 2)


def project_to_paths(
    x: np.ndarray, y: np.ndarray, ax: np.ndarray, ay: np.ndarray, dx: np.ndarray, dy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points (x, y) (P,) [m] against polylines given by their segments: starts (ax, ay) and vectors
    (dx, dy), (P, M) (point p's own path) or (1, M) (one path for all).

    Returns:
        (distance to the nearest segment [m], its index m, the fraction along it in [0, 1]), each (P,).
    """
    len2 = np.maximum(dx * dx + dy * dy, 1e-12)
    px, py = x[:, None] - ax, y[:, None] - ay
    t = np.minimum(np.maximum((px * dx + py * dy) / len2, 0.0), 1.0)  # np.clip, without its overhead
    ex, ey = px - t * dx, py - t * dy
    d2 = ex * ex + ey * ey
    m = np.argmin(d2, axis=1)
    ar = np.arange(len(m))
    return np.sqrt(d2[ar, m]), m, t[ar, m]


def distance_to_path(x: np.ndarray, y: np.ndarray, path: np.ndarray, extend: float) -> np.ndarray:
    """Distance [m] of points (x, y) to a polyline (P, 2), its last segment extended by ``extend`` [m].

    A path of one point (or of equal points) is extended along +x.
    """
    if len(path) >= 2 and np.hypot(*(path[-1] - path[-2])) > 1e-6:
        d = path[-1] - path[-2]
        path = np.vstack([path, path[-1] + d / np.hypot(*d) * extend])
    elif len(path) == 1 or np.allclose(path, path[0]):
        path = np.vstack([path[:1], path[:1] + [extend, 0.0]])
    a, d = path[:-1], np.diff(path, axis=0)
    return project_to_paths(x, y, a[None, :, 0], a[None, :, 1], d[None, :, 0], d[None, :, 1])[0]


def corridor_leaders(
    ahead: np.ndarray,
    lateral: np.ndarray,
    half_lon: np.ndarray,
    half_lat: np.ndarray,
    owner: np.ndarray,
    own_length: np.ndarray | float,
    own_width: np.ndarray | float,
    margin: float,
    num_owners: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The leader search every driver uses: per follower, the nearest candidate ahead whose box
    reaches into the follower's corridor.

    Candidate p (of follower ``owner[p]``) counts when ``ahead > 0`` and ``lateral`` is below its
    half extent across the corridor plus the follower's half width plus ``margin`` [m]; its
    bumper-to-bumper gap is ``ahead - half_lon - own_length / 2``. Among equal gaps the first
    candidate wins.

    Args:
        ahead: (P,) how far the candidate's centre is ahead of its follower's along the corridor [m].
        lateral: (P,) its centre's distance to the corridor [m].
        half_lon, half_lat: (P,) its box's half extents along and across the corridor [m].
        owner: (P,) int, its follower in ``[0, num_owners)``.
        own_length, own_width: the followers' boxes [m], per candidate (P,) or one for all.

    Returns:
        (candidate index of each follower's leader, -1 without one; its gap [m], inf without one),
        each (num_owners,).
    """
    inside = (ahead > 0) & (lateral < half_lat + 0.5 * own_width + margin)
    lead = np.full(num_owners, -1, np.int64)
    gap = np.full(num_owners, math.inf)
    q = inside.nonzero()[0]
    if q.size:
        g = ahead[q] - half_lon[q] - 0.5 * (own_length[q] if np.ndim(own_length) else own_length)
        order = np.lexsort((q, g, owner[q]))
        o = owner[q][order]
        first = np.ones(len(order), bool)
        first[1:] = o[1:] != o[:-1]
        lead[o[first]] = q[order[first]]
        gap[o[first]] = g[order[first]]
    return lead, gap


def corridor_leader(
    x: np.ndarray,
    y: np.ndarray,
    length: np.ndarray,
    width: np.ndarray,
    corridors: Sequence[np.ndarray],
    ego_length: float,
    ego_width: float,
    margin: float,
    extend: float,
) -> tuple[int, float]:
    """The leader of one driver (``corridor_leaders`` in its own frame).

    Everything is in the ego frame (x ahead, y left, the ego's centre at the origin). A road user
    at (x, y) is a candidate when ``x > 0`` and its distance to any of ``corridors`` (polylines
    (P, 2), each extended by ``extend`` [m]) is below the two half widths plus ``margin`` [m]; its
    gap is ``x`` minus the two half lengths.

    Args:
        x, y: (M,) centres [m]; length, width: (M,) their boxes [m].
        corridors: the paths the ego drives (one, or two during a lane change).
        ego_length, ego_width: the ego's box [m].

    Returns:
        (index into ``x`` of the leader, bumper-to-bumper gap [m]), or ``(-1, inf)`` without one.
    """
    fwd = (x > 0).nonzero()[0]
    if not fwd.size:
        return -1, math.inf
    xf, yf = x[fwd], y[fwd]
    lateral = distance_to_path(xf, yf, corridors[0], extend)
    for corridor in corridors[1:]:
        lateral = np.minimum(lateral, distance_to_path(xf, yf, corridor, extend))
    lead, gap = corridor_leaders(xf, lateral, 0.5 * length[fwd], 0.5 * width[fwd], np.zeros(len(fwd), np.int64),
                                 ego_length, ego_width, margin, 1)
    if lead[0] < 0:
        return -1, math.inf
    return int(fwd[lead[0]]), float(gap[0])


def pure_pursuit(path: np.ndarray, lookahead: float, wheelbase: float) -> float:
    """Road-wheel angle [rad] steering the rear axle towards ``path``'s point ``lookahead`` [m] away.

    ``path``: (P, 2) points in the ego frame with the origin at the vehicle's centre; the rear
    axle is taken half a wheelbase behind the centre. Beyond its end the path goes on straight.
    """
    rear = np.array([-0.5 * wheelbase, 0.0])
    rel = np.vstack([[0.0, 0.0], path]) - rear
    d = np.hypot(rel[:, 0], rel[:, 1])
    beyond = (d >= lookahead).nonzero()[0]
    if beyond.size and beyond[0] > 0:
        i = int(beyond[0])
        a, b = rel[i - 1], rel[i]
        # the point between a and b at distance ``lookahead`` from the rear axle
        ab = b - a
        qa, qb, qc = ab @ ab, 2 * a @ ab, a @ a - lookahead**2
        disc = max(qb * qb - 4 * qa * qc, 0.0)
        t = (-qb + math.sqrt(disc)) / (2 * qa) if qa > 0 else 0.0
        target = a + min(max(t, 0.0), 1.0) * ab
    elif beyond.size:
        target = rel[beyond[0]]
    else:
        if len(rel) >= 2 and np.hypot(*(rel[-1] - rel[-2])) > 1e-6:
            u = (rel[-1] - rel[-2]) / np.hypot(*(rel[-1] - rel[-2]))
        else:
            u = np.array([1.0, 0.0])
        # go on straight from the last point until the lookahead circle
        a = rel[-1]
        qb = 2 * a @ u
        qc = a @ a - lookahead**2
        t = (-qb + math.sqrt(max(qb * qb - 4 * qc, 0.0))) / 2
        target = a + t * u
    dist2 = float(target @ target)
    if dist2 < 1e-9:
        return 0.0
    curvature = 2.0 * target[1] / dist2
    return math.atan(wheelbase * curvature)


class TrajectoryTracker:
    """Tracks ego-frame waypoints at the env step: pure pursuit for steering, a speed PI controller.

    Speed: the target is the waypoints' speed at the end of this step, the mean of their first
    two segments' speeds; the first segment is measured from the ego itself, so an along-track
    position error shows up as a speed error and is corrected. ``a = (v_target - v) / TAU +
    K_I * integral(v_target - v)``, the integral clamped to +-2 m/s. Steering: pure pursuit from
    the rear axle (half a wheelbase behind the centre) with lookahead
    ``min(max(LOOKAHEAD_S * v, LOOKAHEAD_MIN_M, wheelbase), LOOKAHEAD_MAX_M)``; wheels straight
    when the waypoints stand still. Waypoints behind the ego (first one at x < 0) mean reversing,
    unless the caller says which way (``command(..., reverse=)``).
    """

    TAU = 0.25  # [s] speed error time constant
    K_I = 0.2  # [1/s2] integral gain
    LOOKAHEAD_S, LOOKAHEAD_MIN_M, LOOKAHEAD_MAX_M = 0.6, 2.5, 25.0

    def __init__(self) -> None:
        self.integral = 0.0

    def reset(self) -> None:
        self.integral = 0.0

    def command(
        self, waypoints: np.ndarray, speed: float, params: VehicleParams, dt: float, reverse: bool | None = None
    ) -> tuple[float, float]:
        """(accel [m/s2], steer [rad]) tracking ``waypoints`` (K, 2) from the current ``speed`` [m/s].

        ``reverse``: whether the waypoints are driven backwards, when the caller knows (the expert
        does, from the log's signed speed); None infers it from the first waypoint, which an ego a
        few centimetres ahead of a crawling trajectory puts behind it.
        """
        wp = np.asarray(waypoints, dtype=np.float64)
        seg = np.diff(np.vstack([[0.0, 0.0], wp]), axis=0)
        seg_len = np.hypot(seg[:, 0], seg[:, 1])
        backwards = wp[0, 0] < -1e-6 if reverse is None else reverse
        forward = -1.0 if backwards else 1.0
        # speed at the end of this step: mean of the first two segments' speeds
        v_end = forward * (seg_len[0] + (seg_len[1] if len(seg_len) > 1 else seg_len[0])) / (2 * dt)
        err = v_end - speed
        self.integral = min(max(self.integral + err * dt, -2.0), 2.0)
        accel = err / self.TAU + self.K_I * self.integral
        accel = min(max(accel, -params.max_decel), params.max_accel)
        if seg_len.sum() < 0.05 * len(seg_len) * dt:  # (nearly) standing: keep the wheels straight
            return accel, 0.0
        # at least a wheelbase from the rear axle, half one ahead of the centre: a bus's 2.5 m from
        # its rear axle is a point beside its own middle, which asks for no steering in a turn
        look = min(max(self.LOOKAHEAD_S * abs(speed), self.LOOKAHEAD_MIN_M, params.wheelbase), self.LOOKAHEAD_MAX_M)
        steer = pure_pursuit(wp, look, params.wheelbase)
        if forward < 0:
            steer = -steer
        return accel, steer
