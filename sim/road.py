"""Road geometry of a scenario's map, in a map-local frame: the drivable surface, lanes, routes.

Everything here is plain numpy and shapely (no pybullet), computed once per map and cached by
the world. ``RoadGeometry`` holds the map translated by ``anchor`` (a point of the map, so that
coordinates stay small and float32 physics stays precise at city coordinates of thousands of
metres):

- the drivable surface: the union of the drivable-area, lane and driveway polygons, triangulated
  (constrained Delaunay, holes kept) into a mesh at z = 0;
- lanes as arc-length polylines with their successors and neighbours (from the map's topology
  where the source has it, else found geometrically);
- lines (road lines, lane boundaries, road edges) and crosswalk polygons, for drawing.

``Polyline`` is the arc-length parametrised path the route, the lane follower and reactive agents use.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from scenarios.common import wrap_angle
from scenarios.model import FeatureKind, RoadMap

#: Points of a logged path closer than this to the previous kept point are dropped [m].
PATH_MIN_STEP_M = 0.2
#: Lanes end-to-start closer than this are successors when the map gives no topology [m].
SUCCESSOR_GAP_M = 1.0
#: Largest heading change between a lane's end and a geometric successor's start [rad].
SUCCESSOR_MAX_TURN_RAD = math.radians(60)


#: Shoulder added around drivable areas derived from lane centerlines [m] (Waymo's logged egos
#: drive up to 0.75 m beyond lanes widened to 3.6 m).
DERIVED_SHOULDER_M = 1.0
#: Shoulder added around measured drivable areas and lane boundaries [m] (NGSIM trucks in the
#: CommonRoad sample reach 0.4 m beyond their lanelets' bounds).
MEASURED_SHOULDER_M = 0.5
#: The subtype ``RoadMap.from_parts`` gives drivable areas it derives from lanes.
DERIVED_SUBTYPE = "derived_from_lane"


def is_derived(road_map: RoadMap) -> bool:
    """Whether the map's drivable area is only derived from lanes whose width is a guess.

    True when every drivable-area polygon was derived from a lane and some lane lacks boundaries
    (a lane with both boundaries has a measured outline).
    """
    areas = road_map.drivable_areas
    if any(f.subtype != DERIVED_SUBTYPE for f in areas):
        return False
    return any(lane.left_boundary is None or lane.right_boundary is None for lane in road_map.lanes) or not areas


def default_shoulder(road_map: RoadMap) -> float:
    """``DERIVED_SHOULDER_M`` for a map whose drivable area is a guess (``is_derived``), else ``MEASURED_SHOULDER_M`` [m]."""
    return DERIVED_SHOULDER_M if is_derived(road_map) else MEASURED_SHOULDER_M


class Polyline:
    """A 2-D path parametrised by arc length.

    Attributes:
        xy: (P, 2) points [m], consecutive points distinct.
        s: (P,) arc length at each point [m], s[0] = 0.
        heading: (P,) direction of the segment leaving each point [rad] (the last repeats).
    """

    __slots__ = ("xy", "s", "heading", "_seg", "_seg_len2", "_inv_spacing", "_lists")

    def __init__(self, xy: np.ndarray, heading0: float = 0.0) -> None:
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if len(xy) > 1:
            step = np.hypot(*np.diff(xy, axis=0).T)
            keep = np.concatenate([[True], step > 1e-6])
            xy = xy[keep]
        self.xy = xy
        self._inv_spacing = 0.0
        self._lists: tuple | None = None
        if len(xy) == 1:
            # a single point: a zero-length path facing heading0
            self.s = np.zeros(1)
            self.heading = np.array([heading0])
            self._seg = np.zeros((0, 2))
            self._seg_len2 = np.zeros(0)
            return
        d = np.diff(xy, axis=0)
        seg_len = np.hypot(d[:, 0], d[:, 1])
        self.s = np.concatenate([[0.0], np.cumsum(seg_len)])
        h = np.arctan2(d[:, 1], d[:, 0])
        self.heading = np.concatenate([h, h[-1:]])
        self._seg = d
        self._seg_len2 = seg_len**2
        if len(seg_len) > 1 and np.allclose(seg_len[:-1], seg_len[0], rtol=0, atol=1e-9) and seg_len[-1] <= seg_len[0] + 1e-9:
            self._inv_spacing = 1.0 / float(seg_len[0])  # uniform spacing: index by division

    @property
    def length(self) -> float:
        """Total arc length [m]."""
        return float(self.s[-1])

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    def project(self, point: np.ndarray, hint: int | None = None, window: int = 40) -> tuple[float, float, int]:
        """(s, lateral, segment) of ``point``'s nearest point on the path.

        ``lateral`` is positive to the left of the path [m]. With ``hint`` only segments within
        ``window`` of it are searched. Beyond the ends the path is extended straight.
        """
        if len(self) == 1:
            dx, dy = point[0] - self.xy[0, 0], point[1] - self.xy[0, 1]
            c, sn = math.cos(self.heading[0]), math.sin(self.heading[0])
            return dx * c + dy * sn, -dx * sn + dy * c, 0
        n = len(self._seg)
        lo, hi = (0, n) if hint is None else (max(0, hint - window), min(n, hint + window + 1))
        a = self.xy[lo:hi]
        d = self._seg[lo:hi]
        px, py = point[0] - a[:, 0], point[1] - a[:, 1]
        t = (px * d[:, 0] + py * d[:, 1]) / self._seg_len2[lo:hi]
        t = np.minimum(np.maximum(t, 0.0), 1.0)
        ex, ey = px - t * d[:, 0], py - t * d[:, 1]
        k = int(np.argmin(ex * ex + ey * ey))
        seg = lo + k
        # the ends extend straight, so that progress keeps counting before the start / past the end
        tk = float((px[k] * d[k, 0] + py[k] * d[k, 1]) / self._seg_len2[seg])
        if seg == 0:
            tk = min(tk, 1.0)
        elif seg == n - 1:
            tk = max(tk, 0.0)
        else:
            tk = min(max(tk, 0.0), 1.0)
        seg_len = math.sqrt(self._seg_len2[seg])
        s = float(self.s[seg]) + tk * seg_len
        cross = (d[k, 0] * py[k] - d[k, 1] * px[k]) / seg_len
        return s, float(cross), seg

    def track(self, x: float, y: float, hint: int, ahead: int) -> tuple[float, float, int]:
        """``project`` for a point that moved little since segment ``hint``: a short search.

        Searches segments ``hint - 3 .. hint + ahead + 3`` in plain Python (cheaper than numpy for
        a few segments) and falls back to ``project`` when the nearest lies at the window's edge.
        """
        n = len(self._seg)
        if n == 0:
            return self.project(np.array([x, y]))
        if self._lists is None:
            self._lists = (self.xy[:, 0].tolist(), self.xy[:, 1].tolist(), self._seg[:, 0].tolist(),
                           self._seg[:, 1].tolist(), self._seg_len2.tolist(), self.s.tolist())
        xs, ys, dxs, dys, l2s, ss = self._lists
        lo = max(0, hint - 3)
        hi = min(n, hint + ahead + 4)
        best, best_d = lo, math.inf
        for i in range(lo, hi):
            px, py = x - xs[i], y - ys[i]
            dx, dy = dxs[i], dys[i]
            t = (px * dx + py * dy) / l2s[i]
            t = 0.0 if t < 0.0 else (1.0 if t > 1.0 else t)
            ex, ey = px - t * dx, py - t * dy
            d = ex * ex + ey * ey
            if d < best_d:
                best, best_d = i, d
        if (best == lo and lo > 0) or (best == hi - 1 and hi < n):
            return self.project(np.array([x, y]), best, window=40)
        i = best
        px, py = x - xs[i], y - ys[i]
        dx, dy = dxs[i], dys[i]
        t = (px * dx + py * dy) / l2s[i]
        if i == 0:
            t = min(t, 1.0)
        elif i == n - 1:
            t = max(t, 0.0)
        else:
            t = 0.0 if t < 0.0 else (1.0 if t > 1.0 else t)
        seg_len = math.sqrt(l2s[i])
        return ss[i] + t * seg_len, (dx * py - dy * px) / seg_len, i

    def _index(self, s: np.ndarray) -> np.ndarray:
        """Segment index of arc lengths ``s`` (clamped to the path's segments)."""
        if self._inv_spacing:
            idx = (s * self._inv_spacing).astype(np.int64)
        else:
            idx = np.searchsorted(self.s, s, side="right") - 1
        return np.minimum(np.maximum(idx, 0), len(self.s) - 2)

    def interpolate(self, s: np.ndarray | float) -> np.ndarray:
        """Points at arc lengths ``s`` [m], (..., 2); beyond the ends extended straight."""
        s = np.asarray(s, dtype=np.float64)
        if len(self) == 1:
            c, sn = math.cos(self.heading[0]), math.sin(self.heading[0])
            return self.xy[0] + s[..., None] * np.array([c, sn])
        idx = self._index(s)
        t = (s - self.s[idx]) / (self.s[idx + 1] - self.s[idx])
        return self.xy[idx] + t[..., None] * self._seg[idx]

    def heading_at(self, s: np.ndarray | float) -> np.ndarray:
        """Heading [rad] of the segment at arc length ``s``."""
        s = np.asarray(s, dtype=np.float64)
        if len(self) == 1:
            return np.broadcast_to(self.heading[0], s.shape).copy()
        return self.heading[self._index(s)]

    def heading_at_segment(self, seg: int) -> float:
        """Heading [rad] of segment ``seg``."""
        return float(self.heading[min(max(seg, 0), len(self.heading) - 1)])

    def resampled(self, spacing: float) -> Polyline:
        """The same path with points every ``spacing`` [m] (the end point kept)."""
        if len(self) == 1 or self.length <= spacing:
            return self
        s = np.append(np.arange(0.0, self.length, spacing), self.length)
        return Polyline(self.interpolate(s), float(self.heading[0]))


@dataclass(slots=True, eq=False)
class LaneInfo:
    """A lane of the map-local geometry.

    Attributes:
        id: the map's lane id.
        path: the centerline as a ``Polyline`` [m].
        speed_limit: [m/s], NaN when unknown.
        successors, left, right: indices of lanes in ``RoadGeometry.lanes``.
    """

    id: str
    path: Polyline
    speed_limit: float
    successors: list[int] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)


