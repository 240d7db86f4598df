"""The other road users: the log resampled to the sim rate, and reactive IDM agents.

``SimTracks`` is the log in the env's local frame at the env's step (linear interpolation of
positions and velocities, shortest-arc interpolation of headings; a step is valid when both
bracketing log samples are). With the sim rate equal to the log rate it is the log, bit for bit,
translated by the origin.

``ReactiveAgents`` moves chosen agents along their logged paths (arc-length parametrised) with a
longitudinal law that replays the log when nothing is in the way and brakes like IDM for a
leader:

    a_track = a_log + KP * (s_log - s) + KD * (v_log - v)          (critically damped, w = 1.5 rad/s)
    a_idm   = A_MAX * (1 - (v / v0)^4 - (s* / gap)^2),  s* = S0 + v T + v dv / (2 sqrt(A_MAX B))
    a       = a_track without a leader, min(a_track, a_idm) with one, clipped to [-B_MAX, A_MAX]

``v0`` is the agent's highest logged speed (at least 1 m/s). A leader is the nearest body (the ego
or another agent, reactive or not) ahead along the agent's path within a corridor of the two
boxes' half widths (``sim.control.corridor_leaders``, the search the baselines use, with the gap
measured along the path and the leader's box oriented on it); when two agents are each other's
leader (crossing paths), the one nearer the conflict goes first. A reactive agent exists from its
first to its last logged step.

The log is the reference: an agent and a body interact (leader, conflict) only when one of them is
off its log (farther than ``ON_LOG_M`` from its logged position) or their logged boxes overlap at
some step (``logged_close_pairs``: the log itself collides); a pedestrian interacts only with the
ego and with bodies off their logs. An agent that nothing holds back and that is on its log
replays it exactly (the log's own state where it has one, whatever its logged speed says of its
positions); once held back it follows the law above and replays again when back within ``SNAP_M``
and ``SNAP_SPEED`` of its log. So with the ego on its log the agents are the log, and they depart
from it only where the ego (or what the ego moved) departs from its own.

Traffic rules (``TrafficRules``, built from the scenario by ``traffic_rules``) add standing
obstacles, each braked for with IDM (``STOP_IDM``, dv = v) and combined with the leader by the
smaller acceleration:

- signals: a vehicle or cyclist whose logged path passes its lane's stop point stops there while
  the signal is red (or yellow and it can stop at ``B_COMF``), and goes on green;
- stop signs: it stops at the controlled lane's point nearest the sign, then proceeds;
- conflicts: a reactive agent and another road user (reactive, or passive: the ego, a replayed
  or action-driven agent; not two pedestrians) whose logged paths cross at more than
  ``CONFLICT_ANGLE_RAD`` (a passive one's path goes on straight past its log's end). The right of
  way comes from the map: an approach that a stop sign or a signal not showing green controls
  within ``RIGHT_OF_WAY_M`` before the crossing yields to one that none controls; between equals,
  first come, first served. The one without it yields short of the conflict zone (the other's
  half width around the crossing) when the two would be in it less than ``CONFLICT_BUFFER_S``
  apart, and keeps yielding until the other has left it (or stands still outside it). A passive
  road user never yields: a reactive agent with the right of way keeps it.

With nothing in the way and the logged drivers obeying the same rules, the agents replay the log.

Speed: the step's hot parts run as numba kernels (``sim.agent_kernels``) where numba is installed
(``ReactiveAgents.compiled``); the numpy code here is their reference, with the same results bit
for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import shapely

from scenarios.common import wrap_angle
from scenarios.geometry import boxes_overlap
from scenarios.model import AgentType, FeatureKind, Scenario, SignalState
from sim import agent_kernels
from sim.control import IDMParams, corridor_leaders, idm_acceleration, project_to_paths

if TYPE_CHECKING:
    from sim.plan import Plan

#: IDM parameters: max acceleration, comfortable and max braking [m/s2], jam distance [m], time headway [s].
#: The short headway is the logged drivers' (with IDM's textbook 1 s, reactive agents around the
#: expert ego drift from their logs by 1.2 m on average in the NGSIM sample; with 0.6 s, 0.6 m).
A_MAX, B_COMF, B_MAX, S0, T_HEADWAY = 3.0, 3.0, 8.0, 2.0, 0.6
AGENT_IDM = IDMParams(a_max=A_MAX, b_comf=B_COMF, s0=S0, headway=T_HEADWAY)
#: Log-tracking gains (critically damped at 1.5 rad/s).
KP, KD = 2.25, 3.0
#: Leader search: lookahead length [m], sample spacing [m], extra corridor half width [m].
LOOKAHEAD_M, LOOKAHEAD_STEP_M, CORRIDOR_MARGIN_M = 40.0, 2.0, 0.3
#: IDM towards a stop line or a conflict zone (a standing obstacle): stop 0.5 m short of it.
STOP_IDM = IDMParams(a_max=A_MAX, b_comf=B_COMF, s0=0.5, headway=T_HEADWAY)
#: A stop point governs a path passing within this distance [m] heading within this angle [rad]
#: of its lane's direction.
STOP_MATCH_M, STOP_MATCH_RAD = 1.5, np.pi / 4
#: Stop signs: a vehicle has stopped at one when slower than this [m/s] within this distance [m].
STOP_SIGN_SPEED, STOP_SIGN_NEAR_M = 0.5, 3.0
#: Conflicts: paths crossing at more than this angle [rad]; the later arrival yields when it
#: would enter the conflict zone less than ``CONFLICT_BUFFER_S`` [s] after the first has left it;
#: only conflicts entered within ``CONFLICT_HORIZON_S`` [s] count; speeds below ``CONFLICT_MIN_SPEED``
#: [m/s] count as it.
CONFLICT_ANGLE_RAD, CONFLICT_BUFFER_S, CONFLICT_HORIZON_S, CONFLICT_MIN_SPEED = np.pi / 6, 1.0, 8.0, 0.5
#: An agent or body farther than this [m] from its logged position is off its log. A pair both on
#: their logs whose logged boxes do not overlap does not interact (it replays the log).
ON_LOG_M = 0.3
#: An agent tracking its log back within this distance [m] and speed [m/s] of it replays it again.
SNAP_M, SNAP_SPEED = 0.05, 0.2
#: Right of way: a stop sign or signal this far [m] or less before a conflict controls its
#: approach; a passive road user farther than ``PASSIVE_PATH_M`` [m] from its logged path is not on it.
#: The logged path of a passive road user that moved at least ``PASSIVE_EXTEND_MIN_M`` [m] goes on
#: straight for ``LOOKAHEAD_M`` past its end.
RIGHT_OF_WAY_M, PASSIVE_PATH_M, PASSIVE_EXTEND_MIN_M = 30.0, 2.0, 5.0
#: Signal states that stop traffic, and the one that stops it when it can stop comfortably.
_RED = (int(SignalState.STOP), int(SignalState.FLASHING_STOP))
_YELLOW = int(SignalState.CAUTION)
#: ``shapely.points``' default ``handle_nan`` ("allow"), for its ufunc ``shapely.lib.points``.
_ALLOW_NAN = np.intc(0)


@dataclass(frozen=True, slots=True, eq=False)
class SimTracks:
    """Every agent's logged state at the env's steps, in the local frame.

    Attributes:
        t_us: (S,) int64 scenario time of each env step [us].
        x, y, yaw, vx, vy: (N, S) float64 [m, m, rad, m/s, m/s]; 0 where not valid.
        valid: (N, S) bool.
    """

    t_us: np.ndarray
    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    valid: np.ndarray

    @property
    def num_steps(self) -> int:
        return int(self.t_us.shape[0])


def resample(scenario: Scenario, origin: np.ndarray, dt_us: int, start_step: int) -> SimTracks:
    """The log from ``start_step`` on, every ``dt_us`` [us], minus ``origin`` (2,) [m]."""
    t_log = scenario.t_us
    tr = scenario.tracks
    t0 = int(t_log[start_step])
    t = np.arange(t0, int(t_log[-1]) + 1, dt_us, dtype=np.int64)
    i0 = np.clip(np.searchsorted(t_log, t, side="right") - 1, 0, len(t_log) - 1)
    exact = t_log[i0] == t
    if exact.all():
        valid = tr.valid[:, i0].copy()
        x, y = tr.x[:, i0] - origin[0], tr.y[:, i0] - origin[1]
        yaw, vx, vy = tr.yaw[:, i0].copy(), tr.vx[:, i0].copy(), tr.vy[:, i0].copy()
    else:
        i1 = np.minimum(i0 + 1, len(t_log) - 1)
        span = np.maximum(t_log[i1] - t_log[i0], 1)
        w = np.where(exact, 0.0, (t - t_log[i0]) / span)[None, :]
        valid = tr.valid[:, i0] & (exact[None, :] | tr.valid[:, i1])

        def lerp(a: np.ndarray) -> np.ndarray:
            return a[:, i0] + w * (a[:, i1] - a[:, i0])

        x, y = lerp(tr.x) - origin[0], lerp(tr.y) - origin[1]
        dyaw = wrap_angle(tr.yaw[:, i1] - tr.yaw[:, i0])
        yaw = tr.yaw[:, i0] + w * dyaw
        vx, vy = lerp(tr.vx), lerp(tr.vy)
    for a in (x, y, yaw, vx, vy):
        a[~valid] = 0.0
    return SimTracks(t, x, y, yaw, vx, vy, valid)


class PathBank:
    """Many agents' arc-length paths in flat arrays, for vectorised interpolation.

    Each path's arc length is offset by ``row * OFFSET`` so one ``searchsorted`` serves all.
    """

    OFFSET = 1.0e7

    def __init__(self, paths: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """``paths``: per agent, (P, 2) points and (P,) yaw [rad] at those points."""
        xy, yaw, gs, start, count = [], [], [], [], []
        n = 0
        for i, (pts, yw) in enumerate(paths):
            seg = np.hypot(*np.diff(pts, axis=0).T) if len(pts) > 1 else np.zeros(0)
            s = np.concatenate([[0.0], np.cumsum(seg)])
            xy.append(pts)
            yaw.append(np.unwrap(yw))
            gs.append(s + i * self.OFFSET)
            start.append(n)
            count.append(len(pts))
            n += len(pts)
        self.xy = np.vstack(xy) if xy else np.zeros((0, 2))
        self.yaw = np.concatenate(yaw) if yaw else np.zeros(0)
        self.gs = np.concatenate(gs) if gs else np.zeros(0)
        self.start = np.array(start, np.int64)
        self.count = np.array(count, np.int64)
        self.length = np.array([g[-1] - g[0] for g in gs]) if gs else np.zeros(0)
        self._tables()

    def at(self, rows: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(xy (..., 2), yaw, direction of travel) of path ``rows`` at arc lengths ``s`` (any
        broadcastable shape) [m, rad, rad].

        Beyond a path's end it goes on straight along its last segment. One ``searchsorted`` over
        all paths and one gather from a per-point table of the segment there (``_tables``).
        """
        rows = np.asarray(rows)
        s = np.asarray(s, dtype=np.float64)
        if rows.shape != s.shape:
            shape = np.broadcast_shapes(rows.shape, s.shape)
            rows = np.ascontiguousarray(np.broadcast_to(rows, shape))
            s = np.broadcast_to(s, shape)
        g = s + rows * self.OFFSET
        t = self._table.take(self._key.searchsorted(g, side="right") - 1, axis=0)
        w = (g - t[..., 0]) / t[..., 1]
        xy = t[..., 2:4] + w[..., None] * t[..., 4:6]
        yaw = t[..., 6] + np.minimum(np.maximum(w, 0.0), 1.0) * t[..., 7]  # np.clip, without its overhead
        return xy, yaw, t[..., 8]

    def sample(self, rows: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``at`` with x and y apart: (x, y, yaw, travel), each of the broadcast shape [m, m, rad, rad]."""
        xy, yaw, travel = self.at(rows, s)
        return xy[..., 0], xy[..., 1], yaw, travel

    def _tables(self) -> None:
        """Per point: the segment to the next point of its path (the last segment at a path's last
        point, which goes on straight), and before each path's first point an entry for arc lengths
        before its start (its first segment), so that ``searchsorted`` lands on the segment to use.

        Columns: the segment's start arc length [m], its length (inf for a segment of zero length,
        so that its fraction is 0), x, y, dx, dy, yaw, dyaw and the direction of travel (the yaw on a
        segment of zero length).
        """
        last = self.start + self.count - 1
        k = np.arange(len(self.gs))
        row_last = np.repeat(last, self.count) if len(self.count) else np.zeros(0, np.int64)
        row_start = np.repeat(self.start, self.count) if len(self.count) else np.zeros(0, np.int64)
        seg = np.maximum(np.minimum(k, row_last - 1), row_start)  # the segment each point's entry uses
        k1 = np.minimum(seg + 1, row_last)
        span = self.gs[k1] - self.gs[seg]
        single = span <= 0
        d = self.xy[k1] - self.xy[seg]
        dyaw = self.yaw[k1] - self.yaw[seg]
        travel = np.where(single, self.yaw[seg], np.arctan2(d[:, 1], d[:, 0]))
        point = np.column_stack([self.gs[seg], np.where(single, np.inf, span), self.xy[seg, 0], self.xy[seg, 1], d[:, 0], d[:, 1],
                                 self.yaw[seg], dyaw, travel])
        # one entry before each path: its first point's segment
        entries = np.insert(point, self.start, point[self.start], axis=0) if len(self.start) else point
        keys = np.insert(self.gs, self.start, np.arange(len(self.start)) * self.OFFSET - 0.5 * self.OFFSET) if len(self.start) \
            else self.gs
        self._table = np.ascontiguousarray(entries) if len(entries) else np.zeros((1, 9))
        self._key = keys if len(keys) else np.zeros(1)


class ReactiveAgents:
    """IDM along logged paths for the rows in ``rows`` (see the module docstring).

    ``compiled``: run the step's hot parts with the numba kernels of ``sim.agent_kernels`` (the
    default where numba is installed) or with the numpy code here (the reference; the same results
    bit for bit).
    """

    compiled: bool = agent_kernels.AVAILABLE

    def __init__(self, log: SimTracks, rows: np.ndarray, length: np.ndarray, width: np.ndarray, dt_s: float,
                 types: np.ndarray | None = None, ego_row: int = -1) -> None:
        """Args:
            log: every agent's log at the env steps; ``rows`` the reactive ones' track rows.
            length, width: (N,) every agent's box [m]; ``dt_s`` the env step [s].
            types: (N,) every agent's ``AgentType`` (None: all vehicles); ``ego_row`` the ego's row.

        Without ``rules`` (set by ``from_plan``, or assign a ``TrafficRules``) no signal, stop
        sign or conflict applies.
        """
        if self.compiled and not agent_kernels.warm():  # compiled here, at the first reset, not in a step; False: numba does not import
            self.compiled = False
        self.rows = np.array(rows, np.int64)  # a copy: the kernels take writable contiguous arrays
        self.dt = dt_s
        self.length, self.width = length, width
        self.log = log
        n, s_steps = log.valid.shape
        self.types = np.zeros(n, np.int8) if types is None else np.asarray(types)
        self.ego_row = int(ego_row)
        self._walker = self.types[self.rows] == int(AgentType.PEDESTRIAN)
        paths = []
        self._logged: list[np.ndarray] = []
        self.s_log = np.zeros((len(self.rows), s_steps))
        self.v_log = np.zeros((len(self.rows), s_steps))
        self.first = np.zeros(len(self.rows), np.int64)
        self.last = np.zeros(len(self.rows), np.int64)
        for j, row in enumerate(self.rows):
            steps = log.valid[row].nonzero()[0]
            pts = np.column_stack([log.x[row, steps], log.y[row, steps]])
            seg = np.hypot(*np.diff(pts, axis=0).T) if len(pts) > 1 else np.zeros(0)
            # keep points at least 0.2 m apart; a dropped point lies on its kept neighbours' segment at the
            # share of their raw arc length it has covered
            raw = np.concatenate([[0.0], np.cumsum(seg)])
            kept = decimated_path(pts[:, 0], pts[:, 1])
            path_pts = pts[kept]
            path_yaw = log.yaw[row, steps][kept]
            self._logged.append(path_pts)
            if len(path_pts) >= 2:  # go on straight for the lookahead beyond the logged end
                d = path_pts[-1] - path_pts[-2]
                u = d / max(np.hypot(*d), 1e-9)
                path_pts = np.vstack([path_pts, path_pts[-1] + u * LOOKAHEAD_M])
                path_yaw = np.append(path_yaw, path_yaw[-1])
            paths.append((path_pts, path_yaw))
            # arc length of the kept points, recomputed as PathBank will
            kseg = np.hypot(*np.diff(pts[kept], axis=0).T) if len(kept) > 1 else np.zeros(0)
            ks = np.concatenate([[0.0], np.cumsum(kseg)])
            s_full = np.interp(raw, raw[kept], ks) + np.maximum(raw - raw[kept[-1]], 0.0)
            s_row = np.interp(np.arange(s_steps), steps, s_full)
            v_row = np.interp(np.arange(s_steps), steps, np.hypot(log.vx[row, steps], log.vy[row, steps]))
            self.s_log[j], self.v_log[j] = s_row, v_row
            self.first[j], self.last[j] = steps[0], steps[-1]
        self.bank = PathBank(paths)
        self.a_log = np.zeros_like(self.v_log)
        if s_steps > 1:
            self.a_log[:, :-1] = np.diff(self.v_log, axis=1) / dt_s
        self.v0 = np.maximum(self.v_log.max(axis=1) if s_steps else np.ones(len(self.rows)), 1.0)
        self.s = np.zeros(len(self.rows))
        self.v = np.zeros(len(self.rows))
        self.alive = np.zeros(len(self.rows), bool)
        self.replaying = np.zeros(len(self.rows), bool)  # on its log, nothing holding it back: replays it
        self._ahead = np.arange(LOOKAHEAD_STEP_M, LOOKAHEAD_M + 1e-9, LOOKAHEAD_STEP_M)
        self._offsets = np.concatenate([[0.0], self._ahead])
        self._all = np.arange(len(self.rows))
        self._local = np.full(int(n) + 1, -1, np.int64)  # track row -> index into ``rows`` (-1: not reactive)
        self._local[self.rows] = self._all
        self.rules = TrafficRules()  # and ``_served``, ``_yielder`` sized for them (the ``rules`` setter)
        self._grid = np.ascontiguousarray(np.broadcast_to(self._all[:, None], (len(self.rows), len(self._offsets))))
        self._close = logged_close_pairs(log, self.rows, length, width, 0.0)
        self._keys = int(n) + 1  # pair key: row_a * _keys + row_b
        self._has_close = np.isin(self.rows, self._close // self._keys)  # per agent: its log overlaps another's
        self._agent_off = np.zeros(len(self.rows), bool)  # per agent: off its log at this step
        self._body_off = np.zeros(0, bool)  # per body of this step: off its log
        self._step_tables(log)

    def _step_tables(self, log: SimTracks) -> None:
        """Per-step tables of what a replaying agent's law would compute (it sits at ``s_log``), so that
        only the agents something can hold back run it (see ``step``); each entry is what the live
        computation gives, bit for bit."""
        r, s_steps = self.s_log.shape
        rows = self.rows
        self._present_at = ((self.first[None, :] <= np.arange(s_steps)[:, None])
                            & (np.arange(s_steps)[:, None] <= self.last[None, :]))  # (S, R)
        # the path at the logged arc length: a replaying agent's position and heading on its path
        x0, y0, yaw0, travel0 = self.bank.sample(np.broadcast_to(self._all[:, None], (r, s_steps)), self.s_log)
        self._p0 = np.ascontiguousarray(np.stack([x0, y0, yaw0, travel0]).transpose(2, 0, 1))  # (S, 4, R)
        # a replaying agent moves (its law's a_track is a_log) when its log does
        self._moves_log = np.ascontiguousarray(((self.v_log > 0) | (self.a_log > 0)).T)  # (S, R)
        # for the kernels: every row's box (N,) contiguous, numpy's hypot of it (as ``boxes_overlap`` has
        # it), and the log's acceleration, arc length and speed per step, (S, 3, R)
        self._sizes_c = np.array(self.length, np.float64), np.array(self.width, np.float64)
        self._diag = np.hypot(*self._sizes_c)
        self._law_log = np.ascontiguousarray(np.stack([self.a_log, self.s_log, self.v_log]).transpose(2, 0, 1))
        # the log's own state of the reactive rows, (S, 5, R), and whether it has one
        self._log_state = np.ascontiguousarray(
            np.stack([log.x[rows], log.y[rows], log.yaw[rows], log.vx[rows], log.vy[rows]]).transpose(2, 0, 1))
        self._log_valid = np.ascontiguousarray(log.valid[rows].T)  # (S, R)
        # every row's logged position, inf where it has none and for row -1 (the last column): any
        # body there is off its log
        pad = np.full((log.valid.shape[0] + 1, s_steps), np.inf)
        self._log_x, self._log_y = pad.copy(), pad
        self._log_x[:-1] = np.where(log.valid, log.x, np.inf)
        self._log_y[:-1] = np.where(log.valid, log.y, np.inf)
        self._log_x, self._log_y = np.ascontiguousarray(self._log_x.T), np.ascontiguousarray(self._log_y.T)  # (S, N + 1)
        # the pairs whose logs overlap (``logged_close_pairs``), per agent: (agent, the other's row); a
        # pedestrian's also with the ego (it interacts with the ego, see ``_interacting``)
        close_a = self._local[self._close // self._keys]
        close_b = self._close % self._keys
        keep = close_a >= 0
        close_a, close_b = close_a[keep], close_b[keep]
        walk = (self._walker & self._has_close).nonzero()[0]
        self._close_a = np.concatenate([close_a, walk])
        self._close_b = np.concatenate([close_b, np.full(len(walk), self.ego_row if self.ego_row >= 0 else len(self._local) - 1)])
        self._still = np.zeros(r + 1, bool)  # per agent (and -1: none) of this step: alive and not moving
        self._inf = np.full(r, np.inf)  # copied, not rebuilt, where a step needs it
        self._no_body = np.full(len(self._local), -1, np.int64)
        self._no_passive_f, self._no_passive_b = np.zeros(0), np.zeros(0, bool)
        # the kernels' IDM constants: a_max, s0, headway and 2 sqrt(a_max b_comf), of the leader's and the stop's
        self._idm_params = tuple(np.array([p.a_max, p.s0, p.headway, 2 * math.sqrt(p.a_max * p.b_comf)])
                                 for p in (AGENT_IDM, STOP_IDM))

    @property
    def rules(self) -> TrafficRules:
        """The stop points and conflicts the agents obey (``TrafficRules``; indices into ``rows``)."""
        return self._rules

    @rules.setter
    def rules(self, rules: TrafficRules) -> None:
        """New rules, checked against the agents (the kernels do not check bounds), with their state
        afresh: no stop sign served, nobody yielding."""
        check_rules(rules, len(self.rows))
        self._rules = rules
        self._served = np.zeros(len(rules.stop_agent), bool)  # per stop point: its agent has stopped at it
        self._yielder = np.full(len(rules.conflict_i), -1, np.int64)  # per conflict: -1 nobody, 0 agent i yields, 1 agent j

    @classmethod
    def from_plan(cls, plan: Plan) -> ReactiveAgents:
        """The reactive agents of ``plan`` with the scenario's traffic rules (``traffic_rules``)."""
        agents = cls(plan.log, plan.reactive_rows, plan.sizes[:, 0], plan.sizes[:, 1], plan.dt_s,
                     plan.scenario.tracks.agent_types, plan.ego_row)
        agents.rules = traffic_rules(plan, agents)
        return agents

    def logged_path(self, j: int) -> np.ndarray:
        """(P, 2) agent ``j``'s logged path (points at least 0.2 m apart, local frame) [m]."""
        return self._logged[j]

    def present(self, k: int) -> np.ndarray:
        """(R,) bool: which reactive agents exist at step ``k``."""
        if 0 <= k < len(self._present_at):
            return self._present_at[k]
        return (self.first <= k) & (k <= self.last)

    def reset(self, k: int) -> None:
        """Start an episode at step ``k``: every agent as just built (none alive, at rest at arc length 0,
        no stop sign served, nobody yielding), then those whose logs have begun appear on them."""
        self.alive[:] = False
        self.s = np.zeros(len(self.rows))
        self.v = np.zeros(len(self.rows))
        self.replaying = np.zeros(len(self.rows), bool)
        self._served = np.zeros(len(self.rules.stop_agent), bool)
        self._yielder = np.full(len(self.rules.conflict_i), -1, np.int64)
        self._spawn(k)

    def _spawn(self, k: int, bodies: dict[str, np.ndarray] | None = None) -> None:
        """Bring the agents whose log starts at step ``k`` in on their logs; one whose logged box
        would overlap a road user off its log there (a reactive agent pushed where the log has
        nobody, or the ego and driven agents among ``bodies``, the road users at step ``k - 1``)
        waits until it would not (the log's own overlaps it keeps)."""
        present = self.present(k)
        new = present & ~self.alive
        if new.any():
            blocked = self._blocked(k, new.nonzero()[0], bodies)
            if blocked.size:
                new[blocked] = False
                present = present.copy()
                present[blocked] = False
            self.s[new] = self.s_log[new, k]
            self.v[new] = self.v_log[new, k]
            self.replaying[new] = True
        self.alive = present.copy()
        self._k = k

    def _off_log_others(self, k: int, bodies: dict[str, np.ndarray] | None) -> np.ndarray:
        """Indices into ``bodies`` (the road users at step ``k``) of those that are not reactive agents
        and are off their logs there (as ``_mark_off_log`` has it)."""
        if bodies is None:
            return np.zeros(0, np.int64)
        b = bodies["row"]
        k = min(k, len(self._log_x) - 1)
        off = np.hypot(bodies["x"] - self._log_x[k].take(b), bodies["y"] - self._log_y[k].take(b)) > ON_LOG_M
        return (off & (self._local.take(b) < 0)).nonzero()[0]

    def _blocked(self, k: int, new: np.ndarray, bodies: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Which of the agents ``new`` (indices into ``rows``) cannot appear at step ``k``: their
        logged boxes there overlap the box of an agent off its log, or of one of ``bodies`` (at step
        ``k - 1``) that is no reactive agent and is off its log (``scenarios.geometry.boxes_overlap``)."""
        moved = (self.alive & ~self.replaying & self.present(k)).nonzero()[0]
        new = new[self._log_valid[min(k, len(self._log_valid) - 1)][new]] if len(self._log_valid) else new[:0]
        others = self._off_log_others(k - 1, bodies) if new.size else np.zeros(0, np.int64)
        if not (moved.size or others.size) or not new.size:
            return np.zeros(0, np.int64)
        if others.size:
            ox, oy, oyaw = bodies["x"][others], bodies["y"][others], bodies["yaw"][others]
            olen, owid, orow = bodies["length"][others], bodies["width"][others], bodies["row"][others]
        else:
            ox = oy = oyaw = olen = owid = self._no_passive_f
            orow = self._no_body[:0]
        if self.compiled:
            length, width = self._sizes_c
            hit = agent_kernels.blocked(
                new=new, moved=moved, log_state=self._log_state[k], s=self.s, table=self.bank._table, key=self.bank._key,
                offset=self.bank.OFFSET, s_offset=float(self._offsets[0]), rows=self.rows, length=length, width=width,
                diag=self._diag, close=self._close, keys=self._keys, ox=ox, oy=oy, oyaw=oyaw, olen=olen, owid=owid,
                odiag=np.hypot(olen, owid), orow=orow)
            return new[hit]
        xy, yaw, _ = self.bank.at(moved, self.s[moved] + self._offsets[0])
        log = self._log_state[k]
        rows_new, rows_moved = self.rows[new], self.rows[moved]
        x2, y2, yaw2 = np.concatenate([xy[:, 0], ox]), np.concatenate([xy[:, 1], oy]), np.concatenate([yaw, oyaw])
        l2 = np.concatenate([self.length[rows_moved], olen])
        w2 = np.concatenate([self.width[rows_moved], owid])
        rows2 = np.concatenate([rows_moved, orow])
        hit = boxes_overlap(log[0, new][:, None], log[1, new][:, None], log[2, new][:, None],
                            self.length[rows_new][:, None], self.width[rows_new][:, None],
                            x2[None, :], y2[None, :], yaw2[None, :], l2[None, :], w2[None, :])
        # a pair whose logs overlap anyway is the log's
        own = np.isin(rows_new[:, None] * self._keys + rows2[None, :], self._close) if self._close.size else False
        return new[(hit & ~own).any(axis=1)]

    def _samples(self, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Agents ``j``'s paths at their positions and at the lookahead samples ahead of them:
        (len(j), 1 + M, 2) x, y [m] and (len(j), 1 + M) direction of travel [rad]."""
        xy, _, travel = self.bank.at(self._grid[j], self.s[j, None] + self._offsets[None, :])
        return xy, travel

    def state(self) -> np.ndarray:
        """(5, R) x, y, yaw, vx, vy of every reactive agent now [m, m, rad, m/s, m/s], 0 where it does
        not exist: the log's own state where it replays it, else its place on its path."""
        k = self._k
        alive = self.alive
        if self.compiled:
            return agent_kernels.state(
                log_state=self._log_state[k], log_valid=self._log_valid[k], p0=self._p0[k], alive=alive,
                replaying=self.replaying, s=self.s, v=self.v, table=self.bank._table, key=self.bank._key,
                offset=self.bank.OFFSET, s_offset=float(self._offsets[0]))
        out = self._log_state[k]
        live = (alive & ~(self.replaying & self._log_valid[k])).nonzero()[0]
        if live.size:
            out = out.copy()
            x, y, yaw, travel = self._p0[k][:, live]  # a replaying agent sits at its logged arc length
            moved = ~self.replaying[live]
            if moved.any():
                m = live[moved]
                px, py, pyaw, ptravel = self.bank.sample(m, self.s[m] + self._offsets[0])
                x[moved], y[moved], yaw[moved], travel[moved] = px, py, pyaw, ptravel
            v = self.v[live]
            out[:, live] = (x, y, yaw, v * np.cos(travel), v * np.sin(travel))
        return out * alive

    def step(self, k: int, bodies: dict[str, np.ndarray]) -> None:
        """Advance from step ``k`` to ``k + 1``.

        ``bodies``: everything that can lead (the ego and every present agent) as arrays
        ``x, y, yaw, vx, vy, length, width`` and ``row`` (the track row; -1 for none).

        Only the agents that something can hold back run the law: a replaying agent with no body
        off its log within the leader search's reach, no logged overlap partner there, no stop and
        no conflict to yield at has no leader, so it replays its log (the law would give it
        ``a_track = a_log`` and nothing smaller). The others get exactly what the law over all of
        them gives.
        """
        if not len(self.rows):
            return
        alive = self.alive
        a = np.zeros(len(self.rows))
        bound = np.zeros(len(self.rows), bool)  # held back by a leader, a stop or a conflict
        if alive.any():
            self._mark_off_log(k, bodies)
            if self.rules.passive_rows.size and len(self.rules.conflict_i):
                self._passive_state(bodies)
            law, gap, dv = self._held_back(k, bodies)
            stop = self._stop_gaps(k)
            last = k + 1 >= self.s_log.shape[1]
            moving = self._moving
            # the law runs for the moving agents held back or tracking back to their logs (all of
            # them at the log's last step, where nothing replays)
            if self.compiled:
                k_law = self._law_log[k]
                p4 = (np.maximum(self.v, 0.0) / self.v0) ** 4  # numpy's power, as ``idm_acceleration`` has it
                a, bound = agent_kernels.law(
                    moving=moving, replaying=self.replaying, led=law, stop=stop, alive=alive, last=last, s=self.s, v=self.v,
                    a_log=k_law[0], s_log=k_law[1], v_log=k_law[2], gap=gap, dv=dv, p4=p4, kp=KP, kd=KD,
                    idm=self._idm_params[0], stop_idm=self._idm_params[1], b_max=B_MAX, a_max=A_MAX)
            else:
                run = moving & ((~self.replaying | law | np.isfinite(stop)) if not last else alive)
                idx = run.nonzero()[0]
                if idx.size:
                    v = self.v[idx]
                    a_track = self.a_log[idx, k] + KP * (self.s_log[idx, k] - self.s[idx]) + KD * (self.v_log[idx, k] - v)
                    g, d = gap[idx], dv[idx]
                    has = np.isfinite(g)
                    a_idm = idm_acceleration(v, g, d, AGENT_IDM, self.v0[idx])
                    a_new = np.where(has, np.minimum(a_track, a_idm), a_track)
                    stop = stop[idx]
                    held = np.isfinite(stop)
                    if held.any():
                        a_stop = idm_acceleration(v[held], stop[held], v[held], STOP_IDM, self.v0[idx][held])
                        a_new[held] = np.minimum(a_new[held], a_stop)
                    a[idx] = np.minimum(np.maximum(a_new, -B_MAX), A_MAX)
                    bound[idx] = a_new < a_track
        if self.compiled:
            has_next = k + 1 < self.s_log.shape[1]
            law = self._law_log[k + 1 if has_next else k]
            self.s, self.v, self.replaying = agent_kernels.integrate(
                a=a, bound=bound, s=self.s, v=self.v, dt=self.dt, alive=alive, replaying=self.replaying, s_next=law[1],
                v_next=law[2], has_next=has_next, snap_m=SNAP_M, snap_speed=SNAP_SPEED)
            self._spawn(k + 1, bodies)
            return
        v_new = np.maximum(self.v + a * self.dt, 0.0)
        s_new = self.s + 0.5 * (self.v + v_new) * self.dt
        if k + 1 < self.s_log.shape[1]:
            # free agents on their logs replay them; one tracking back that has reached its log replays it again
            s_next, v_next = self.s_log[:, k + 1], self.v_log[:, k + 1]
            back = ~self.replaying & (np.abs(s_new - s_next) < SNAP_M) & (np.abs(v_new - v_next) < SNAP_SPEED)
            self.replaying = (self.replaying | back) & ~bound
            s_new = np.where(self.replaying, s_next, s_new)
            v_new = np.where(self.replaying, v_next, v_new)
        self.s = np.where(alive, s_new, self.s)
        self.v = np.where(alive, v_new, self.v)
        self._spawn(k + 1, bodies)

    def _held_back(self, k: int, bodies: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The leader search at step ``k`` for the agents that can have a leader: (R,) bool which
        have one, (R,) gap to it [m] (inf: none) and closing speed [m/s]; sets ``_moving``.

        An agent standing still whose log does not pull it forward stays where it is whatever leads
        it (its acceleration is at most a_track <= 0 and its speed cannot go below 0): only the
        others look for leaders, and those of them that stand at another's leader (for the crossing
        rule). Of the replaying agents only those with a body off its log, or a logged overlap
        partner, within the search's reach are searched (the others have none: see ``_find_leaders``).
        """
        if self.compiled:
            return self._held_back_compiled(k, bodies)
        r = len(self.rows)
        alive, replaying = self.alive, self.replaying
        moving = self._moves_log[k] & alive
        tracking = (alive & ~replaying).nonzero()[0]
        if tracking.size:
            a_track = (self.a_log[tracking, k] + KP * (self.s_log[tracking, k] - self.s[tracking])
                       + KD * (self.v_log[tracking, k] - self.v[tracking]))
            moving[tracking] = (self.v[tracking] > 0) | (a_track > 0)
        self._moving = moving
        gap = self._inf.copy()
        dv = np.zeros(r)
        has = np.zeros(r, bool)
        searched = alive & ~replaying
        reach2 = (LOOKAHEAD_M + 5.0 + 1.0) ** 2  # the search's own reach (``near``) and a margin
        free = alive & replaying
        off = self._body_off.nonzero()[0]
        p0 = self._p0[k]
        if off.size:
            c = free.nonzero()[0]
            dx = bodies["x"][off][None, :] - p0[0, c][:, None]
            dy = bodies["y"][off][None, :] - p0[1, c][:, None]
            searched[c[(dx * dx + dy * dy < reach2).any(axis=1)]] = True
        if self._close_a.size:
            a = self._close_a
            b = self._body_at[self._close_b]
            bi = np.maximum(b, 0)
            dx, dy = bodies["x"][bi] - p0[0, a], bodies["y"][bi] - p0[1, a]
            searched[a[(b >= 0) & free[a] & (dx * dx + dy * dy < reach2)]] = True
        u = searched.nonzero()[0]
        if not u.size:
            return has, gap, dv
        sxy, shead = self._samples(u)
        mine = moving[u]
        act = u[mine]
        if not act.size:
            return has, gap, dv
        bxy = np.stack([bodies["x"], bodies["y"]], axis=-1)  # (B, 2)
        g, d, lead = self._find_leaders(act, sxy[mine], shead[mine], bxy, bodies)
        follower = (lead >= 0).nonzero()[0]
        local = self._local[lead[follower]]
        still = self._still
        still[:r] = alive & ~moving
        standing = still[local]
        led = np.zeros(0, np.int64)
        if standing.any():  # a standing leader can lead its follower back only when the follower is ahead of it
            f, j = act[follower[standing]], local[standing]
            at = np.searchsorted(u, j)
            known = searched[j]  # an agent not searched has no leader: it changes no crossing
            f, j, at = f[known], j[known], at[known]
            fu = np.searchsorted(u, f)
            lon = ((sxy[fu, 0, 0] - sxy[at, 0, 0]) * np.cos(shead[at, 0])
                   + (sxy[fu, 0, 1] - sxy[at, 0, 1]) * np.sin(shead[at, 0]))
            led = np.unique(j[lon > 0])
        if led.size:  # the crossing rule among the moving agents and the standing ones they follow
            at = np.searchsorted(u, led)
            g2, d2, l2 = self._find_leaders(led, sxy[at], shead[at], bxy, bodies)
            both = np.concatenate([act, led])
            order = np.argsort(both, kind="stable")
            g_all, d_all = np.concatenate([g, g2])[order], np.concatenate([d, d2])[order]
            self._crossing_rule(both[order], g_all, d_all, np.concatenate([lead, l2])[order])
            back = np.empty_like(order)
            back[order] = np.arange(len(order))
            g, d = g_all[back[: len(act)]], d_all[back[: len(act)]]
        else:
            self._crossing_rule(act, g, d, lead)
        gap[act], dv[act] = g, d
        has[act] = np.isfinite(g)
        return has, gap, dv

    def _held_back_compiled(self, k: int, bodies: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``_held_back`` in one kernel (``sim.agent_kernels.held_back``)."""
        p0, law = self._p0[k], self._law_log[k]
        bank = self.bank
        diag = float(np.hypot(bodies["length"], bodies["width"]).max())  # numpy's hypot, as ``_find_leaders``
        length, width = self._sizes_c
        has, gap, dv, self._moving = agent_kernels.held_back(
            alive=self.alive, replaying=self.replaying, moves_log=self._moves_log[k], a_log=law[0], s_log=law[1],
            v_log=law[2], s=self.s, v=self.v, kp=KP, kd=KD, p0x=p0[0], p0y=p0[1], bx=bodies["x"], by=bodies["y"],
            byaw=bodies["yaw"], bvx=bodies["vx"], bvy=bodies["vy"], blen=bodies["length"], bwid=bodies["width"],
            brow=bodies["row"], body_off=self._body_off, body_at=self._body_at, close_a=self._close_a,
            close_b=self._close_b, reach2=(LOOKAHEAD_M + 5.0 + 1.0) ** 2, table=bank._table, key=bank._key,
            path_offset=bank.OFFSET, offsets=self._offsets, rows=self.rows, length=length, width=width,
            agent_off=self._agent_off, has_close=self._has_close, walker=self._walker, close=self._close,
            keys=self._keys, ego_row=self.ego_row, local=self._local, step_m=LOOKAHEAD_STEP_M,
            margin=CORRIDOR_MARGIN_M, near2=(LOOKAHEAD_M + 5.0) ** 2, diag_max=diag)
        return has, gap, dv

    def _mark_off_log(self, k: int, bodies: dict[str, np.ndarray]) -> None:
        """Which agents and which bodies are farther than ``ON_LOG_M`` from their logged positions at
        step ``k`` (a reactive agent along its path, between logged samples too; another body by its
        position, off its log where it has none)."""
        self._agent_off = agent_off = np.abs(self.s - self.s_log[:, k]) > ON_LOG_M
        b = bodies["row"]
        self._body_at = self._no_body.copy()  # track row -> body index (-1: none; row -1 the last)
        self._body_at[b] = np.arange(len(b))
        off = np.hypot(bodies["x"] - self._log_x[k].take(b), bodies["y"] - self._log_y[k].take(b)) > ON_LOG_M
        local = self._local.take(b)
        self._body_off = np.where(local >= 0, agent_off.take(local), off)

    def _interacting(self, agents: np.ndarray, body_rows: np.ndarray, body_off: np.ndarray) -> np.ndarray:
        """(P,) bool: whether agent ``agents`` (indices into ``rows``) and a body (its track row, off its
        log or not) interact: one of them is off its log, or their logged boxes overlap
        (``logged_close_pairs``). Two road users both on their logs and apart in the log replay it.
        A pedestrian interacts only with the ego and with bodies off their logs (it walks past what
        the log has it walk past, crowds and objects included)."""
        walker = self._walker[agents]
        if walker.any():
            return np.where(walker, body_off | (body_rows == self.ego_row), self._interacting_vehicle(agents, body_rows, body_off))
        return self._interacting_vehicle(agents, body_rows, body_off)

    def _interacting_vehicle(self, agents: np.ndarray, body_rows: np.ndarray, body_off: np.ndarray) -> np.ndarray:
        out = self._agent_off[agents] | body_off
        if self._close.size and not out.all():
            key = self.rows[agents] * self._keys + body_rows
            at = np.minimum(np.searchsorted(self._close, key), len(self._close) - 1)
            out |= self._close[at] == key
        return out

    def _stop_gaps(self, k: int) -> np.ndarray:
        """(R,) distance [m] from each agent's front to where it must stop at step ``k`` (inf: nowhere)."""
        rules = self.rules
        out = self._inf.copy()
        if len(rules.stop_agent):
            j = rules.stop_agent
            gap = rules.stop_s - self.s[j] - 0.5 * self.length[self.rows[j]]
            v = self.v[j]
            sign = rules.stop_signal < 0
            state = np.where(sign, 0, rules.signal_states[np.maximum(rules.stop_signal, 0), k] if rules.signal_states.size
                             else 0)
            red = np.isin(state, _RED) | ((state == _YELLOW) & (gap >= v * v / (2 * B_COMF)))
            self._served |= sign & (gap < STOP_SIGN_NEAR_M) & (v < STOP_SIGN_SPEED)
            hold = self.alive[j] & (gap > 0) & np.where(sign, ~self._served, red)
            np.minimum.at(out, j[hold], gap[hold])
        if len(rules.conflict_i):
            self._conflicts(out, k)
        return out

    def _conflicts(self, out: np.ndarray, k: int) -> None:
        """Right of way at crossings: the yielding agents' gaps to the conflict zone into ``out``.

        Per conflict, row 0 is participant i and row 1 participant j; ``_yielder`` holds the row of
        the one yielding (-1: nobody). The side whose approach a stop sign or a signal not showing
        green controls yields to the other; between equals, the later arrival yields. A passive
        participant (the ego, a replayed or driven agent) never yields: the reactive one does when
        the passive one has the right of way.
        """
        pair, lo, hi = self._conflict_tables()
        y = self._yielder
        if y.shape != (pair.shape[1],):
            raise ValueError(f"ReactiveAgents._yielder: {y.shape[0]} entries for {pair.shape[1]} conflicts (assign new "
                             "rules to .rules, which sizes it)")
        if self.compiled:
            rules = self.rules
            if rules.passive_rows.size:
                ps, pv, pa, po = self._passive_s, self._passive_v, self._passive_alive, self._passive_off
            else:
                ps = pv = self._no_passive_f
                pa = po = self._no_passive_b
            agent_kernels.conflicts(
                out=out, y=y, pair=pair, lo=lo, hi=hi, s=self.s, v=self.v, alive=self.alive, off=self._agent_off,
                passive_s=ps, passive_v=pv, passive_alive=pa, passive_off=po, conflict_close=self._conflict_close,
                sign=rules.conflict_sign, signal=rules.conflict_signal, states=self._signal_states, k=k, red0=_RED[0],
                red1=_RED[1], yellow=_YELLOW, horizon=CONFLICT_HORIZON_S, min_speed=CONFLICT_MIN_SPEED,
                stop_speed=STOP_SIGN_SPEED, buffer=CONFLICT_BUFFER_S)
            return
        if self.rules.passive_rows.size:
            s_all, v_all = np.concatenate([self.s, self._passive_s]), np.concatenate([self.v, self._passive_v])
            alive_all = np.concatenate([self.alive, self._passive_alive])
            off_all = np.concatenate([self._agent_off, self._passive_off])
        else:
            s_all, v_all, alive_all, off_all = self.s, self.v, self.alive, self._agent_off
        s, v_raw = s_all[pair], v_all[pair]
        enter = lo - s  # front to the zone's near edge [m]
        v = np.maximum(v_raw, CONFLICT_MIN_SPEED)
        t_in = np.maximum(enter, 0.0) / v
        soon = t_in.min(axis=0) < CONFLICT_HORIZON_S
        held = y >= 0
        both = alive_all[pair].all(axis=0)
        if not ((soon & both).any() or held.any()):
            return
        leave = hi - s  # rear past its far edge [m]
        t_out = leave / v
        ar = np.arange(pair.shape[1])
        active = both & (leave > 0).all(axis=0)
        # release: the pair is over, the one with the right of way has left the zone or stands
        # still outside it, or the yielding one is in the zone already
        yy = np.maximum(y, 0)
        first = 1 - yy
        first_gone = (leave[first, ar] <= 0) | ((v_raw[first, ar] < STOP_SIGN_SPEED) & (enter[first, ar] > 0))
        y[held & (~active | first_gone | (enter[yy, ar] <= 0))] = -1
        # decide: the one without the right of way yields when the two would be in the zone within
        # the buffer of each other
        open_ = (y < 0) & active & soon & (off_all[pair[0]] | off_all[pair[1]] | self._conflict_close)
        if open_.any():
            later = ((t_in[0] < t_in[1]) | ((t_in[0] == t_in[1]) & (pair[0] < pair[1]))).astype(np.int64)
            rank = self._right_of_way(k)
            side = np.where(rank[0] != rank[1], (rank[0] > rank[1]).astype(np.int64), later)
            other = 1 - side
            overlap = (t_in[side, ar] < t_out[other, ar] + CONFLICT_BUFFER_S) & (
                t_in[other, ar] < t_out[side, ar] + CONFLICT_BUFFER_S)
            new = open_ & (pair[side, ar] < len(self.rows)) & (enter[side, ar] > 0) & overlap
            y[new] = side[new]
        held = y >= 0
        if held.any():
            np.minimum.at(out, pair[y[held], ar[held]], enter[y[held], ar[held]])

    def _right_of_way(self, k: int) -> np.ndarray:
        """(2, C) int: each side's right of way at step ``k`` (0: a stop sign, or a signal not
        showing green, controls its approach; 1: otherwise)."""
        rules = self.rules
        rank = (~rules.conflict_sign).astype(np.int64)
        g = rules.conflict_signal
        lit = g >= 0
        if lit.any() and rules.signal_states.size:
            state = rules.signal_states[g[lit], min(k, rules.signal_states.shape[1] - 1)]
            rank[lit] = np.where(np.isin(state, (*_RED, _YELLOW)), 0, rank[lit])
        return rank

    def _passive_state(self, bodies: dict[str, np.ndarray]) -> None:
        """Where the passive road users are along their logged paths now: arc length [m], speed
        [m/s], present and on it (within ``PASSIVE_PATH_M``), off their logs."""
        rules = self.rules
        b = self._body_at[rules.passive_rows]
        present = b >= 0
        bi = np.maximum(b, 0)
        # shapely's own ufuncs (``shapely.points`` and co. without their Python wrappers, which cost
        # more than the geometry here)
        pts = shapely.lib.points(np.stack([bodies["x"][bi], bodies["y"][bi]], axis=-1), _ALLOW_NAN)
        self._passive_s = shapely.lib.line_locate_point(rules.passive_lines, pts)
        near = shapely.lib.distance(rules.passive_lines, pts) < PASSIVE_PATH_M
        self._passive_v = np.hypot(bodies["vx"][bi], bodies["vy"][bi])
        self._passive_alive = present & near
        self._passive_off = self._body_off[bi] | ~present

    def _conflict_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(2, C) the agents of each conflict, the arc lengths where their fronts reach its zone
        and where their rears leave it [m] (for the current ``rules``)."""
        rules = self.rules
        if getattr(self, "_tables_of", None) is not rules:
            pair = np.stack([rules.conflict_i, rules.conflict_j])
            rows = np.concatenate([self.rows, rules.passive_rows])[pair]
            length, width = self.length[rows], self.width[rows]
            half = 0.5 * width[::-1] + 0.5 * length  # the other's half width + one's own half length
            at = np.stack([rules.conflict_si, rules.conflict_sj])
            self._ctables = (pair, at - half, at + half)
            self._tables_of = rules
            key = rows[0] * self._keys + rows[1]
            self._conflict_close = np.isin(key, self._close)
            self._signal_states = np.array(rules.signal_states, np.int64)  # contiguous, one type for the kernel
        return self._ctables

    def _find_leaders(self, idx: np.ndarray, sxy: np.ndarray, shead: np.ndarray, bxy: np.ndarray,
                      bodies: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(gap [m], closing speed [m/s], the leader's track row) of agents ``idx`` (ascending), whose
        path samples (``_samples``) are ``sxy`` (len(idx), 1 + M, 2) and ``shead`` (len(idx), 1 + M),
        amid the bodies at ``bxy`` (B, 2); gap inf and row -1 without one.

        Candidates are the bodies within ``LOOKAHEAD_M + 5`` m of the agent, ahead of it, that it
        interacts with (``_interacting``): an agent on its log whose log overlaps nobody's has none
        but the bodies off their logs.
        """
        rows = self.rows[idx]
        blen, bwid = bodies["length"], bodies["width"]
        # a body farther than the largest half diagonal + the agent's half width + the margin from
        # the box of the agent's lookahead samples cannot be in its corridor: only the pairs left
        # are examined
        ahead_xy = sxy[:, 1:]
        lo, hi = ahead_xy.min(axis=1), ahead_xy.max(axis=1)  # (A, 2)
        reach = 0.5 * float(np.hypot(blen, bwid).max()) + 0.5 * self.width[rows] + CORRIDOR_MARGIN_M
        box = (np.abs(bxy[None, :, :] - (0.5 * (lo + hi))[:, None, :]) < (0.5 * (hi - lo) + reach[:, None])[:, None, :]).all(axis=2)
        # two on their logs interact only if their logs overlap
        box &= (self._agent_off[idx] | self._has_close[idx])[:, None] | self._body_off[None, :]
        pi, pj = np.nonzero(box)
        # candidates: within the lookahead, ahead of the agent's direction of travel, not itself
        travel = shead[pi, 0]
        d = bxy[pj] - sxy[pi, 0]
        dx, dy = d[:, 0], d[:, 1]
        lon = dx * np.cos(travel) + dy * np.sin(travel)
        near = (lon > 0) & (dx * dx + dy * dy < (LOOKAHEAD_M + 5.0) ** 2) & (bodies["row"][pj] != rows[pi])
        pi, pj = pi[near], pj[near]
        if pi.size:
            meet = self._interacting(idx[pi], bodies["row"][pj], self._body_off[pj])
            pi, pj = pi[meet], pj[meet]
        n = len(idx)
        gap = np.full(n, np.inf)
        dv = np.zeros(n)
        lead = np.full(n, -1)
        if pi.size:
            # the corridor: the agent's path from its centre over the lookahead samples
            pxy = sxy[pi]
            seg = np.diff(pxy, axis=1)
            lateral, m, w = project_to_paths(bxy[pj, 0], bxy[pj, 1], pxy[:, :-1, 0], pxy[:, :-1, 1], seg[..., 0], seg[..., 1])
            ahead = self._offsets[m] + w * LOOKAHEAD_STEP_M  # arc length from the agent's centre [m]
            head = shead[pi, m]
            theta = bodies["yaw"][pj] - head
            cth, sth = np.abs(np.cos(theta)), np.abs(np.sin(theta))
            lj, wj = blen[pj], bwid[pj]
            half_lat = 0.5 * (lj * sth + wj * cth)
            half_lon = 0.5 * (lj * cth + wj * sth)
            best, g = corridor_leaders(ahead, lateral, half_lon, half_lat, pi, self.length[rows[pi]], self.width[rows[pi]],
                                       CORRIDOR_MARGIN_M, n)
            i = (best >= 0).nonzero()[0]
            if i.size:
                q = best[i]
                vj = bodies["vx"][pj[q]] * np.cos(head[q]) + bodies["vy"][pj[q]] * np.sin(head[q])
                gap[i] = g[i]
                dv[i] = self.v[idx[i]] - vj
                lead[i] = bodies["row"][pj[q]]
        return gap, dv, lead

    def _crossing_rule(self, idx: np.ndarray, gap: np.ndarray, dv: np.ndarray, lead: np.ndarray) -> None:
        """Crossing paths: of two agents (in ``idx``, ascending) leading each other, the one nearer
        the conflict goes first (its ``gap`` becomes inf, ``dv`` 0; in place)."""
        n = len(idx)
        rows = self.rows[idx]
        led = (lead >= 0).nonzero()[0]
        if led.size:
            pos = np.full(len(self.rows), -1)
            pos[idx] = np.arange(n)
            local = self._local[lead[led]]
            j = np.where(local >= 0, pos[local], -1)
            mutual = (j > led) & (lead[np.maximum(j, 0)] == rows[led])
            if mutual.any():
                i, j = led[mutual], j[mutual]
                i_goes = (gap[i] > gap[j]) | ((gap[i] == gap[j]) & (i > j))
                go = np.where(i_goes, i, j)
                gap[go], dv[go] = np.inf, 0.0


@dataclass(frozen=True, slots=True, eq=False)
class TrafficRules:
    """The standing obstacles of reactive agents (indices into ``ReactiveAgents.rows``).

    Attributes:
        stop_agent: (K,) which agent a stop point governs; ``stop_s`` (K,) its arc length on the
            agent's path [m]; ``stop_signal`` (K,) the signal's index, -1 for a stop sign.
        signal_states: (G, S) ``SignalState`` codes of every signal at the env steps.
        conflict_i, conflict_j: (C,) the two participants of a crossing (``conflict_i`` a reactive
            agent; ``conflict_j`` one too, or ``R + q`` for passive road user q); ``conflict_si``,
            ``conflict_sj`` the crossing's arc length on each one's path [m].
        passive_rows: (Q,) the track rows of the passive road users (the ego, replayed and driven
            agents); ``passive_lines`` (Q,) their logged paths (shapely, local frame).
        conflict_sign: (2, C) whether a stop sign controls side i (row 0) or j's approach;
            ``conflict_signal`` (2, C) the signal controlling it, -1 for none.
    """

    stop_agent: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    stop_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stop_signal: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    signal_states: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int8))
    conflict_i: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    conflict_j: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    conflict_si: np.ndarray = field(default_factory=lambda: np.zeros(0))
    conflict_sj: np.ndarray = field(default_factory=lambda: np.zeros(0))
    passive_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    passive_lines: np.ndarray = field(default_factory=lambda: np.zeros(0, object))
    conflict_sign: np.ndarray = field(default_factory=lambda: np.zeros((2, 0), bool))
    conflict_signal: np.ndarray = field(default_factory=lambda: np.zeros((2, 0), np.int64))


