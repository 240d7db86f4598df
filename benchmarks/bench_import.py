"""Import throughput per format on the real sample logs: scenarios per second.

Usage: python benchmarks/bench_import.py [--data ../shared/data] [--repeats 5]

For each file: the median time of ``scenarios.load`` over the repeats (logged ego, and
``egos="vehicles"``), the scenarios it makes, and the source bytes per scenario. As a reference
measured in the same run, the time to merely read and parse the file with the format's own
parser (json / pyarrow / pickle / ElementTree), so the importer's own cost is visible.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pyarrow.parquet as pq

import scenarios

ROOT = Path(__file__).resolve().parents[1]


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _raw_parse(path: Path):
    if path.suffix == ".json":
        return lambda: json.loads(path.read_bytes())
    if path.suffix == ".parquet":
        return lambda: pq.read_table(path)
    if path.suffix == ".pkl":
        return lambda: pickle.loads(path.read_bytes())  # the known sample only; drivetwin never does this
    if path.suffix == ".xml":
        return lambda: ET.parse(path)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    files = sorted(p for p in args.data.rglob("*") if p.is_file() and p.suffix in {".json", ".parquet", ".pkl", ".xml"})
    print(f"{'format':<12} {'file':<48} {'scen':>5} {'scen/s':>8} {'veh-egos':>8} {'scen/s':>8} {'raw parse':>10} {'KB/scen':>8}")
    per_format: dict[str, list[float]] = {}
    for path in files:
        try:
            importer = scenarios.detect(path)
        except scenarios.ScenarioError:
            continue  # a map beside its log
        logged = scenarios.load(path)
        vehicles = scenarios.load(path, egos="vehicles")
        t_logged = _median_time(lambda: scenarios.load(path), args.repeats)
        t_vehicles = _median_time(lambda: scenarios.load(path, egos="vehicles"), args.repeats)
        raw = _raw_parse(path)
        t_raw = _median_time(raw, args.repeats) if raw else float("nan")
        size = path.stat().st_size
        rate = len(logged) / t_logged
        per_format.setdefault(importer.name, []).append(rate)
        print(
            f"{importer.name:<12} {path.name[:48]:<48} {len(logged):>5} {rate:>8.1f} {len(vehicles):>8} "
            f"{len(vehicles) / t_vehicles:>8.1f} {t_raw * 1e3:>8.1f}ms {size / 1024 / len(logged):>8.0f}"
        )
    print()
    for name, rates in sorted(per_format.items()):
        print(f"{name:<12} median {statistics.median(rates):8.1f} logged scenarios/s over {len(rates)} file(s)")


if __name__ == "__main__":
    main()