def map_digest(road_map: RoadMap) -> str:
    """A content hash of the map's geometry and topology (what the road bodies depend on)."""
    h = hashlib.blake2b(digest_size=16)
    for lane in road_map.lanes:
        h.update(lane.id.encode())
        for arr in (lane.centerline, lane.left_boundary, lane.right_boundary):
            h.update(b"-" if arr is None else np.ascontiguousarray(arr).tobytes())
        h.update(repr((lane.speed_limit, lane.successors, lane.left_neighbors, lane.right_neighbors)).encode())
    for feat in road_map.features:
        h.update(f"{feat.id}|{int(feat.kind)}|{feat.subtype}".encode())
        h.update(np.ascontiguousarray(feat.points).tobytes())
    return h.hexdigest()


def _union(outlines: list[np.ndarray]) -> Polygon | MultiPolygon:
    """The union of polygon outlines ((P, 2) each), self-intersecting ones repaired; empty if none."""
    geoms = np.array([Polygon(o[:, :2]) for o in outlines if len(o) >= 3], dtype=object)
    if not geoms.size:
        return Polygon()
    bad = ~shapely.is_valid(geoms)
    if bad.any():
        geoms[bad] = shapely.make_valid(geoms[bad])
    parts = shapely.get_parts(geoms)
    kinds = shapely.get_type_id(parts)
    parts = parts[(kinds == 3) | (kinds == 6)]  # polygons (a repair can leave lines and points)
    parts = parts[shapely.area(parts) > 1e-3]
    return shapely.union_all(parts) if parts.size else Polygon()


