"""The shared per-rollout context: geometry every metric needs, computed once and reused.

``Context`` validates a rollout against its scenario and lazily computes what several metrics
share: the ego's boxes over time, the other agents' boxes, which lane the ego is in, whether it
straddles lanes, how far its corners are off the drivable area, and the collision events.
``MapGeometry`` holds the road map's shapely geometry (the drivable-area union, lane polygons
and centerlines, an STR-tree); it depends only on the map, so it is cached per map and shared
by every rollout of the same scenario.
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import shapely

from evaluators.avoidability import Response, Track, judge
from evaluators.config import EvaluatorConfig
from evaluators.errors import EvaluatorError
from evaluators.geometry import Segments, box_corners, box_overlap_depth
from evaluators.metric import MetricValue
from evaluators.stop_lines import Control, controls_of
from scenarios.model import AgentType, FeatureKind, RoadMap, Scenario
from scenarios.rollout import Rollout


class AgentClass(enum.IntEnum):
    """The collision classes: vehicles, vulnerable road users (pedestrians, cyclists), objects."""

    VEHICLE = 0
    VRU = 1
    OBJECT = 2


class CollisionType(enum.IntEnum):
    """nuPlan's collision types, judged at the first step of contact."""

    STOPPED_EGO = 0  # the ego was stopped: not at fault
    STOPPED_TRACK = 1  # the ego struck a stopped agent: at fault
    ACTIVE_FRONT = 2  # the ego's front edge struck a moving agent: at fault
    ACTIVE_REAR = 3  # a moving agent struck the ego from behind: not at fault
    ACTIVE_LATERAL = 4  # side contact: at fault only while the ego straddles lanes or is off the lane map


#: Lane types (lower case) that are not for cars; they are not lanes the ego can be "in".
NON_VEHICLE_LANE_TYPES = frozenset({"bike", "bicycle", "biking", "cycle", "cycleway", "pedestrian", "sidewalk", "walkway", "crosswalk"})


def agent_classes(agent_types: np.ndarray) -> np.ndarray:
    """(N,) ``AgentClass`` codes of ``AgentType`` codes (pedestrian and cyclist are VRUs, other is an object)."""
    types = np.asarray(agent_types)
    out = np.full(types.shape, AgentClass.OBJECT, dtype=np.int8)
    out[types == AgentType.VEHICLE] = AgentClass.VEHICLE
    out[(types == AgentType.PEDESTRIAN) | (types == AgentType.CYCLIST)] = AgentClass.VRU
    return out


