"""Compiled kernels of the reactive agents' step (numba), each equal bit for bit to the numpy code
in ``sim.agents`` that it replaces (the reference, kept there and used without numba).

Why compiled: on ~10 interacting agents among ~50 bodies the numpy version is a few hundred small
array operations per step, whose per-call overhead (not the arithmetic) is most of the reactive
env's step time. The kernels do the same operations, in the same order, in loops.

Exactness: only IEEE-754 arithmetic (+, -, *, /, sqrt, comparisons, no fused multiply-add: numba
does not contract without ``fastmath``) and libm's ``cos``/``sin``, which numpy's float64 loops
call too. Whatever numpy computes with its SIMD loops (``hypot``, ``arctan2``, powers) is computed
by numpy before a kernel is called. ``tests/sim/test_agents_pinned.py`` and
``tests/sim/test_agent_kernels.py`` hold the two paths equal.

``AVAILABLE`` says whether numba is installed. It is imported at the kernels' first use (``load``,
which the first call of any kernel, ``warm`` and ``ReactiveAgents`` do), not with this module, so
that a process that only replays logs never imports it. Compiled code is cached on disk
(``cache=True``) so that a process after the first loads it instead of compiling it; where numba
finds no writable cache directory (a read-only install without ``NUMBA_CACHE_DIR``) the kernels
are compiled in memory in every process instead (``cache=False``).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

AVAILABLE = importlib.util.find_spec("numba") is not None

_log = logging.getLogger(__name__)
_OPTIONS: dict[str, Any] = {"nogil": True, "error_model": "numpy"}
_F = TypeVar("_F", bound=Callable[..., Any])
_KERNELS: dict[str, Callable[..., Any]] = {}  # name -> the kernel's Python function, in definition order
_lock = threading.Lock()


def _renew_lock() -> None:
    """A forked child gets a free lock: another thread of the parent may have held it at the fork."""
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_lock)
_compiled: bool | None = None  # what ``load`` returned (None: not loaded yet)
_warmed = False  # whether ``warm`` has run in this process


class _Kernel:
    """A kernel's name in this module until ``load`` binds it to numba's dispatcher (its first call
    loads)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.py_func = fn
        self.__name__, self.__doc__ = fn.__name__, fn.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        load()
        return globals()[self.__name__](*args, **kwargs)


def _jit(fn: _F) -> _F:
    _KERNELS[fn.__name__] = fn
    return _Kernel(fn)  # type: ignore[return-value]


def _njit(numba: Any, fn: Callable[..., Any]) -> Any:
    """numba's dispatcher of ``fn``, cached on disk where numba has a writable cache directory, else
    compiled in memory (numba raises "cannot cache function ...: no locator available" then)."""
    try:
        return numba.njit(cache=True, **_OPTIONS)(fn)
    except RuntimeError as exc:
        if "no locator available" not in str(exc):
            raise
        _log.debug("%s: %s; compiling %s in memory", __name__, exc, fn.__name__)
        return numba.njit(cache=False, **_OPTIONS)(fn)


def load() -> bool:
    """Import numba and bind every kernel's name here to its dispatcher (each compiled at its first
    call, or loaded from numba's cache), all of them before any compiles, since a kernel calls
    others by name. Returns whether the kernels are compiled: False without numba (or where it
    fails to import; logged), the names then stay the plain Python functions. Once per process."""
    global _compiled
    with _lock:
        if _compiled is None:
            numba: Any = None
            if AVAILABLE:
                try:
                    import numba
                except Exception as exc:  # ImportError, or a broken llvmlite's OSError: never fail a run for it
                    numba = None
                    _log.warning("numba is installed but does not import (%s): the reactive agents run their numpy "
                                 "reference path", exc)
            names = globals()
            for name, fn in _KERNELS.items():
                names[name] = _njit(numba, fn) if numba is not None else fn
            _compiled = numba is not None
    return _compiled