class RoadGeometry:
    """A map's road in the map-local frame (scenario coordinates minus ``anchor``).

    The road mesh is the drivable surface widened by a shoulder of ``shoulder_m`` (by default
    ``default_shoulder``): maps are approximations and logged vehicles drive up to the kerb, so
    the twin must not call the log itself off-road.

    Attributes:
        key: content hash of the map (``map_digest``) and the shoulder.
        anchor: (2,) the map-local origin in the scenario frame [m].
        surface: the drivable surface, a shapely (Multi)Polygon [m] (drawn in the bird's-eye view).
        paved: ``surface`` plus the shoulder: what the road mesh covers.
        vertices: (V, 3) float64 mesh vertices at z = 0 [m]; indices: (F*3,) int32 triangles.
        lanes: ``LaneInfo`` per lane.
        lines: (P, 2) polylines to draw as lane lines (road lines, lane boundaries, road edges).
        edges: (P, 2) road-edge polylines.
        crosswalks: (P, 2) crosswalk polygons.
    """

    def __init__(self, road_map: RoadMap, key: str | None = None, shoulder_m: float | None = None) -> None:
        self.derived = is_derived(road_map)
        self.shoulder_m = default_shoulder(road_map) if shoulder_m is None else float(shoulder_m)
        self.key = f"{key or map_digest(road_map)}|{self.shoulder_m:g}"
        outlines = [lane.polygon() for lane in road_map.lanes]
        outlines += [f.points[:, :2] for f in road_map.features if f.kind in (FeatureKind.DRIVABLE_AREA, FeatureKind.DRIVEWAY)]
        all_pts = [o for o in outlines if len(o)] or [f.points[:, :2] for f in road_map.features] or [np.zeros((1, 2))]
        stacked = np.vstack(all_pts)
        lo, hi = stacked.min(axis=0), stacked.max(axis=0)
        self.anchor = np.round((lo + hi) / 2.0)
        a = self.anchor
        surface = _union([o - a for o in outlines])
        surface = shapely.simplify(surface, 0.02, preserve_topology=True)
        if not surface.is_valid:
            surface = shapely.make_valid(surface)
        self.surface = surface
        shapely.prepare(self.surface)
        paved = surface
        if self.shoulder_m > 0 and not surface.is_empty:
            paved = shapely.simplify(surface.buffer(self.shoulder_m, quad_segs=2), 0.02, preserve_topology=True)
        self.paved = paved
        self.vertices, self.indices = triangulate(paved)
        self.lanes = [
            LaneInfo(lane.id, Polyline(lane.centerline[:, :2] - a), lane.speed_limit) for lane in road_map.lanes
        ]
        self._link_lanes(road_map)
        lines = [f.points[:, :2] - a for f in road_map.features if f.kind in (FeatureKind.ROAD_LINE, FeatureKind.ROAD_EDGE)]
        for lane in road_map.lanes:
            for b in (lane.left_boundary, lane.right_boundary):
                if b is not None:
                    lines.append(b[:, :2] - a)
        self.lines = [ln for ln in lines if len(ln) >= 2]
        self.edges = [f.points[:, :2] - a for f in road_map.features if f.kind == FeatureKind.ROAD_EDGE and len(f.points) >= 2]
        self.crosswalks = [f.points[:, :2] - a for f in road_map.features if f.kind == FeatureKind.CROSSWALK and len(f.points) >= 3]
        # every lane point, for nearest-lane queries: (M, 2) points, (M,) lane index, s and heading
        if self.lanes:
            self._lane_pts = np.vstack([ln.path.xy for ln in self.lanes])
            self._lane_idx = np.concatenate([np.full(len(ln.path), i) for i, ln in enumerate(self.lanes)])
            self._lane_s = np.concatenate([ln.path.s for ln in self.lanes])
            self._lane_h = np.concatenate([ln.path.heading for ln in self.lanes])
        else:
            self._lane_pts = np.zeros((0, 2))
            self._lane_idx = np.zeros(0, np.int64)
            self._lane_s = self._lane_h = np.zeros(0)

    def _link_lanes(self, road_map: RoadMap) -> None:
        index = {lane.id: i for i, lane in enumerate(self.lanes)}
        for info, lane in zip(self.lanes, road_map.lanes):
            info.successors = [index[s] for s in lane.successors if s in index]
            info.left = [index[s] for s in lane.left_neighbors if s in index]
            info.right = [index[s] for s in lane.right_neighbors if s in index]
        has_topology = any(lane.successors or lane.predecessors for lane in road_map.lanes)
        if has_topology or len(self.lanes) < 2:
            return
        starts = np.array([ln.path.xy[0] for ln in self.lanes])
        start_h = np.array([ln.path.heading[0] for ln in self.lanes])
        for i, info in enumerate(self.lanes):
            end = info.path.xy[-1]
            gap = np.hypot(*(starts - end).T)
            turn = np.abs(wrap_angle(start_h - info.path.heading[-1]))
            cand = np.flatnonzero((gap < SUCCESSOR_GAP_M) & (turn < SUCCESSOR_MAX_TURN_RAD))
            info.successors = [int(c) for c in cand[np.argsort(turn[cand], kind="stable")] if c != i]

    def nearest_lane(self, xy: np.ndarray, heading: float, max_dist: float = 5.0, max_turn: float = math.pi / 3) -> tuple[int, float] | None:
        """(lane index, s on it) of the lane point nearest ``xy`` heading within ``max_turn`` of ``heading``."""
        if not len(self._lane_pts):
            return None
        d2 = np.sum((self._lane_pts - xy) ** 2, axis=1)
        ok = (d2 < max_dist**2) & (np.abs(wrap_angle(self._lane_h - heading)) < max_turn)
        if not ok.any():
            return None
        k = int(np.flatnonzero(ok)[np.argmin(d2[ok])])
        lane = int(self._lane_idx[k])
        s, _, _ = self.lanes[lane].path.project(xy)
        return lane, s

    def neighbour(self, lane: int, s: float, side: int) -> tuple[int, float] | None:
        """The lane beside ``lane`` at ``s``: side +1 left, -1 right; (index, s on it) or None.

        Uses the map's neighbours when it has them, else a parallel lane 2-5.5 m to that side.
        """
        info = self.lanes[lane]
        p = info.path.interpolate(s)
        h = float(info.path.heading_at(s))
        named = info.left if side > 0 else info.right
        for cand in named:
            cs, _, _ = self.lanes[cand].path.project(p)
            return cand, cs
        rel = self._lane_pts - p
        lat = -rel[:, 0] * math.sin(h) + rel[:, 1] * math.cos(h)
        lon = rel[:, 0] * math.cos(h) + rel[:, 1] * math.sin(h)
        ok = (
            (self._lane_idx != lane)
            & (side * lat > 2.0)
            & (side * lat < 5.5)
            & (np.abs(lon) < 3.0)
            & (np.abs(wrap_angle(self._lane_h - h)) < math.radians(30))
        )
        if not ok.any():
            return None
        k = int(np.flatnonzero(ok)[np.argmin(np.abs(lat[ok]))])
        cand = int(self._lane_idx[k])
        cs, _, _ = self.lanes[cand].path.project(p)
        return cand, cs

    def lane_path(self, lane: int, s: float, length: float) -> np.ndarray:
        """(P, 2) points along ``lane`` from ``s`` onwards for ``length`` [m], following successors.

        At a fork the successor with the smallest heading change is taken; where the lanes end
        the path goes on straight.
        """
        pts: list[np.ndarray] = []
        info = self.lanes[lane]
        remaining = length
        visited = {lane}
        start = s
        while True:
            path = info.path
            keep = path.s > start + 1e-6
            piece = np.vstack([path.interpolate(start)[None], path.xy[keep]]) if len(path) > 1 else path.xy
            pts.append(piece)
            remaining -= max(path.length - start, 0.0)
            if remaining <= 0 or not info.successors:
                break
            options = [c for c in info.successors if c not in visited]
            if not options:
                break
            end_heading = float(path.heading[-1])
            turn = [abs(math.remainder(float(self.lanes[c].path.heading[0]) - end_heading, 2 * math.pi)) for c in options]
            nxt = options[int(np.argmin(turn))]  # the straightest; the first of equals
            visited.add(nxt)
            info, start = self.lanes[nxt], 0.0
        out = np.vstack(pts)
        if remaining > 0:
            if len(out) >= 2:
                d = out[-1] - out[-2]
                h = math.atan2(d[1], d[0])
            else:
                h = float(info.path.heading[-1])
            out = np.vstack([out, out[-1] + remaining * np.array([math.cos(h), math.sin(h)])])
        return out


