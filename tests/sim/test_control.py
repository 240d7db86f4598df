"""The shared control laws against closed-form answers: IDM, the corridor leader, distances, pure pursuit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.agents import AGENT_IDM
from sim.control import (
    BASELINE_IDM,
    IDMParams,
    corridor_leader,
    corridor_leaders,
    distance_to_path,
    idm_acceleration,
    pure_pursuit,
)


def test_idm_closed_form_values() -> None:
    p = BASELINE_IDM  # a_max 2, b 3, s0 2 m, T 1.5 s
    assert idm_acceleration(0.0, math.inf, 0.0, p, 10.0) == 2.0  # at rest, free road: a_max
    assert idm_acceleration(10.0, math.inf, 0.0, p, 10.0) == 0.0  # at the desired speed
    assert idm_acceleration(10.0, 17.0, 0.0, p) == 0.0  # at s* = s0 + v T = 17 m, no free-road term
    # closing at 2 m/s adds v dv / (2 sqrt(a b)) = 20 / (2 sqrt 6) m to s*
    s_star = 17.0 + 20.0 / (2 * math.sqrt(6.0))
    assert idm_acceleration(10.0, 20.0, 2.0, p) == pytest.approx(2.0 * (1 - (s_star / 20.0) ** 2))
    assert idm_acceleration(5.0, 0.0, 0.0, p) == pytest.approx(2.0 * (1 - (9.5 / 0.1) ** 2))  # gaps below 0.1 m count as 0.1 m
    assert idm_acceleration(-1.0, math.inf, 0.0, p, 10.0) == 2.0  # a negative speed counts as standing
    with pytest.raises(ValueError, match="b_comf"):
        IDMParams(a_max=1.0, b_comf=0.0, s0=2.0, headway=1.0)


def test_idm_reproduces_the_former_copies_bit_for_bit() -> None:
    """The law replaced three copies: the ``idm`` baseline's and the discrete actions' (floats) and
    the reactive agents' (arrays); each caller must get exactly the bits its copy computed."""
    rng = np.random.default_rng(0)
    v, gap, dv, v0 = rng.uniform(0, 30, 200), rng.uniform(0.05, 80, 200), rng.uniform(-5, 5, 200), rng.uniform(5, 30, 200)
    p = BASELINE_IDM
    for a, b, c, d in zip(v.tolist(), gap.tolist(), dv.tolist(), v0.tolist()):
        free = 1.0 - (max(a, 0.0) / d) ** 4
        s_star = p.s0 + max(a, 0.0) * p.headway + a * c / (2 * math.sqrt(p.a_max * p.b_comf))
        assert float(idm_acceleration(a, b, c, p, d)) == p.a_max * (free - (max(s_star, 0.0) / max(b, 0.1)) ** 2)
        assert float(idm_acceleration(a, b, c, p)) == p.a_max * (1.0 - (max(s_star, 0.0) / max(b, 0.1)) ** 2)
    q = AGENT_IDM
    s_star = q.s0 + v * q.headway + v * dv / (2 * math.sqrt(q.a_max * q.b_comf))
    former = q.a_max * (1 - (v / v0) ** 4 - (np.maximum(s_star, 0.0) / np.maximum(gap, 0.1)) ** 2)
    assert np.array_equal(idm_acceleration(v, gap, dv, q, v0), former)
    # floats and arrays agree to rounding
    scalar = [float(idm_acceleration(a, b, c, q, d)) for a, b, c, d in zip(v.tolist(), gap.tolist(), dv.tolist(), v0.tolist())]
    assert np.allclose(idm_acceleration(v, gap, dv, q, v0), scalar, rtol=1e-14, atol=1e-12)


def test_distance_to_a_path_and_its_extension() -> None:
    path = np.array([[0.0, 0.0], [10.0, 0.0]])
    x, y = np.array([5.0, 15.0, -3.0, 30.0]), np.array([2.0, -1.0, 4.0, 0.0])
    # beside the segment; beside the extension; from the start point (3-4-5); on the extension
    assert distance_to_path(x, y, path, 50.0).tolist() == pytest.approx([2.0, 1.0, 5.0, 0.0])
    assert distance_to_path(np.array([30.0]), np.array([0.0]), path, 5.0)[0] == pytest.approx(15.0)
    assert distance_to_path(np.array([3.0]), np.array([4.0]), np.array([[0.0, 0.0]]), 10.0)[0] == pytest.approx(4.0)


def test_corridor_leader_is_the_nearest_box_ahead_in_the_corridor() -> None:
    """The ego (4.5 x 1.9 m) drives along +x; margin 0.4 m, so a 1.9 m wide box counts up to 2.3 m aside."""
    x = np.array([30.0, 12.0, 9.0, -5.0, 8.0])
    y = np.array([0.0, 2.2, 2.5, 0.0, -0.3])
    length, width = np.full(5, 4.5), np.full(5, 1.9)
    corridor = np.array([[0.0, 0.0], [50.0, 0.0]])
    i, gap = corridor_leader(x, y, length, width, [corridor], 4.5, 1.9, 0.4, 150.0)
    assert i == 4 and gap == pytest.approx(8.0 - 4.5)  # row 2 is 2.5 m aside: outside; row 3 is behind
    i, gap = corridor_leader(x[:4], y[:4], length[:4], width[:4], [corridor], 4.5, 1.9, 0.4, 150.0)
    assert i == 1 and gap == pytest.approx(12.0 - 4.5)  # 2.2 m aside: inside
    # a second corridor (the lane being left) 3.5 m to the left brings row 2 in
    left = corridor + [0.0, 3.5]
    i, _ = corridor_leader(x, y, length, width, [left, corridor], 4.5, 1.9, 0.4, 150.0)
    assert i == 4
    assert corridor_leader(np.array([-1.0]), np.array([0.0]), np.ones(1), np.ones(1), [corridor], 4.5, 1.9, 0.4, 150.0) == (-1, math.inf)