def check_rules(rules: TrafficRules, num_agents: int) -> None:
    """Raise ValueError, naming the field, where ``rules`` do not fit ``num_agents`` reactive agents:
    a field's shape against ``stop_agent``'s, ``conflict_i``'s, ``passive_rows``' and
    ``signal_states``' lengths, or an index out of range."""
    k, c, q, g = len(rules.stop_agent), len(rules.conflict_i), len(rules.passive_rows), len(rules.signal_states)
    shapes = {"stop_s": (k,), "stop_signal": (k,), "conflict_j": (c,), "conflict_si": (c,), "conflict_sj": (c,),
              "passive_lines": (q,), "conflict_sign": (2, c), "conflict_signal": (2, c)}
    for name, shape in shapes.items():
        if np.shape(getattr(rules, name)) != shape:
            raise ValueError(f"TrafficRules.{name}: shape {np.shape(getattr(rules, name))}, expected {shape}")
    if np.ndim(rules.signal_states) != 2:
        raise ValueError(f"TrafficRules.signal_states: shape {np.shape(rules.signal_states)}, expected (signals, steps)")
    ranges = {"stop_agent": (0, num_agents), "conflict_i": (0, num_agents), "conflict_j": (0, num_agents + q),
              "stop_signal": (-1, g), "conflict_signal": (-1, g)}
    for name, (lo, hi) in ranges.items():
        value = np.asarray(getattr(rules, name))
        if value.size and not (lo <= value.min() and value.max() < hi):
            raise ValueError(f"TrafficRules.{name}: values {value.min()}..{value.max()} outside [{lo}, {hi})")