def triangulate(surface: Polygon | MultiPolygon) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) vertices at z = 0 and (F*3,) int32 triangle indices of a polygonal surface (holes kept)."""
    if surface.is_empty:
        return np.zeros((0, 3)), np.zeros(0, np.int32)
    tris = shapely.constrained_delaunay_triangles(surface)
    coords = shapely.get_coordinates(shapely.get_exterior_ring(np.asarray(tris.geoms)))  # 4 per triangle
    if coords.size == 0:
        return np.zeros((0, 3)), np.zeros(0, np.int32)
    corners = coords.reshape(-1, 4, 2)[:, :3]
    # counter-clockwise (normal +z), so renderers see the top face
    e1 = corners[:, 1] - corners[:, 0]
    e2 = corners[:, 2] - corners[:, 0]
    cw = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0] < 0
    corners[cw] = corners[cw][:, ::-1]
    flat = corners.reshape(-1, 2)
    uniq, inverse = np.unique(np.round(flat, 6), axis=0, return_inverse=True)
    vertices = np.column_stack([uniq, np.zeros(len(uniq))])
    return vertices, inverse.astype(np.int32).ravel()


def _segments(polylines: list[np.ndarray], half_width: float) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per polyline with a non-degenerate segment: its segments' starts ``a`` and ends ``b`` (S, 2)
    and their left normals scaled to ``half_width`` [m] (S, 2)."""
    for line in polylines:
        line = np.asarray(line, dtype=np.float64)[:, :2]
        if len(line) < 2:
            continue
        a, b = line[:-1], line[1:]
        d = b - a
        n = np.hypot(d[:, 0], d[:, 1])
        ok = n > 1e-6
        if not ok.any():
            continue
        a, b, d, n = a[ok], b[ok], d[ok], n[ok]
        yield a, b, np.column_stack([-d[:, 1], d[:, 0]]) / n[:, None] * half_width


