"""The ego's sensors and the bird's-eye picture: what the env observes and renders at a step.

``Sensors.observe(twin, rng)`` builds the ``Dict`` observation of the parts the config asks for
(layouts in ``sim.observations``) from the published ``TwinState`` and the episode's plan:
``state`` and ``bev`` see the other road users as the ego perceives them (the scenario's
perception noise and dropout, drawn from ``rng``); ``lidar`` and the cameras query the engine.
``Sensors.render(twin)`` draws the scene from above (``render_mode="rgb_array"``).
"""

from __future__ import annotations

import math

import numpy as np

from scenarios.common import LRU, from_ego_frame, to_ego_frame, wrap_angle
from scenarios.model import AgentType
from sim.config import EnvConfig, ObservationPart
from sim.context import TwinState
from sim.observations import BevRasteriser, lidar_directions, state_vector
from sim.plan import ROUTE_SPACING_M, Plan
from sim.world import World

#: Engine margin around the ego within which agent boxes are kept up to date [m].
SYNC_MARGIN_M = 3.0
#: Bird's-eye rasterisers kept (one per map region, resolution and size).
RASTERISER_CACHE_SIZE = 8
#: ``render()``'s colours: background, road, lane lines, route, the ego, and per agent type.
RENDER_COLOURS = {
    "ground": (46, 74, 40), "road": (92, 92, 98), "lines": (235, 235, 235), "route": (70, 140, 235), "ego": (220, 40, 40),
    AgentType.VEHICLE: (40, 90, 220), AgentType.PEDESTRIAN: (240, 190, 30), AgentType.CYCLIST: (30, 190, 90),
    AgentType.OTHER: (160, 160, 160),
}


