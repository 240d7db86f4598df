"""Observation parts of the env's ``Dict`` observation, and the bird's-eye rasteriser.

Keys and layouts (all in the ego frame: x forward, y left, SI units):

``state`` float32 (8 + 13 K + 2 N,):
    ego (8): speed [m/s], accel [m/s2], steer [rad], yaw rate [rad/s], length, width [m],
    lateral offset from the route [m] (left +), heading error to the route [rad];
    K agents x 13, nearest first: present (0/1), x, y [m], vx, vy [m/s] (relative to the ego's
    velocity), cos and sin of the relative heading, length, width [m], one-hot type (vehicle,
    pedestrian, cyclist, other); absent rows are all zero;
    N route points x 2: the route ahead every ``route_spacing_m`` [m] from the ego's projection.
    The agents are what the ego perceives: the scenario's perception noise and dropout applied.
    Entries are clipped to +-``STATE_LIMIT``.
``lidar`` float32 (B,): hit distance / range in [0, 1] (1 = nothing), beam 0 straight ahead,
    then counter-clockwise; from the ego's centre at ``lidar_height_m``. Beams hit other road users
    and the road edges' walls (``sim.world.EDGE_WALL_HEIGHT_M`` tall: beams cast higher pass over).
``bev`` uint8 (H, W, 4): channels drivable area, lane lines, other agents (as perceived), the
    route ahead; 255 where present. Up is the ego's heading, the ego at the centre.
``camera_rgb`` uint8 (H, W, 3), ``camera_depth`` float32 (H, W) [m], ``camera_seg`` uint8 (H, W)
    classes (``sim.world.SEG_*``): a roof camera looking ahead, from ``getCameraImage``
    (ER_TINY_RENDERER).
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from gymnasium import spaces

from scenarios.model import AgentType
from sim.config import EnvConfig, ObservationPart
from sim.road import RoadGeometry
from sim.world import NUM_SEG_CLASSES

EGO_FEATURES = ("speed", "accel", "steer", "yaw_rate", "length", "width", "route_lateral", "route_heading_error")
AGENT_FEATURES = ("present", "x", "y", "vx", "vy", "cos_yaw", "sin_yaw", "length", "width",
                  "vehicle", "pedestrian", "cyclist", "other")
BEV_CHANNELS = ("drivable", "lane_lines", "agents", "route")
#: Bound of every ``state`` entry (values beyond are clipped; distances of 10 km carry no news).
STATE_LIMIT = 1.0e4


def state_layout(config: EnvConfig) -> dict[str, slice]:
    """Slices of the ``state`` vector: ``ego``, ``agents`` (reshape (K, 13)) and ``route`` (reshape (N, 2))."""
    e = len(EGO_FEATURES)
    a = config.num_agents_obs * len(AGENT_FEATURES)
    r = 2 * config.route_points
    return {"ego": slice(0, e), "agents": slice(e, e + a), "route": slice(e + a, e + a + r)}


def observation_space(config: EnvConfig) -> spaces.Dict:
    """The ``Dict`` space of ``config``'s observation parts."""
    parts: dict[str, spaces.Space] = {}
    if config.has(ObservationPart.STATE):
        size = state_layout(config)["route"].stop
        parts["state"] = spaces.Box(-STATE_LIMIT, STATE_LIMIT, (size,), np.float32)
    if config.has(ObservationPart.LIDAR):
        parts["lidar"] = spaces.Box(0.0, 1.0, (config.lidar_beams,), np.float32)
    if config.has(ObservationPart.BEV):
        h, w = config.bev_size
        parts["bev"] = spaces.Box(0, 255, (h, w, len(BEV_CHANNELS)), np.uint8)
    if config.has(ObservationPart.CAMERA):
        h, w = config.camera_size
        parts["camera_rgb"] = spaces.Box(0, 255, (h, w, 3), np.uint8)
        parts["camera_depth"] = spaces.Box(0.0, config.camera_far_m, (h, w), np.float32)
        parts["camera_seg"] = spaces.Box(0, NUM_SEG_CLASSES - 1, (h, w), np.uint8)
    return spaces.Dict(parts)


