"""How log-like the simulated traffic is: Waymo Sim Agents-style features against the logs.

Usage: python benchmarks/bench_realism.py [--data ../shared/data] [--sample 4] [--egos expert,idm]

For every scenario (the first ``--sample`` of the bundled sample, and the first scenario of
every real file under ``--data``), every ego policy (``expert``: the ego drives its log; ``idm``)
and every agent model:

- ``log``: log replay (the agents are the log, whatever the ego does);
- ``constant_velocity``: each agent keeps its first logged velocity (and heading) while logged;
- ``reactive``: ``sim.agents.ReactiveAgents`` (IDM along the logged paths, traffic rules),

the rollout's non-ego agents are measured on the features of the Waymo Open Sim Agents Challenge
(per agent and valid step): speed [m/s], acceleration [m/s2], yaw rate [rad/s] and yaw
acceleration [rad/s2]; distance to the nearest object [m] (box centres minus both bounding
radii), collision (any box overlap, per agent: ever), time to collision [s] (to the nearest
object ahead within the agent's width, closing; capped at 5 s); distance to the road edge [m]
(signed, positive inside the drivable surface) and off-road (centre outside it, per agent: ever).

Each feature's distance is the Jensen-Shannon divergence (base 2, 0 = same distribution, 1 =
disjoint) between the simulated values and the log's, pooled over the scenarios, on 24 bins over
the log's 1st-99th percentile range (two bins for the yes/no features). The summary is
``1 - sum(weight * distance)`` with the challenge's 2024 weights (kinematic 4 x 0.05, nearest
object 0.1, collision 0.25, TTC 0.1, road edge 0.1, off-road 0.25). Also printed: the reactive
agents' ADE against the log [m] (mean displacement over valid steps), the agent-agent
collisions the log does not have, and the ego's closed-loop score (``evaluators.evaluate``, judged
against the log, in an env with the default terminations as a suite runs it) with log-replay and with
reactive agents.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import shapely  # noqa: E402

import scenarios  # noqa: E402
from evaluators import evaluate  # noqa: E402
from scenarios.common import wrap_angle  # noqa: E402
from scenarios.library import ScenarioLibrary  # noqa: E402
from scenarios.model import Scenario  # noqa: E402
from scenarios.rollout import Rollout  # noqa: E402
from sim.env import DriveTwinEnv  # noqa: E402
from sim.plan import PlanCache  # noqa: E402
from sim.runner import rollout  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FEATURES = ("speed", "accel", "yaw_rate", "yaw_accel", "nearest", "collision", "ttc", "road_edge", "offroad")
WEIGHTS = {"speed": 0.05, "accel": 0.05, "yaw_rate": 0.05, "yaw_accel": 0.05, "nearest": 0.1, "collision": 0.25,
           "ttc": 0.1, "road_edge": 0.1, "offroad": 0.25}
GROUPS = {"kinematic": ("speed", "accel", "yaw_rate", "yaw_accel"), "interactive": ("nearest", "collision", "ttc"),
          "map": ("road_edge", "offroad")}
BINARY = ("collision", "offroad")
TTC_CAP_S = 5.0
MODELS = ("log", "constant_velocity", "reactive")
#: the summary's pass/fail columns named when a score is below 0.98
CHECKS = ("at_fault_collisions", "making_progress", "ttc_within_bound", "comfortable", "kinematically_feasible")


def scenes(data: Path, sample: int) -> list[Scenario]:
    """The first ``sample`` scenarios of the bundled sample and the first of every real file."""
    lib = ScenarioLibrary("sample")
    out = [lib.load(i) for i in lib.ids()[:sample]]
    for path in sorted(p for p in data.glob("*/*") if p.is_file()):
        try:
            out.append(scenarios.load(path)[0])
        except Exception:  # not a scenario file (maps, protos) or an importer's refusal
            continue
    return out


def constant_velocity(record: Rollout, ego_row: int) -> Rollout:
    """``record`` with every agent but the ego moving at its first valid velocity while valid."""
    x, y, yaw, vx, vy = (np.array(a, dtype=np.float64) for a in (record.x, record.y, record.yaw, record.vx, record.vy))
    t = (record.t_us - record.t_us[0]) / 1e6
    for r in range(record.num_agents):
        steps = np.flatnonzero(record.valid[r])
        if r == ego_row or not steps.size:
            continue
        f = steps[0]
        dt = t[steps] - t[f]
        x[r, steps] = x[r, f] + vx[r, f] * dt
        y[r, steps] = y[r, f] + vy[r, f] * dt
        yaw[r, steps], vx[r, steps], vy[r, steps] = yaw[r, f], vx[r, f], vy[r, f]
    return record.replace(x=x, y=y, yaw=yaw, vx=vx, vy=vy, policy=record.policy + "+cv")


def boxes(x: np.ndarray, y: np.ndarray, yaw: np.ndarray, length: np.ndarray, width: np.ndarray) -> np.ndarray:
    """(M,) shapely polygons of oriented boxes."""
    c, s = np.cos(yaw), np.sin(yaw)
    hl, hw = 0.5 * length, 0.5 * width
    corners = np.stack([
        np.stack([x + c * hl - s * hw, y + s * hl + c * hw], -1), np.stack([x + c * hl + s * hw, y + s * hl - c * hw], -1),
        np.stack([x - c * hl + s * hw, y - s * hl - c * hw], -1), np.stack([x - c * hl - s * hw, y - s * hl + c * hw], -1),
    ], axis=1)
    return shapely.polygons(corners)


def features(record: Rollout, scenario: Scenario, surface, anchor: np.ndarray) -> tuple[dict[str, np.ndarray], set]:
    """The non-ego agents' feature values (pooled over agents and valid steps; per agent for the
    yes/no ones), and the set of colliding agent-agent pairs (ego excluded)."""
    tr = scenario.tracks
    e = scenario.ego_index
    n, s_total = record.x.shape
    dt = record.dt_s
    valid = record.valid.astype(bool)
    x, y, yaw = np.asarray(record.x), np.asarray(record.y), np.asarray(record.yaw)
    vx, vy = np.asarray(record.vx), np.asarray(record.vy)
    speed = np.hypot(vx, vy)
    length, width = np.asarray(tr.length, float), np.asarray(tr.width, float)
    radius = 0.5 * np.hypot(length, width)
    out: dict[str, list] = {f: [] for f in FEATURES}
    others = [r for r in range(n) if r != e]
    both1 = valid[:, 1:] & valid[:, :-1]
    both2 = both1[:, 1:] & both1[:, :-1]
    accel = np.diff(speed, axis=1) / dt
    yaw_rate = wrap_angle(np.diff(yaw, axis=1)) / dt
    yaw_accel = np.diff(yaw_rate, axis=1) / dt
    for r in others:
        out["speed"].append(speed[r][valid[r]])
        out["accel"].append(accel[r][both1[r]])
        out["yaw_rate"].append(yaw_rate[r][both1[r]])
        out["yaw_accel"].append(yaw_accel[r][both2[r]])
    collided = np.zeros(n, bool)
    pairs: set = set()
    for k in range(s_total):
        rows = np.flatnonzero(valid[:, k])
        if len(rows) < 2:
            continue
        px, py = x[rows, k], y[rows, k]
        d = np.hypot(px[:, None] - px[None, :], py[:, None] - py[None, :]) - radius[rows][:, None] - radius[rows][None, :]
        np.fill_diagonal(d, np.inf)
        polys = boxes(px, py, yaw[rows, k], length[rows], width[rows])
        tree = shapely.STRtree(polys)
        a, b = tree.query(polys, predicate="intersects")
        hit = a != b
        for i, j in zip(a[hit], b[hit]):
            collided[rows[i]] = True
            ri, rj = int(rows[i]), int(rows[j])
            if e not in (ri, rj):
                pairs.add((min(ri, rj), max(ri, rj)))
        # TTC along each agent's heading to the nearest object ahead within its width
        c, s = np.cos(yaw[rows, k]), np.sin(yaw[rows, k])
        dx, dy = px[None, :] - px[:, None], py[None, :] - py[:, None]
        lon = dx * c[:, None] + dy * s[:, None]
        lat = -dx * s[:, None] + dy * c[:, None]
        ahead = (lon > 0) & (np.abs(lat) < 0.5 * (width[rows][:, None] + width[rows][None, :]))
        np.fill_diagonal(ahead, False)
        v_own = vx[rows, k] * c + vy[rows, k] * s
        v_other = vx[rows, k][None, :] * c[:, None] + vy[rows, k][None, :] * s[:, None]
        gap = lon - 0.5 * (length[rows][:, None] + length[rows][None, :])
        closing = v_own[:, None] - v_other
        ttc = np.where(ahead & (closing > 0), np.maximum(gap, 0.0) / np.where(closing > 0, closing, 1.0), np.inf)
        mine = rows != e
        out["nearest"].append(d.min(axis=1)[mine])
        out["ttc"].append(np.minimum(ttc.min(axis=1), TTC_CAP_S)[mine])
        pts = shapely.points(px[mine] - anchor[0], py[mine] - anchor[1])
        edge = shapely.distance(surface.boundary, pts)
        inside = shapely.contains_xy(surface, px[mine] - anchor[0], py[mine] - anchor[1])
        out["road_edge"].append(np.where(inside, edge, -edge))
    offroad = np.zeros(n, bool)
    for r in others:
        if valid[r].any():
            offroad[r] = not shapely.contains_xy(surface, x[r][valid[r]] - anchor[0], y[r][valid[r]] - anchor[1]).all()
    seen = [r for r in others if valid[r].any()]
    out["collision"].append(collided[seen].astype(float))
    out["offroad"].append(offroad[seen].astype(float))
    return {f: np.concatenate(v) if v else np.zeros(0) for f, v in out.items()}, pairs


def jsd(sim: np.ndarray, log: np.ndarray, binary: bool) -> float:
    """Jensen-Shannon divergence (base 2) of two samples' histograms on the log's range."""
    sim, log = sim[np.isfinite(sim)], log[np.isfinite(log)]
    if not len(sim) or not len(log):
        return float("nan")
    if binary:
        edges = np.array([-0.5, 0.5, 1.5])
    else:
        lo, hi = np.percentile(log, [1, 99])
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.concatenate([[-np.inf], np.linspace(lo, hi, 23), [np.inf]])
    p = np.histogram(sim, edges)[0].astype(float)
    q = np.histogram(log, edges)[0].astype(float)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return 0.5 * kl(p) + 0.5 * kl(q)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sample", type=int, default=4, help="how many of the bundled sample's scenarios")
    parser.add_argument("--egos", default="expert,idm")
    args = parser.parse_args()
    egos = [e for e in args.egos.split(",") if e]
    t0 = time.perf_counter()
    chosen = scenes(args.data, args.sample)
    print(f"{len(chosen)} scenarios: " + ", ".join(s.id for s in chosen))
    envs = {mode: DriveTwinEnv(config={"agents_mode": mode, "action": "trajectory", "terminate_on_collision": False,
                                       "terminate_on_offroad": False, "terminate_on_goal": False}) for mode in ("replay", "reactive")}
    # scored as a suite runs them: the default terminations (collision, off-road, goal)
    score_envs = {mode: DriveTwinEnv(config={"agents_mode": mode, "action": "trajectory"}) for mode in ("replay", "reactive")}
    plans = PlanCache(envs["replay"].config)
    log_values: dict[str, list] = {f: [] for f in FEATURES}
    sim_values = {(ego, m): {f: [] for f in FEATURES} for ego in egos for m in MODELS}
    ade = {ego: [] for ego in egos}
    scores: dict[tuple[str, str], list[tuple[float, str]]] = {(ego, m): [] for ego in egos for m in ("log", "reactive")}
    new_pairs = {(ego, m): 0 for ego in egos for m in MODELS}
    for scenario in chosen:
        plan = plans.plan(scenario)
        surface, anchor = plan.geometry.surface, plan.geometry.anchor
        logged = Rollout.from_log(scenario)
        lf, log_pairs = features(logged, scenario, surface, anchor)
        for f in FEATURES:
            log_values[f].append(lf[f])
        for ego in egos:
            replay = rollout(envs["replay"], ego, scenario, seed=0)
            records = {"log": replay, "constant_velocity": constant_velocity(replay, scenario.ego_index),
                       "reactive": rollout(envs["reactive"], ego, scenario, seed=0)}
            for m, rec in records.items():
                vals, pairs = features(rec, scenario, surface, anchor)
                for f in FEATURES:
                    sim_values[(ego, m)][f].append(vals[f])
                new_pairs[(ego, m)] += len(pairs - log_pairs)
            for m, mode in (("log", "replay"), ("reactive", "reactive")):
                row = evaluate(rollout(score_envs[mode], ego, scenario, seed=0), scenario)
                failed = [k for k in CHECKS if row.get(k) is False or (k == "at_fault_collisions" and row.get(k))]
                scores[(ego, m)].append((float(row["closed_loop_score"]), f"{scenario.id}" + (f" ({', '.join(failed)})" if failed else "")))
            rec = records["reactive"]
            steps = rec.num_steps
            rows = [r for r in range(scenario.num_agents) if r != scenario.ego_index]
            v = rec.valid[rows] & scenario.tracks.valid[rows, :steps]
            err = np.hypot(rec.x[rows] - scenario.tracks.x[rows, :steps], rec.y[rows] - scenario.tracks.y[rows, :steps])[v]
            ade[ego].append((err.sum(), err.size, scenario.id))
    for env in (*envs.values(), *score_envs.values()):
        env.close()
    log_all = {f: np.concatenate(v) for f, v in log_values.items()}
    print("\nJensen-Shannon distance to the log per feature (0 = the log's distribution), summary = 1 - weighted sum")
    header = f"{'ego':7s} {'agents':18s} " + " ".join(f"{f:>9s}" for f in FEATURES) + "   " + " ".join(
        f"{g:>11s}" for g in GROUPS) + "  summary  new a-a coll."
    print(header)
    for ego in egos:
        for m in MODELS:
            vals = {f: np.concatenate(v) for f, v in sim_values[(ego, m)].items()}
            dist = {f: jsd(vals[f], log_all[f], f in BINARY) for f in FEATURES}
            groups = {g: float(np.nanmean([dist[f] for f in fs])) for g, fs in GROUPS.items()}
            summary = 1.0 - sum(WEIGHTS[f] * (0.0 if np.isnan(dist[f]) else dist[f]) for f in FEATURES)
            print(f"{ego:7s} {m:18s} " + " ".join(f"{dist[f]:9.4f}" for f in FEATURES) + "   " + " ".join(
                f"{groups[g]:11.4f}" for g in GROUPS) + f"  {summary:7.4f}  {new_pairs[(ego, m)]:5d}")
    print("\nreactive agents' ADE against the log [m] (mean displacement over valid steps, non-ego agents)")
    for ego in egos:
        total, count = sum(a[0] for a in ade[ego]), sum(a[1] for a in ade[ego])
        per = ", ".join(f"{sid} {s / max(c, 1):.3f}" for s, c, sid in ade[ego])
        print(f"  {ego:7s} {total / max(count, 1):.3f}   ({per})")
    print("\nthe ego's closed-loop score (evaluators.evaluate) with the agents replaying their logs and reacting")
    for ego in egos:
        for m in ("log", "reactive"):
            vals = scores[(ego, m)]
            low = ", ".join(f"{sid} {v:.3f}" for v, sid in vals if v < 0.98)
            print(f"  {ego:7s} {m:9s} mean {np.mean([v for v, _ in vals]):.3f}   below 0.98: {low or 'none'}")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