class Sensors:
    """The observation parts of ``config`` and the rendered picture, for one env's world."""

    def __init__(self, config: EnvConfig, world: World) -> None:
        self.config = config
        self.world = world
        self.want_state = config.has(ObservationPart.STATE)
        self.want_lidar = config.has(ObservationPart.LIDAR)
        self.want_bev = config.has(ObservationPart.BEV)
        self.want_camera = config.has(ObservationPart.CAMERA)
        self.lidar_dirs = lidar_directions(config.lidar_beams)
        self._route_offsets = config.route_spacing_m * np.arange(1, config.route_points + 1)
        ratio = config.route_spacing_m / ROUTE_SPACING_M
        self._route_stride = int(round(ratio)) if abs(ratio - round(ratio)) < 1e-9 else 0
        radius = SYNC_MARGIN_M
        if self.want_lidar:
            radius = max(radius, config.lidar_range_m)
        if self.want_camera:
            radius = max(radius, config.camera_far_m)
        #: How far from the ego the engine's agent boxes must be up to date [m] (rays and cameras reach).
        self.sync_radius = radius
        self._rasterisers: LRU[tuple, BevRasteriser] = LRU(RASTERISER_CACHE_SIZE)
        self._plan: Plan | None = None
        self._bev: BevRasteriser | None = None
        self._render_bev: BevRasteriser | None = None

    def reset(self, plan: Plan) -> None:
        """Start an episode of ``plan`` (prepares its bird's-eye raster when observed)."""
        if plan is not self._plan:
            self._plan = plan
            self._render_bev = None
            self._bev = self.rasteriser(plan, self.config.bev_resolution_m, self.config.bev_size) if self.want_bev else None

    # ------------------------------------------------------------------ observations
    def observe(self, twin: TwinState, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The observation at ``twin`` (perception noise drawn from ``rng``)."""
        cfg, ego, plan = self.config, twin.ego, self._plan
        obs: dict[str, np.ndarray] = {}
        rel = self.perceived(twin, rng) if (self.want_state or self.want_bev) else None
        if self.want_state:
            heading_err = wrap_angle(plan.route.heading_at_segment(twin.route_segment) - ego.yaw)
            ego_vec = (ego.speed, ego.accel, ego.steer, ego.yaw_rate, plan.params.length, plan.params.width,
                       twin.route_lateral, heading_err)
            obs["state"] = state_vector(cfg, ego_vec, rel[0], rel[2], self._route_ahead(twin))
        if self.want_lidar:
            dirs = from_ego_frame(self.lidar_dirs, (0.0, 0.0), ego.yaw)
            frac = self.world.lidar(np.array([ego.x, ego.y]), dirs, cfg.lidar_height_m, cfg.lidar_range_m, cfg.lidar_threads)
            obs["lidar"] = frac.astype(np.float32)
        if self.want_bev:
            obs["bev"] = self._bev_image(self._bev, twin, rel)
        if self.want_camera:
            p = plan.params
            c, s = math.cos(ego.yaw), math.sin(ego.yaw)
            # at the windscreen's top, just ahead of the body, looking 20 m ahead and slightly down
            ahead = 0.5 * p.length + 0.2
            eye = np.array([ego.x + c * ahead, ego.y + s * ahead, max(1.2, 0.9 * p.height)])
            target = eye + np.array([c * 20.0, s * 20.0, -1.5])
            rgb, depth, seg = self.world.camera(eye, target, cfg.camera_size, cfg.camera_fov_deg, cfg.camera_far_m)
            obs["camera_rgb"], obs["camera_depth"], obs["camera_seg"] = rgb, depth, seg
        return obs

    def perceived(self, twin: TwinState, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The other road users as the ego perceives them (noise, dropout), in the ego frame.

        Returns (features (8, M): x, y, vx, vy, cos yaw, sin yaw, length, width; relative yaw (M,);
        types (M,)), positions and velocities relative to the ego's.
        """
        plan, ego = self._plan, twin.ego
        cond = plan.scenario.conditions
        rows = np.flatnonzero(twin.present)
        if cond.detection_dropout > 0 and rows.size:
            rows = rows[rng.random(rows.size) >= cond.detection_dropout]
        sub = twin.agents[:, rows]
        xy = sub[0:2] - ((ego.x,), (ego.y,))
        yaw = sub[2] - ego.yaw
        if cond.position_noise_m > 0 and rows.size:
            xy += rng.normal(0.0, cond.position_noise_m, (2, rows.size))
        if cond.heading_noise_rad > 0 and rows.size:
            yaw += rng.normal(0.0, cond.heading_noise_rad, rows.size)
        # the ego-frame rotation as one 2x2 product: per step, 4x faster than scenarios.common.to_ego_frame
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        rot = np.array(((c, s), (-s, c)))
        feat = np.empty((8, rows.size))
        feat[0:2] = rot @ xy
        feat[2:4] = rot @ (sub[3:5] - ((ego.vx,), (ego.vy,)))
        feat[4] = np.cos(yaw)
        feat[5] = np.sin(yaw)
        feat[6:8] = plan.lw[:, rows]
        return feat, yaw, plan.types[rows]

    def _route_ahead(self, twin: TwinState) -> np.ndarray:
        """(N, 2) route points ahead of the ego's projection, in the ego frame."""
        ego, route = twin.ego, self._plan.route
        i0, s = twin.route_segment, twin.route_s
        stride = self._route_stride
        last = i0 + stride * len(self._route_offsets) + 1
        if stride and 0 <= s - route.s[i0] <= ROUTE_SPACING_M and last < len(route.s):
            # the points ahead are whole route spacings apart: one interpolation weight for all
            t = (s - route.s[i0]) / ROUTE_SPACING_M
            a = route.xy[i0 + stride : last : stride]
            b = route.xy[i0 + stride + 1 : last + 1 : stride]
            pts = a + t * (b - a)
        else:
            pts = route.interpolate(s + self._route_offsets)
        c, sn = math.cos(ego.yaw), math.sin(ego.yaw)
        return (pts - (ego.x, ego.y)) @ np.array(((c, -sn), (sn, c)))  # as in perceived(): the per-step fast form

    def _route_local(self, twin: TwinState, length: float, step: float) -> np.ndarray:
        """Route points from the ego's projection on for ``length`` [m], every ``step`` [m], ego frame."""
        pts = self._plan.route.interpolate(twin.route_s + np.arange(0.0, length, step))
        return to_ego_frame(pts, (twin.ego.x, twin.ego.y), twin.ego.yaw)

    def _bev_image(self, bev: BevRasteriser, twin: TwinState, rel: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        ego, plan = twin.ego, self._plan
        h, w = bev.size
        out = np.empty((h, w, 4), np.uint8)
        out[:, :, :2] = bev.static_layers(ego.x - plan.offset[0], ego.y - plan.offset[1], ego.yaw)
        hx, hy = bev.half_hw
        feat, yaw, _ = rel
        reach = 0.5 * (feat[6] + feat[7])
        sel = (np.abs(feat[0]) < hx + reach) & (np.abs(feat[1]) < hy + reach)
        out[:, :, 2] = bev.boxes(feat[0, sel], feat[1, sel], yaw[sel], feat[6, sel], feat[7, sel])
        out[:, :, 3] = bev.polyline(self._route_local(twin, bev.half_extent, 0.4 * bev.res), dense=True)
        return out

    # ------------------------------------------------------------------ picture
    def render(self, twin: TwinState) -> np.ndarray:
        """A bird's-eye picture (H, W, 3) uint8 of the scene around the ego, heading up."""
        plan, cfg, ego = self._plan, self.config, twin.ego
        if self._render_bev is None:
            self._render_bev = self.rasteriser(plan, cfg.render_resolution_m, cfg.render_size)
        bev = self._render_bev
        h, w = bev.size
        static = bev.static_layers(ego.x - plan.offset[0], ego.y - plan.offset[1], ego.yaw)
        img = np.empty((h, w, 3), np.uint8)
        img[:] = RENDER_COLOURS["ground"]
        img[static[:, :, 0] > 0] = RENDER_COLOURS["road"]
        img[static[:, :, 1] > 0] = RENDER_COLOURS["lines"]
        img[bev.polyline(self._route_local(twin, bev.half_extent, 0.4 * bev.res), dense=True) > 0] = RENDER_COLOURS["route"]
        rows = np.flatnonzero(twin.present)
        sub = twin.agents[:, rows]
        local = to_ego_frame(sub[:2].T, (ego.x, ego.y), ego.yaw)
        # labels: 1 the ego, 2 + type the others (0 is empty)
        labels = np.append(plan.types[rows] + 2, 1)
        xs = np.append(local[:, 0], 0.0)
        ys = np.append(local[:, 1], 0.0)
        yaws = np.append(sub[2] - ego.yaw, 0.0)
        lengths = np.append(plan.sizes[rows, 0], plan.params.length)
        widths = np.append(plan.sizes[rows, 1], plan.params.width)
        label_img = bev.boxes(xs, ys, yaws, lengths, widths, labels=labels)
        img[label_img == 1] = RENDER_COLOURS["ego"]
        for agent_type in AgentType:
            img[label_img == 2 + agent_type] = RENDER_COLOURS[agent_type]
        return img

    def rasteriser(self, plan: Plan, res: float, size: tuple[int, int]) -> BevRasteriser:
        """The bird's-eye rasteriser of ``plan``'s map around the logged ego's path (cached)."""
        g = plan.geometry
        margin = 0.5 * math.hypot(*size) * res + 60.0
        xy = plan.ego_log[:, :2] - plan.offset
        lo = xy.min(axis=0) - margin
        hi = xy.max(axis=0) + margin
        if not g.surface.is_empty:
            bx0, by0, bx1, by1 = g.surface.bounds
            lo = np.maximum(lo, [bx0 - 10, by0 - 10])
            hi = np.minimum(hi, [bx1 + 10, by1 + 10])
            hi = np.maximum(hi, lo + res)
        region = (float(np.floor(lo[0])), float(np.floor(lo[1])), float(np.ceil(hi[0])), float(np.ceil(hi[1])))
        return self._rasterisers.get_or_make((g.key, region, res, size), lambda: BevRasteriser(g, region, res, size))
