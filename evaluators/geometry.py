"""Vectorised planar geometry for the metrics: oriented boxes, separating axes, smoothing.

Boxes are given by centre ``(x, y)`` [m], heading ``yaw`` [rad], ``length`` and ``width`` [m];
every function broadcasts over leading dimensions, so one call covers every (agent, step) pair.
Corners are ordered front-left, rear-left, rear-right, front-right (nuPlan's ``OrientedBox``
order), so corners 0 and 3 are the front edge.
"""

from __future__ import annotations

import functools

import numpy as np
import shapely

#: Corner signs along (length, width) in the order front-left, rear-left, rear-right, front-right.
_CORNER_SIGNS = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])


def box_corners(x: np.ndarray, y: np.ndarray, yaw: np.ndarray, length: np.ndarray, width: np.ndarray) -> np.ndarray:
    """(..., 4, 2) corners [m] of oriented boxes (inputs broadcast together)."""
    x, y, yaw, length, width = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (x, y, yaw, length, width)))
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    dl = _CORNER_SIGNS[:, 0] * (length[..., None] / 2)
    dw = _CORNER_SIGNS[:, 1] * (width[..., None] / 2)
    cx = x[..., None] + dl * c - dw * s
    cy = y[..., None] + dl * s + dw * c
    return np.stack([cx, cy], axis=-1)