def ribbons(polylines: list[np.ndarray], width: float, z: float) -> tuple[np.ndarray, np.ndarray]:
    """A triangle mesh of flat strips ``width`` [m] wide along ``polylines`` at height ``z``."""
    verts: list[np.ndarray] = []
    idx: list[np.ndarray] = []
    base = 0
    for a, b, off in _segments(polylines, width / 2):
        quad = np.stack([a - off, a + off, b + off, b - off], axis=1)  # (S, 4, 2) counter-clockwise
        m = len(quad)
        verts.append(np.column_stack([quad.reshape(-1, 2), np.full(4 * m, z)]))
        q = base + 4 * np.arange(m)[:, None]
        idx.append((q + np.array([0, 3, 2, 0, 2, 1])[None]).ravel())
        base += 4 * m
    if not verts:
        return np.zeros((0, 3)), np.zeros(0, np.int32)
    return np.vstack(verts), np.concatenate(idx).astype(np.int32)


def walls(polylines: list[np.ndarray], height: float, thickness: float) -> tuple[np.ndarray, np.ndarray]:
    """A triangle mesh of thin vertical walls, one closed box per segment of ``polylines``.

    Each box is centred on its segment, ``thickness`` [m] across and from z = 0 to ``height`` [m].
    """
    verts: list[np.ndarray] = []
    idx: list[np.ndarray] = []
    base = 0
    # the 12 triangles of a box whose corners are 0-3 (bottom, around) and 4-7 (top, same order)
    box = np.array([0, 2, 1, 0, 3, 2, 4, 5, 6, 4, 6, 7, 0, 1, 5, 0, 5, 4, 1, 2, 6, 1, 6, 5, 2, 3, 7, 2, 7, 6, 3, 0, 4, 3, 4, 7])
    for a, b, off in _segments(polylines, thickness / 2):
        quad = np.stack([a - off, b - off, b + off, a + off], axis=1).reshape(-1, 2)  # (S*4, 2)
        m = len(a)
        bottom = np.column_stack([quad, np.zeros(4 * m)]).reshape(m, 4, 3)
        top = np.column_stack([quad, np.full(4 * m, float(height))]).reshape(m, 4, 3)
        verts.append(np.concatenate([bottom, top], axis=1).reshape(-1, 3))
        idx.append((base + 8 * np.arange(m)[:, None] + box[None]).ravel())
        base += 8 * m
    if not verts:
        return np.zeros((0, 3)), np.zeros(0, np.int32)
    return np.vstack(verts), np.concatenate(idx).astype(np.int32)