def logged_close_pairs(log: SimTracks, rows: np.ndarray, length: np.ndarray, width: np.ndarray, margin: float) -> np.ndarray:
    """Sorted keys ``a * (N + 1) + b`` (both orders) of the pairs (a in ``rows``, b any track row)
    whose logged boxes, each grown by ``margin`` / 2 [m] on every side, overlap at some step.

    Boxes are oriented rectangles of ``length``, ``width`` (N,) [m] (``scenarios.geometry.boxes_overlap``).
    """
    n, s_steps = log.valid.shape
    rows = np.asarray(rows, np.int64)
    grown_l, grown_w = length + margin, width + margin
    keys: list[np.ndarray] = []
    for k in range(s_steps):
        a_rows = rows[log.valid[rows, k]]
        b_rows = log.valid[:, k].nonzero()[0]
        if not a_rows.size or len(b_rows) < 2:
            continue
        hit = boxes_overlap(log.x[a_rows, k][:, None], log.y[a_rows, k][:, None], log.yaw[a_rows, k][:, None],
                            grown_l[a_rows][:, None], grown_w[a_rows][:, None], log.x[b_rows, k][None, :],
                            log.y[b_rows, k][None, :], log.yaw[b_rows, k][None, :], grown_l[b_rows][None, :],
                            grown_w[b_rows][None, :])
        hit &= a_rows[:, None] != b_rows[None, :]
        i, j = np.nonzero(hit)
        if i.size:
            a, b = a_rows[i], b_rows[j]
            keys += [a * (n + 1) + b, b * (n + 1) + a]
    return np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)


