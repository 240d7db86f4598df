"""The vectorised geometry against shapely and scipy, on random boxes."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluators.geometry import (
    box_corners,
    box_overlap_depth,
    convex_distance,
    first_overlap_time,
    savgol,
)


def random_boxes(rng: np.random.Generator, n: int):
    xy = rng.uniform(-8, 8, (2, n))
    yaw = rng.uniform(-np.pi, np.pi, n)
    size = rng.uniform([0.4, 0.4], [6.0, 2.6], (n, 2)).T
    return xy[0], xy[1], yaw, size[0], size[1]


def test_corners_are_front_left_rear_left_rear_right_front_right():
    c = box_corners(1.0, 2.0, np.pi / 2, 4.0, 2.0)
    np.testing.assert_allclose(c, [[0, 4], [0, 0], [2, 0], [2, 4]], atol=1e-12)


def test_overlap_sign_and_distance_agree_with_shapely():
    rng = np.random.default_rng(7)
    a, b = random_boxes(rng, 2000), random_boxes(rng, 2000)
    depth = box_overlap_depth(*a, *b)
    ca, cb = box_corners(*a), box_corners(*b)
    pa, pb = shapely.polygons(ca), shapely.polygons(cb)
    intersects = shapely.intersects(pa, pb)
    clear = np.abs(depth) > 1e-9
    np.testing.assert_array_equal((depth > 0)[clear], intersects[clear])
    dist = convex_distance(ca, cb, depth >= 0)
    np.testing.assert_allclose(dist, shapely.distance(pa, pb), atol=1e-9)
    assert (-depth[depth < 0] <= dist[depth < 0] + 1e-9).all()  # the separation is a lower bound


def test_first_overlap_time_equals_nuplans_loop():
    """nuPlan projects at np.arange(step, horizon, step) and tests shapely intersects (touching counts)."""
    rng = np.random.default_rng(3)
    n = 5000
    a, b = random_boxes(rng, n), random_boxes(rng, n)
    va, vb = rng.uniform(-15, 15, (2, n)), rng.uniform(-15, 15, (2, n))
    taus = np.arange(0.1, 3.0, 0.1)
    assert len(taus) == 29 and taus[-1] == pytest.approx(2.9)
    ca = box_corners(a[0][:, None] + va[0][:, None] * taus, a[1][:, None] + va[1][:, None] * taus, a[2][:, None], a[3][:, None], a[4][:, None])
    cb = box_corners(b[0][:, None] + vb[0][:, None] * taus, b[1][:, None] + vb[1][:, None] * taus, b[2][:, None], b[3][:, None], b[4][:, None])
    hit = shapely.intersects(shapely.polygons(ca), shapely.polygons(cb))
    loop = np.where(hit.any(axis=1), taus[np.argmax(hit, axis=1)], np.inf)
    fast = first_overlap_time(*a[:5], va[0], va[1], *b[:5], vb[0], vb[1], 0.1, 3.0)
    np.testing.assert_allclose(fast, loop)
    assert np.isfinite(loop).sum() > 100  # the test covers many projected collisions


def test_touching_on_a_step_is_contact_and_the_horizon_is_not_projected():
    """Aligned 4.5 x 2 m boxes, the lead's rear bumper ``gap`` m ahead, closing at 10 m/s."""

    def ttc(gap: float) -> float:
        return float(first_overlap_time(0.0, 0.0, 0.0, 4.5, 2.0, 10.0, 0.0, 4.5 + gap, 0.0, 0.0, 4.5, 2.0, 0.0, 0.0, 0.1, 3.0))

    assert ttc(9.0) == pytest.approx(0.9)  # they touch exactly at 0.9 s: contact (not 1.0 s)
    assert ttc(8.95) == pytest.approx(0.9)
    assert ttc(9.05) == pytest.approx(1.0)
    assert ttc(29.0) == pytest.approx(2.9)  # nuPlan's last projection step
    assert ttc(29.5) == np.inf and ttc(30.0) == np.inf  # the 3 s horizon itself is not projected
    # what the boxes' shapes say: at 0.9 s a 9 m gap is closed, the boxes share their edge
    a = shapely.polygons(box_corners(9.0, 0.0, 0.0, 4.5, 2.0))
    b = shapely.polygons(box_corners(4.5 + 9.0, 0.0, 0.0, 4.5, 2.0))
    assert shapely.intersects(a, b) and shapely.area(shapely.intersection(a, b)) == 0.0


def test_savgol_matches_scipy():
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(0)
    for n in (3, 4, 5, 8, 15, 91):
        y = rng.normal(size=(2, n))
        for window, poly, deriv in ((5, 2, 1), (9, 2, 1), (15, 2, 1), (5, 3, 2), (9, 2, 0)):
            w = min(window, n if n % 2 else n - 1)
            p = min(poly, w - 1)
            got = savgol(y, window, poly, deriv, 0.1)
            if p < deriv:
                assert (got == 0).all()
                continue
            ref = signal.savgol_filter(y, w, p, deriv, delta=0.1, mode="interp")
            np.testing.assert_allclose(got, ref, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    a=st.floats(-5, 5), b=st.floats(-5, 5), c=st.floats(-5, 5), n=st.integers(5, 60), deriv=st.integers(0, 2)
)
def test_savgol_is_exact_on_quadratics(a, b, c, n, deriv):
    t = np.arange(n) * 0.1
    y = a + b * t + c * t**2
    expected = [y, b + 2 * c * t, np.full(n, 2 * c)][deriv]
    np.testing.assert_allclose(savgol(y, 9, 2, deriv, 0.1), expected, atol=1e-7)