@dataclass(frozen=True, slots=True, eq=False)
class MapGeometry:
    """Shapely geometry of one road map, for point-in-lane and off-road queries.

    L = the vehicle lanes (lanes whose type is not in ``NON_VEHICLE_LANE_TYPES`` and whose
    centerline has two distinct points).

    Attributes:
        drivable: union of the drivable-area and driveway polygons and the vehicle lanes'
            polygons (prepared), or None when the map has none.
        drivable_boundary: its outline as segments (the road edge as the metrics see it), or None.
        road_edges: the map's road-edge polylines as segments, or None.
        extent: (4,) [m] min x, min y, max x, max y of everything in the map (lanes and features):
            the map's coverage.
        lane_ids: (L,) str.
        lane_polygons: (L,) shapely polygons (boundaries, or the centerline widened).
        lane_segments: (K, 2, 2) every centerline's segments [m], lane by lane in order;
            lane i's are ``lane_segments[lane_segment_start[i]:lane_segment_start[i + 1]]``.
        lane_segment_start: (L + 1,) offsets into ``lane_segments``.
        lane_of_segment: (K,) the lane of each segment.
        lane_segment_tree: STR-tree over ``lane_segments``.
        lane_speed_limit: (L,) [m/s], NaN when unknown.
        lane_tree: STR-tree over ``lane_polygons`` (None when L = 0).
        link_indptr, link_indices: CSR rows: lane i's connected lanes (itself, predecessors,
            successors) are ``link_indices[link_indptr[i]:link_indptr[i + 1]]``.
    """

    drivable: shapely.Geometry | None
    drivable_boundary: Segments | None
    road_edges: Segments | None
    extent: np.ndarray
    lane_ids: np.ndarray
    lane_polygons: np.ndarray
    lane_segments: np.ndarray
    lane_segment_start: np.ndarray
    lane_of_segment: np.ndarray
    lane_segment_tree: shapely.STRtree
    lane_speed_limit: np.ndarray
    lane_tree: shapely.STRtree | None
    link_indptr: np.ndarray
    link_indices: np.ndarray

    @property
    def num_lanes(self) -> int:
        return int(self.lane_ids.shape[0])

    def lanes_containing(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pairs (point row, lane index) such that lane polygon contains point ``xy[row]`` [m]."""
        if self.lane_tree is None or len(xy) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        p, lanes = self.lane_tree.query(shapely.points(xy))  # bounding boxes, then the exact test
        inside = shapely.contains_xy(self.lane_polygons[lanes], xy[p, 0], xy[p, 1])
        return p[inside], lanes[inside]

    def lane_tangents(self, lanes: np.ndarray, xy: np.ndarray, radius: float = 3.0) -> np.ndarray:
        """(P, 2) unit direction of centerline ``lanes[i]`` at its segment nearest to ``xy[i]`` [m].

        The lane's segments within ``radius`` of the point are found with the segment tree; a
        pair with none that close is measured against all of its lane's segments.
        """
        lanes = np.asarray(lanes, dtype=np.int64)
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if lanes.size == 0:
            return np.zeros((0, 2))
        boxes = shapely.box(xy[:, 0] - radius, xy[:, 1] - radius, xy[:, 0] + radius, xy[:, 1] + radius)
        pair, seg = self.lane_segment_tree.query(boxes)
        own = self.lane_of_segment[seg] == lanes[pair]
        best = _nearest_segment(xy, pair[own], seg[own], self.lane_segments, lanes.size)
        missing = np.flatnonzero((best < 0) | (_segment_distance(xy, best, self.lane_segments) > radius))
        if missing.size:
            start = self.lane_segment_start[lanes[missing]]
            counts = self.lane_segment_start[lanes[missing] + 1] - start
            rep = np.repeat(missing, counts)
            all_seg = np.repeat(start, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            best[missing] = _nearest_segment(xy, rep, all_seg, self.lane_segments, lanes.size)[missing]
        direction = self.lane_segments[best, 1] - self.lane_segments[best, 0]
        return direction / np.hypot(direction[:, 0], direction[:, 1])[:, None]

    @classmethod
    def build(cls, road_map: RoadMap) -> MapGeometry:
        """Geometry of ``road_map`` (tens of ms on a city block; use ``of`` for the cached one)."""
        lanes = []
        for lane in road_map.lanes:
            if lane.lane_type.lower() in NON_VEHICLE_LANE_TYPES:
                continue
            pts = lane.centerline[:, :2]
            keep = np.r_[True, np.any(np.diff(pts, axis=0) != 0, axis=1)]
            if keep.sum() >= 2:
                lanes.append((lane, pts[keep]))
        polygons = np.array([_polygon(lane.polygon()) for lane, _ in lanes], dtype=object)
        pieces = [np.stack([pts[:-1], pts[1:]], axis=1) for _, pts in lanes]
        lane_segments = np.concatenate(pieces) if pieces else np.zeros((0, 2, 2))
        lane_segment_start = np.r_[0, np.cumsum([len(p) for p in pieces], dtype=np.int64)].astype(np.int64)
        ids = np.array([lane.id for lane, _ in lanes], dtype=np.str_) if lanes else np.zeros(0, np.str_)
        speed = np.array([lane.speed_limit for lane, _ in lanes], dtype=np.float64)
        index = {lane_id: i for i, lane_id in enumerate(ids.tolist())}
        indptr, indices = [0], []
        for i, (lane, _) in enumerate(lanes):
            linked = {i} | {index[x] for x in (*lane.predecessors, *lane.successors) if x in index}
            indices.extend(sorted(linked))
            indptr.append(len(indices))
        areas = [
            _polygon(f.points[:, :2])
            for f in road_map.features
            if f.kind in (FeatureKind.DRIVABLE_AREA, FeatureKind.DRIVEWAY) and len(f.points) >= 3
        ]
        parts = [g for g in [*areas, *polygons] if g is not None and not g.is_empty]
        drivable = shapely.union_all(np.array(parts, dtype=object)) if parts else None
        edge_pieces = [np.stack([f.points[:-1, :2], f.points[1:, :2]], axis=1) for f in road_map.road_edges if len(f.points) >= 2]
        edges = Segments(np.concatenate(edge_pieces)) if edge_pieces else None
        boundary = None
        if drivable is not None:
            shapely.prepare(drivable)
            boundary = Segments.of_lines(drivable)
        ok = np.array([p is not None and not p.is_empty for p in polygons], dtype=bool) if lanes else np.zeros(0, bool)
        if not ok.all():  # lanes whose outline is degenerate cannot contain anything
            polygons = np.array([p if k else shapely.Polygon() for p, k in zip(polygons, ok)], dtype=object)
        tree = shapely.STRtree(polygons) if lanes else None
        if lanes:
            shapely.prepare(polygons)
        return cls(
            drivable=drivable,
            drivable_boundary=boundary,
            road_edges=edges,
            extent=_extent(road_map),
            lane_ids=ids,
            lane_polygons=polygons,
            lane_segments=lane_segments,
            lane_segment_start=lane_segment_start,
            lane_of_segment=np.repeat(np.arange(len(pieces)), np.diff(lane_segment_start)),
            lane_segment_tree=shapely.STRtree(shapely.linestrings(lane_segments)),
            lane_speed_limit=speed,
            lane_tree=tree,
            link_indptr=np.asarray(indptr, dtype=np.int64),
            link_indices=np.asarray(indices, dtype=np.int64),
        )

    @classmethod
    def of(cls, road_map: RoadMap) -> MapGeometry:
        """The geometry of ``road_map``, built once per map object and reused (an LRU of 32 maps)."""
        key = id(road_map)
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
            if hit is not None and hit[0] is road_map:
                _CACHE.move_to_end(key)
                return hit[1]
        geometry = cls.build(road_map)
        with _CACHE_LOCK:
            _CACHE[key] = (road_map, geometry)  # the map is held, so its id is not reused while cached
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        return geometry


_CACHE: OrderedDict[int, tuple[RoadMap, MapGeometry]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 32


def clear_map_cache() -> None:
    """Forget every cached ``MapGeometry`` (for benchmarks and memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _extent(road_map: RoadMap) -> np.ndarray:
    """(4,) min x, min y, max x, max y [m] of every lane and feature point (NaN for an empty map)."""
    parts = [f.points[:, :2] for f in road_map.features]
    for lane in road_map.lanes:
        parts += [b[:, :2] for b in (lane.centerline, lane.left_boundary, lane.right_boundary) if b is not None]
    if not parts:
        return np.full(4, np.nan)
    xy = np.concatenate(parts)
    return np.r_[xy.min(axis=0), xy.max(axis=0)]


def _polygon(points: np.ndarray) -> shapely.Geometry | None:
    """A valid polygonal geometry from an outline, or None when it has no area."""
    if len(points) < 3:
        return None
    geom = shapely.polygons(np.asarray(points, dtype=np.float64)[:, :2])
    if not shapely.is_valid(geom):
        geom = shapely.make_valid(geom, method="structure", keep_collapsed=False)
    return geom if geom.area > 0 else None


@dataclass(frozen=True, slots=True, eq=False)
class CollisionEvents:
    """The ego's collisions: one event per agent, at the first step it touched the ego.

    E events. The ego touches an agent where the engine reports contact (``rollout.contact``) or
    their boxes overlap deeper than ``collision_min_overlap_m``. A collision is the start of a
    contact: touching at a step after a step (the last where both were valid) without; an agent
    that is touching the ego the first time both are seen (a track born inside the ego's box:
    one object tracked twice, a pedestrian stepping out of a parked car) is listed in
    ``initial_overlaps`` and collides only if it separates and touches again.

    Attributes:
        agent: (E,) agent rows.  step: (E,) first step of contact.
        kind: (E,) ``CollisionType``.  agent_class: (E,) ``AgentClass``.
        at_fault: (E,) at fault by nuPlan's rules and not ``unavoidable``.
        engine: (E,) the engine reported contact with this agent at some step.
        geometry: (E,) the boxes overlapped at some step.
        collided: (N, S) True from each agent's first contact step on, and while an initially
            overlapping agent still overlaps.
        initial_overlaps: agent rows touching the ego the first time both are valid.
        excused: (E,) the logged boxes of the ego and this agent themselves overlap (within the
            rollout's time; only when judging against the log): label noise, not the planner's.
        unavoidable: (E,) at fault by nuPlan's rules, but a proper response (braking within the
            reaction time from when the agent entered the ego's path) would not have avoided it
            (``evaluators.avoidability``; all False with ``[evaluators.collisions] avoidability
            = false``). ``at_fault`` is False for these.
        onset_step: (E,) the step the conflict began for the collisions judged for avoidability
            (the agent entered the ego's corridor), -1 for the others.
        reasons: (E,) why each judged collision was or was not avoidable ("" for the others).
    """

    agent: np.ndarray
    step: np.ndarray
    kind: np.ndarray
    at_fault: np.ndarray
    agent_class: np.ndarray
    engine: np.ndarray
    geometry: np.ndarray
    collided: np.ndarray
    initial_overlaps: np.ndarray
    excused: np.ndarray
    unavoidable: np.ndarray
    onset_step: np.ndarray
    reasons: tuple[str, ...]


class Context:
    """What every metric of one rollout shares; arrays are (S,) per step or (N, S) per agent and step.

    Args:
        rollout: the episode to score.
        scenario: the (variant) scenario it ran: map, agent types, the logged ego (the expert).
        config: thresholds.
        log: what the logged trajectory of the scenario itself did over the rollout's time
            (``evaluators.against_log.LogSpan``), when verdicts are judged against the log.

    Raises:
        EvaluatorError: when the rollout does not fit the scenario or holds NaN where valid.
    """

    def __init__(self, rollout: Rollout, scenario: Scenario, config: EvaluatorConfig, log: Any = None) -> None:
        _validate(rollout, scenario)
        self.rollout = rollout
        self.log = log
        self.scenario = scenario
        self.config = config
        self.num_steps = rollout.num_steps
        self.num_agents = rollout.num_agents
        self.ego = int(rollout.ego_index)
        t_us = np.asarray(rollout.t_us, dtype=np.int64)
        self.t_s = (t_us - t_us[0]) / 1e6
        dt = rollout.dt_s
        self.dt_s = dt if dt > 0 else (scenario.dt_us / 1e6 or 0.1)
        self.valid = np.asarray(rollout.valid, dtype=bool)
        self.ego_valid = self.valid[self.ego]
        self.ego_steps = np.flatnonzero(self.ego_valid)
        others = np.ones(self.num_agents, dtype=bool)
        others[self.ego] = False
        self.others = others
        self.agent_class = agent_classes(scenario.tracks.agent_types)
        self.map = MapGeometry.of(scenario.road_map)
        #: Metric values computed so far, by metric name (composites read them).
        self.results: dict[str, MetricValue] = {}
        #: Per-step series the metrics computed, (S,) each, NaN where undefined.
        self.series: dict[str, np.ndarray] = {}
        #: Why verdicts were judged against the log: (evaluator, reason) in evaluation order.
        self.notes: list[tuple[str, str]] = []

    def note(self, evaluator: str, reason: str) -> None:
        """Record that ``evaluator`` judged against the log, and why ("log itself 0.36 m off-road")."""
        self.notes.append((evaluator, reason))

    @property
    def source(self) -> str:
        return f"rollout {self.rollout.scenario_id}"

    # --- ego state ------------------------------------------------------------------------

    @cached_property
    def speed(self) -> np.ndarray:
        """(N, S) speed [m/s]."""
        return np.hypot(self.rollout.vx, self.rollout.vy)

    @cached_property
    def ego_heading(self) -> np.ndarray:
        """(S, 2) unit heading of the ego."""
        yaw = self.rollout.yaw[self.ego]
        return np.column_stack([np.cos(yaw), np.sin(yaw)])

    @cached_property
    def ego_xy(self) -> np.ndarray:
        """(S, 2) ego centre [m]."""
        return np.column_stack([self.rollout.x[self.ego], self.rollout.y[self.ego]])

    @cached_property
    def ego_velocity(self) -> np.ndarray:
        """(S, 2) ego velocity [m/s]."""
        return np.column_stack([self.rollout.vx[self.ego], self.rollout.vy[self.ego]])

    @cached_property
    def ego_corners(self) -> np.ndarray:
        """(S, 4, 2) ego box corners [m]: front-left, rear-left, rear-right, front-right."""
        r = self.rollout
        e = self.ego
        return box_corners(r.x[e], r.y[e], r.yaw[e], r.length[e], r.width[e])

    @cached_property
    def rear_axle(self) -> np.ndarray:
        """(S, 2) ego rear-axle point [m], ``rear_axle_offset_ratio`` x length behind the centre."""
        offset = self.config.rear_axle_offset_ratio * float(self.rollout.length[self.ego])
        return self.ego_xy - offset * self.ego_heading

    @cached_property
    def relative_cos(self) -> np.ndarray:
        """(N, S) cosine of the angle between the ego's heading and the direction from its rear axle
        to each agent's centre (1: dead ahead, -1: right behind)."""
        dx = self.rollout.x - self.rear_axle[:, 0]
        dy = self.rollout.y - self.rear_axle[:, 1]
        h = self.ego_heading
        along = dx * h[:, 0] + dy * h[:, 1]
        dist = np.hypot(dx, dy)
        return np.where(dist > 0, along / np.where(dist > 0, dist, 1.0), 1.0)

    @cached_property
    def centre_distance(self) -> np.ndarray:
        """(N, S) distance [m] between the ego's centre and each agent's, inf where either is invalid (and for the ego)."""
        d = np.hypot(self.rollout.x - self.ego_xy[:, 0], self.rollout.y - self.ego_xy[:, 1])
        pair = self.valid & self.ego_valid & self.others[:, None]
        return np.where(pair, d, np.inf)

    @cached_property
    def half_diagonal(self) -> np.ndarray:
        """(N,) radius [m] of the circle around each box."""
        return np.hypot(self.rollout.length, self.rollout.width) / 2

    # --- collisions -----------------------------------------------------------------------

    @cached_property
    def overlap(self) -> np.ndarray:
        """(N, S) ego-agent box overlap depth [m] (see ``box_overlap_depth``); -inf where not evaluated.

        Only pairs whose bounding circles touch are tested; the rest cannot overlap.
        """
        r = self.rollout
        e = self.ego
        near = self.centre_distance <= self.half_diagonal[:, None] + self.half_diagonal[e]
        out = np.full((self.num_agents, self.num_steps), -np.inf)
        j, t = np.nonzero(near)
        if j.size:
            out[j, t] = box_overlap_depth(
                r.x[e, t], r.y[e, t], r.yaw[e, t], r.length[e], r.width[e],
                r.x[j, t], r.y[j, t], r.yaw[j, t], r.length[j], r.width[j],
            )  # fmt: skip
        return out

    @cached_property
    def collision_events(self) -> CollisionEvents:
        """The ego's collisions, classified by nuPlan's rules at the first step of each."""
        cfg = self.config
        r = self.rollout
        pair = self.valid & self.ego_valid & self.others[:, None]
        geometric = (self.overlap > cfg.collision_min_overlap_m) & pair
        engine = np.asarray(r.contact, dtype=bool) & pair
        touching = geometric | engine
        # a contact starts where the pair touches and did not at the last step both were valid
        steps = np.arange(self.num_steps)
        last = np.maximum.accumulate(np.where(pair, steps, -1), axis=1)
        prev = np.concatenate([np.full((self.num_agents, 1), -1), last[:, :-1]], axis=1)
        prev_touching = np.take_along_axis(touching, np.maximum(prev, 0), axis=1) & (prev >= 0)
        onset = touching & (prev >= 0) & ~prev_touching
        hit = onset.any(axis=1)
        agent = np.flatnonzero(hit)
        step = np.argmax(onset[agent], axis=1) if agent.size else np.zeros(0, np.int64)
        first_seen = np.argmax(pair, axis=1)
        initial = pair.any(axis=1) & touching[np.arange(self.num_agents), first_seen]
        kind = np.full(agent.shape, CollisionType.ACTIVE_LATERAL, dtype=np.int8)
        if agent.size:
            e = self.ego
            ego_stopped = self.speed[e, step] <= cfg.stopped_speed_mps
            track_stopped = self.speed[agent, step] <= cfg.stopped_speed_mps
            behind = self.relative_cos[agent, step] < np.cos(np.deg2rad(cfg.agent_behind_deg))
            corners = self.ego_corners[step]
            front_mid = (corners[:, 0] + corners[:, 3]) / 2
            front_depth = box_overlap_depth(
                front_mid[:, 0], front_mid[:, 1], r.yaw[e, step], 0.0, r.width[e],
                r.x[agent, step], r.y[agent, step], r.yaw[agent, step], r.length[agent], r.width[agent],
            )  # fmt: skip
            front = front_depth >= -cfg.front_edge_tolerance_m
            kind = np.select(
                [ego_stopped, track_stopped, behind, front],
                [CollisionType.STOPPED_EGO, CollisionType.STOPPED_TRACK, CollisionType.ACTIVE_REAR, CollisionType.ACTIVE_FRONT],
                CollisionType.ACTIVE_LATERAL,
            ).astype(np.int8)
        lateral_fault = (kind == CollisionType.ACTIVE_LATERAL) & ~self.in_common_lane[step]
        at_fault = np.isin(kind, [CollisionType.STOPPED_TRACK, CollisionType.ACTIVE_FRONT]) | lateral_fault
        unavoidable, onset, reasons = self._avoidability(agent, step, at_fault)
        collided = np.zeros((self.num_agents, self.num_steps), dtype=bool)
        if agent.size:
            collided[agent] = np.arange(self.num_steps)[None, :] >= step[:, None]
        overlapping = self.log.overlapping if self.log is not None else frozenset()
        excused = np.array([str(r.agent_ids[a]) in overlapping for a in agent], dtype=bool)
        return CollisionEvents(
            agent=agent,
            step=step,
            kind=kind,
            at_fault=at_fault & ~unavoidable,
            agent_class=self.agent_class[agent],
            engine=engine[agent].any(axis=1),
            geometry=geometric[agent].any(axis=1),
            collided=collided | initial[:, None] & touching,
            initial_overlaps=np.flatnonzero(initial),
            excused=excused,
            unavoidable=unavoidable,
            onset_step=onset,
            reasons=reasons,
        )

    def _avoidability(self, agent: np.ndarray, step: np.ndarray, at_fault: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        """(E,) unavoidable, (E,) conflict onset step (-1: not judged) and (E,) reasons of the
        collisions at fault by nuPlan's rules (see ``evaluators.avoidability``)."""
        unavoidable = np.zeros(agent.shape, dtype=bool)
        onset = np.full(agent.shape, -1, dtype=np.int64)
        reasons = [""] * agent.size
        settings = self.config.of("collisions")
        if settings is None or not settings.avoidability:
            return unavoidable, onset, tuple(reasons)
        response = Response(settings.reaction_s, settings.brake_mps2, settings.agent_max_brake_mps2, self.config.collision_min_overlap_m)
        ego = self._track(self.ego)
        lateral_m = self.config.of("red_light").lateral_m
        for i in np.flatnonzero(at_fault):
            verdict = judge(ego, self._track(int(agent[i])), int(step[i]), response, self.lane_at_ego[1], self.in_common_lane,
                            self.stop_controls, lateral_m)  # fmt: skip
            unavoidable[i], onset[i], reasons[i] = verdict.unavoidable, verdict.onset_step, verdict.reason
        return unavoidable, onset, tuple(reasons)

    def _track(self, row: int) -> Track:
        """Agent ``row``'s boxes over the rollout, for ``evaluators.avoidability``."""
        r = self.rollout
        return Track(self.t_s, r.x[row], r.y[row], r.yaw[row], r.vx[row], r.vy[row], self.valid[row],
                     float(r.length[row]), float(r.width[row]))  # fmt: skip

    @cached_property
    def first_at_fault(self) -> dict[str, object] | None:
        """The first counted (not excused) at-fault collision: the agent's id, the time [s] since
        the start and the ego's centre (x, y) [m] in the map frame at that step; None when there
        is none. Ties at one step go to the agent of the lowest row (its order in the scenario),
        so that the same rollout always names the same agent; ``evaluators.failure_modes`` groups
        failures by these."""
        ev = self.collision_events
        at_fault = ev.at_fault & ~ev.excused
        if not at_fault.any():
            return None
        rows = np.flatnonzero(at_fault)
        first = rows[np.lexsort((ev.agent[rows], ev.step[rows]))[0]]
        s = int(ev.step[first])
        x, y = self.ego_xy[s]
        return {"agent_id": str(self.rollout.agent_ids[ev.agent[first]]), "t_s": float(self.t_s[s]), "x_m": float(x), "y_m": float(y)}

    # --- lanes and the drivable area ------------------------------------------------------

    @cached_property
    def lane_at_ego(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ego's lane per step: (S,) lane index (-1: none), (S, 2) its unit tangent (NaN: none),
        (S,) whether lanes crossing at more than ``agent_ahead_deg`` overlap there (an intersection).

        Of the lanes containing the ego's centre, the one whose direction is closest to the ego's
        heading; in an intersection's overlapping connectors that is the one it drives along.
        """
        s = self.num_steps
        lane = np.full(s, -1, dtype=np.int64)
        tangent = np.full((s, 2), np.nan)
        crossing = np.zeros(s, dtype=bool)
        g = self.map
        steps = self.ego_steps
        if g.lane_tree is None or steps.size == 0:
            return lane, tangent, crossing
        xy = self.ego_xy[steps]
        p, lanes = g.lanes_containing(xy)
        if p.size == 0:
            return lane, tangent, crossing
        tan = g.lane_tangents(lanes, xy[p])
        h = self.ego_heading[steps[p]]
        align = np.sum(tan * h, axis=1)
        order = np.lexsort((-align, p))
        p_sorted = p[order]
        first = np.r_[True, p_sorted[1:] != p_sorted[:-1]]
        best = order[first]
        lane[steps[p[best]]] = lanes[best]
        tangent[steps[p[best]]] = tan[best]
        best_of = np.empty(p.size, dtype=np.int64)
        best_of[order] = np.repeat(best, np.diff(np.r_[np.flatnonzero(first), p.size]))
        cross = np.sum(tan * tan[best_of], axis=1) < np.cos(np.deg2rad(self.config.agent_ahead_deg))
        crossing[steps[p[cross]]] = True
        return lane, tangent, crossing

    @cached_property
    def in_common_lane(self) -> np.ndarray:
        """(S,) all four ego corners lie in one lane or in lanes connected to it (nuPlan's "common or
        connected route objects"); False where the ego straddles lanes or leaves the lane map."""
        s = self.num_steps
        out = np.zeros(s, dtype=bool)
        g = self.map
        steps = self.ego_steps
        if g.lane_tree is None or steps.size == 0:
            return out
        c, lanes = g.lanes_containing(self.ego_corners[steps].reshape(-1, 2))
        if c.size == 0:
            return out
        counts = g.link_indptr[lanes + 1] - g.link_indptr[lanes]
        c_rep = np.repeat(c, counts)
        starts = np.repeat(g.link_indptr[lanes], counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        reach = np.zeros((steps.size * 4, g.num_lanes), dtype=bool)
        reach[c_rep, g.link_indices[starts + offsets]] = True
        common = reach.reshape(steps.size, 4, g.num_lanes).all(axis=1).any(axis=1)
        out[steps] = common
        return out

    @cached_property
    def corner_offroad_m(self) -> np.ndarray:
        """(S, 4) distance [m] of each ego corner off the drivable area (0 on it; NaN where the ego
        is invalid, the map has no drivable area, or the map cannot tell).

        Without road edges in the map: the distance to the drivable area. With road edges, a corner
        outside the drivable area is off the road only beyond a road edge: the distance from the
        corner back to the nearest road edge crossed on the straight way to the drivable area,
        and 0 when none is crossed (road surface the lane polygons miss: parking lanes, shoulders,
        wide junctions; where a map derives its drivable area from lane centerlines). A corner
        whose way back ends on the edge of the map's extent, crossing no road edge, left through
        the map's cut: maps cropped around a log say nothing about the road beyond (NaN).
        """
        out = np.full((self.num_steps, 4), np.nan)
        g = self.map
        steps = self.ego_steps
        if g.drivable is None or steps.size == 0:
            return out
        pts = self.ego_corners[steps].reshape(-1, 2)
        inside = shapely.contains_xy(g.drivable, pts[:, 0], pts[:, 1])
        dist = np.zeros(pts.shape[0])
        if not inside.all():
            dist[~inside] = _offroad_distance(g, pts[~inside])
        out[steps] = dist.reshape(-1, 4)
        return out

    # --- the expert (the logged ego) ------------------------------------------------------

    @cached_property
    def expert_xy(self) -> np.ndarray:
        """(K, 2) the logged ego's valid positions [m], in time order."""
        tr = self.scenario.tracks
        e = self.scenario.ego_index
        keep = tr.valid[e]
        return np.column_stack([tr.x[e, keep], tr.y[e, keep]])

    @cached_property
    def expert_at_rollout_times(self) -> tuple[np.ndarray, np.ndarray]:
        """(S, 2) the logged ego's position at the rollout's times [m] (linear between log samples)
        and (S,) whether it is known there (both neighbouring log samples valid)."""
        tr = self.scenario.tracks
        e = self.scenario.ego_index
        log_t = self.scenario.t_us
        t = np.asarray(self.rollout.t_us, dtype=np.int64)
        i = np.clip(np.searchsorted(log_t, t, side="right") - 1, 0, log_t.size - 1)
        j = np.minimum(i + 1, log_t.size - 1)
        span = (log_t[j] - log_t[i]).astype(np.float64)
        frac = np.where(span > 0, (t - log_t[i]) / np.where(span > 0, span, 1.0), 0.0)
        inside = (t >= log_t[0]) & (t <= log_t[-1])
        known = inside & tr.valid[e, i] & ((frac == 0) | tr.valid[e, j])
        x = tr.x[e, i] + frac * (tr.x[e, j] - tr.x[e, i])
        y = tr.y[e, i] + frac * (tr.y[e, j] - tr.y[e, i])
        return np.column_stack([x, y]), known

    @cached_property
    def stop_controls(self) -> tuple[Control, ...]:
        """The signal and stop-sign stop lines of the map (``evaluators.stop_lines``), signal states per rollout step."""
        return controls_of(self.scenario, self.map, self.log_step_of)

    @cached_property
    def log_step_of(self) -> np.ndarray:
        """(S,) the scenario step at or just before each rollout time (to read signal states)."""
        log_t = self.scenario.t_us
        t = np.asarray(self.rollout.t_us, dtype=np.int64)
        return np.clip(np.searchsorted(log_t, t, side="right") - 1, 0, log_t.size - 1)


#: The way back from an off-area corner starts this far inside the drivable area [m], so that a
#: road edge lying on the area's outline is crossed whatever the rounding.
_EDGE_OVERLAP_M = 0.05


def _offroad_distance(g: MapGeometry, points: np.ndarray) -> np.ndarray:
    """(P,) how far each point (P, 2) outside ``g.drivable`` is off the road [m]; NaN where unknown.

    The point's shortest way back to the drivable area decides: when it crosses a road edge, the
    distance from the point to the nearest edge crossed; else, when it ends on the edge of the
    map's extent (where a cropped map cuts the road), NaN: the road may go on beyond the crop;
    else 0 when the map has road edges (road surface outside the lanes), the way's length when it
    has none.
    """
    near, length = g.drivable_boundary.nearest(points)
    lo, hi = g.extent[:2], g.extent[2:]
    on_cut = ((np.abs(near - lo) < 1e-6) | (np.abs(near - hi) < 1e-6)).any(axis=1)
    out = np.where(on_cut, np.nan, 0.0 if g.road_edges is not None else length)
    if g.road_edges is not None:
        d = points - near
        start = near - d / np.where(length > 0, length, 1.0)[:, None] * _EDGE_OVERLAP_M
        beyond = g.road_edges.first_crossing(start, points)
        crossed = np.isfinite(beyond)
        out[crossed] = beyond[crossed]
    return out


def _segment_distance(xy: np.ndarray, seg: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """(P,) distance [m] from ``xy[i]`` to ``segments[seg[i]]``; inf where ``seg[i] < 0``."""
    ok = seg >= 0
    a = segments[np.where(ok, seg, 0), 0]
    ab = segments[np.where(ok, seg, 0), 1] - a
    denom = np.sum(ab * ab, axis=1)
    t = np.clip(np.sum((xy - a) * ab, axis=1) / np.where(denom > 0, denom, 1.0), 0.0, 1.0)
    return np.where(ok, np.hypot(*(xy - a - t[:, None] * ab).T), np.inf)


def _nearest_segment(xy: np.ndarray, pair: np.ndarray, seg: np.ndarray, segments: np.ndarray, n: int) -> np.ndarray:
    """(n,) for each point the segment of the pairs (``pair``, ``seg``) nearest to it; -1 without pairs."""
    out = np.full(n, -1, dtype=np.int64)
    if pair.size == 0:
        return out
    a = segments[seg, 0]
    ab = segments[seg, 1] - a
    denom = np.sum(ab * ab, axis=1)
    t = np.clip(np.sum((xy[pair] - a) * ab, axis=1) / np.where(denom > 0, denom, 1.0), 0.0, 1.0)
    d = np.sum((xy[pair] - a - t[:, None] * ab) ** 2, axis=1)
    order = np.lexsort((d, pair))
    first = order[np.r_[True, pair[order][1:] != pair[order][:-1]]]
    out[pair[first]] = seg[first]
    return out


def _validate(rollout: Rollout, scenario: Scenario) -> None:
    src = f"rollout {getattr(rollout, 'scenario_id', '?')}"
    if not isinstance(rollout, Rollout):
        raise EvaluatorError(src, "rollout", f"expected a scenarios.rollout.Rollout, got {type(rollout).__name__}")
    if not isinstance(scenario, Scenario):
        raise EvaluatorError(src, "scenario", f"expected a scenarios.Scenario, got {type(scenario).__name__}")
    try:
        rollout.validate()
    except ValueError as exc:
        raise EvaluatorError(src, "shape", str(exc)) from None
    t = np.asarray(rollout.t_us)
    if t.ndim != 1 or t.size == 0:
        raise EvaluatorError(src, "t_us", "the rollout has no steps")
    if t.size > 1 and not (np.diff(t) > 0).all():
        raise EvaluatorError(src, "t_us", "times are not strictly increasing")
    if rollout.num_agents != scenario.num_agents or not np.array_equal(rollout.agent_ids, scenario.tracks.agent_ids):
        raise EvaluatorError(src, "agent_ids", f"the rollout's agents are not the scenario's ({scenario.id}) agents in its order")
    if rollout.ego_index != scenario.ego_index:
        raise EvaluatorError(src, "ego_index", f"{rollout.ego_index} is not the scenario's ego row {scenario.ego_index}")
    for name in ("length", "width"):
        value = np.asarray(getattr(rollout, name), dtype=np.float64)
        if value.shape != (rollout.num_agents,) or not (np.isfinite(value) & (value >= 0)).all():
            raise EvaluatorError(src, name, "box sizes must be (N,), finite and non-negative")
    valid = np.asarray(rollout.valid, dtype=bool)
    if not valid[rollout.ego_index].any():
        raise EvaluatorError(src, "valid", "the ego is never valid")
    for name in ("x", "y", "yaw", "vx", "vy"):
        bad = ~np.isfinite(np.asarray(getattr(rollout, name), dtype=np.float64)) & valid
        if bad.any():
            agent, step = np.argwhere(bad)[0]
            raise EvaluatorError(src, name, f"NaN or infinite where valid (agent {rollout.agent_ids[agent]!r}, step {step})")


def step_weights(t_s: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """(len(steps),) the time [s] each of ``steps`` stands for: until the next one, 0 for the last.

    Sums to the time from the first to the last of ``steps`` (left Riemann sum weights).
    """
    if steps.size == 0:
        return np.zeros(0)
    return np.r_[np.diff(t_s[steps]), 0.0]


def valid_runs(mask: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the runs of consecutive True in ``mask``."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > 1) + 1
    return np.split(idx, breaks)


__all__ = [
    "NON_VEHICLE_LANE_TYPES",
    "AgentClass",
    "CollisionEvents",
    "CollisionType",
    "Context",
    "MapGeometry",
    "agent_classes",
    "clear_map_cache",
    "step_weights",
    "valid_runs",
]
