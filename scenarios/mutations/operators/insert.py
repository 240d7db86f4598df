"""Inserted actors: a new vehicle or pedestrian placed from the map where no logged one fits.

Each operator adds one road user with a new id (``INSERTED_STEM`` + what it does, made unique
against the scenario's ids), a box of the scenario's typical size for its type
(``typical_box``), and a track laid on the ego's lane, an adjacent lane, a signalled crossing
lane or a crosswalk. It never overlaps anyone when it appears, never touches the logged ego
before the moment its manoeuvre is planned for (else ``NotApplicable("overlap_ego")``), is
tagged ``"inserted:<id>"`` (``inserted_agents``) and replays its track whatever the agents
mode (``conditions.replay_agents``).
"""

from __future__ import annotations

import numpy as np
import shapely

from scenarios.model import AgentType, FeatureKind, Scenario, SignalState
from scenarios.mutations.base import NotApplicable, Param, get, register, tag
from scenarios.mutations.edit import TrackEditor, mark_replayed
from scenarios.mutations.geometry import (
    CONFLICT_SPACING_M,
    MIN_CONFLICT_TIME_S,
    Path,
    along_ego,
    arrival_s,
    boxes_overlap,
    lane_half_width,
    moving_along,
    nearest_step,
    time_at,
    times_s,
    wrap_angle,
)
from scenarios.mutations.operators.interactions import _follow, cut_in

#: Ids of inserted road users start with this.
INSERTED_STEM = "inserted-"
#: Tag naming an inserted road user: ``"inserted:<id>"``.
INSERTED_TAG = "inserted"
#: Box [m] (length, width, height) of an inserted road user when the scenario has none of its type.
DEFAULT_BOX = {int(AgentType.VEHICLE): (4.5, 1.9, 1.6), int(AgentType.PEDESTRIAN): (0.6, 0.6, 1.75)}
#: Boxes outside these lengths [m] are not typical (trucks, buses, default-sized labels).
TYPICAL_LENGTH_M = {int(AgentType.VEHICLE): (3.5, 6.0), int(AgentType.PEDESTRIAN): (0.2, 1.5)}
#: Signal states a red-light runner drives through.
RED = (int(SignalState.STOP), int(SignalState.FLASHING_STOP))
#: A signalled lane's path is its centreline with successors (predecessors) chained this far [m].
LANE_CHAIN_M = 80.0
#: A lane path crossing the ego's path counts when within this [m] and at least 30 deg across.
CROSSING_MAX_GAP_M = 2.0
#: A pedestrian starts this far [m] beyond the crosswalk's end or the road edge (on the kerb).
KERB_M = 1.0
#: A crossing road user's manoeuvre starts when it comes this close [m] to the ego's side.
CORRIDOR_MARGIN_M = 0.5


def inserted_agents(scenario: Scenario) -> tuple[str, ...]:
    """Ids of the road users an insert operator added to ``scenario`` (from its tags)."""
    return tuple(t.split(":", 1)[1] for t in scenario.tags if t.startswith(INSERTED_TAG + ":"))


def typical_box(scenario: Scenario, agent_type: int) -> tuple[float, float, float]:
    """(length, width, height) [m]: the scenario's median box of ``agent_type``, else ``DEFAULT_BOX``."""
    tr = scenario.tracks
    lo, hi = TYPICAL_LENGTH_M[agent_type]
    rows = np.flatnonzero((tr.agent_types == agent_type) & (tr.length >= lo) & (tr.length <= hi) & (tr.width > 0.2))
    rows = rows[rows != scenario.ego_index]
    if rows.size == 0:
        return DEFAULT_BOX[agent_type]
    height = float(np.median(tr.height[rows])) if (tr.height[rows] > 0.3).all() else DEFAULT_BOX[agent_type][2]
    return float(np.median(tr.length[rows])), float(np.median(tr.width[rows])), height