def former_corridor_leader(x, y, length, width, corridors, ego_length, ego_width, margin, extend):
    """The baselines' leader search as it was before ``corridor_leaders`` (a copy, to compare bits)."""
    fwd = np.flatnonzero(x > 0)
    if not fwd.size:
        return -1, math.inf
    xf, yf = x[fwd], y[fwd]

    def dist(path):
        if len(path) >= 2 and np.hypot(*(path[-1] - path[-2])) > 1e-6:
            d = path[-1] - path[-2]
            path = np.vstack([path, path[-1] + d / np.hypot(*d) * extend])
        a, b = path[:-1], path[1:]
        d = b - a
        len2 = np.maximum((d * d).sum(axis=1), 1e-12)
        px, py = xf[:, None] - a[None, :, 0], yf[:, None] - a[None, :, 1]
        t = np.clip((px * d[None, :, 0] + py * d[None, :, 1]) / len2[None, :], 0.0, 1.0)
        ex, ey = px - t * d[None, :, 0], py - t * d[None, :, 1]
        return np.sqrt((ex * ex + ey * ey).min(axis=1))

    lateral = dist(corridors[0])
    for corridor in corridors[1:]:
        lateral = np.minimum(lateral, dist(corridor))
    inside = lateral < 0.5 * width[fwd] + 0.5 * ego_width + margin
    if not inside.any():
        return -1, math.inf
    rows = fwd[inside]
    g = x[rows] - 0.5 * length[rows] - 0.5 * ego_length
    i = int(np.argmin(g))
    return int(rows[i]), float(g[i])


def test_corridor_leader_reproduces_the_former_search_bit_for_bit() -> None:
    """The baselines now search through ``corridor_leaders``: on random curved corridors (one or
    two) and road users, the same leader and the same gap bits as before."""
    rng = np.random.default_rng(1)
    for _ in range(300):
        m = int(rng.integers(1, 30))
        x, y = rng.uniform(-20, 120, m), rng.uniform(-6, 6, m)
        length, width = rng.uniform(0.5, 12, m), rng.uniform(0.5, 2.6, m)
        corridors = []
        for _ in range(int(rng.integers(1, 3))):
            s = np.linspace(0.0, 100.0, int(rng.integers(2, 30)))
            corridors.append(np.column_stack([s, rng.uniform(-0.02, 0.02) * s * s / 10 + rng.uniform(-4, 4)]))
        args = (x, y, length, width, corridors, 4.5, 1.9, 0.4, 150.0)
        assert corridor_leader(*args) == former_corridor_leader(*args)


def test_corridor_leaders_finds_each_followers_nearest_candidate() -> None:
    """Three followers (4 m long, 2 m wide), margin 0.3 m: follower 0 has two candidates inside
    (gaps 8 - 1 - 2 = 5 m and 20 - 2 - 2 = 16 m), follower 1 one outside its corridor (1.2 m
    half extent + 1 + 0.3 < 2.6 m aside) and one behind, follower 2 none."""
    ahead = np.array([20.0, 8.0, 10.0, -3.0])
    lateral = np.array([0.0, 1.0, 2.6, 0.0])
    half_lon = np.array([2.0, 1.0, 2.0, 2.0])
    half_lat = np.array([1.0, 0.5, 1.2, 1.0])
    owner = np.array([0, 0, 1, 1])
    lead, gap = corridor_leaders(ahead, lateral, half_lon, half_lat, owner, np.full(4, 4.0), np.full(4, 2.0), 0.3, 3)
    assert lead.tolist() == [1, -1, -1]
    assert gap[0] == 5.0 and np.isinf(gap[1:]).all()
    # equal gaps: the first candidate wins
    lead, _ = corridor_leaders(np.array([8.0, 8.0]), np.zeros(2), np.ones(2), np.ones(2), np.zeros(2, np.int64), 4.0, 2.0, 0.3, 1)
    assert lead.tolist() == [0]


def test_pure_pursuit_on_a_circle_steers_its_curvature() -> None:
    """A circle of radius R through the rear axle, tangent to the heading: curvature 1/R, steer atan(L / R)."""
    wheelbase, radius = 2.7, 30.0
    theta = np.linspace(0.0, 1.5, 400)
    rear_x = -0.5 * wheelbase
    path = np.column_stack([rear_x + radius * np.sin(theta), radius * (1 - np.cos(theta))])
    assert pure_pursuit(path, 8.0, wheelbase) == pytest.approx(math.atan(wheelbase / radius), rel=1e-4)
    right = path * [1.0, -1.0]
    assert pure_pursuit(right, 8.0, wheelbase) == pytest.approx(-math.atan(wheelbase / radius), rel=1e-4)
    straight = np.column_stack([np.linspace(1.0, 40.0, 40), np.zeros(40)])
    assert pure_pursuit(straight, 8.0, wheelbase) == 0.0


def test_no_import_cycle_between_actions_and_policies() -> None:
    import subprocess
    import sys

    for first in ("sim.actions", "sim.policies", "sim.agents"):
        done = subprocess.run([sys.executable, "-c", f"import {first}"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    import sim.actions

    assert "sim.policies" not in open(sim.actions.__file__).read()
