"""Geometry the operators share: paths by arc length, time warps, agent rules, box overlap.

All positions are [m] in the scenario's world frame, headings [rad] counter-clockwise from +x,
times integer microseconds unless a name ends in ``_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenarios.common import wrap_angle
from scenarios.geometry import boxes_overlap  # noqa: F401  (re-exported: operators use it from here)
from scenarios.model import DEFAULT_LANE_WIDTH, AgentType, Scenario, Tracks

#: Length [m] a path is extended by, straight along its end headings, beyond what was logged.
EXTENSION_M = 1000.0
#: Half-length [m] of the chord that gives a path's tangent (smooths sub-metre position jitter).
TANGENT_CHORD_M = 1.0
#: A point closer than this [m] to the last vertex is not a new one (jitter while standing).
MIN_VERTEX_SPACING_M = 0.1
#: A step back shorter than this [m] is a glitch of the log and not part of the path.
BACKTRACK_M = 1.0
#: Logged gaps up to this long [s] are interpolated over when an agent is time-warped.
MAX_INTERPOLATED_GAP_S = 0.5
#: A vehicle ahead counts as in the ego's lane within this lateral offset [m] of the ego's path.
LEAD_MAX_LATERAL_M = 1.8
#: ... and when its heading is within this angle [rad] of the path's.
LEAD_MAX_HEADING_RAD = np.pi / 4
#: ... and no further ahead than this [m].
LEAD_MAX_DISTANCE_M = 150.0
#: Lane types that are not for cars.
NON_CAR_LANES = frozenset({"bike", "bicycle", "biking", "sidewalk", "walkway", "crosswalk", "parking", "pedestrian"})


@dataclass(frozen=True, slots=True, eq=False)
class Path:
    """A polyline parametrised by arc length, extended straight at both ends.

    Attributes:
        s: (K,) arc length [m], strictly increasing; the first logged point is at s = 0.
        x, y, z: (K,) vertices [m].
        heading: (K,) unwrapped tangent direction [rad], from a chord of +-``TANGENT_CHORD_M``.
        yaw: (K,) unwrapped logged yaw at the vertices [rad] (the heading where none was logged).
        length: logged length [m] (without the extensions).
    """

    s: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    heading: np.ndarray
    yaw: np.ndarray
    length: float

    @classmethod
    def from_points(
        cls, x: np.ndarray, y: np.ndarray, z: np.ndarray | None = None, yaw: np.ndarray | None = None, *, extend_m: float = EXTENSION_M
    ) -> Path:
        """The path through points ``(x, y)`` in order; ``yaw`` [rad] is the logged heading at each point.

        Points within ``MIN_VERTEX_SPACING_M`` of the last vertex, and short steps backwards
        (``BACKTRACK_M``), are dropped; the last point is kept in place of the vertex before it. The
        extensions continue straight in the direction of the first and last ``TANGENT_CHORD_M``
        travelled (along the logged yaw for a path shorter than that).
        """
        x, y = np.asarray(x, float), np.asarray(y, float)
        z = np.zeros_like(x) if z is None else np.asarray(z, float)
        keep = [0]
        for i in range(1, len(x)):
            j = keep[-1]
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx * dx + dy * dy <= MIN_VERTEX_SPACING_M**2:
                continue  # standing jitter is not a path
            if len(keep) > 1 and dx * dx + dy * dy < BACKTRACK_M**2:
                k = keep[-2]
                if dx * (x[j] - x[k]) + dy * (y[j] - y[k]) < 0:
                    continue  # a short step backwards is a glitch of the log, not a path
            keep.append(i)
        last = len(x) - 1
        if keep[-1] != last:  # end where the agent ended; the first vertex stays the first point
            if len(keep) > 1:
                keep[-1] = last
            elif (x[last] - x[0]) ** 2 + (y[last] - y[0]) ** 2 > 1e-18:
                keep.append(last)
        keep_a = np.asarray(keep)
        x, y, z = x[keep_a], y[keep_a], z[keep_a]
        seg = np.hypot(np.diff(x), np.diff(y))
        s = np.concatenate([[0.0], np.cumsum(seg)])
        length = float(s[-1])
        if yaw is not None:
            yaw = np.unwrap(np.asarray(yaw, float)[keep_a])
        elif len(x) > 1:
            d = np.arctan2(np.diff(y), np.diff(x))
            yaw = np.unwrap(np.concatenate([d, d[-1:]]))
        else:
            yaw = np.zeros(1)
        # the straight extensions: along the last (first) metres travelled, or the logged yaw
        # where the path is shorter than that (a standing agent)
        h0, h1 = yaw[0], yaw[-1]
        if length >= TANGENT_CHORD_M:
            r = TANGENT_CHORD_M
            h0 = np.arctan2(np.interp(r, s, y) - y[0], np.interp(r, s, x) - x[0])
            h1 = np.arctan2(y[-1] - np.interp(length - r, s, y), x[-1] - np.interp(length - r, s, x))
        c0, s0, c1, s1 = np.cos(h0), np.sin(h0), np.cos(h1), np.sin(h1)
        x = np.concatenate([[x[0] - extend_m * c0], x, [x[-1] + extend_m * c1]])
        y = np.concatenate([[y[0] - extend_m * s0], y, [y[-1] + extend_m * s1]])
        z = np.concatenate([z[:1], z, z[-1:]])
        s = np.concatenate([[-extend_m], s, [length + extend_m]])
        yaw = np.concatenate([yaw[:1], yaw, yaw[-1:]])
        # tangent: the chord from s - R to s + R
        lo = np.clip(s - TANGENT_CHORD_M, s[0], s[-1])
        hi = np.clip(s + TANGENT_CHORD_M, s[0], s[-1])
        heading = np.arctan2(np.interp(hi, s, y) - np.interp(lo, s, y), np.interp(hi, s, x) - np.interp(lo, s, x))
        heading = np.unwrap(heading)
        # keep the logged yaw and the tangent on the same branch
        yaw = yaw + 2 * np.pi * np.round((heading[1] - yaw[1]) / (2 * np.pi))
        return cls(s, x, y, z, heading, yaw, length)

    @classmethod
    def of_agent(cls, tracks: Tracks, row: int, start: int = 0, *, extend_m: float = EXTENSION_M) -> Path:
        """The path of agent ``row`` through its valid positions from step ``start`` on."""
        valid = tracks.valid[row, start:]
        if not valid.any():
            raise ValueError(f"agent {tracks.agent_ids[row]!r} is not valid at or after step {start}")
        idx = np.flatnonzero(valid) + start
        return cls.from_points(tracks.x[row, idx], tracks.y[row, idx], tracks.z[row, idx], tracks.yaw[row, idx], extend_m=extend_m)

    def at(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, z, heading, yaw) at arc lengths ``s`` [m]; linear along the polyline."""
        s = np.asarray(s, float)
        return (
            np.interp(s, self.s, self.x),
            np.interp(s, self.s, self.y),
            np.interp(s, self.s, self.z),
            np.interp(s, self.s, self.heading),
            np.interp(s, self.s, self.yaw),
        )

    def project(
        self, px: np.ndarray, py: np.ndarray, s_range: tuple[float, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(s, d) of points: arc length of the nearest path point [m] and signed offset, left positive [m].

        With ``s_range`` only the part of the path between those arc lengths [m] is searched.
        """
        px, py = np.atleast_1d(np.asarray(px, float)), np.atleast_1d(np.asarray(py, float))
        lo, hi = 0, len(self.s) - 1
        if s_range is not None:
            lo = max(int(np.searchsorted(self.s, s_range[0], side="right")) - 1, 0)
            hi = min(max(int(np.searchsorted(self.s, s_range[1], side="left")), lo + 1), len(self.s) - 1)
        x, y, sv = self.x[lo : hi + 1], self.y[lo : hi + 1], self.s[lo : hi + 1]
        ax, ay = x[:-1], y[:-1]
        dx, dy = np.diff(x), np.diff(y)
        seg2 = dx * dx + dy * dy
        seg2[seg2 == 0] = 1.0
        t = ((px[:, None] - ax) * dx + (py[:, None] - ay) * dy) / seg2
        t = np.clip(t, 0.0, 1.0)
        fx, fy = ax + t * dx, ay + t * dy
        dist2 = (px[:, None] - fx) ** 2 + (py[:, None] - fy) ** 2
        k = np.argmin(dist2, axis=1)
        rows = np.arange(len(px))
        tk = t[rows, k]
        s = sv[k] + tk * (sv[k + 1] - sv[k])
        cross = dx[k] * (py - fy[rows, k]) - dy[k] * (px - fx[rows, k])
        d = np.sign(cross) * np.sqrt(dist2[rows, k])
        return s, d


def near_path(path: Path, px: np.ndarray, py: np.ndarray, radius: float, s_range: tuple[float, float]) -> np.ndarray:
    """Bool mask of points that may lie within ``radius`` [m] of ``path`` between arc lengths ``s_range``.

    A cheap filter by grid cells (no false negatives, some false positives) to run before
    ``Path.project`` on many points.
    """
    spacing = 1.0
    probes = np.arange(s_range[0], s_range[1] + spacing, spacing)
    qx, qy = np.interp(probes, path.s, path.x), np.interp(probes, path.s, path.y)
    cell = radius + spacing
    ox, oy = np.floor(qx.min() / cell) - 2, np.floor(qy.min() / cell) - 2
    cx, cy = (np.floor(qx / cell) - ox).astype(np.int64), (np.floor(qy / cell) - oy).astype(np.int64)
    width = int(cx.max()) + 3
    keys = np.unique(np.concatenate([(cx + i) * width + (cy + j) for i in (-1, 0, 1) for j in (-1, 0, 1)]))
    kx, ky = np.floor(np.asarray(px) / cell) - ox, np.floor(np.asarray(py) / cell) - oy
    inside = (kx >= 0) & (ky >= 0) & (kx < width)
    point_keys = np.where(inside, kx * width + ky, -1).astype(np.int64)
    return inside & np.isin(point_keys, keys)


def nearest_step(scenario: Scenario, time_s: float) -> int:
    """The step nearest ``time_s`` [s] after the scenario's first timestamp."""
    target = scenario.t_us[0] + time_s * 1e6
    return int(np.argmin(np.abs(scenario.t_us - target)))


def times_s(scenario: Scenario) -> np.ndarray:
    """(T,) step times [s] from the scenario's start."""
    return (scenario.t_us - scenario.t_us[0]) / 1e6


def warp(tracks: Tracks, row: int, t_s: np.ndarray, tau_s: np.ndarray, rate: float) -> dict[str, np.ndarray]:
    """Agent ``row``'s logged state at times ``tau_s`` [s], to be placed at times ``t_s``.

    Positions, z and yaw are interpolated between consecutive valid samples (so positions stay
    on the logged polyline); the velocity is the logged one times ``rate`` = d tau / d t. An
    entry is valid where ``tau_s`` lies between two valid samples at most
    ``MAX_INTERPOLATED_GAP_S`` apart (or on one).
    """
    idx = np.flatnonzero(tracks.valid[row])
    tv = t_s[idx]
    out: dict[str, np.ndarray] = {}
    for name in ("x", "y", "z", "vx", "vy"):
        out[name] = np.interp(tau_s, tv, getattr(tracks, name)[row, idx])
    out["vx"] = out["vx"] * rate
    out["vy"] = out["vy"] * rate
    out["yaw"] = wrap_angle(np.interp(tau_s, tv, np.unwrap(tracks.yaw[row, idx])))
    eps = 1e-9
    inside = (tau_s >= tv[0] - eps) & (tau_s <= tv[-1] + eps)
    after = np.clip(np.searchsorted(tv, tau_s - eps), 0, len(tv) - 1)
    before = np.clip(after - 1, 0, len(tv) - 1)
    on_sample = np.abs(tv[after] - tau_s) <= eps
    small_gap = (tv[after] - tv[before]) <= MAX_INTERPOLATED_GAP_S + eps
    out["valid"] = inside & (on_sample | small_gap)
    return out


def moving_along(path: Path, s: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """State at arc lengths ``s`` [m] with speeds ``v`` [m/s] along ``path``.

    Velocity points along the path's tangent; yaw is the logged yaw there (the tangent on the
    extensions).
    """
    x, y, z, heading, yaw = path.at(s)
    return {"x": x, "y": y, "z": z, "yaw": wrap_angle(yaw), "vx": v * np.cos(heading), "vy": v * np.sin(heading)}


def lead_of(scenario: Scenario, step: int) -> int | None:
    """Row of the nearest vehicle ahead of the ego in its lane at ``step``, or None.

    "In its lane" is judged along the ego's own path from ``step`` on (its logged positions,
    extended straight): within ``LEAD_MAX_LATERAL_M`` of it, heading within
    ``LEAD_MAX_HEADING_RAD`` of it, and at most ``LEAD_MAX_DISTANCE_M`` ahead.
    """
    tracks = scenario.tracks
    ego = scenario.ego_index
    if not tracks.valid[ego, step]:
        return None
    path = Path.of_agent(tracks, ego, step)
    rows = np.flatnonzero(tracks.valid[:, step] & (tracks.agent_types == AgentType.VEHICLE))
    rows = rows[rows != ego]
    if rows.size == 0:
        return None
    s, d = path.project(tracks.x[rows, step], tracks.y[rows, step])
    s_ego = path.project(tracks.x[ego, step], tracks.y[ego, step])[0][0]
    heading = np.interp(s, path.s, path.heading)
    ahead = s - s_ego
    ok = (
        (ahead > 0.0)
        & (ahead <= LEAD_MAX_DISTANCE_M)
        & (np.abs(d) <= LEAD_MAX_LATERAL_M)
        & (np.abs(wrap_angle(tracks.yaw[rows, step] - heading)) <= LEAD_MAX_HEADING_RAD)
    )
    if not ok.any():
        return None
    return int(rows[ok][np.argmin(ahead[ok])])


def resolve_agent(scenario: Scenario, rule: str, step: int, rng: np.random.Generator) -> int | None:
    """Row chosen by ``rule`` at ``step``: an agent id, "lead", "nearest" (nearest other vehicle),
    "random" (a random other vehicle valid at ``step``) or "ego". None when the rule finds none.
    """
    tracks = scenario.tracks
    ego = scenario.ego_index
    if rule == "ego":
        return ego
    if rule == "lead":
        return lead_of(scenario, step)
    if rule in ("nearest", "random"):
        rows = np.flatnonzero(tracks.valid[:, step] & (tracks.agent_types == AgentType.VEHICLE))
        rows = rows[rows != ego]
        if rows.size == 0:
            return None
        if rule == "random":
            return int(rows[rng.integers(rows.size)])
        dist = np.hypot(tracks.x[rows, step] - tracks.x[ego, step], tracks.y[rows, step] - tracks.y[ego, step])
        return int(rows[np.argmin(dist)])
    try:
        return tracks.index_of(rule)
    except KeyError:
        return None


def adjacent_lane_offsets(scenario: Scenario, x: float, y: float, heading: float) -> dict[int, float]:
    """Signed lateral offsets [m] (left positive) of the nearest car lane on each side of a point.

    A lane counts when its centerline passes abeam of the point within 2..6 m, running within
    20 degrees of ``heading`` [rad]. Returns ``{+1: offset}`` for the left, ``{-1: offset}`` for the
    right, each only when such a lane exists.
    """
    lanes = [lane for lane in scenario.road_map.lanes if lane.lane_type.lower() not in NON_CAR_LANES and len(lane.centerline) >= 2]
    if not lanes:
        return {}
    ax = np.concatenate([lane.centerline[:-1, 0] for lane in lanes])
    ay = np.concatenate([lane.centerline[:-1, 1] for lane in lanes])
    bx = np.concatenate([lane.centerline[1:, 0] for lane in lanes])
    by = np.concatenate([lane.centerline[1:, 1] for lane in lanes])
    dx, dy = bx - ax, by - ay
    seg2 = dx * dx + dy * dy
    ok = seg2 > 1e-12
    ax, ay, dx, dy, seg2 = ax[ok], ay[ok], dx[ok], dy[ok], seg2[ok]
    t = ((x - ax) * dx + (y - ay) * dy) / seg2
    abeam = (t >= 0.0) & (t <= 1.0)
    fx, fy = ax + t * dx, ay + t * dy
    c, s = np.cos(heading), np.sin(heading)
    lon = (fx - x) * c + (fy - y) * s
    lat = -(fx - x) * s + (fy - y) * c
    aligned = np.abs(wrap_angle(np.arctan2(dy, dx) - heading)) <= np.radians(20.0)
    cand = abeam & aligned & (np.abs(lon) < 0.5) & (np.abs(lat) >= 2.0) & (np.abs(lat) <= 6.0)
    out: dict[int, float] = {}
    for side in (1, -1):
        hits = lat[cand & (np.sign(lat) == side)]
        if hits.size:
            out[side] = float(hits[np.argmin(np.abs(hits))])
    return out



# ----------------------------------------------------------------------------- conflict points

#: Paths are sampled every this many metres when their conflict points are searched [m].
CONFLICT_SPACING_M = 0.5
#: A crossing, merging or pedestrian conflict: the two paths pass within this [m] of each other.
CONFLICT_MAX_GAP_M = 2.0
#: An oncoming conflict: anti-parallel paths within this [m] (a lane apart; staged with a lateral move).
ONCOMING_MAX_GAP_M = 5.0
#: The ego must travel at least this far [m] in its log for it to reach a conflict point.
MIN_EGO_TRAVEL_M = 2.0
#: A road user must travel at least this far [m] in its log to have a path of its own.
MIN_AGENT_TRAVEL_M = 1.0
#: How far past its logged end [m] an agent's path may be extended straight to reach a conflict.
AGENT_EXTENSION_M = {int(AgentType.VEHICLE): 25.0, int(AgentType.CYCLIST): 15.0, int(AgentType.PEDESTRIAN): 4.0}
#: A path that starts farther than this [m] from the ego's and joins it, same direction, merges.
MERGE_MIN_START_OFFSET_M = 2.5
#: Conflict kinds, by the angle between the two paths at the point.
CONFLICT_KINDS = ("crossing", "merge", "oncoming", "pedestrian")


@dataclass(frozen=True, slots=True)
class Conflict:
    """Where another road user's logged path comes near the ego's, and when each gets there.

    Attributes:
        row: the road user's row in the scenario's tracks; ``agent_id`` its id.
        kind: "crossing", "merge", "oncoming" or "pedestrian" (any angle, a pedestrian).
        s_ego: arc length of the point along the ego's logged path [m].
        s_agent: arc length along the road user's path from its first valid step [m] (beyond
            its logged length: on the straight extension).
        gap_m: distance between the two paths there [m].
        x, y: the ego's path point [m].
        angle: the road user's heading minus the ego's there, wrapped [rad].
        t_ego_s: when the logged ego's centre reaches it [s from the start].
        t_agent_s: when the road user's centre reaches it in the log [s], NaN on the extension.
    """

    row: int
    agent_id: str
    kind: str
    s_ego: float
    s_agent: float
    gap_m: float
    x: float
    y: float
    angle: float
    t_ego_s: float
    t_agent_s: float

    @property
    def mismatch_s(self) -> float:
        """How far apart in time the log has the two at the point [s] (inf when the agent never gets there)."""
        return abs(self.t_agent_s - self.t_ego_s) if np.isfinite(self.t_agent_s) else float("inf")


def arrival_s(path: Path, tracks: Tracks, row: int, t_s: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(valid steps from ``start``, their arc lengths along ``path`` [m], never decreasing)."""
    idx = np.flatnonzero(tracks.valid[row, start:]) + start
    s = path.project(tracks.x[row, idx], tracks.y[row, idx], (-1.0, path.length + 1.0))[0]
    return idx, np.maximum.accumulate(s)


def time_at(s_query: np.ndarray | float, steps_s: np.ndarray, t_steps: np.ndarray) -> np.ndarray:
    """When each arc length ``s_query`` [m] is first reached, between samples [s] (NaN: never)."""
    q = np.atleast_1d(np.asarray(s_query, float))
    k = np.searchsorted(steps_s, q, side="left")
    out = np.full(q.shape, np.nan)
    out[k == 0] = t_steps[0]
    mid = (k > 0) & (k < len(steps_s))
    km = k[mid]
    s0, s1 = steps_s[km - 1], steps_s[km]
    w = np.where(s1 > s0, (q[mid] - s0) / np.where(s1 > s0, s1 - s0, 1.0), 1.0)
    out[mid] = t_steps[km - 1] + w * (t_steps[km] - t_steps[km - 1])
    return out


#: A conflict the ego reaches sooner than this [s] after the start leaves no time to stage it.
MIN_CONFLICT_TIME_S = 1.0


def along_ego(scenario: Scenario, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The logged ego's ``path`` sampled every ``CONFLICT_SPACING_M``: (arc length [m], when the
    logged ego gets there [s] (NaN: never), x [m], y [m], heading [rad]) of each sample."""
    e_idx, e_s = arrival_s(path, scenario.tracks, scenario.ego_index, times_s(scenario))
    se = np.arange(0.0, path.length + 1e-9, CONFLICT_SPACING_M)
    te = time_at(se, e_s, times_s(scenario)[e_idx])
    ex, ey, _, eh, _ = path.at(se)
    return se, te, ex, ey, eh


def conflicts(scenario: Scenario) -> list[Conflict]:
    """The conflict points of every moving road user with the ego's logged path, nearest first.

    Each road user (vehicle, cyclist, pedestrian; ``MIN_AGENT_TRAVEL_M`` travelled) has at most
    one. Its path, extended straight by ``AGENT_EXTENSION_M``, comes within
    ``CONFLICT_MAX_GAP_M`` of the ego's logged path (``ONCOMING_MAX_GAP_M`` for one driving the
    other way) over a stretch of the ego's path that the ego reaches at least
    ``MIN_CONFLICT_TIME_S`` after the start. The point is where the paths are nearest on that
    stretch (a crossing's point); for a merge, the first point within ``CONFLICT_SPACING_M`` of
    that distance (where it joins); for an oncoming road user, where the log has the two pass
    each other (else the nearest). A
    vehicle already in the ego's lane driving its way (a lead or a follower) is not a conflict.
    The list is sorted by ``mismatch_s`` (the road user whose log nearly stages the conflict
    comes first), then gap, then id. Empty when the ego travels less than ``MIN_EGO_TRAVEL_M``.
    """
    tracks = scenario.tracks
    ego = scenario.ego_index
    t = times_s(scenario)
    if tracks.valid[ego].sum() < 2:
        return []
    pe = Path.of_agent(tracks, ego)
    if pe.length < MIN_EGO_TRAVEL_M:
        return []
    se, te, ex, ey, eh = along_ego(scenario, pe)
    late = np.isfinite(te) & (te >= MIN_CONFLICT_TIME_S)
    lo_x, hi_x, lo_y, hi_y = ex.min(), ex.max(), ey.min(), ey.max()
    out: list[Conflict] = []
    for row in range(tracks.num_agents):
        kind_type = int(tracks.agent_types[row])
        if row == ego or kind_type not in AGENT_EXTENSION_M or tracks.valid[row].sum() < 2:
            continue
        idx = np.flatnonzero(tracks.valid[row])
        px, py = tracks.x[row, idx], tracks.y[row, idx]
        if np.hypot(np.diff(px), np.diff(py)).sum() < MIN_AGENT_TRAVEL_M:
            continue
        reach = ONCOMING_MAX_GAP_M + AGENT_EXTENSION_M[kind_type]
        if px.max() < lo_x - reach or px.min() > hi_x + reach or py.max() < lo_y - reach or py.min() > hi_y + reach:
            continue
        pa = Path.of_agent(tracks, row)
        if pa.length < MIN_AGENT_TRAVEL_M:
            continue
        sa = np.arange(0.0, pa.length + AGENT_EXTENSION_M[kind_type] + 1e-9, CONFLICT_SPACING_M)
        ax, ay, _, ah, _ = pa.at(sa)
        dist = np.hypot(ex[:, None] - ax[None, :], ey[:, None] - ay[None, :])
        j_near = np.argmin(dist, axis=1)
        d_near = dist[np.arange(se.size), j_near]
        angle = wrap_angle(ah[j_near] - eh)
        oncoming = np.abs(angle) > np.radians(150.0)
        close = late & (d_near <= np.where(oncoming, ONCOMING_MAX_GAP_M, CONFLICT_MAX_GAP_M))
        if not close.any():
            continue
        first = int(np.argmax(close))
        end = first + int(np.argmax(~close[first:])) if not close[first:].all() else se.size
        a_idx, a_s = arrival_s(pa, tracks, row, t)
        run = np.arange(first, end)
        ta = np.where(sa[j_near[run]] <= pa.length, time_at(sa[j_near[run]], a_s, t[a_idx]), np.nan)
        i = int(run[np.argmin(d_near[run])])
        a = float(angle[i])
        if kind_type == AgentType.PEDESTRIAN:
            kind = "pedestrian"
        elif abs(a) > np.radians(150.0):
            kind = "oncoming"
            if np.isfinite(ta).any():
                i = int(run[np.nanargmin(np.abs(ta - te[run]))])
        elif abs(a) < np.radians(30.0):
            start_offset = abs(float(pe.project(px[:1], py[:1])[1][0]))
            if start_offset <= MERGE_MIN_START_OFFSET_M:
                continue  # in the ego's lane already: a lead or a follower, not a conflict
            kind = "merge"
            i = int(run[np.argmax(d_near[run] <= d_near[run].min() + CONFLICT_SPACING_M)])
        else:
            kind = "crossing"
        j = int(j_near[i])
        a = float(angle[i])
        t_agent = float(ta[i - first])
        out.append(
            Conflict(
                row, str(tracks.agent_ids[row]), kind, float(se[i]), float(sa[j]), float(d_near[i]),
                float(ex[i]), float(ey[i]), a, float(te[i]), t_agent,
            )
        )
    out.sort(key=lambda c: (c.mismatch_s, c.gap_m, c.agent_id))
    return out


def lane_half_width(scenario: Scenario, x: float, y: float, heading: float, max_dist: float = 3.0) -> float:
    """Half the width [m] of the car lane nearest ``(x, y)`` running within 45 deg of ``heading`` (either way).

    From the lane's boundaries where the map has them, else ``DEFAULT_LANE_WIDTH``; the default
    too when no lane is within ``max_dist`` [m].
    """
    best, width = max_dist, DEFAULT_LANE_WIDTH
    for lane in scenario.road_map.lanes:
        c = lane.centerline
        if lane.lane_type.lower() in NON_CAR_LANES or len(c) < 2:
            continue
        ax, ay, dx, dy = c[:-1, 0], c[:-1, 1], np.diff(c[:, 0]), np.diff(c[:, 1])
        seg2 = np.where(dx * dx + dy * dy > 1e-12, dx * dx + dy * dy, 1.0)
        u = np.clip(((x - ax) * dx + (y - ay) * dy) / seg2, 0.0, 1.0)
        d = np.hypot(x - ax - u * dx, y - ay - u * dy)
        k = int(np.argmin(d))
        across = abs(wrap_angle(np.arctan2(dy[k], dx[k]) - heading))
        if d[k] >= best or np.pi / 4 < across < 3 * np.pi / 4:
            continue
        best = float(d[k])
        width = DEFAULT_LANE_WIDTH
        if lane.left_boundary is not None and lane.right_boundary is not None:
            fx, fy = ax[k] + u[k] * dx[k], ay[k] + u[k] * dy[k]
            gaps = [polyline_distance(b, float(fx), float(fy)) for b in (lane.left_boundary, lane.right_boundary)]
            if all(0.5 < g < 4.0 for g in gaps):
                width = sum(gaps)
    return width / 2


def polyline_distance(points: np.ndarray, x: float, y: float) -> float:
    """Distance [m] of ``(x, y)`` to the polyline through ``points`` (P, >=2) [m]."""
    if len(points) == 1:
        return float(np.hypot(points[0, 0] - x, points[0, 1] - y))
    ax, ay, dx, dy = points[:-1, 0], points[:-1, 1], np.diff(points[:, 0]), np.diff(points[:, 1])
    seg2 = np.where(dx * dx + dy * dy > 1e-12, dx * dx + dy * dy, 1.0)
    u = np.clip(((x - ax) * dx + (y - ay) * dy) / seg2, 0.0, 1.0)
    return float(np.min(np.hypot(x - ax - u * dx, y - ay - u * dy)))


def curvature(path: Path, s: np.ndarray) -> np.ndarray:
    """|d heading / d s| [1/m] at arc lengths ``s`` (the path's chord tangent, differenced over 2 m)."""
    h = np.interp(s + TANGENT_CHORD_M, path.s, path.heading) - np.interp(s - TANGENT_CHORD_M, path.s, path.heading)
    return np.abs(h) / (2 * TANGENT_CHORD_M)