def _insert(
    scenario: Scenario,
    operator: str,
    what: str,
    agent_type: int,
    box: tuple[float, float, float],
    first: int,
    state: dict[str, np.ndarray],
    planned: int,
) -> Scenario:
    """``scenario`` with a new road user whose ``state`` covers steps ``first`` to the end.

    ``NotApplicable``: it overlaps someone at ``first`` [overlap_at_start], or the logged ego
    at any step before ``planned`` [overlap_ego].
    """
    tracks = scenario.tracks
    length, width, height = box
    steps = np.arange(first, scenario.num_steps)
    valid = tracks.valid[:, first]
    if valid.any():
        hit = boxes_overlap(
            state["x"][0], state["y"][0], state["yaw"][0], length, width,
            tracks.x[valid, first], tracks.y[valid, first], tracks.yaw[valid, first], tracks.length[valid], tracks.width[valid],
        )
        if np.any(hit):
            who = tracks.agent_ids[valid][np.argmax(hit)]
            raise NotApplicable(scenario.source, "overlap_at_start", f"the inserted {what} would overlap {str(who)!r} at step {first}")
    e = scenario.ego_index
    before = (steps < planned) & tracks.valid[e, steps]
    if before.any():
        k = steps[before]
        hit = boxes_overlap(
            state["x"][before], state["y"][before], state["yaw"][before], length, width,
            tracks.x[e, k], tracks.y[e, k], tracks.yaw[e, k], tracks.length[e], tracks.width[e],
        )
        if np.any(hit):
            raise NotApplicable(
                scenario.source, "overlap_ego", f"the inserted {what} would touch the logged ego at step {int(k[np.argmax(hit)])}, before step {planned}"
            )
    edit = TrackEditor(scenario)
    agent_id = edit.unique_id(INSERTED_STEM + what)
    row = edit.add_agent(agent_id, agent_type, length, width, height)
    edit.set_state(row, slice(first, None), {**state, "valid": np.ones(steps.size, bool)})
    out = edit.scenario(tags=(tag(operator, agent_id), f"{INSERTED_TAG}:{agent_id}"))
    return mark_replayed(out, agent_id)


def _ego_path(scenario: Scenario) -> tuple[Path, np.ndarray, np.ndarray]:
    """The logged ego's path, its valid steps and their arc lengths [m]."""
    tracks = scenario.tracks
    e = scenario.ego_index
    if tracks.valid[e].sum() < 2:
        raise NotApplicable(scenario.source, "ego_not_valid", "the ego is valid at fewer than two steps")
    path = Path.of_agent(tracks, e)
    idx, s = arrival_s(path, tracks, e, times_s(scenario))
    return path, idx, s


@register(
    "insert_lead_brake",
    Param("gap_m", "m", 15.0, low=1.0, high=150.0, doc="bumper-to-bumper gap ahead of the ego when the lead appears"),
    Param("rel_speed", "m/s", 0.0, low=-20.0, high=10.0, doc="the lead's speed minus the ego's when it appears"),
    Param("spawn_s", "s", 0.0, low=0.0, doc="when the lead appears, from the scenario's start (snapped to a step)"),
    Param("brake_s", "s", 2.0, low=0.0, high=30.0, doc="how long after it appears it starts braking"),
    Param("decel", "m/s2", 6.0, low=0.5, high=10.0, doc="constant deceleration until it stops"),
)
def insert_lead_brake(
    scenario: Scenario, rng: np.random.Generator, *, gap_m: float, rel_speed: float, spawn_s: float, brake_s: float, decel: float
) -> Scenario:
    """A new lead vehicle ``gap_m`` [m] ahead of the ego on its lane that brakes to a stop.

    It appears at the step nearest ``spawn_s`` on the ego's logged path (extended straight),
    its rear ``gap_m`` ahead of the ego's front along the path, at the ego's speed +
    ``rel_speed``; it follows the path with the intelligent driver model behind the logged
    traffic in the lane (desired speed: its starting one) until ``brake_s`` after appearing,
    then brakes at ``decel`` [m/s2] to a stop and stands. Its planned moment is the braking
    onset: it may not touch the logged ego before then.
    """
    tracks = scenario.tracks
    e = scenario.ego_index
    t = times_s(scenario)
    k_s = nearest_step(scenario, spawn_s)
    if not tracks.valid[e, k_s]:
        raise NotApplicable(scenario.source, "ego_not_valid", f"the ego is not valid at step {k_s}")
    path, _, _ = _ego_path(scenario)
    box = typical_box(scenario, int(AgentType.VEHICLE))
    s_e = float(path.project(tracks.x[e, k_s], tracks.y[e, k_s])[0][0])
    v_l = float(np.hypot(tracks.vx[e, k_s], tracks.vy[e, k_s])) + rel_speed
    if v_l < 0:
        raise NotApplicable(scenario.source, "lead_speed", f"the lead would drive backwards ({v_l:.2f} m/s)")
    s0 = s_e + tracks.length[e] / 2 + gap_m + box[0] / 2
    k_b = min(nearest_step(scenario, t[k_s] + brake_s), scenario.num_steps - 1)
    s_pre, v_pre = _follow(scenario, path, tracks.num_agents, box[0], s0, v_l, k_s)
    s = np.concatenate([[s0], s_pre])[: k_b - k_s + 1]
    v = np.concatenate([[v_l], v_pre])[: k_b - k_s + 1]
    tau = t[k_b:] - t[k_b]
    vb = float(v[-1])
    tc = np.minimum(tau, vb / decel)
    s = np.concatenate([s[:-1], s[-1] + vb * tc - 0.5 * decel * tc**2])
    v = np.concatenate([v[:-1], np.maximum(vb - decel * tau, 0.0)])
    state = moving_along(path, s, v)
    return _insert(scenario, "insert_lead_brake", "lead", int(AgentType.VEHICLE), box, k_s, state, k_b)