def _sat_terms(
    yawa: np.ndarray, la: np.ndarray, wa: np.ndarray, yawb: np.ndarray, lb: np.ndarray, wb: np.ndarray
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """The four separating axes of two boxes (unit vectors as (cos, sin)) and the sum of the
    boxes' half-extents projected on each (the axis's "reach")."""
    ca, sa, cb, sb = np.cos(yawa), np.sin(yawa), np.cos(yawb), np.sin(yawb)
    c = np.abs(ca * cb + sa * sb)  # |cos| of the relative heading
    s = np.abs(sa * cb - ca * sb)  # |sin| of the relative heading
    ha, hwa, hb, hwb = np.asarray(la) / 2, np.asarray(wa) / 2, np.asarray(lb) / 2, np.asarray(wb) / 2
    axes = [(ca, sa), (-sa, ca), (cb, sb), (-sb, cb)]
    reach = [ha + hb * c + hwb * s, hwa + hb * s + hwb * c, hb + ha * c + hwa * s, hwb + ha * s + hwa * c]
    return axes, reach


def box_overlap_depth(
    xa: np.ndarray,
    ya: np.ndarray,
    yawa: np.ndarray,
    la: np.ndarray,
    wa: np.ndarray,
    xb: np.ndarray,
    yb: np.ndarray,
    yawb: np.ndarray,
    lb: np.ndarray,
    wb: np.ndarray,
) -> np.ndarray:
    """Separating-axis overlap of two oriented boxes [m], broadcast over leading dimensions.

    Positive: the boxes overlap and this is the smallest push along one of the four box axes
    that separates them (the penetration depth). Zero: touching. Negative: separated along some
    axis by at least that much (a lower bound of the true distance).
    """
    axes, reach = _sat_terms(yawa, la, wa, yawb, lb, wb)
    dx, dy = np.asarray(xb) - xa, np.asarray(yb) - ya
    depth = None
    for (ux, uy), r in zip(axes, reach):
        gap = r - np.abs(dx * ux + dy * uy)
        depth = gap if depth is None else np.minimum(depth, gap)
    return depth


def first_overlap_time(
    xa: np.ndarray,
    ya: np.ndarray,
    yawa: np.ndarray,
    la: np.ndarray,
    wa: np.ndarray,
    vxa: np.ndarray,
    vya: np.ndarray,
    xb: np.ndarray,
    yb: np.ndarray,
    yawb: np.ndarray,
    lb: np.ndarray,
    wb: np.ndarray,
    vxb: np.ndarray,
    vyb: np.ndarray,
    step: float,
    horizon: float,
    min_depth: float = 0.0,
) -> np.ndarray:
    """First time ``k * step`` at which two boxes moving at constant velocity without turning are
    in contact (overlap by ``min_depth`` [m] or more; with 0, touching counts); inf when never.

    As nuPlan's ``time_to_collision_within_bound`` does: its projection times are
    ``np.arange(step, horizon, step)`` (0.1 .. 2.9 s for 0.1 and 3 s: the horizon itself is not
    projected) and its contact test is shapely's ``intersects``, true for boxes that only touch.
    Exactly the answer of testing ``box_overlap_depth >= min_depth`` at every such time, without
    the loop: with fixed headings the centre offset is linear in time, so along each separating
    axis the contact holds on one closed interval of time; the boxes touch on the intersection
    of the four.
    """
    axes, reach = _sat_terms(yawa, la, wa, yawb, lb, wb)
    dx, dy = np.asarray(xb) - xa, np.asarray(yb) - ya
    rvx, rvy = np.asarray(vxb) - vxa, np.asarray(vyb) - vya
    enter = np.zeros(np.broadcast(dx, reach[0]).shape)
    leave = np.full(enter.shape, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for (ux, uy), r in zip(axes, reach):
            r = r - min_depth
            a = dx * ux + dy * uy  # offset along the axis now
            b = rvx * ux + rvy * uy  # its rate
            lo = np.where(b != 0, np.minimum((-r - a) / b, (r - a) / b), np.where(np.abs(a) <= r, -np.inf, np.inf))
            hi = np.where(b != 0, np.maximum((-r - a) / b, (r - a) / b), np.where(np.abs(a) <= r, np.inf, -np.inf))
            enter = np.maximum(enter, lo)
            leave = np.minimum(leave, hi)
    # the first grid time at or after entering; _GRID_TOLERANCE absorbs the rounding of a contact
    # that falls exactly on a step (a 9 m gap closed at 10 m/s touches at 0.9 s, not 0.9000000001)
    k = np.maximum(np.ceil(enter / step - _GRID_TOLERANCE), 1)
    t = k * step
    n_max = int(np.ceil(horizon / step - _GRID_TOLERANCE)) - 1  # the steps strictly before the horizon
    return np.where((t <= leave + _GRID_TOLERANCE * step) & (k <= n_max) & (enter <= leave), t, np.inf)


#: Relative tolerance of a contact time falling on a projection step [steps].
_GRID_TOLERANCE = 1e-9


def _point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance [m] from points ``p`` (..., 2) to segments ``a``-``b`` (..., 2)."""
    ab = b - a
    denom = np.sum(ab * ab, axis=-1)
    t = np.clip(np.sum((p - a) * ab, axis=-1) / np.where(denom > 0, denom, 1.0), 0.0, 1.0)
    closest = a + t[..., None] * ab
    return np.hypot(*np.moveaxis(p - closest, -1, 0))


def convex_distance(ca: np.ndarray, cb: np.ndarray, overlapping: np.ndarray) -> np.ndarray:
    """Distance [m] between convex quadrilaterals with corners ``ca``, ``cb`` (..., 4, 2); 0 where ``overlapping``.

    For disjoint convex polygons the closest pair is a vertex of one and an edge of the other.
    """
    ea0, ea1 = ca, np.roll(ca, -1, axis=-2)
    eb0, eb1 = cb, np.roll(cb, -1, axis=-2)
    # corners of a (…, 4 corners, 1) against edges of b (…, 1, 4 edges) and vice versa
    d1 = _point_segment_distance(ca[..., :, None, :], eb0[..., None, :, :], eb1[..., None, :, :])
    d2 = _point_segment_distance(cb[..., :, None, :], ea0[..., None, :, :], ea1[..., None, :, :])
    dist = np.minimum(d1.min(axis=(-2, -1)), d2.min(axis=(-2, -1)))
    return np.where(overlapping, 0.0, dist)


@functools.lru_cache(maxsize=64)
def savgol_coefficients(window: int, poly: int, deriv: int) -> np.ndarray:
    """(W, W) Savitzky-Golay weights: row ``j`` gives the ``deriv``-th derivative at window sample ``j``.

    The polynomial of degree ``poly`` is fitted by least squares to the ``W`` samples at unit
    spacing; evaluating it (or its derivative) at every sample position, not only the centre,
    is what treats the edges like scipy's ``mode="interp"``.
    """
    pos = np.arange(window, dtype=np.float64) - (window - 1) / 2
    vander = pos[:, None] ** np.arange(poly + 1)[None, :]  # (W, P+1)
    fit = np.linalg.pinv(vander)  # (P+1, W): samples -> polynomial coefficients
    powers = np.arange(poly + 1)
    factor = np.ones(poly + 1)
    for k in range(deriv):
        factor = factor * np.clip(powers - k, 0, None)
    expo = np.clip(powers - deriv, 0, None)
    evaluate = np.where(powers >= deriv, factor * pos[:, None] ** expo, 0.0)  # (W, P+1)
    coeffs = evaluate @ fit
    coeffs.setflags(write=False)
    return coeffs


def savgol(y: np.ndarray, window: int, poly: int, deriv: int, dt: float) -> np.ndarray:
    """Savitzky-Golay smoothing or derivative of ``y`` along its last axis, at spacing ``dt`` [s].

    Matches ``scipy.signal.savgol_filter(y, window, poly, deriv, delta=dt, mode="interp")``:
    interior samples use the centred window; the first and last ``window // 2`` samples
    evaluate the polynomial fitted to the first / last window. Short series shrink the window
    to the largest odd length that fits (and the degree with it); fewer samples than
    ``deriv + 1`` give zeros.
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[-1]
    w = min(window, n if n % 2 else n - 1)
    p = min(poly, w - 1)
    if w < 1 or p < deriv:
        return np.zeros_like(y)
    coeffs = savgol_coefficients(w, p, deriv) / dt**deriv  # (W, W)
    windows = np.lib.stride_tricks.sliding_window_view(y, w, axis=-1)  # (..., n - w + 1, W)
    h = w // 2
    idx = np.arange(n)
    start = np.clip(idx - h, 0, n - w)
    at = idx - start  # position of sample idx inside its window
    return np.einsum("...iw,iw->...i", windows[..., start, :], coeffs[at])


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


class Segments:
    """A set of line segments with an STR-tree, for nearest-point and crossing queries in bulk.

    Args:
        segments: (K, 2, 2) segment end points [m].
    """

    def __init__(self, segments: np.ndarray) -> None:
        self.segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2, 2)
        self.tree = shapely.STRtree(shapely.linestrings(self.segments))

    @classmethod
    def of_lines(cls, geometry: object) -> Segments:
        """The segments of every line (or polygon ring) in a shapely geometry."""
        parts = shapely.get_parts(shapely.boundary(geometry) if shapely.get_dimensions(geometry) == 2 else geometry)
        rings = shapely.get_parts(parts)  # multi-parts split again
        pieces = []
        for line in rings:
            coords = shapely.get_coordinates(line)
            if len(coords) >= 2:
                pieces.append(np.stack([coords[:-1], coords[1:]], axis=1))
        return cls(np.concatenate(pieces) if pieces else np.zeros((0, 2, 2)))

    def __len__(self) -> int:
        return int(self.segments.shape[0])

    def nearest(self, points: np.ndarray, radius: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(P, 2) the nearest point on any segment to each of ``points`` (P, 2) [m], and (P,) its distance.

        Segments whose bounding boxes meet a box of half-size ``radius`` around each point are
        measured in numpy; only points with none of them within ``radius`` ask the tree's
        (slower) nearest-neighbour search.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        near = np.full_like(pts, np.nan)
        dist = np.full(pts.shape[0], np.inf)
        if len(self) == 0 or pts.shape[0] == 0:
            return near, dist
        boxes = shapely.box(pts[:, 0] - radius, pts[:, 1] - radius, pts[:, 0] + radius, pts[:, 1] + radius)
        src, seg = self.tree.query(boxes)
        self._closest(pts, src, seg, near, dist)
        far = np.flatnonzero(dist > radius)
        if far.size:
            src, seg = self.tree.query_nearest(shapely.points(pts[far]))
            self._closest(pts, far[src], seg, near, dist)
        return near, dist

    def _closest(self, pts: np.ndarray, src: np.ndarray, seg: np.ndarray, near: np.ndarray, dist: np.ndarray) -> None:
        """Update ``near`` and ``dist`` in place with the pairs (point ``src``, segment ``seg``)."""
        if src.size == 0:
            return
        a, b = self.segments[seg, 0], self.segments[seg, 1]
        ab = b - a
        denom = np.sum(ab * ab, axis=1)
        t = np.clip(np.sum((pts[src] - a) * ab, axis=1) / np.where(denom > 0, denom, 1.0), 0.0, 1.0)
        q = a + t[:, None] * ab
        d = np.hypot(*(pts[src] - q).T)
        order = np.lexsort((d, src))
        first = order[np.r_[True, src[order][1:] != src[order][:-1]]]
        better = d[first] < dist[src[first]]
        idx = src[first][better]
        dist[idx] = d[first][better]
        near[idx] = q[first][better]

    def first_crossing(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """(P,) distance [m] from each ``end`` back to the nearest point where the segment
        ``start``-``end`` meets one of the set's segments; inf where it meets none."""
        start = np.asarray(start, dtype=np.float64).reshape(-1, 2)
        end = np.asarray(end, dtype=np.float64).reshape(-1, 2)
        out = np.full(start.shape[0], np.inf)
        if len(self) == 0 or start.shape[0] == 0:
            return out
        ways = shapely.linestrings(np.stack([end, start], axis=1))
        w, k = self.tree.query(ways, predicate="intersects")
        if w.size == 0:
            return out
        a, r = end[w], start[w] - end[w]  # the way, from its end back to its start
        c, s = self.segments[k, 0], self.segments[k, 1] - self.segments[k, 0]
        denom = _cross(r, s)
        rr = np.sum(r * r, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(denom != 0, _cross(c - a, s) / denom, np.nan)
            # collinear overlap: the nearest of the segment's ends that lies on the way
            t_c = np.sum((c - a) * r, axis=1) / np.where(rr > 0, rr, 1.0)
            t_d = np.sum((c + s - a) * r, axis=1) / np.where(rr > 0, rr, 1.0)
        t_par = np.clip(np.minimum(np.where((t_c >= 0) & (t_c <= 1), t_c, np.inf), np.where((t_d >= 0) & (t_d <= 1), t_d, np.inf)), 0, 1)
        t = np.where(np.isnan(t), np.where(np.isfinite(t_par), t_par, 0.0), np.clip(t, 0.0, 1.0))
        np.minimum.at(out, w, t * np.sqrt(rr))
        return out