def _stop_points(scenario: Scenario, origin: np.ndarray) -> list[tuple[np.ndarray, float | None, int]]:
    """(point (2,) local [m], lane heading [rad] or None, signal index or -1 for a stop sign) of
    every signal's stop point and every stop sign's controlled lane."""
    lanes = {lane.id: lane.centerline[:, :2] - origin for lane in scenario.road_map.lanes}

    def heading_at(lane_id: str, point: np.ndarray) -> tuple[np.ndarray, float | None]:
        line = lanes.get(lane_id)
        if line is None or len(line) < 2:
            return point, None
        i = int(np.argmin(np.hypot(*(line - point).T)))
        a, b = line[max(i - 1, 0)], line[min(i + 1, len(line) - 1)]
        return line[i], float(np.arctan2(b[1] - a[1], b[0] - a[0]))

    out: list[tuple[np.ndarray, float | None, int]] = []
    sig = scenario.signals
    for g in range(sig.num_signals):
        point = sig.stop_points[g, :2] - origin
        out.append((point, heading_at(str(sig.lane_ids[g]), point)[1], g))
    for f in scenario.road_map.of_kind(FeatureKind.STOP_SIGN):
        sign = f.points[0, :2] - origin
        for lane_id in f.lane_ids:
            if lane_id in lanes:
                point, heading = heading_at(lane_id, sign)
                out.append((point, heading, -1))
    return out