@register("insert_cut_in", *(get("cut_in").param(name) for name in ("gap_m", "rel_speed", "onset_s", "duration_s", "side", "lead_in_s")))
def insert_cut_in(
    scenario: Scenario,
    rng: np.random.Generator,
    *,
    gap_m: float,
    rel_speed: float,
    onset_s: float,
    duration_s: float,
    side: str,
    lead_in_s: float,
) -> Scenario:
    """A new vehicle on an adjacent lane of the map that cuts in ``gap_m`` ahead of the ego.

    The manoeuvre is ``cut_in``'s with ``source="clone"`` (its docstring has the geometry): the
    new vehicle (the box of a random car of the scene) drives at constant speed in the adjacent lane from
    ``lead_in_s`` before the lateral move, moves in over ``duration_s`` and follows the ego's
    lane after. Its planned moment is the insertion, halfway through the move.
    """
    made = cut_in(
        scenario, rng, gap_m=gap_m, ttc_s=None, rel_speed=rel_speed, onset_s=onset_s, duration_s=duration_s,
        side=side, source="clone", lead_in_s=lead_in_s,
    )
    row = made.num_agents - 1
    tr = made.tracks
    first = int(np.argmax(tr.valid[row]))
    state = {name: np.array(getattr(tr, name)[row, first:]) for name in ("x", "y", "z", "yaw", "vx", "vy")}
    box = (float(tr.length[row]), float(tr.width[row]), float(tr.height[row]))
    planned = nearest_step(scenario, onset_s + duration_s / 2)
    return _insert(scenario, "insert_cut_in", "cut_in", int(AgentType.VEHICLE), box, first, state, planned)


def _lane_path(scenario: Scenario, lane_id: str) -> Path:
    """Lane ``lane_id``'s centreline with its first predecessors and successors chained ``LANE_CHAIN_M`` each way."""
    road = scenario.road_map
    lanes = {lane.id: lane for lane in road.lanes}
    pieces = [lanes[lane_id].centerline[:, :2]]
    for forward in (True, False):
        current, length, seen = lanes[lane_id], 0.0, {lane_id}
        while length < LANE_CHAIN_M:
            nxt = [n for n in (current.successors if forward else current.predecessors) if n in lanes and n not in seen]
            if not nxt:
                break
            current = lanes[sorted(nxt)[0]]
            seen.add(current.id)
            c = current.centerline[:, :2]
            length += float(np.hypot(np.diff(c[:, 0]), np.diff(c[:, 1])).sum())
            pieces = [*pieces, c] if forward else [c, *pieces]
    pts = np.vstack(pieces)
    return Path.from_points(pts[:, 0], pts[:, 1])