def state_vector(
    config: EnvConfig,
    ego: tuple[float, ...],
    agents: np.ndarray,
    types: np.ndarray,
    route_xy: np.ndarray,
) -> np.ndarray:
    """Assemble the ``state`` vector.

    Args:
        ego: the 8 ego features (``EGO_FEATURES``).
        agents: (8, M) the perceived agents in the ego frame: x, y, vx, vy, cos and sin of the
            relative heading, length, width (``AGENT_FEATURES[1:9]``).
        types: (M,) their ``AgentType`` codes.
        route_xy: (N, 2) route points ahead in the ego frame.
    """
    k = config.num_agents_obs
    nf = len(AGENT_FEATURES)
    ne = len(EGO_FEATURES)
    out = np.zeros(ne + k * nf + route_xy.size, np.float32)
    out[:ne] = ego
    m = agents.shape[1]
    if m and k:
        x, y = agents[0], agents[1]
        order = np.argsort(x * x + y * y, kind="stable")[:k]
        n = len(order)
        block = out[ne : ne + k * nf].reshape(k, nf)
        block[:n, 0] = 1.0
        block[:n, 1:9] = agents[:, order].T
        block[np.arange(n), 9 + np.minimum(np.maximum(types[order], 0), len(AgentType) - 1)] = 1.0
    out[ne + k * nf :] = route_xy.ravel()
    np.minimum(out, STATE_LIMIT, out=out)
    np.maximum(out, -STATE_LIMIT, out=out)
    return out