def decimated_path(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(K,) indices of the points (x, y) (P,) [m] kept for a path: the first, then each one at least
    0.2 m of raw arc length after the last kept one."""
    seg = np.hypot(np.diff(x), np.diff(y))
    raw = np.concatenate([[0.0], np.cumsum(seg)])
    keep = [0]
    for i in range(1, len(x)):
        if raw[i] - raw[keep[-1]] >= 0.2:
            keep.append(i)
    return np.array(keep)


def _line_travel(line: shapely.LineString, s: float) -> float:
    """Direction of travel [rad] of ``line`` at arc length ``s`` [m] (of the segment there)."""
    a = line.interpolate(max(min(s, line.length) - 0.1, 0.0))
    b = line.interpolate(min(max(s, 0.0) + 0.1, line.length))
    return float(np.arctan2(b.y - a.y, b.x - a.x))


def traffic_rules(plan: Plan, agents: ReactiveAgents) -> TrafficRules:
    """The stop points and conflicts of ``agents`` in ``plan``'s scenario (see the module docstring).

    Conflicts pair two reactive agents, or a reactive agent and a passive road user (the ego or an
    agent that replays or is driven by actions: every other row with a logged path).
    """
    scenario = plan.scenario
    all_types = scenario.tracks.agent_types
    r = len(agents.rows)
    log = plan.log
    passive = []
    passive_lines = []
    for row in np.setdiff1d(log.valid.any(axis=1).nonzero()[0], agents.rows):
        steps = log.valid[row].nonzero()[0]
        kept = steps[decimated_path(log.x[row, steps], log.y[row, steps])]
        if len(kept) >= 2:
            pts = np.column_stack([log.x[row, kept], log.y[row, kept]])
            line = shapely.LineString(pts)
            if line.length >= PASSIVE_EXTEND_MIN_M:  # a moving road user may go on straight past its log's end
                d = pts[-1] - pts[-2]
                line = shapely.LineString(np.vstack([pts, pts[-1] + d / np.hypot(*d) * LOOKAHEAD_M]))
            passive.append(int(row))
            passive_lines.append(line)
    passive_rows = np.array(passive, np.int64)
    rows_ext = np.concatenate([agents.rows, passive_rows])
    types = all_types[rows_ext]
    lines = [shapely.LineString(agents.logged_path(j)) if len(agents.logged_path(j)) >= 2 else None
             for j in range(r)] + passive_lines

    def travel_at(j: int, s: float) -> float:
        if j < r:
            return float(agents.bank.sample(np.array([j]), np.array([s]))[3][0])
        return _line_travel(lines[j], s)

    # stop points on the paths of vehicles and cyclists: (s, signal or -1) per participant; those
    # ahead of a reactive agent's start hold it, all of them give the approach's right of way
    controls: list[list[tuple[float, int]]] = [[] for _ in rows_ext]
    stop_agent, stop_s, stop_signal = [], [], []
    obeys = np.isin(types, [int(AgentType.VEHICLE), int(AgentType.CYCLIST)])
    for point, heading, g in _stop_points(scenario, plan.origin):
        p = shapely.Point(point)
        for j in obeys.nonzero()[0]:
            line = lines[j]
            if line is None or line.distance(p) >= STOP_MATCH_M:
                continue
            s = float(line.project(p))
            if s >= line.length:
                continue
            if heading is not None and abs(wrap_angle(travel_at(int(j), s) - heading)) >= STOP_MATCH_RAD:
                continue
            controls[j].append((s, g))
            if s > 0.0 and j < r:
                stop_agent.append(j)
                stop_s.append(s)
                stop_signal.append(g)
    sig = scenario.signals
    if sig.num_signals:
        step = np.clip(np.searchsorted(scenario.t_us, plan.log.t_us, side="right") - 1, 0, len(scenario.t_us) - 1)
        states = np.asarray(sig.states)[:, step]
    else:
        states = np.zeros((0, plan.log.num_steps), np.int8)
    # crossings of two logged paths, at least one a reactive agent's (not two pedestrians')
    ci, cj, csi, csj = [], [], [], []
    have = [j for j, line in enumerate(lines) if line is not None]
    if len(have) > 1:
        geoms = np.array([lines[j] for j in have], dtype=object)
        tree = shapely.STRtree(geoms)
        left, right = tree.query(geoms, predicate="intersects")
        walker = types == int(AgentType.PEDESTRIAN)
        for a, b in zip(left.tolist(), right.tolist()):
            i, j = have[a], have[b]
            if i >= j or i >= r or (walker[i] and walker[j]):
                continue
            meet = shapely.intersection(lines[i], lines[j])
            points = [g for g in shapely.get_parts(meet) if g.geom_type == "Point"]
            found = []
            for pt in points:
                si, sj = float(lines[i].project(pt)), float(lines[j].project(pt))
                if abs(np.sin(wrap_angle(travel_at(i, si) - travel_at(j, sj)))) > np.sin(CONFLICT_ANGLE_RAD):
                    found.append((si, sj))
            if found:
                si, sj = min(found)
                ci.append(i)
                cj.append(j)
                csi.append(si)
                csj.append(sj)
    # right of way: per conflict and side, the stop sign or signal controlling the approach
    sign = np.zeros((2, len(ci)), bool)
    signal = np.full((2, len(ci)), -1, np.int64)
    for c, sides in enumerate(zip(zip(ci, csi), zip(cj, csj))):
        for side, (j, s_conf) in enumerate(sides):
            for s, g in controls[j]:
                if s <= s_conf and s_conf - s < RIGHT_OF_WAY_M:
                    if g < 0:
                        sign[side, c] = True
                    else:
                        signal[side, c] = g
    return TrafficRules(
        np.array(stop_agent, np.int64), np.array(stop_s), np.array(stop_signal, np.int64), states,
        np.array(ci, np.int64), np.array(cj, np.int64), np.array(csi), np.array(csj),
        passive_rows, np.array(passive_lines, dtype=object), sign, signal,
    )