@register(
    "insert_red_light_runner",
    Param("conflict", "", 0, kind="int", low=0, high=100, doc="index into the red signalled lanes crossing the ego's path, first reached first"),
    Param("offset_s", "s", 0.0, low=-3.0, high=3.0, doc="when it reaches the ego's path, after the logged ego does"),
    Param("speed", "m/s", 12.0, low=3.0, high=25.0, doc="its constant speed through the intersection"),
    Param("lead_in_s", "s", 4.0, low=1.0, high=20.0, doc="how long before reaching the ego's path it appears"),
)
def insert_red_light_runner(
    scenario: Scenario, rng: np.random.Generator, *, conflict: int, offset_s: float, speed: float, lead_in_s: float
) -> Scenario:
    """A new vehicle on a crossing lane that runs its red light into the ego's path.

    Candidates are the map's signalled lanes (``scenario.signals``) whose centreline, chained
    with successors and predecessors, crosses the ego's logged path (within
    ``CROSSING_MAX_GAP_M``, at least 30 deg across) where the ego gets at least
    ``MIN_CONFLICT_TIME_S`` after the start; they are sorted by when the ego gets there. The
    vehicle drives the lane at ``speed`` [m/s], appears ``lead_in_s`` before reaching the ego's
    path (at step 0 when that is earlier) and reaches it at the logged ego's time +
    ``offset_s``, passing its stop point while the signal shows red (else not applicable
    [not_red]); after the crossing it follows the lane with the intelligent driver model. Its
    planned moment is entering the ego's corridor (``CORRIDOR_MARGIN_M`` from the ego's side).
    """
    signals = scenario.signals
    if signals is None or signals.num_signals == 0:
        raise NotApplicable(scenario.source, "no_signal", "the map has no traffic signals")
    path_e, _, _ = _ego_path(scenario)
    t = times_s(scenario)
    _, te, ex, ey, eh = along_ego(scenario, path_e)
    known = {lane.id for lane in scenario.road_map.lanes}
    candidates = []
    for i_sig, lane_id in enumerate(signals.lane_ids.tolist()):
        if lane_id not in known or not np.isin(signals.states[i_sig], RED).any():
            continue
        lp = _lane_path(scenario, lane_id)
        sl = np.arange(lp.s[1], lp.length + 1e-9, CONFLICT_SPACING_M)
        lx, ly, _, lh, _ = lp.at(sl)
        dist = np.hypot(ex[:, None] - lx[None, :], ey[:, None] - ly[None, :])
        i, j = np.unravel_index(np.argmin(dist), dist.shape)
        across = abs(wrap_angle(lh[j] - eh[i]))
        if dist[i, j] > CROSSING_MAX_GAP_M or not np.pi / 6 <= across <= 5 * np.pi / 6:
            continue
        if not np.isfinite(te[i]) or te[i] < MIN_CONFLICT_TIME_S:
            continue
        stop = signals.stop_points[i_sig]
        s_stop = float(lp.project(stop[:1], stop[1:2])[0][0])
        candidates.append((float(te[i]), lane_id, i_sig, lp, float(sl[j]), s_stop))
    if not candidates:
        raise NotApplicable(scenario.source, "no_crossing_signal", "no red signalled lane crosses the ego's logged path")
    candidates.sort(key=lambda c: (c[0], c[1]))
    if conflict >= len(candidates):
        raise NotApplicable(scenario.source, "conflict_index", f"conflict {conflict} asked, the scene has {len(candidates)}")
    t_ego, lane_id, i_sig, lp, s_conf, s_stop = candidates[conflict]
    t_c = t_ego + offset_s
    if t_c > t[-1]:
        raise NotApplicable(scenario.source, "timing", f"the conflict at {t_c:.2f} s is after the scenario's end")
    first = nearest_step(scenario, max(t_c - lead_in_s, 0.0))
    k_c = int(np.searchsorted(t, t_c - 1e-9))
    k_c = min(k_c, scenario.num_steps - 1)
    s_pre = s_conf - speed * (t_c - t[first : k_c + 1])
    t_stop = t_c - (s_conf - s_stop) / speed
    k_stop = int(np.clip(nearest_step(scenario, t_stop), 0, scenario.num_steps - 1))
    if not s_pre[0] <= s_stop <= s_conf:
        raise NotApplicable(
            scenario.source, "stop_point", f"lane {lane_id!r}'s stop point is not between where the runner appears and the crossing"
        )
    if int(signals.states[i_sig, k_stop]) not in RED:
        raise NotApplicable(scenario.source, "not_red", f"lane {lane_id!r}'s signal is not red when the runner passes it at {t_stop:.2f} s")
    box = typical_box(scenario, int(AgentType.VEHICLE))
    s_post, v_post = _follow(scenario, lp, scenario.tracks.num_agents, box[0], float(s_pre[-1]), speed, k_c)
    s = np.concatenate([s_pre, s_post])
    v = np.concatenate([np.full(s_pre.shape, speed), v_post])
    state = moving_along(lp, s, v)
    # its planned moment: entering the ego's corridor (the ego's half width, its half length, a margin)
    corridor = scenario.tracks.width[scenario.ego_index] / 2 + box[0] / 2 + CORRIDOR_MARGIN_M
    planned = int(np.searchsorted(t, t_c - corridor / speed - 1e-9))
    return _insert(scenario, "insert_red_light_runner", "red_light_runner", int(AgentType.VEHICLE), box, first, state, planned)