def polygons_mesh(polygons: list[np.ndarray], z: float) -> tuple[np.ndarray, np.ndarray]:
    """A triangle mesh of filled polygons at height ``z`` [m]."""
    surface = _union([np.asarray(p) for p in polygons])
    if surface.is_empty:
        return np.zeros((0, 3)), np.zeros(0, np.int32)
    v, i = triangulate(surface)
    v[:, 2] = z
    return v, i


def logged_path(x: np.ndarray, y: np.ndarray, yaw: float) -> Polyline:
    """A ``Polyline`` through logged positions, dropping points closer than ``PATH_MIN_STEP_M``."""
    pts = np.column_stack([x, y])
    keep = [0]
    last = pts[0]
    for i in range(1, len(pts)):
        if math.hypot(pts[i, 0] - last[0], pts[i, 1] - last[1]) >= PATH_MIN_STEP_M:
            keep.append(i)
            last = pts[i]
    return Polyline(pts[keep], yaw)


def build_route(road: RoadGeometry | None, path: Polyline, end_yaw: float, extension_m: float, spacing_m: float) -> Polyline:
    """The ego's route: its logged path, then on along lane successors for ``extension_m`` [m].

    ``path`` and the result are in the same frame as ``road`` (map-local). Where no lane continues
    the path, it goes on straight along its last heading.
    """
    end = path.xy[-1]
    heading = float(path.heading[-1]) if len(path) > 1 else end_yaw
    ext = None
    if road is not None:
        hit = road.nearest_lane(end, heading, max_dist=4.0)
        if hit is not None:
            ext = road.lane_path(hit[0], hit[1], extension_m)
            rel = ext - end
            ahead = rel[:, 0] * math.cos(heading) + rel[:, 1] * math.sin(heading) > 0.5
            ext = ext[np.argmax(ahead):] if ahead.any() else None
    if ext is None or len(ext) == 0:
        ext = end + np.outer(np.linspace(spacing_m, extension_m, max(2, int(extension_m / spacing_m))), [math.cos(heading), math.sin(heading)])
    return Polyline(np.vstack([path.xy, ext]), end_yaw).resampled(spacing_m)
