"""Verdicts against the log: what the logged trajectory itself did, scored by the same evaluators.

Real logs carry label noise that no driver could avoid: NGSIM boxes 0.3-0.4 m past their
lanelet's edge, tailgating at 0.4 m in stop-and-go traffic, jerky headings, a second track of one
car overlapping the first. A planner that drives like the log inherits those flags. So, with
``[evaluators] judge_against_log = true`` (the default), each scenario's logged trajectory is
scored once (``Rollout.from_log`` through the same geometry: ``LogBaseline``, cached per scenario
and config in the process), and a metric the log itself fails is judged *relative to the log*:

- drivable area: the planner fails beyond the log's largest off-road distance plus
  ``[evaluators.drivable_area] log_margin_m`` (0.2 m);
- TTC: it fails where its smallest TTC is below the log's by more than
  ``[evaluators.ttc] log_margin_s`` (0.2 s);
- speed limit: the limit is raised by the log's largest overspeed plus
  ``[evaluators.speed_limit] log_margin_mps`` (0.5 m/s);
- comfort: a bound the log breaks is widened to the log's extreme times 1 +
  ``[evaluators.comfort] log_margin_ratio`` (0.25);
- driving direction: where the log drives against its lane by more than the compliant bound less
  ``[evaluators.driving_direction] log_margin_m`` (1 m), the bounds rise by the log's excess;
- collisions: a collision (at fault or not) is excused only when the logged boxes of the ego and
  that agent themselves overlap; never otherwise, and never for an agent the variant rewrote
  (``rewritten_agents``: the adversary's collision is not the log's).

Every comparison uses the log over the same time as the rollout (a rollout that ended at 3 s is
compared with the log's first 3 s). The planner's own values stay in their columns, the log's sit
beside them (``log_drivable_area_max_distance_m``, ``log_min_ttc_s``, ``log_max_overspeed_mps``,
``log_comfortable``, ``log_wrong_way_max_m``, ``log_overlaps``), and the summary's ``against_log`` column says why
("drivable_area: log itself 0.36 m off-road; ...").
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from evaluators.comfort import dynamics_series, extremes
from evaluators.config import EvaluatorConfig
from evaluators.context import Context
from evaluators.driving_direction import lane_progress, worst_window
from evaluators.speed_limit import overspeed
from evaluators.ttc import projected_ttc
from scenarios.common import LRU
from scenarios.model import Scenario
from scenarios.rollout import Rollout

#: A time this close to the span's end still belongs to it [s] (clock rounding).
_TIME_TOLERANCE_S = 1e-6


@dataclass(frozen=True, slots=True)
class LogSpan:
    """What the logged ego did over the first ``duration_s`` of its drive (NaN where unknown).

    Attributes:
        duration_s: the span [s], from the logged ego's first valid step.
        offroad_m: largest distance of a logged ego corner outside the drivable area [m].
        min_ttc_s: smallest projected TTC of the logged ego [s] (inf: none within the horizon).
        max_overspeed_mps: largest speed of the logged ego above its lane's limit [m/s].
        overlapping: ids of the agents whose logged box overlaps the logged ego's in the span.
        comfort: each comfort quantity's extreme (``evaluators.comfort.QUANTITIES``) in the span.
        wrong_way_m: the logged ego's largest wrong-way progress over a window in the span [m].
    """

    duration_s: float
    offroad_m: float
    min_ttc_s: float
    max_overspeed_mps: float
    overlapping: frozenset[str]
    comfort: Mapping[str, float]
    wrong_way_m: float = 0.0


@dataclass(frozen=True, slots=True, eq=False)
class LogBaseline:
    """The logged trajectory of one scenario, scored per step once; ``over(duration)`` cuts a span.

    S = the scenario's steps. Build with ``of`` (cached) or ``build``.

    Attributes:
        scenario_id, ego_id: whose log it is.
        t_s: (S,) time since the logged ego's first valid step [s].
        valid: (S,) the logged ego is valid.
        offroad_m: (S,) largest corner distance off the drivable area [m] (NaN: unknown).
        ttc_s: (S,) projected TTC [s] (inf: none, NaN: ego invalid).
        overspeed_mps: (S,) speed above the lane's limit [m/s].
        first_overlap_s: agent id -> the first time [s] its logged box overlaps the logged ego's.
        vx, vy, yaw: (S,) the logged ego's velocity [m/s] and heading [rad], for comfort.
        lane_progress_m: (S - 1,) the logged ego's progress along its lane from each step to the next [m].
        dt_s: the log's step [s].
        config: the evaluator config it was scored with.
    """

    scenario_id: str
    ego_id: str
    t_s: np.ndarray
    valid: np.ndarray
    offroad_m: np.ndarray
    ttc_s: np.ndarray
    overspeed_mps: np.ndarray
    first_overlap_s: Mapping[str, float]
    vx: np.ndarray
    vy: np.ndarray
    yaw: np.ndarray
    lane_progress_m: np.ndarray
    dt_s: float
    config: EvaluatorConfig

    @classmethod
    def build(cls, scenario: Scenario, config: EvaluatorConfig) -> LogBaseline:
        """Score ``scenario``'s log step by step (absolute verdicts: the log is judged against nothing)."""
        absolute = config.replace(judge_against_log=False)
        ctx = Context(Rollout.from_log(scenario), scenario, absolute)
        e = ctx.ego
        t_s = ctx.t_s - ctx.t_s[ctx.ego_steps[0]]
        corners = ctx.corner_offroad_m
        known = np.isfinite(corners).any(axis=1)
        offroad = np.full(ctx.num_steps, np.nan)
        offroad[known] = np.nanmax(corners[known], axis=1)
        _, over = overspeed(ctx)
        pair = ctx.valid & ctx.ego_valid & ctx.others[:, None]
        touching = pair & (ctx.overlap > absolute.collision_min_overlap_m)
        rows = np.flatnonzero(touching.any(axis=1))
        first = {str(ctx.rollout.agent_ids[a]): float(t_s[np.argmax(touching[a])]) for a in rows}
        r = ctx.rollout
        return cls(
            scenario_id=scenario.id,
            ego_id=scenario.ego_id,
            t_s=t_s,
            valid=ctx.ego_valid.copy(),
            offroad_m=offroad,
            ttc_s=projected_ttc(ctx),
            overspeed_mps=over,
            first_overlap_s=first,
            vx=r.vx[e].copy(),
            vy=r.vy[e].copy(),
            yaw=r.yaw[e].copy(),
            lane_progress_m=lane_progress(ctx),
            dt_s=ctx.dt_s,
            config=config,
        )

    @classmethod
    def of(cls, scenario: Scenario, config: EvaluatorConfig) -> LogBaseline:
        """The baseline of ``scenario``'s log, scored once per scenario content and config in this
        process (an LRU of 64: a worker's variants of one scenario share it)."""
        key = (_content_key(scenario), config)
        with _LOCK:
            hit = _CACHE.get(key)
        if hit is not None:
            return hit[1]
        baseline = cls.build(scenario, config)
        with _LOCK:
            _CACHE.put(key, (scenario.road_map, baseline))  # the map is held: its id stays unique
        return baseline

    def over(self, duration_s: float) -> LogSpan:
        """What the log did in its first ``duration_s`` [s] (the rollout's duration)."""
        span = self.valid & (self.t_s <= duration_s + _TIME_TOLERANCE_S)
        steps = np.flatnonzero(span)
        if steps.size == 0:
            return LogSpan(duration_s, float("nan"), float("inf"), 0.0, frozenset(), {})
        offroad = self.offroad_m[steps]
        end = int(steps[-1]) + 1
        dyn = dynamics_series(self.vx[:end], self.vy[:end], self.yaw[:end], span[:end], self.dt_s, self.config.of("comfort"))
        return LogSpan(
            duration_s=float(duration_s),
            offroad_m=float(np.nanmax(offroad)) if np.isfinite(offroad).any() else float("nan"),
            min_ttc_s=float(np.min(self.ttc_s[steps])),
            max_overspeed_mps=float(np.max(self.overspeed_mps[steps])),
            overlapping=frozenset(a for a, t in self.first_overlap_s.items() if t <= duration_s + _TIME_TOLERANCE_S),
            comfort=extremes(dyn),
            wrong_way_m=worst_window(self.lane_progress_m[steps[0] : end - 1], self._direction_window()),
        )

    def _direction_window(self) -> int:
        return max(1, round(self.config.of("driving_direction").window_s / self.dt_s))