def _road_edge_distance(scenario: Scenario, x: float, y: float, dx: float, dy: float, limit: float) -> float | None:
    """Distance [m] along the ray from ``(x, y)`` in unit direction ``(dx, dy)`` to the first road edge, or None within ``limit``."""
    best = None
    for edge in scenario.road_map.road_edges:
        p = edge.points[:, :2]
        if len(p) < 2:
            continue
        ax, ay = p[:-1, 0], p[:-1, 1]
        bx, by = p[1:, 0] - ax, p[1:, 1] - ay
        den = dx * by - dy * bx
        ok = np.abs(den) > 1e-12
        den = np.where(ok, den, 1.0)
        r = ((ax - x) * by - (ay - y) * bx) / den
        u = ((ax - x) * dy - (ay - y) * dx) / den
        hit = ok & (r > 0) & (r <= limit) & (u >= 0) & (u <= 1)
        if hit.any():
            d = float(r[hit].min())
            best = d if best is None else min(best, d)
    return best


def _edge_or_lane(scenario: Scenario, x: float, y: float, heading: float, direction: np.ndarray) -> float:
    """Distance [m] from ``(x, y)`` along ``direction`` to the road edge (the lane's edge where the map has none within 25 m)."""
    edge = _road_edge_distance(scenario, x, y, float(direction[0]), float(direction[1]), 25.0)
    return edge if edge is not None else lane_half_width(scenario, x, y, heading)


