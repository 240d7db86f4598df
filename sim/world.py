"""The pybullet world of one env: road bodies, one kinematic box per road user, engine queries.

One ``World`` owns one ``BulletClient`` (DIRECT) and keeps it for its whole life: the road of a
map is built once and kept while scenarios on the same map follow each other (a small cache by
map content), agent boxes are pooled by size and moved rather than re-created, so a reset on a
known scenario costs a few body moves.

Frame: the world works in the env's local frame (scenario coordinates minus a per-scenario
origin), the road surface is z = 0. The road is a static triangle mesh with the scenario's
friction; the ground beyond it is a plane 5 cm below with its own friction and body id, so a ray
straight down from an ego corner tells road from off-road. Road edges stand as thin walls
(``EDGE_WALL_HEIGHT_M`` tall, collision geometry without a visual) that only the lidar's rays see:
their collision group is in no body's mask and the ground rays' mask leaves it out.

Hot calls go through the ``pybullet`` module with ``physicsClientId`` rather than the client's
attribute lookup, which costs as much as the call itself.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from scenarios.model import AgentType
from sim import bullet
from sim.road import RoadGeometry, polygons_mesh, ribbons, walls

#: Height of the ground plane below the road surface [m].
GROUND_Z = -0.05
#: Where parked (absent) agent boxes wait, far below the road [m].
PARK_Z = -1000.0
#: Maps whose road bodies stay in the client.
ROAD_CACHE_SIZE = 2
#: Free agent bodies kept for reuse; beyond this they are removed.
POOL_LIMIT = 400
#: Road-edge walls (lidar only): height above the road and thickness [m]. Horizontal lidar rays
#: see them only when cast below the top (``EnvConfig.lidar_height_m`` < this). No body collides
#: with them, but a simulated (wheeled) ego's trajectory differs at float-rounding level (~0.5 mm
#: over 3 s) from one in a world without them: Bullet's broadphase orders its pairs differently.
EDGE_WALL_HEIGHT_M = 0.3
EDGE_WALL_THICKNESS_M = 0.05
#: Edge segments per wall body (8 vertices, 12 triangles each).
WALL_SEGMENTS_PER_BODY = 2000

#: Segmentation classes of the camera's segmentation image.
SEG_NONE, SEG_ROAD, SEG_GROUND, SEG_EGO, SEG_MARKING = 0, 1, 2, 3, 4
#: Agent types map to SEG_AGENT0 + AgentType.
SEG_AGENT0 = 5
NUM_SEG_CLASSES = SEG_AGENT0 + len(AgentType)

_AGENT_RGBA = {
    AgentType.VEHICLE: (0.15, 0.35, 0.85, 1.0),
    AgentType.PEDESTRIAN: (0.95, 0.75, 0.1, 1.0),
    AgentType.CYCLIST: (0.1, 0.75, 0.35, 1.0),
    AgentType.OTHER: (0.6, 0.6, 0.6, 1.0),
}


@dataclass(slots=True)
class Contact:
    """The ego's contact with one other road user at one step.

    Attributes:
        row: the agent's row in the scenario's tracks.
        impulse: the impact [N s]: the ego's mass times its closing speed along the contact
            normal at the start of the step (the agents are kinematic, i.e. immovable), or, when
            the engine simulates the ego and it is larger, the solver's normal impulse summed
            over the step's substeps.
        penetration: deepest penetration [m] (>= 0).
        solver: the solver's normal impulse summed over the step's substeps [N s] (physical ego
            only, else 0).
    """

    row: int
    impulse: float
    penetration: float
    solver: float = 0.0


class ContactRecorder:
    """The client handed to the ego dynamics model: the world's ``BulletClient`` plus a record of
    the ego's contacts after every ``stepSimulation`` it calls.

    A wheeled ego steps the physics several times per env step; a collision that throws it back
    within those substeps leaves no contact at the end of the step, so the contacts of every
    substep are kept (with the solver's normal force) until the world reads them.
    """

    def __init__(self, client: Any, p: Any) -> None:
        self._real = client
        self._p = p
        self.ego_body = -1
        self.points: list = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def stepSimulation(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 (pybullet's name)
        out = self._real.stepSimulation(*args, **kwargs)
        if self.ego_body >= 0:
            points = self._p.getContactPoints(bodyA=self.ego_body, physicsClientId=self._real._client)
            if points:
                self.points.extend(points)
        return out


class _RoadBodies:
    __slots__ = ("key", "road", "ground", "decor", "walls", "geometry")

    def __init__(self, key: str, road: list[int], ground: int, decor: list[int], walls: list[int], geometry: RoadGeometry) -> None:
        self.key, self.road, self.ground, self.decor, self.walls, self.geometry = key, road, ground, decor, walls, geometry


class World:
    """The pybullet side of an env (see the module docstring)."""

    def __init__(self, edge_walls: bool = True) -> None:
        """``edge_walls``: build the road edges' walls with each road (an env without lidar needs none)."""
        self.edge_walls = bool(edge_walls)
        self.p = bullet.import_pybullet()
        self.client = bullet.connect()
        self.cid: int = self.client._client
        self.recorder = ContactRecorder(self.client, self.p)
        p, cid = self.p, self.cid
        p.setGravity(0, 0, -9.81, physicsClientId=cid)
        self._roads: OrderedDict[str, _RoadBodies] = OrderedDict()
        self.road: _RoadBodies | None = None
        self._offset = np.zeros(2)  # road body position: anchor - scenario origin
        self._road_friction = -1.0
        self._ground_friction = -1.0
        # agent body pool: size key -> free body ids
        self._free: dict[tuple, list[int]] = {}
        self._key_of: dict[int, tuple] = {}
        self.bodies = np.zeros(0, np.int64)  # body per agent row (-1 for the ego row)
        self._placed = np.zeros(0, bool)
        self._pose = np.zeros((3, 0))  # last pose sent per row (x, y, yaw)
        self._half_h = np.zeros(0)
        self._park_slot = 0
        self._row_of_body = np.full(16, -1, np.int64)
        self.ego_body = -1
        self.ego_physical = False
        self._ego_mass = 1500.0
        self._phys_dt = 1.0 / 240.0
        self._types = np.zeros(0, np.uint8)
        self._road_ids: frozenset[int] = frozenset()

    def clear(self) -> None:
        """Empty the client (``resetSimulation``) and forget every body, as if it were new.

        Bullet's solver keeps state across episodes (contact caches, the order of overlapping
        pairs), so a simulated (physical) ego is only reproducible in a world rebuilt the same way
        each time.
        """
        p, cid = self.p, self.cid
        p.resetSimulation(physicsClientId=cid)
        p.setGravity(0, 0, -9.81, physicsClientId=cid)
        self._roads.clear()
        self.road = None
        self._road_ids = frozenset()
        self._offset = np.zeros(2)
        self._road_friction = self._ground_friction = -1.0
        self._free.clear()
        self._key_of.clear()
        self.bodies = np.zeros(0, np.int64)
        self._placed = np.zeros(0, bool)
        self._pose = np.zeros((3, 0))
        self._half_h = np.zeros(0)
        self._park_slot = 0
        self._row_of_body = np.full(16, -1, np.int64)
        self.ego_body = -1
        self.recorder.ego_body = -1
        self.recorder.points = []

    # ------------------------------------------------------------------ road
    def set_road(self, geometry: RoadGeometry, origin: np.ndarray, friction: float, ground_friction: float) -> None:
        """Show ``geometry``'s road for a scenario whose local origin is ``origin`` (scenario frame)."""
        p, cid = self.p, self.cid
        bodies = self._roads.get(geometry.key)
        if bodies is None:
            bodies = self._build_road(geometry)
            self._roads[geometry.key] = bodies
            while len(self._roads) > ROAD_CACHE_SIZE:
                _, old = self._roads.popitem(last=False)
                for b in (*old.road, old.ground, *old.decor, *old.walls):
                    p.removeBody(b, physicsClientId=cid)
                if self.road is old:
                    self.road = None
        self._roads.move_to_end(geometry.key)
        switched = self.road is not bodies
        if switched:
            if self.road is not None:  # the previous map's bodies wait far below
                for i, b in enumerate((*self.road.road, self.road.ground, *self.road.decor, *self.road.walls)):
                    p.resetBasePositionAndOrientation(b, [0, 0, PARK_Z - 50.0 * (1 + i)], [0, 0, 0, 1], physicsClientId=cid)
            p.resetBasePositionAndOrientation(bodies.ground, [0, 0, GROUND_Z], [0, 0, 0, 1], physicsClientId=cid)
            self._road_friction = self._ground_friction = -1.0
        offset = geometry.anchor - origin
        if switched or not np.array_equal(offset, self._offset):
            for b in (*bodies.road, *bodies.decor, *bodies.walls):
                p.resetBasePositionAndOrientation(b, [offset[0], offset[1], 0.0], [0, 0, 0, 1], physicsClientId=cid)
        self.road, self._offset = bodies, offset
        self._road_ids = frozenset(bodies.road)
        if friction != self._road_friction:
            for b in bodies.road:
                p.changeDynamics(b, -1, lateralFriction=float(friction), physicsClientId=cid)
            self._road_friction = friction
        if ground_friction != self._ground_friction:
            p.changeDynamics(bodies.ground, -1, lateralFriction=float(ground_friction), physicsClientId=cid)
            self._ground_friction = ground_friction

    def _build_road(self, g: RoadGeometry) -> _RoadBodies:
        p, cid = self.p, self.cid
        road: list[int] = []
        v, idx = g.vertices, g.indices
        if len(idx):
            # pybullet caps the vertices of one mesh; cut big surfaces into chunks of whole triangles
            tris = idx.reshape(-1, 3)
            per = 20000
            for start in range(0, len(tris), per):
                chunk = tris[start : start + per]
                used, inv = np.unique(chunk.ravel(), return_inverse=True)
                verts = v[used].tolist()
                ind = inv.astype(np.int32).tolist()
                col = p.createCollisionShape(p.GEOM_MESH, vertices=verts, indices=ind, physicsClientId=cid)
                vis = p.createVisualShape(
                    p.GEOM_MESH, vertices=verts, indices=ind, normals=[[0, 0, 1]] * len(verts),
                    rgbaColor=[0.35, 0.35, 0.38, 1], physicsClientId=cid,
                )
                body = p.createMultiBody(0, col, vis, [0, 0, 0], physicsClientId=cid)
                road.append(body)
        ground_col = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=cid)
        ground_vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[2000, 2000, 0.01], rgbaColor=[0.3, 0.5, 0.25, 1], physicsClientId=cid)
        ground = p.createMultiBody(0, ground_col, ground_vis, [0, 0, GROUND_Z], physicsClientId=cid)
        for b in (*road, ground):
            p.setCollisionFilterGroupMask(b, -1, bullet.GROUP_ROAD, bullet.MASK_ROAD, physicsClientId=cid)
        decor = []
        meshes = [
            (ribbons(g.lines, 0.15, 0.01), [0.95, 0.95, 0.95, 1]),
            (ribbons(g.edges, 0.3, 0.012), [0.8, 0.3, 0.2, 1]),
            (polygons_mesh(g.crosswalks, 0.008), [0.85, 0.85, 0.7, 1]),
        ]
        for (mv, mi), rgba in meshes:
            if not len(mi):
                continue
            vis = p.createVisualShape(
                p.GEOM_MESH, vertices=mv.tolist(), indices=mi.tolist(), normals=[[0, 0, 1]] * len(mv),
                rgbaColor=rgba, physicsClientId=cid,
            )
            body = p.createMultiBody(0, -1, vis, [0, 0, 0], physicsClientId=cid)
            decor.append(body)
        wall_bodies = self._build_walls(g) if self.edge_walls else []
        self._note_bodies()
        return _RoadBodies(g.key, road, ground, decor, wall_bodies, g)

    def _build_walls(self, g: RoadGeometry) -> list[int]:
        """Static collision-only meshes of the road edges, in ``GROUP_WALL``: only rays see them."""
        p, cid = self.p, self.cid
        out: list[int] = []
        segments = [e for e in g.edges if len(e) >= 2]
        # cut the edges into pieces of at most WALL_SEGMENTS_PER_BODY segments (pybullet caps a mesh's size)
        pieces: list[np.ndarray] = []
        for e in segments:
            for k in range(0, len(e) - 1, WALL_SEGMENTS_PER_BODY):
                pieces.append(e[k : k + WALL_SEGMENTS_PER_BODY + 1])
        batch: list[np.ndarray] = []
        count = 0
        for piece in [*pieces, None]:
            if piece is not None and count + len(piece) - 1 <= WALL_SEGMENTS_PER_BODY:
                batch.append(piece)
                count += len(piece) - 1
                continue
            v, idx = walls(batch, EDGE_WALL_HEIGHT_M, EDGE_WALL_THICKNESS_M)
            if len(idx):
                col = p.createCollisionShape(p.GEOM_MESH, vertices=v.tolist(), indices=idx.tolist(), physicsClientId=cid)
                body = p.createMultiBody(0, col, -1, [0, 0, 0], physicsClientId=cid)
                p.setCollisionFilterGroupMask(body, -1, bullet.GROUP_WALL, bullet.MASK_WALL, physicsClientId=cid)
                out.append(body)
            if piece is not None:
                batch, count = [piece], len(piece) - 1
        return out

    @property
    def road_bodies(self) -> list[int]:
        """Body ids of the current road surface."""
        return list(self.road.road) if self.road else []

    @property
    def wall_bodies(self) -> list[int]:
        """Body ids of the current road's edge walls (lidar only)."""
        return list(self.road.walls) if self.road else []

    @property
    def ground_body(self) -> int:
        return self.road.ground if self.road else -1

    # ---------------------------------------------------------------- agents
    def set_agents(self, sizes: np.ndarray, types: np.ndarray, ego_row: int) -> None:
        """One kinematic box per row of ``sizes`` ((N, 3) length, width, height [m]), none for ``ego_row``.

        Boxes of the previous scenario go back to the pool (parked); boxes of a size already in
        the pool are reused.
        """
        p, cid = self.p, self.cid
        for body in self.bodies:
            if body >= 0:
                self._free.setdefault(self._key_of[int(body)], []).append(int(body))
        n = len(sizes)
        bodies = np.full(n, -1, np.int64)
        for row in range(n):
            if row == ego_row:
                continue
            length, width, height = (max(float(v), 0.1) for v in sizes[row])
            kind = AgentType(int(types[row])) if int(types[row]) in AgentType._value2member_map_ else AgentType.OTHER
            key = (round(length, 2), round(width, 2), round(height, 2), int(kind))
            free = self._free.get(key)
            if free:
                bodies[row] = free.pop()
                continue
            half = [key[0] / 2, key[1] / 2, key[2] / 2]
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=cid)
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=_AGENT_RGBA[kind], physicsClientId=cid)
            body = p.createMultiBody(0, col, vis, [0, 0, PARK_Z], physicsClientId=cid)
            p.setCollisionFilterGroupMask(body, -1, bullet.GROUP_AGENT, bullet.MASK_AGENT, physicsClientId=cid)
            self._key_of[body] = key
            bodies[row] = body
        extra = sum(len(v) for v in self._free.values()) - POOL_LIMIT
        for key in list(self._free):
            while extra > 0 and self._free[key]:
                body = self._free[key].pop()
                p.removeBody(body, physicsClientId=cid)
                del self._key_of[body]
                extra -= 1
        self.bodies = bodies
        self._half_h = np.maximum(np.asarray(sizes, dtype=np.float64)[:, 2], 0.1) / 2
        # park everything: pooled boxes from other scenarios and this scenario's until placed
        for free in self._free.values():
            for body in free:
                self._park(body)
        for body in bodies[bodies >= 0]:
            self._park(int(body))
        self._placed = np.zeros(n, bool)
        self._pose = np.full((3, n), np.nan)
        self._note_bodies()

    def _park(self, body: int) -> None:
        self._park_slot = (self._park_slot + 1) % 100000
        x = 20.0 * (self._park_slot % 1000)
        y = 20.0 * (self._park_slot // 1000)
        self.p.resetBasePositionAndOrientation(body, [x, y, PARK_Z], [0, 0, 0, 1], physicsClientId=self.cid)

    def _note_bodies(self) -> None:
        """Rebuild the body id -> agent row lookup (ids beyond it are not agents)."""
        rows = np.flatnonzero(self.bodies >= 0)
        top = int(self.bodies[rows].max()) if rows.size else 0
        lookup = np.full(top + 2, -1, np.int64)
        lookup[self.bodies[rows]] = rows
        self._row_of_body = lookup

    def sync(self, state: np.ndarray, near: np.ndarray) -> None:
        """Move the boxes of the ``near`` rows to their poses in ``state``; park the other placed ones.

        ``state``: (5, N) x, y, yaw, vx, vy (local frame). Only boxes whose pose changed are moved;
        callers pass ``near`` already culled to what the engine needs to see (rows near the ego,
        never the ego's row).
        """
        p, cid = self.p, self.cid
        rows = np.flatnonzero(near)
        if rows.size:
            pose = state[:3, rows]
            moved = rows[(self._pose[:, rows] != pose).any(axis=0) | ~self._placed[rows]]
            if moved.size:
                sub = state[:3, moved]
                half = 0.5 * sub[2]
                pos = np.stack([sub[0], sub[1], self._half_h[moved]], axis=1).tolist()
                sz, cz = np.sin(half).tolist(), np.cos(half).tolist()
                for body, ps, s_, c_ in zip(self.bodies[moved].tolist(), pos, sz, cz):
                    p.resetBasePositionAndOrientation(body, ps, (0.0, 0.0, s_, c_), physicsClientId=cid)
                self._pose[:, moved] = sub
        gone = np.flatnonzero(self._placed > near)
        if gone.size:
            for row in gone.tolist():
                self._park(int(self.bodies[row]))
            self._pose[:, gone] = np.nan
        self._placed = near

    # ------------------------------------------------------------------- ego
    def set_ego(self, body: int, physical: bool, mass: float) -> None:
        """Register the ego's body (made by the dynamics model): set its collision groups.

        A kinematic ego does not test the road (it is placed on it); a physical one does.
        """
        p, cid = self.p, self.cid
        mask = bullet.MASK_EGO if physical else (bullet.MASK_EGO & ~bullet.GROUP_ROAD)
        for link in range(-1, p.getNumJoints(body, physicsClientId=cid)):
            p.setCollisionFilterGroupMask(body, link, bullet.GROUP_EGO, mask, physicsClientId=cid)
        self.ego_body, self.ego_physical, self._ego_mass = body, physical, float(mass)
        self.recorder.ego_body = body if physical else -1
        self.recorder.points = []
        if physical:
            self._phys_dt = float(p.getPhysicsEngineParameters(physicsClientId=cid).get("fixedTimeStep", 1 / 240))

    def contacts(self, candidates: np.ndarray, ego_vel: tuple[float, float], state: np.ndarray) -> list[Contact]:
        """The ego's contacts with other road users, one ``Contact`` per agent touched.

        A kinematic ego asks the engine's narrowphase (``getClosestPoints``) about each of the
        ``candidates`` rows (the agents whose bounding circles reach the ego's; the broadphase
        done in numpy), which costs nothing when no one is near. A physical ego's contacts are
        those of every substep it simulated (``ContactRecorder``), with the solver's forces.
        ``ego_vel``: the ego's velocity at the start of the step [m/s] (its impact velocity);
        ``state``: (5, N) the agents' x, y, yaw, vx, vy.
        """
        p, cid = self.p, self.cid
        if self.ego_physical:
            # every substep's contacts (see ContactRecorder), then the state at the step's end
            points = self.recorder.points
            self.recorder.points = []
            points.extend(p.getContactPoints(bodyA=self.ego_body, physicsClientId=cid))
        else:
            if not candidates.size:
                return []
            points = []
            ego = self.ego_body
            for body in self.bodies[candidates].tolist():
                points.extend(p.getClosestPoints(ego, body, 0.0, physicsClientId=cid))
        if not points:
            return []
        lookup = self._row_of_body
        found: dict[int, Contact] = {}
        for pt in points:
            body_b, dist = pt[2], pt[8]
            if body_b >= len(lookup) or dist > 1e-3:
                continue
            row = int(lookup[body_b])
            if row < 0:
                continue
            n = pt[7]  # normal on B, from B towards A
            closing = -((ego_vel[0] - state[3, row]) * n[0] + (ego_vel[1] - state[4, row]) * n[1])
            impact = self._ego_mass * max(closing, 0.0)
            solver = pt[9] * self._phys_dt if self.ego_physical else 0.0
            c = found.get(row)
            if c is None:
                found[row] = Contact(row, impact, max(-dist, 0.0), solver)
            else:
                c.impulse = max(c.impulse, impact)
                c.solver += solver
                c.penetration = max(c.penetration, -dist)
        out = list(found.values())
        for c in out:
            c.impulse = max(c.impulse, c.solver)
        return out

    def ground_under(self, points: list[tuple[float, float]]) -> list[bool]:
        """For each (x, y) (local frame): True where a ray straight down hits the road surface."""
        src = [[x, y, 0.5] for x, y in points]
        dst = [[x, y, -0.5] for x, y in points]
        hits = self.p.rayTestBatch(src, dst, collisionFilterMask=bullet.GROUP_ROAD, physicsClientId=self.cid)
        road = self._road_ids
        return [h[0] in road for h in hits]

    def lidar(self, origin: np.ndarray, directions: np.ndarray, height: float, range_m: float, threads: int = 1) -> np.ndarray:
        """(B,) hit fraction of horizontal rays from ``origin`` along unit ``directions`` (1 = nothing within range).

        Rays see the other road users' boxes and the road edges' walls (``EDGE_WALL_HEIGHT_M``
        tall: rays above them pass over); the road itself is flat.
        """
        n = len(directions)
        src = np.empty((n, 3))
        src[:, 0], src[:, 1], src[:, 2] = origin[0], origin[1], height
        dst = src.copy()
        dst[:, :2] += directions * range_m
        out = np.empty(n)
        p = self.p
        start = 0
        batch = p.MAX_RAY_INTERSECTION_BATCH_SIZE if hasattr(p, "MAX_RAY_INTERSECTION_BATCH_SIZE") else 16384
        while start < n:
            stop = min(n, start + batch)
            hits = p.rayTestBatch(src[start:stop], dst[start:stop], numThreads=threads, collisionFilterMask=bullet.GROUP_AGENT | bullet.GROUP_WALL,
                                  physicsClientId=self.cid)
            out[start:stop] = [h[2] for h in hits]
            start = stop
        return out

    def camera(self, eye: np.ndarray, target: np.ndarray, size: tuple[int, int], fov_deg: float, far: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rgb (H, W, 3) uint8, depth (H, W) float32 [m], segmentation (H, W) uint8 class) from ``eye`` to ``target``."""
        p, cid = self.p, self.cid
        h, w = size
        near = 0.1
        view = p.computeViewMatrix(eye.tolist(), target.tolist(), [0, 0, 1], physicsClientId=cid)
        proj = p.computeProjectionMatrixFOV(fov_deg, w / h, near, far, physicsClientId=cid)
        _, _, rgba, zbuf, seg = p.getCameraImage(
            w, h, view, proj, renderer=p.ER_TINY_RENDERER,
            flags=p.ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX, physicsClientId=cid,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[:, :, :3]
        z = np.asarray(zbuf, dtype=np.float64).reshape(h, w)
        depth = (far * near / (far - (far - near) * z)).astype(np.float32)
        depth = np.minimum(depth, np.float32(far))
        seg = np.asarray(seg, dtype=np.int64).reshape(h, w)
        body = np.where(seg >= 0, seg & ((1 << 24) - 1), -1)
        return rgb.copy(), depth, self._seg_classes(body)

    def _seg_classes(self, body: np.ndarray) -> np.ndarray:
        classes = np.zeros(body.shape, np.uint8)
        if self.road:
            classes[np.isin(body, self.road.road)] = SEG_ROAD
            classes[body == self.road.ground] = SEG_GROUND
            classes[np.isin(body, self.road.decor)] = SEG_MARKING
        classes[body == self.ego_body] = SEG_EGO
        lookup = self._row_of_body
        inside = (body >= 0) & (body < len(lookup))
        rows = np.full(body.shape, -1)
        rows[inside] = lookup[body[inside]]
        agent = rows >= 0
        if agent.any():
            classes[agent] = SEG_AGENT0 + self._types[rows[agent]]
        return classes

    def set_types(self, types: np.ndarray) -> None:
        """Agent types per row, for the segmentation image."""
        self._types = np.clip(np.asarray(types, dtype=np.int64), 0, len(AgentType) - 1).astype(np.uint8)

    def close(self) -> None:
        """Disconnect the client (idempotent)."""
        if self.cid >= 0:
            try:
                self.p.disconnect(physicsClientId=self.cid)
            except Exception:  # already gone (process exit)
                pass
            self.cid = -1
            # the id may be reused by the next client: stop BulletClient.__del__ disconnecting it again
            self.client._client = -1

    def raw_step_cost(self, x: np.ndarray, y: np.ndarray, yaw: np.ndarray, repeats: int = 200) -> float:
        """Seconds per step of pybullet's raw work: move every box, collision detection, ego contacts.

        The benchmark's reference for the distance to the engine's limit.
        """
        import time

        p, cid = self.p, self.cid
        rows = np.flatnonzero(self.bodies >= 0)
        bodies = self.bodies[rows].tolist()
        half = 0.5 * np.asarray(yaw)[rows]
        orns = np.column_stack([np.zeros((len(rows), 2)), np.sin(half), np.cos(half)]).tolist()
        pos = np.column_stack([np.asarray(x)[rows], np.asarray(y)[rows], self._half_h[rows]]).tolist()
        start = time.perf_counter()
        for _ in range(repeats):
            for b, ps, o in zip(bodies, pos, orns):
                p.resetBasePositionAndOrientation(b, ps, o, physicsClientId=cid)
            p.performCollisionDetection(physicsClientId=cid)
            p.getContactPoints(bodyA=self.ego_body, physicsClientId=cid)
        elapsed = (time.perf_counter() - start) / repeats
        for body in bodies:  # poses were disturbed: park all; the next sync places the present ones
            self._park(body)
        self._placed[:] = False
        self._pose[:] = np.nan
        return elapsed