def rewritten_agents(log: Scenario, scenario: Scenario) -> frozenset[str]:
    """Ids of the agents of ``log`` whose track ``scenario`` (a variant of it) changed: valid steps,
    positions or heading anywhere (a retimed adversary, a braking lead). A collision with one of
    them is the mutation's, never the log's, so the log cannot excuse it.

    Tracks are compared step by step on one clock; when the two clocks differ (another step
    count or other times) no step of one stands for a step of the other, so every agent of the
    log counts as rewritten: the log then excuses nothing rather than everything.
    """
    if scenario is log or scenario.tracks is log.tracks:
        return frozenset()
    lt, st = log.tracks, scenario.tracks
    if not np.array_equal(np.asarray(log.t_us), np.asarray(scenario.t_us)):
        return frozenset(str(a) for a in lt.agent_ids.tolist())
    index = {a: i for i, a in enumerate(st.agent_ids.tolist())}
    out = set()
    for i, agent in enumerate(lt.agent_ids.tolist()):
        j = index.get(agent)
        if j is None:
            continue
        valid = lt.valid[i]
        if not np.array_equal(valid, st.valid[j]) or any(
            not np.array_equal(getattr(lt, n)[i, valid], getattr(st, n)[j, valid]) for n in ("x", "y", "yaw")
        ):
            out.add(agent)
    return frozenset(out)


def rollout_duration(ctx: Context) -> float:
    """The rollout's span [s]: from the ego's first to its last valid step."""
    steps = ctx.ego_steps
    return float(ctx.t_s[steps[-1]] - ctx.t_s[steps[0]])


def _content_key(scenario: Scenario) -> tuple:
    """What identifies a scenario's log: id, ego, map object and a digest of the tracks and clock."""
    tr = scenario.tracks
    h = hashlib.blake2b(digest_size=16)
    for a in (scenario.t_us, tr.x, tr.y, tr.yaw, tr.vx, tr.vy, tr.valid, tr.length, tr.width, tr.agent_types):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update("\0".join(map(str, tr.agent_ids)).encode())
    return (scenario.id, scenario.ego_index, id(scenario.road_map), h.hexdigest())


_CACHE: LRU = LRU(64)
_LOCK = threading.Lock()


def clear_log_cache() -> None:
    """Forget every cached ``LogBaseline`` (for benchmarks and memory)."""
    with _LOCK:
        _CACHE.clear()


__all__ = ["LogBaseline", "LogSpan", "clear_log_cache", "rewritten_agents", "rollout_duration"]