@_jit
def _right(key: np.ndarray, g: float) -> int:
    """``np.searchsorted(key, g, side="right")`` for a sorted float64 ``key`` (NaN past the end)."""
    n = key.shape[0]
    if g != g:
        return n
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if key[mid] <= g:
            lo = mid + 1
        else:
            hi = mid
    return lo


@_jit
def _contains(sorted_keys: np.ndarray, key: int) -> bool:
    """Whether ``key`` is in the sorted int64 array ``sorted_keys``."""
    lo, hi = 0, sorted_keys.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if sorted_keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo < sorted_keys.shape[0] and sorted_keys[lo] == key


@_jit
def path_samples(table: np.ndarray, key: np.ndarray, offset: float, agents: np.ndarray, s: np.ndarray,
                 offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``PathBank.at`` of paths ``agents`` at ``s[agent] + offsets`` (the agent's position and the
    lookahead samples): (len(agents), M) x, y [m] and direction of travel [rad]."""
    n, m = agents.shape[0], offsets.shape[0]
    x = np.empty((n, m))
    y = np.empty((n, m))
    travel = np.empty((n, m))
    for i in range(n):
        a = agents[i]
        base = a * offset
        for q in range(m):
            g = (s[a] + offsets[q]) + base
            t = table[_right(key, g) - 1]
            w = (g - t[0]) / t[1]
            x[i, q] = t[2] + w * t[4]
            y[i, q] = t[3] + w * t[5]
            travel[i, q] = t[8]
    return x, y, travel


@_jit
def _find_leaders(idx: np.ndarray, at: np.ndarray, sx: np.ndarray, sy: np.ndarray, shead: np.ndarray,
                  bx: np.ndarray, by: np.ndarray, byaw: np.ndarray, bvx: np.ndarray, bvy: np.ndarray,
                  blen: np.ndarray, bwid: np.ndarray, brow: np.ndarray, body_off: np.ndarray,
                  rows: np.ndarray, length: np.ndarray, width: np.ndarray, v: np.ndarray,
                  agent_off: np.ndarray, has_close: np.ndarray, walker: np.ndarray, close: np.ndarray, keys: int,
                  ego_row: int, offsets: np.ndarray, step_m: float, margin: float, near2: float,
                  diag_max: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``ReactiveAgents._find_leaders`` of agents ``idx`` whose samples are rows ``at`` of (sx, sy, shead)."""
    n = idx.shape[0]
    gap = np.full(n, np.inf)
    dv = np.zeros(n)
    lead = np.full(n, -1, np.int64)
    m_seg = sx.shape[1] - 1
    nb = bx.shape[0]
    for i in range(n):
        a = idx[i]
        p = at[i]
        row = rows[a]
        own_l, own_w = length[row], width[row]
        lo_x = hi_x = sx[p, 1]
        lo_y = hi_y = sy[p, 1]
        for q in range(2, m_seg + 1):
            lo_x, hi_x = min(lo_x, sx[p, q]), max(hi_x, sx[p, q])
            lo_y, hi_y = min(lo_y, sy[p, q]), max(hi_y, sy[p, q])
        reach = 0.5 * diag_max + 0.5 * own_w + margin
        cx, cy = 0.5 * (lo_x + hi_x), 0.5 * (lo_y + hi_y)
        hx, hy = 0.5 * (hi_x - lo_x) + reach, 0.5 * (hi_y - lo_y) + reach
        any_body = agent_off[a] or has_close[a]
        travel = shead[p, 0]
        ct, st = math.cos(travel), math.sin(travel)
        x0, y0 = sx[p, 0], sy[p, 0]
        best = -1
        best_g = np.inf
        best_head = 0.0
        for b in range(nb):
            if not (abs(bx[b] - cx) < hx and abs(by[b] - cy) < hy and (any_body or body_off[b])):
                continue
            dx, dy = bx[b] - x0, by[b] - y0
            lon = dx * ct + dy * st
            if not (lon > 0 and dx * dx + dy * dy < near2 and brow[b] != row):
                continue
            if walker[a]:
                meet = body_off[b] or brow[b] == ego_row
            else:
                meet = agent_off[a] or body_off[b]
                if not meet and close.shape[0]:
                    meet = _contains(close, row * keys + brow[b])
            if not meet:
                continue
            # the corridor: distance to the nearest segment of the agent's lookahead (``project_to_paths``)
            d2_best = np.inf
            m_best = 0
            t_best = 0.0
            for m in range(m_seg):
                ax, ay = sx[p, m], sy[p, m]
                sdx, sdy = sx[p, m + 1] - ax, sy[p, m + 1] - ay
                len2 = sdx * sdx + sdy * sdy
                if not len2 >= 1e-12:
                    len2 = 1e-12
                px, py = bx[b] - ax, by[b] - ay
                t = (px * sdx + py * sdy) / len2
                t = 1.0 if t > 1.0 else (0.0 if t < 0.0 else t)
                ex, ey = px - t * sdx, py - t * sdy
                d2 = ex * ex + ey * ey
                if d2 < d2_best or m == 0:
                    d2_best, m_best, t_best = d2, m, t
            lateral = math.sqrt(d2_best)
            ahead = offsets[m_best] + t_best * step_m
            head = shead[p, m_best]
            theta = byaw[b] - head
            cth, sth = abs(math.cos(theta)), abs(math.sin(theta))
            lj, wj = blen[b], bwid[b]
            half_lat = 0.5 * (lj * sth + wj * cth)
            half_lon = 0.5 * (lj * cth + wj * sth)
            if ahead > 0 and lateral < half_lat + 0.5 * own_w + margin:
                g = ahead - half_lon - 0.5 * own_l
                if best < 0 or g < best_g or (best_g != best_g and g == g):
                    best, best_g, best_head = b, g, head
        if best >= 0:
            vj = bvx[best] * math.cos(best_head) + bvy[best] * math.sin(best_head)
            gap[i] = best_g
            dv[i] = v[a] - vj
            lead[i] = brow[best]
    return gap, dv, lead


@_jit
def _crossing_rule(idx: np.ndarray, gap: np.ndarray, dv: np.ndarray, lead: np.ndarray, rows: np.ndarray,
                   local: np.ndarray, num_agents: int) -> None:
    """``ReactiveAgents._crossing_rule`` (in place)."""
    n = idx.shape[0]
    pos = np.full(num_agents, -1, np.int64)
    for i in range(n):
        pos[idx[i]] = i
    for i in range(n):
        if lead[i] < 0:
            continue
        loc = local[lead[i]]
        j = pos[loc] if loc >= 0 else -1
        if j > i and lead[j] == rows[idx[i]]:
            go = i if gap[i] > gap[j] else j  # (equal gaps: the later one, j > i)
            gap[go] = np.inf
            dv[go] = 0.0


@_jit
def held_back(alive: np.ndarray, replaying: np.ndarray, moves_log: np.ndarray, a_log: np.ndarray, s_log: np.ndarray,
              v_log: np.ndarray, s: np.ndarray, v: np.ndarray, kp: float, kd: float, p0x: np.ndarray, p0y: np.ndarray,
              bx: np.ndarray, by: np.ndarray, byaw: np.ndarray, bvx: np.ndarray, bvy: np.ndarray, blen: np.ndarray,
              bwid: np.ndarray, brow: np.ndarray, body_off: np.ndarray, body_at: np.ndarray, close_a: np.ndarray,
              close_b: np.ndarray, reach2: float, table: np.ndarray, key: np.ndarray, path_offset: float,
              offsets: np.ndarray, rows: np.ndarray, length: np.ndarray, width: np.ndarray, agent_off: np.ndarray,
              has_close: np.ndarray, walker: np.ndarray, close: np.ndarray, keys: int, ego_row: int, local: np.ndarray,
              step_m: float, margin: float, near2: float, diag_max: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``ReactiveAgents._held_back`` at one step (the step's columns of the per-step tables given):
    (has a leader, gap [m], closing speed [m/s], moving), each (R,)."""
    r = alive.shape[0]
    moving = np.empty(r, np.bool_)
    searched = np.empty(r, np.bool_)
    for a in range(r):
        moving[a] = moves_log[a] and alive[a]
        searched[a] = alive[a] and not replaying[a]
        if searched[a]:
            a_track = a_log[a] + kp * (s_log[a] - s[a]) + kd * (v_log[a] - v[a])
            moving[a] = v[a] > 0 or a_track > 0
    gap = np.empty(r)
    dv = np.empty(r)
    has = np.empty(r, np.bool_)
    for a in range(r):
        gap[a], dv[a], has[a] = np.inf, 0.0, False
    nb = bx.shape[0]
    for c in range(r):
        if not (alive[c] and replaying[c]):
            continue
        for b in range(nb):
            if body_off[b]:
                dx, dy = bx[b] - p0x[c], by[b] - p0y[c]
                if dx * dx + dy * dy < reach2:
                    searched[c] = True
                    break
    for q in range(close_a.shape[0]):
        a = close_a[q]
        b = body_at[close_b[q]]
        if b >= 0 and alive[a] and replaying[a]:
            dx, dy = bx[b] - p0x[a], by[b] - p0y[a]
            if dx * dx + dy * dy < reach2:
                searched[a] = True
    # the searched agents (ascending), their place among them, and the moving ones of them
    u = np.empty(r, np.int64)
    pos_u = np.empty(r, np.int64)
    act = np.empty(r, np.int64)
    nu = na = 0
    for a in range(r):
        pos_u[a] = -1
        if searched[a]:
            u[nu] = a
            pos_u[a] = nu
            nu += 1
            if moving[a]:
                act[na] = a
                na += 1
    if nu == 0:
        return has, gap, dv, moving
    u, act = u[:nu], act[:na]
    sx, sy, shead = path_samples(table, key, path_offset, u, s, offsets)
    if na == 0:
        return has, gap, dv, moving
    at_act = np.empty(na, np.int64)
    for i in range(na):
        at_act[i] = pos_u[act[i]]
    g, d, lead = _find_leaders(act, at_act, sx, sy, shead, bx, by, byaw, bvx, bvy, blen, bwid, brow, body_off,
                               rows, length, width, v, agent_off, has_close, walker, close, keys, ego_row, offsets,
                               step_m, margin, near2, diag_max)
    # a standing leader can lead its follower back only when the follower is ahead of it
    is_led = np.zeros(r, np.bool_)
    nl = 0
    for i in range(na):
        if lead[i] < 0:
            continue
        j = local[lead[i]]
        if j < 0 or not (alive[j] and not moving[j]) or not searched[j]:
            continue
        fu, at = pos_u[act[i]], pos_u[j]
        lon = (sx[fu, 0] - sx[at, 0]) * math.cos(shead[at, 0]) + (sy[fu, 0] - sy[at, 0]) * math.sin(shead[at, 0])
        if lon > 0 and not is_led[j]:
            is_led[j] = True
            nl += 1
    if nl:
        led = np.empty(nl, np.int64)
        at_led = np.empty(nl, np.int64)
        q = 0
        for a in range(r):
            if is_led[a]:
                led[q], at_led[q] = a, pos_u[a]
                q += 1
        g2, d2, l2 = _find_leaders(led, at_led, sx, sy, shead, bx, by, byaw, bvx, bvy, blen, bwid, brow, body_off,
                                   rows, length, width, v, agent_off, has_close, walker, close, keys, ego_row, offsets,
                                   step_m, margin, near2, diag_max)
        # the crossing rule over both, in ascending order (the two sets are sorted and disjoint)
        m = na + nl
        both = np.empty(m, np.int64)
        g_all, d_all, l_all = np.empty(m), np.empty(m), np.empty(m, np.int64)
        src = np.empty(m, np.int64)
        i = j = 0
        for q in range(m):
            if j >= nl or (i < na and act[i] < led[j]):
                both[q], g_all[q], d_all[q], l_all[q], src[q] = act[i], g[i], d[i], lead[i], i
                i += 1
            else:
                both[q], g_all[q], d_all[q], l_all[q], src[q] = led[j], g2[j], d2[j], l2[j], -1
                j += 1
        _crossing_rule(both, g_all, d_all, l_all, rows, local, r)
        for q in range(m):
            if src[q] >= 0:
                g[src[q]], d[src[q]] = g_all[q], d_all[q]
    else:
        _crossing_rule(act, g, d, lead, rows, local, r)
    for i in range(na):
        gap[act[i]] = g[i]
        dv[act[i]] = d[i]
        has[act[i]] = math.isfinite(g[i])
    return has, gap, dv, moving


@_jit
def _np_min(a: float, b: float) -> float:
    """``np.minimum`` of two floats (NaN wins)."""
    return a if (a <= b or a != a) else b


@_jit
def conflicts(out: np.ndarray, y: np.ndarray, pair: np.ndarray, lo: np.ndarray, hi: np.ndarray, s: np.ndarray,
              v: np.ndarray, alive: np.ndarray, off: np.ndarray, passive_s: np.ndarray, passive_v: np.ndarray,
              passive_alive: np.ndarray, passive_off: np.ndarray, conflict_close: np.ndarray, sign: np.ndarray,
              signal: np.ndarray, states: np.ndarray, k: int, red0: int, red1: int, yellow: int, horizon: float,
              min_speed: float, stop_speed: float, buffer: float) -> None:
    """``ReactiveAgents._conflicts`` with ``_right_of_way`` (``out`` and the yielders ``y`` in place).

    Participants below ``len(s)`` are reactive agents, the others passive road users (their arrays)."""
    r = s.shape[0]
    c_num = pair.shape[1]
    held_any = False
    go = False
    for c in range(c_num):
        if y[c] >= 0:
            held_any = True
    sv = np.empty((2, c_num))
    vr = np.empty((2, c_num))
    al = np.empty((2, c_num), np.bool_)
    of = np.empty((2, c_num), np.bool_)
    for c in range(c_num):
        for side in range(2):
            p = pair[side, c]
            if p < r:
                sv[side, c], vr[side, c], al[side, c], of[side, c] = s[p], v[p], alive[p], off[p]
            else:
                q = p - r
                sv[side, c], vr[side, c] = passive_s[q], passive_v[q]
                al[side, c], of[side, c] = passive_alive[q], passive_off[q]
    enter = np.empty((2, c_num))
    leave = np.empty((2, c_num))
    t_out = np.empty((2, c_num))
    vv = np.empty((2, c_num))
    t_in = np.empty((2, c_num))
    soon = np.empty(c_num, np.bool_)
    both = np.empty(c_num, np.bool_)
    for c in range(c_num):
        for side in range(2):
            vv[side, c] = vr[side, c] if (vr[side, c] >= min_speed or vr[side, c] != vr[side, c]) else min_speed
            e = enter[side, c] = lo[side, c] - sv[side, c]
            leave[side, c] = hi[side, c] - sv[side, c]
            t_out[side, c] = leave[side, c] / vv[side, c]
            t_in[side, c] = (e if (e >= 0.0 or e != e) else 0.0) / vv[side, c]
        soon[c] = _np_min(t_in[0, c], t_in[1, c]) < horizon
        both[c] = al[0, c] and al[1, c]
        if soon[c] and both[c]:
            go = True
    if not (go or held_any):
        return
    n_states = states.shape[1]
    for c in range(c_num):
        active = both[c] and leave[0, c] > 0 and leave[1, c] > 0
        # release
        if y[c] >= 0:
            yy = y[c]
            first = 1 - yy
            first_gone = leave[first, c] <= 0 or (vr[first, c] < stop_speed and enter[first, c] > 0)
            if not active or first_gone or enter[yy, c] <= 0:
                y[c] = -1
        # decide
        if y[c] < 0 and active and soon[c] and (of[0, c] or of[1, c] or conflict_close[c]):
            later = 1 if (t_in[0, c] < t_in[1, c] or (t_in[0, c] == t_in[1, c] and pair[0, c] < pair[1, c])) else 0
            rank0 = 0 if sign[0, c] else 1
            rank1 = 0 if sign[1, c] else 1
            if n_states and states.shape[0]:
                kk = min(k, n_states - 1)
                if signal[0, c] >= 0:
                    st = states[signal[0, c], kk]
                    if st == red0 or st == red1 or st == yellow:
                        rank0 = 0
                if signal[1, c] >= 0:
                    st = states[signal[1, c], kk]
                    if st == red0 or st == red1 or st == yellow:
                        rank1 = 0
            side = (1 if rank0 > rank1 else 0) if rank0 != rank1 else later
            other = 1 - side
            overlap = (t_in[side, c] < t_out[other, c] + buffer) and (t_in[other, c] < t_out[side, c] + buffer)
            if pair[side, c] < r and enter[side, c] > 0 and overlap:
                y[c] = side
    for c in range(c_num):
        if y[c] >= 0:
            j = pair[y[c], c]
            out[j] = _np_min(out[j], enter[y[c], c])


@_jit
def integrate(a: np.ndarray, bound: np.ndarray, s: np.ndarray, v: np.ndarray, dt: float, alive: np.ndarray,
              replaying: np.ndarray, s_next: np.ndarray, v_next: np.ndarray, has_next: bool, snap_m: float,
              snap_speed: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The end of ``ReactiveAgents.step``: (s, v, replaying) after one step of accelerations ``a``, (R,) each."""
    r = s.shape[0]
    s_out = np.empty(r)
    v_out = np.empty(r)
    rep = replaying.copy()
    for i in range(r):
        vn = v[i] + a[i] * dt
        if not (vn >= 0.0 or vn != vn):
            vn = 0.0
        sn = s[i] + 0.5 * (v[i] + vn) * dt
        if has_next:
            back = not replaying[i] and abs(sn - s_next[i]) < snap_m and abs(vn - v_next[i]) < snap_speed
            rep[i] = (replaying[i] or back) and not bound[i]
            if rep[i]:
                sn, vn = s_next[i], v_next[i]
        s_out[i] = sn if alive[i] else s[i]
        v_out[i] = vn if alive[i] else v[i]
    return s_out, v_out, rep


@_jit
def _at(table: np.ndarray, key: np.ndarray, offset: float, a: int, s: float) -> tuple[float, float, float, float]:
    """``PathBank.at`` of path ``a`` at arc length ``s``: x, y, yaw, travel."""
    g = s + a * offset
    t = table[_right(key, g) - 1]
    w = (g - t[0]) / t[1]
    c = 1.0 if w > 1.0 else (w if (w >= 0.0 or w != w) else 0.0)
    c = c if (c <= 1.0 or c != c) else 1.0
    return t[2] + w * t[4], t[3] + w * t[5], t[6] + c * t[7], t[8]


@_jit
def state(log_state: np.ndarray, log_valid: np.ndarray, p0: np.ndarray, alive: np.ndarray, replaying: np.ndarray,
          s: np.ndarray, v: np.ndarray, table: np.ndarray, key: np.ndarray, offset: float, s_offset: float) -> np.ndarray:
    """``ReactiveAgents.state``: (5, R) x, y, yaw, vx, vy, 0 where an agent does not exist."""
    r = alive.shape[0]
    out = np.empty((5, r))
    for i in range(r):
        if alive[i] and not (replaying[i] and log_valid[i]):
            if replaying[i]:
                x, y, yaw, travel = p0[0, i], p0[1, i], p0[2, i], p0[3, i]
            else:
                x, y, yaw, travel = _at(table, key, offset, i, s[i] + s_offset)
            out[0, i], out[1, i], out[2, i] = x, y, yaw
            out[3, i], out[4, i] = v[i] * math.cos(travel), v[i] * math.sin(travel)
        else:
            for q in range(5):
                out[q, i] = log_state[q, i]
        m = 1.0 if alive[i] else 0.0
        for q in range(5):
            out[q, i] = out[q, i] * m
    return out


@_jit
def _boxes_overlap(x1: float, y1: float, yaw1: float, l1: float, w1: float, d1: float, x2: float, y2: float, yaw2: float,
                   l2: float, w2: float, d2: float) -> bool:
    """``scenarios.geometry.boxes_overlap`` of two boxes, ``d1``, ``d2`` numpy's ``hypot(l, w)`` of each."""
    dx, dy = x2 - x1, y2 - y1
    h = d1 + d2
    if not dx * dx + dy * dy <= 0.25 * (h * h):
        return False
    c1, s1, c2, s2 = math.cos(yaw1), math.sin(yaw1), math.cos(yaw2), math.sin(yaw2)
    separated = False
    for q in range(4):
        if q == 0:
            ax, ay = c1, s1
        elif q == 1:
            ax, ay = -s1, c1
        elif q == 2:
            ax, ay = c2, s2
        else:
            ax, ay = -s2, c2
        r = abs(dx * ax + dy * ay)
        r1 = 0.5 * l1 * abs(c1 * ax + s1 * ay) + 0.5 * w1 * abs(-s1 * ax + c1 * ay)
        r2 = 0.5 * l2 * abs(c2 * ax + s2 * ay) + 0.5 * w2 * abs(-s2 * ax + c2 * ay)
        separated = separated or r > r1 + r2
    return not separated


@_jit
def blocked(new: np.ndarray, moved: np.ndarray, log_state: np.ndarray, s: np.ndarray, table: np.ndarray, key: np.ndarray,
            offset: float, s_offset: float, rows: np.ndarray, length: np.ndarray, width: np.ndarray, diag: np.ndarray,
            close: np.ndarray, keys: int, ox: np.ndarray, oy: np.ndarray, oyaw: np.ndarray, olen: np.ndarray,
            owid: np.ndarray, odiag: np.ndarray, orow: np.ndarray) -> np.ndarray:
    """``ReactiveAgents._blocked`` past its selection of ``new``, ``moved`` and the other road users off
    their logs (``ox`` ... ``orow``): (len(new),) bool, whether agent ``new[i]``'s logged box overlaps
    one of theirs (``scenarios.geometry.boxes_overlap``; ``diag``, ``odiag`` are numpy's
    ``hypot(length, width)``) other than by the log's own overlap."""
    n, m = new.shape[0], moved.shape[0]
    out = np.zeros(n, np.bool_)
    mx, my, myaw = np.empty(m), np.empty(m), np.empty(m)
    for j in range(m):
        mx[j], my[j], myaw[j], _ = _at(table, key, offset, moved[j], s[moved[j]] + s_offset)
    for i in range(n):
        a = new[i]
        ra = rows[a]
        x1, y1, yaw1, l1, w1 = log_state[0, a], log_state[1, a], log_state[2, a], length[ra], width[ra]
        for j in range(m + ox.shape[0]):
            if j < m:
                rb = rows[moved[j]]
                hit = _boxes_overlap(x1, y1, yaw1, l1, w1, diag[ra], mx[j], my[j], myaw[j], length[rb], width[rb], diag[rb])
            else:
                q = j - m
                rb = orow[q]
                hit = _boxes_overlap(x1, y1, yaw1, l1, w1, diag[ra], ox[q], oy[q], oyaw[q], olen[q], owid[q], odiag[q])
            if hit and not (close.shape[0] and _contains(close, ra * keys + rb)):
                out[i] = True
                break
    return out


@_jit
def _idm(speed: float, gap: float, closing: float, p4: float, a_max: float, s0: float, headway: float, c: float) -> float:
    """``sim.control.idm_acceleration`` of one agent, its free-road term ``(max(v, 0) / v0) ** 4`` (numpy's
    power) given as ``p4`` and ``c = 2 sqrt(a_max b_comf)``."""
    v = speed if (speed >= 0.0 or speed != speed) else 0.0
    s_star = s0 + v * headway + speed * closing / c
    s_star = s_star if (s_star >= 0.0 or s_star != s_star) else 0.0
    g = gap if (gap >= 0.1 or gap != gap) else 0.1
    q = s_star / g
    return a_max * ((1.0 - p4) - q * q)


@_jit
def law(moving: np.ndarray, replaying: np.ndarray, led: np.ndarray, stop: np.ndarray, alive: np.ndarray, last: bool,
        s: np.ndarray, v: np.ndarray, a_log: np.ndarray, s_log: np.ndarray, v_log: np.ndarray, gap: np.ndarray,
        dv: np.ndarray, p4: np.ndarray, kp: float, kd: float, idm: np.ndarray, stop_idm: np.ndarray, b_max: float,
        a_max: float) -> tuple[np.ndarray, np.ndarray]:
    """The law of ``ReactiveAgents.step`` for the agents that run it: (accelerations [m/s2], held back), (R,).

    ``idm``, ``stop_idm``: (a_max, s0, headway, 2 sqrt(a_max b_comf)) of the leader's and the stop's IDM."""
    r = s.shape[0]
    a = np.zeros(r)
    bound = np.zeros(r, np.bool_)
    for i in range(r):
        held = math.isfinite(stop[i])
        if not (moving[i] and ((not replaying[i] or led[i] or held) if not last else alive[i])):
            continue
        a_track = a_log[i] + kp * (s_log[i] - s[i]) + kd * (v_log[i] - v[i])
        a_new = a_track
        if math.isfinite(gap[i]):
            a_new = _np_min(a_track, _idm(v[i], gap[i], dv[i], p4[i], idm[0], idm[1], idm[2], idm[3]))
        if held:
            a_new = _np_min(a_new, _idm(v[i], stop[i], v[i], p4[i], stop_idm[0], stop_idm[1], stop_idm[2], stop_idm[3]))
        c = a_new if (a_new >= -b_max or a_new != a_new) else -b_max
        a[i] = c if (c <= a_max or c != c) else a_max
        bound[i] = a_new < a_track
    return a, bound


#: the kernels ``sim.agents`` calls (the others are compiled into these)
ENTRY_POINTS = ("held_back", "conflicts", "law", "integrate", "state", "blocked")


def warm() -> bool:
    """Compile every kernel ``sim.agents`` calls (``ENTRY_POINTS``; or load it from numba's cache)
    now, so that no episode's step pays for it: each is called once on empty inputs of the types the
    agents pass (C-contiguous float64, int64 and bool arrays, Python floats, ints and bools). Once
    per process (later calls return at once); a no-op without numba. Returns ``load()``'s answer."""
    global _warmed
    if not load():
        return False
    if _warmed:
        return True
    f, i, b = np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.bool_)
    f2, i2, b2 = np.zeros((0, 9)), np.zeros((2, 0), np.int64), np.zeros((2, 0), np.bool_)
    zone = np.zeros((2, 0))  # the conflicts' (2, C) arc lengths
    held_back(b, b, b, f, f, f, f, f, 0.0, 0.0, f, f, f, f, f, f, f, f, f, i, b, i, i, i, 0.0, f2, f, 0.0, f, i, f, f, b, b, b,
              i, 0, 0, i, 0.0, 0.0, 0.0, 0.0)
    conflicts(f, i, i2, zone, zone, f, f, b, b, f, f, b, b, b, b2, i2, i2, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0)
    law(b, b, b, f, b, False, f, f, f, f, f, f, f, f, 0.0, 0.0, f, f, 0.0, 0.0)
    integrate(f, b, f, f, 0.0, b, b, f, f, False, 0.0, 0.0)
    state(f2, b, f2, b, b, f, f, f2, f, 0.0, 0.0)
    blocked(i, i, f2, f, f2, f, 0.0, 0.0, i, f, f, f, i, 0, f, f, f, f, f, f, i)
    _warmed = True
    return True
