"""Benchmark of the Parquet scenario library: write time, open time, load-by-id latency, sizes, dedup.

Builds an N-scenario library in a temporary directory by replicating the real sample scenarios
(every file in ``../shared/data`` that ``scenarios.load`` imports; hand-built scenes when none
does) under new ids. Each replica is translated by its own offset, so no two replicas share
tracks or maps and the library is as large as N distinct scenarios (the worst case for size).
Then it prints the figures. Not a test: nothing here asserts a time.

    python benchmarks/bench_library.py            # 10,000 scenarios
    python benchmarks/bench_library.py --n 2000 --runs 5
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scenarios import ScenarioError, load, scenarios_equal  # noqa: E402
from scenarios.library import DATA_TABLES, DEFAULT_SCENARIOS_PER_PART, SCENARIOS_TABLE, ScenarioLibrary  # noqa: E402
from scenarios.model import AgentType, RoadMap, Scenario, SignalState, Signals  # noqa: E402
from scenarios.synthetic import AgentSpec, scene, straight_road  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclasses.dataclass
class Source:
    """One importable input: a file (or an Argoverse 2 directory), its size and its scenarios."""

    path: Path
    bytes: int
    scenarios: list[Scenario]


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def real_sources(data: Path) -> tuple[list[Source], list[str]]:
    """Every file of ``data`` (or folder, for formats stored as a directory) that imports."""
    sources: list[Source] = []
    failures: list[str] = []
    if not data.is_dir():
        return sources, [f"{data}: not a directory"]
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        try:
            sources.append(Source(folder, tree_bytes(folder), load(folder)))
            continue
        except ScenarioError:
            pass
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            try:
                sources.append(Source(path, path.stat().st_size, load(path)))
            except ScenarioError as exc:
                failures.append(f"{path.relative_to(data)}: {exc.problem[:90]}")
    return [s for s in sources if s.scenarios], failures


def synthetic_sources() -> list[Source]:
    """Hand-built stand-ins: a 4-lane road, 30 to 90 agents, 91 steps at 10 Hz, signals."""
    out = []
    rng = np.random.default_rng(0)
    for k, n in enumerate((30, 60, 90)):
        agents = [
            AgentSpec(
                f"a{i}",
                float(rng.uniform(-40, 200)),
                float(3.5 * rng.integers(0, 4)),
                speed=float(rng.uniform(0, 25)),
                accel=float(rng.uniform(-2, 1)),
                agent_type=AgentType.VEHICLE if i % 5 else AgentType.PEDESTRIAN,
                valid_from=int(rng.integers(0, 30)),
            )
            for i in range(n)
        ]
        agents[0] = dataclasses.replace(agents[0], valid_from=0)
        s = scene(agents, num_steps=91, road=straight_road(num_lanes=4), scenario_id=f"synthetic-{k}")
        states = np.full((4, 91), SignalState.GO, np.int8)
        states[:, 50:] = SignalState.STOP
        stops = [[150.0, 3.5 * j, 0.0] for j in range(4)]
        s = s.replace(signals=Signals([f"lane{j}" for j in range(4)], states, stops))
        out.append(Source(Path(f"<synthetic-{k}>"), 0, [s]))
    return out


def translated(s: Scenario, dx: float, dy: float, scenario_id: str) -> Scenario:
    """``s`` moved by (dx, dy) [m] under a new id: same shape, different content (no dedup)."""
    off = np.array([dx, dy, 0.0])

    def move(points: np.ndarray | None) -> np.ndarray | None:
        return None if points is None else points + off

    tracks = s.tracks.replace(x=s.tracks.x + dx, y=s.tracks.y + dy)
    lanes = tuple(
        dataclasses.replace(
            lane,
            centerline=lane.centerline + off,
            left_boundary=move(lane.left_boundary),
            right_boundary=move(lane.right_boundary),
        )
        for lane in s.road_map.lanes
    )
    features = tuple(dataclasses.replace(f, points=f.points + off) for f in s.road_map.features)
    signals = s.signals
    if signals.num_signals:
        signals = Signals(signals.lane_ids, signals.states, signals.stop_points + off)
    return s.replace(id=scenario_id, tracks=tracks, road_map=RoadMap(lanes, features), signals=signals)


def replica(bases: list[Scenario], k: int) -> Scenario:
    base = bases[k % len(bases)]
    return translated(base, 1000.0 * (k + 1), -500.0 * (k + 1), f"{base.id}.rep{k:06d}")


def replicas(bases: list[Scenario], n: int, batch: int) -> Iterator[list[Scenario]]:
    for start in range(0, n, batch):
        yield [replica(bases, k) for k in range(start, min(n, start + batch))]


def table_bytes(root: Path) -> dict[str, int]:
    return {t: tree_bytes(root / t) for t in (SCENARIOS_TABLE, *DATA_TABLES)}


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def kib(n: float) -> str:
    return f"{n / 2**10:,.1f} KiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="scenarios in the library (default 10000)")
    parser.add_argument("--samples", type=int, default=200, help="random ids loaded per latency run (default 200)")
    parser.add_argument("--runs", type=int, default=3, help="runs of the open and load measurements; medians are printed (default 3)")
    parser.add_argument("--write-runs", type=int, default=1, help="libraries built to time the write; median printed (default 1)")
    parser.add_argument("--batch", type=int, default=500, help="scenarios per append call (default 500)")
    parser.add_argument(
        "--per-part", type=int, default=DEFAULT_SCENARIOS_PER_PART, help=f"scenarios per part file (default {DEFAULT_SCENARIOS_PER_PART})"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"real sample logs (default {DEFAULT_DATA})")
    parser.add_argument("--synthetic", action="store_true", help="use hand-built scenes even when real files import")
    parser.add_argument("--keep", type=Path, default=None, help="build the library here and keep it (default: a temp dir, deleted)")
    parser.add_argument("--ray", action="store_true", help="also time ray.data.read_parquet(<lib>/tracks).count()")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    # -- inputs --
    sources, failures = ([], []) if args.synthetic else real_sources(args.data)
    if sources:
        print(f"inputs: real scenarios from {args.data}")
    else:
        sources = synthetic_sources()
        print("inputs: synthetic scenes (no real file imported)" if not args.synthetic else "inputs: synthetic scenes (--synthetic)")
    for src in sources:
        s = src.scenarios[0]
        print(
            f"  {src.path.name:<42} {len(src.scenarios)} scenario(s), {s.num_agents} agents x {s.num_steps} steps, "
            f"{len(s.road_map.lanes)} lanes + {len(s.road_map.features)} features, {s.signals.num_signals} signals, {kib(src.bytes)}"
        )
    for line in failures:
        print(f"  not imported: {line}")
    bases = [s for src in sources for s in src.scenarios]
    source_bytes_per_scenario = sum(src.bytes for src in sources) / len(bases)

    work = Path(tempfile.mkdtemp(prefix="bench_library_"))
    root = args.keep or work / "lib"
    try:
        # -- write --
        write_times, write_cpu = [], []
        for run in range(max(1, args.write_runs)):
            shutil.rmtree(root, ignore_errors=True)
            library = ScenarioLibrary.create(root)
            elapsed = cpu = 0.0
            for batch in replicas(bases, args.n, args.batch):  # building replicas is not timed
                t0, c0 = time.perf_counter(), time.process_time()
                library.append(batch, scenarios_per_part=args.per_part)
                elapsed += time.perf_counter() - t0
                cpu += time.process_time() - c0
            write_times.append(elapsed)
            write_cpu.append(cpu)
            library.close()
        write_s = statistics.median(write_times)
        sizes = table_bytes(root)
        total = sum(sizes.values())
        print(f"\nlibrary: {args.n:,} scenarios replicated from {len(bases)} under new ids, each moved (distinct tracks and maps)")
        print(
            f"write: {write_s:.2f} s wall, {statistics.median(write_cpu):.2f} s CPU ({args.n / write_s:,.0f} scenarios/s; "
            f"median of {len(write_times)}; {args.per_part} scenarios per part; replica building not timed)"
        )

        # -- open --
        open_times = []
        for _ in range(max(1, args.runs)):
            t0 = time.perf_counter()
            library = ScenarioLibrary(root)
            open_times.append(time.perf_counter() - t0)
            library.close()
        print(f"open: {statistics.median(open_times) * 1e3:.1f} ms (median of {len(open_times)}; reads the scenarios table only)")

        # -- load by id --
        # cold: a fresh instance, so most loads also open (parse the footer of) their part files;
        # warm: the same ids again on that instance, files open (decoded caches too small to help).
        figures: dict[str, list[list[float]]] = {k: [] for k in ("cold", "warm", "cold_cpu", "warm_cpu")}
        checked = 0
        for run in range(max(1, args.runs)):
            library = ScenarioLibrary(root)
            rng = random.Random(args.seed + run)
            ks = rng.sample(range(args.n), min(args.samples, args.n))
            ids = library.ids()
            for phase in ("cold", "warm"):
                wall, cpu = [], []
                for k in ks:
                    t0, c0 = time.perf_counter(), time.process_time()
                    s = library.load(ids[k])
                    wall.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
                    if checked < 5:  # a few exact checks, outside the timing
                        assert scenarios_equal(s, replica(bases, k)), ids[k]
                        checked += 1
                figures[phase].append(wall)
                figures[f"{phase}_cpu"].append(cpu)
            library.close()

        def stat(key: str, q: float) -> float:
            return statistics.median(float(np.percentile(x, q)) for x in figures[key]) * 1e3

        samples = min(args.samples, args.n)
        print(
            f"load by id, cold (fresh instance, part files opened on first use): median {stat('cold', 50):.1f} ms, "
            f"p95 {stat('cold', 95):.1f} ms wall; CPU median {stat('cold_cpu', 50):.1f} ms, p95 {stat('cold_cpu', 95):.1f} ms"
        )
        print(
            f"load by id, warm (same ids again, files open):                 median {stat('warm', 50):.1f} ms, "
            f"p95 {stat('warm', 95):.1f} ms wall; CPU median {stat('warm_cpu', 50):.1f} ms, p95 {stat('warm_cpu', 95):.1f} ms"
        )
        print(f"  ({samples} random ids per run, medians over {len(figures['cold'])} runs)")
        by_source: dict[str, list[float]] = {}
        for run, cpu in enumerate(figures["warm_cpu"]):
            ks = random.Random(args.seed + run).sample(range(args.n), samples)
            for k, c in zip(ks, cpu):
                by_source.setdefault(bases[k % len(bases)].id, []).append(c)
        for sid, cpu in sorted(by_source.items(), key=lambda item: -float(np.median(item[1]))):
            base = next(b for b in bases if b.id == sid)
            size = f"{base.num_agents} agents, {len(base.road_map.lanes) + len(base.road_map.features)} map elements"
            print(f"  warm CPU median {float(np.median(cpu)) * 1e3:5.1f} ms  replicas of {sid} ({size})")

        # -- size --
        print(f"size: {mib(total)} = {kib(total / args.n)} per scenario "
              f"(source files: {kib(source_bytes_per_scenario)} per scenario; ratio {total / args.n / source_bytes_per_scenario:.2f})"
              if source_bytes_per_scenario else f"size: {mib(total)} = {kib(total / args.n)} per scenario")
        print("  " + ", ".join(f"{t} {mib(b)}" for t, b in sizes.items()))

        if args.ray:
            import ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            t0 = time.perf_counter()
            rows = ray.data.read_parquet(str(root / "tracks")).count()
            print(f"ray.data.read_parquet(<lib>/tracks).count(): {rows:,} rows in {time.perf_counter() - t0:.1f} s")
            ray.shutdown()

        # -- dedup: one scenario per vehicle --
        print("\ndedup (egos='vehicles': one scenario per vehicle of each log, same tracks and map):")
        variants: list[Scenario] = []
        if any(src.bytes for src in sources):
            for src in sources:
                try:
                    variants += load(src.path, egos="vehicles", min_ego_travel_m=0.0)
                except ScenarioError as exc:
                    print(f"  {src.path.name}: {exc.problem}")
        else:
            for s in bases:
                rows = np.flatnonzero(s.tracks.agent_types == AgentType.VEHICLE)
                variants += [s.with_ego(str(s.tracks.agent_ids[r]), f"{s.id}.ego-{s.tracks.agent_ids[r]}") for r in rows]
        dedup_root, naive_root = work / "dedup", work / "naive"
        results = {}
        for name, where, dedup in (("content-addressed", dedup_root, True), ("naive (a copy per scenario)", naive_root, False)):
            times = []
            for _ in range(max(1, args.runs)):
                shutil.rmtree(where, ignore_errors=True)
                library = ScenarioLibrary.create(where)
                t0 = time.perf_counter()
                result = library.append(variants, dedup=dedup)
                times.append(time.perf_counter() - t0)
                library.close()
            results[name] = tree_bytes(where)
            print(
                f"  {name:<28} {len(variants)} scenarios: {mib(results[name])} ({kib(results[name] / len(variants))} per scenario), "
                f"tracks written {result.tracks_written}, maps written {result.maps_written}, write {statistics.median(times):.2f} s"
            )
        saved = 1 - results["content-addressed"] / results["naive (a copy per scenario)"]
        print(f"  saving: {saved:.1%} ({results['naive (a copy per scenario)'] / results['content-addressed']:.1f}x smaller)")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
            print(f"\nkept the library at {args.keep}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