class BevRasteriser:
    """Ego-centred, heading-up rasters of a road: static layers precomputed, agents and route per step.

    The static layers (drivable area, lane lines) are rasterised once in the map-local frame over
    ``region`` at ``resolution``; each step samples them with the ego's pose (nearest pixel).
    """

    def __init__(self, geometry: RoadGeometry, region: tuple[float, float, float, float], resolution: float, size: tuple[int, int]) -> None:
        self.res = resolution
        self.size = size
        x0, y0, x1, y1 = region
        self.origin = np.array([x0, y0])
        nx = max(1, int(math.ceil((x1 - x0) / resolution)))
        ny = max(1, int(math.ceil((y1 - y0) / resolution)))
        cx = x0 + (np.arange(nx) + 0.5) * resolution
        cy = y0 + (np.arange(ny) + 0.5) * resolution
        gx, gy = np.meshgrid(cx, cy)
        # a border of one empty pixel all round: indices clamped into it read as nothing
        static = np.zeros((ny + 2, nx + 2, 2), np.uint8)
        if not geometry.surface.is_empty:
            static[1 : ny + 1, 1 : nx + 1, 0] = np.where(shapely.contains_xy(geometry.surface, gx, gy), 255, 0)
        for line in geometry.lines:
            pts = _densify(line, resolution / 2)
            c = np.floor((pts[:, 0] - x0) / resolution).astype(np.int64)
            r = np.floor((pts[:, 1] - y0) / resolution).astype(np.int64)
            ok = (c >= 0) & (c < nx) & (r >= 0) & (r < ny)
            static[r[ok] + 1, c[ok] + 1, 1] = 255
        self.static = static
        self._packed = np.ascontiguousarray(static).view(np.uint16).ravel()  # both channels in one gather
        self.nx, self.ny = nx, ny
        h, w = size
        # ego-frame coordinates of the output pixels in pixels: row 0 is ahead, column 0 is left
        fwd = (h / 2 - 0.5 - np.arange(h)) * resolution
        left = (w / 2 - 0.5 - np.arange(w)) * resolution
        self._fwd = np.repeat(fwd, w) / resolution
        self._left = np.tile(left, h) / resolution
        self.half_extent = 0.5 * math.hypot(h, w) * resolution
        self.half_hw = (0.5 * h * resolution, 0.5 * w * resolution)

    def static_layers(self, x: float, y: float, yaw: float) -> np.ndarray:
        """(H, W, 2) drivable area and lane lines around the map-local pose."""
        c, s = math.cos(yaw), math.sin(yaw)
        inv = 1.0 / self.res
        # +1: the border; truncation toward zero only matters below 0, which clamps to the border
        col = (c * self._fwd - s * self._left + ((x - self.origin[0]) * inv + 1.0)).astype(np.int64)
        row = (s * self._fwd + c * self._left + ((y - self.origin[1]) * inv + 1.0)).astype(np.int64)
        np.minimum(np.maximum(col, 0, out=col), self.nx + 1, out=col)
        np.minimum(np.maximum(row, 0, out=row), self.ny + 1, out=row)
        row *= self.nx + 2
        row += col
        h, w = self.size
        return self._packed.take(row).view(np.uint8).reshape(h, w, 2)

    def boxes(self, x: np.ndarray, y: np.ndarray, yaw: np.ndarray, length: np.ndarray, width: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """(H, W) raster of boxes given in the ego frame (x ahead, y left) [m]: 255, or ``labels`` where drawn."""
        h, w = self.size
        img = np.zeros((h, w), np.uint8 if labels is None else np.int64)
        if not len(x):
            return img
        inv = 1.0 / self.res
        # pixel-space centres: rows grow backwards, columns to the right
        ci = (h / 2 - 0.5) - x * inv
        cj = (w / 2 - 0.5) - y * inv
        cos, sin = np.cos(yaw), np.sin(yaw)
        hl, hw = 0.5 * inv * length, 0.5 * inv * width
        ac, asn = np.abs(cos), np.abs(sin)
        rad_r = hl * ac + hw * asn + 1.0  # half extents of the rotated box along rows and columns
        rad_c = hl * asn + hw * ac + 1.0
        r0 = np.minimum(np.maximum(ci - rad_r, 0), h).astype(np.int64)
        r1 = np.minimum(np.maximum(ci + rad_r + 1, 0), h).astype(np.int64)
        c0 = np.minimum(np.maximum(cj - rad_c, 0), w).astype(np.int64)
        c1 = np.minimum(np.maximum(cj + rad_c + 1, 0), w).astype(np.int64)
        bw = np.maximum(c1 - c0, 0)
        area = np.maximum(r1 - r0, 0) * bw
        total = int(area.sum())
        if total == 0:
            return img
        # every pixel of every box's bounding box, with its box's parameters gathered in one go
        who = np.repeat(np.arange(len(x)), area)
        off = np.arange(total) - np.repeat(np.cumsum(area) - area, area)
        ints = np.stack([r0, c0, bw], axis=1)[who]
        q, rem = np.divmod(off, ints[:, 2])
        rr = ints[:, 0] + q
        cc = ints[:, 1] + rem
        f = np.stack([ci, cj, cos, sin, hl, hw], axis=1)[who]
        ex = f[:, 0] - rr  # ahead of the box's centre [px]
        ey = f[:, 1] - cc  # left of it [px]
        inside = (np.abs(ex * f[:, 2] + ey * f[:, 3]) <= f[:, 4]) & (np.abs(ey * f[:, 2] - ex * f[:, 3]) <= f[:, 5])
        img[rr[inside], cc[inside]] = 255 if labels is None else labels[who[inside]]
        return img

    def polyline(self, pts: np.ndarray, dense: bool = False) -> np.ndarray:
        """(H, W) uint8 raster of a polyline given in the ego frame [m] (``dense``: points already
        at most half a pixel apart)."""
        h, w = self.size
        img = np.zeros((h + 2, w + 2), np.uint8)  # with a border that takes what falls outside
        if len(pts) == 0:
            return img[1:-1, 1:-1]
        if not dense:
            pts = _densify(pts, self.res / 2)
        inv = 1.0 / self.res
        r = (h / 2 + 1.0 - pts[:, 0] * inv).astype(np.int64)
        c = (w / 2 + 1.0 - pts[:, 1] * inv).astype(np.int64)
        np.minimum(np.maximum(r, 0, out=r), h + 1, out=r)
        np.minimum(np.maximum(c, 0, out=c), w + 1, out=c)
        img[r, c] = 255
        return img[1:-1, 1:-1]


def _densify(line: np.ndarray, step: float) -> np.ndarray:
    """Points along a polyline at most ``step`` [m] apart."""
    line = np.asarray(line, dtype=np.float64)
    if len(line) < 2:
        return line
    d = np.diff(line, axis=0)
    n = np.maximum(np.ceil(np.hypot(d[:, 0], d[:, 1]) / step).astype(np.int64), 1)
    t = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    seg = np.repeat(np.arange(len(d)), n)
    pts = line[seg] + (t / n[seg])[:, None] * d[seg]
    return np.vstack([pts, line[-1:]])


def lidar_directions(beams: int) -> np.ndarray:
    """(B, 2) unit directions in the ego frame, beam 0 straight ahead, counter-clockwise."""
    a = np.arange(beams) * (2 * np.pi / beams)
    return np.column_stack([np.cos(a), np.sin(a)])