@register(
    "insert_pedestrian",
    Param("where", "", "auto", kind="str", choices=("auto", "crosswalk", "road_edge"), doc="crosswalk the ego crosses, or the road edge"),
    Param("crosswalk", "", 0, kind="int", low=0, high=100, doc="index into the crosswalks the ego crosses, first reached first"),
    Param("conflict_s", "s", 4.0, low=MIN_CONFLICT_TIME_S, doc="from the road edge: the ego's logged time at the point it steps into"),
    Param("offset_s", "s", 0.0, low=-3.0, high=3.0, doc="when it reaches the ego's path, after the logged ego does"),
    Param("speed", "m/s", 1.4, low=0.5, high=3.0, doc="its walking speed"),
    Param("side", "", "auto", kind="str", choices=("auto", "left", "right"), doc="which side of the ego's path it comes from"),
)
def insert_pedestrian(
    scenario: Scenario,
    rng: np.random.Generator,
    *,
    where: str,
    crosswalk: int,
    conflict_s: float,
    offset_s: float,
    speed: float,
    side: str,
) -> Scenario:
    """A new pedestrian stepping out into the ego's path, on a crosswalk or from the road edge.

    On a crosswalk (``where`` "crosswalk", or "auto" where the ego's logged path crosses one at
    least ``MIN_CONFLICT_TIME_S`` after the start): it walks along the crosswalk's long axis
    from ``KERB_M`` beyond its end on ``side`` of the ego (auto: random) and reaches the ego's
    path (where the crosswalk's centre projects on it) at the logged ego's time there
    + ``offset_s``. From the road edge: at the point of the
    ego's path the ego reaches at ``conflict_s``, it walks square to the path from ``KERB_M``
    beyond the road edge (the map's road edges, else the lane's edge + ``KERB_M``). It walks at
    ``speed`` [m/s] to as far beyond the path as it started, then stands; it appears when it
    starts walking (at step 0, already on its way, when that is earlier). Its planned moment is
    stepping into the ego's corridor (``CORRIDOR_MARGIN_M`` from the ego's side).
    """
    tracks = scenario.tracks
    path_e, e_idx, e_s = _ego_path(scenario)
    t = times_s(scenario)
    se, te, ex, ey, eh = along_ego(scenario, path_e)
    late = np.isfinite(te) & (te >= MIN_CONFLICT_TIME_S)
    crossings = []
    if where in ("auto", "crosswalk"):
        for cw in scenario.road_map.crosswalks:
            if len(cw.points) < 3:  # no area to cross (the model does not require 3 points)
                continue
            inside = shapely.contains_xy(shapely.Polygon(cw.points[:, :2]), ex, ey) & late
            if inside.any():  # where the crosswalk's centre projects on the ego's first passage through it
                enter = int(np.argmax(inside))
                leave = enter + (int(np.argmax(~inside[enter:])) if not inside[enter:].all() else int(inside.size - enter))
                centre = cw.points[:, :2].mean(axis=0)
                s_c = float(path_e.project(centre[:1], centre[1:], (se[enter] - 1.0, se[leave - 1] + 1.0))[0][0])
                s_c = float(np.clip(s_c, se[enter], se[leave - 1]))
                crossings.append((float(time_at(s_c, e_s, t[e_idx])[0]), cw, s_c))
        crossings.sort(key=lambda c: (c[0], c[1].id))
        if where == "crosswalk" and not crossings:
            raise NotApplicable(scenario.source, "no_crosswalk", "the ego's logged path crosses no crosswalk")
    if crossings and crosswalk >= len(crossings):
        raise NotApplicable(scenario.source, "conflict_index", f"crosswalk {crosswalk} asked, the ego crosses {len(crossings)}")
    pick_left = {"left": True, "right": False}.get(side, bool(rng.integers(2)))
    if crossings:
        t_ego, cw, s_c = crossings[crosswalk]
        cx, cy, _, ch, _ = path_e.at(s_c)
        pts = cw.points[:, :2]
        centre = pts.mean(axis=0)
        _, _, vt = np.linalg.svd(pts - centre)
        axis = vt[0]
        normal_left = np.array([-np.sin(ch), np.cos(ch)])
        if axis @ normal_left < 0:
            axis = -axis  # points to the ego's left
        conflict_xy = np.array([float(cx), float(cy)])
        along = (pts - conflict_xy) @ axis
        out_dir = axis if pick_left else -axis
        start_d = (along.max() if pick_left else -along.min()) + KERB_M
        far_d = (-along.min() if pick_left else along.max()) + KERB_M
    else:
        if not late.any():
            raise NotApplicable(scenario.source, "no_conflict", "the logged ego does not move after the start")
        t_ego = max(conflict_s, float(te[late][0]))
        i = int(np.argmax(late & (te >= t_ego - 1e-9)))
        if not (late & (te >= t_ego - 1e-9)).any():
            raise NotApplicable(scenario.source, "timing", f"the logged ego does not drive on after {conflict_s:.2f} s")
        t_ego = float(te[i])
        conflict_xy = np.array([ex[i], ey[i]])
        normal_left = np.array([-np.sin(eh[i]), np.cos(eh[i])])
        out_dir = normal_left if pick_left else -normal_left
        start_d, far_d = (
            _edge_or_lane(scenario, float(ex[i]), float(ey[i]), float(eh[i]), direction) + KERB_M for direction in (out_dir, -out_dir)
        )
    t_c = t_ego + offset_s
    if t_c > t[-1]:
        raise NotApplicable(scenario.source, "timing", f"the conflict at {t_c:.2f} s is after the scenario's end")
    start_xy = conflict_xy + out_dir * start_d
    walk = -out_dir
    t_start = t_c - start_d / speed
    first = int(np.searchsorted(t, max(t_start, 0.0) - 1e-9))
    dist = np.clip(speed * (t[first:] - t_start), 0.0, start_d + far_d)
    moving = speed * (t[first:] - t_start) < start_d + far_d
    x = start_xy[0] + walk[0] * dist
    y = start_xy[1] + walk[1] * dist
    yaw = np.full(dist.shape, float(np.arctan2(walk[1], walk[0])))
    v = np.where(moving, speed, 0.0)
    state = {"x": x, "y": y, "z": np.zeros_like(x), "yaw": yaw, "vx": v * walk[0], "vy": v * walk[1]}
    state["z"][:] = tracks.z[scenario.ego_index, tracks.valid[scenario.ego_index]].mean()
    box = typical_box(scenario, int(AgentType.PEDESTRIAN))
    # its planned moment: stepping into the ego's corridor (the ego's half width, its own, a margin)
    corridor = tracks.width[scenario.ego_index] / 2 + box[1] / 2 + CORRIDOR_MARGIN_M
    planned = int(np.searchsorted(t, t_c - corridor / speed - 1e-9))
    return _insert(scenario, "insert_pedestrian", "pedestrian", int(AgentType.PEDESTRIAN), box, first, state, planned)
