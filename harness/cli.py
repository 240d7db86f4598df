"""The ``drivetwin`` command line.

Each subcommand is a function ``_cmd_<name>(args) -> int`` returning the process exit status:
0 when everything worked, 1 when some input failed (the others still processed), 2 on usage
errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.sources import SAMPLE_NAME, resolve_library


def _cmd_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from harness.executor import ClusterUnreachable
    from harness.importing import import_files, scan, summary_line
    from scenarios import ScenarioError
    from scenarios.library import ScenarioLibrary

    paths, skipped = scan(args.sources)
    for item in skipped:
        print(f"skip {item.path}: {item.reason}")
    if not paths:
        print("drivetwin import: no importable files found in the given sources", file=sys.stderr)
        return 1
    options = {
        "egos": args.egos, "window_s": args.window_s, "min_ego_duration_s": args.min_ego_s,
        "min_ego_travel_m": args.min_ego_travel_m,
    }
    with tqdm(total=len(paths), unit="file", disable=args.quiet or None, file=sys.stderr) as bar:

        def report(outcome) -> None:
            bar.update(1)
            if outcome.ok:
                tqdm.write(f"ok   {outcome.path}: {outcome.scenarios} scenarios, {outcome.added} new")
            else:
                tqdm.write(f"FAIL {outcome.error}")

        try:
            outcomes = import_files(paths, args.out, options, workers=args.workers, address=args.address, on_outcome=report)
        except ScenarioError as exc:
            print(f"drivetwin import: {exc}", file=sys.stderr)
            return 1
        except ClusterUnreachable as exc:  # an --address that does not answer as a Ray cluster
            print(f"drivetwin import: {exc}", file=sys.stderr)
            return 2
    print(summary_line(outcomes, skipped, args.out, len(ScenarioLibrary(args.out))))
    return 0 if all(o.ok for o in outcomes) else 1


def close_scenario_ids(library: Any, scenario_id: str, n: int = 3) -> list[str]:
    """Up to ``n`` ids of ``library`` close to ``scenario_id``, best first (``ScenarioLibrary.suggest``)."""
    return list(library.suggest(scenario_id, n=n))


def _cmd_scenarios(args: argparse.Namespace) -> int:
    import pandas as pd

    from scenarios import ScenarioError
    from scenarios.library import ScenarioLibrary

    root = resolve_library(args.library)
    try:
        library = ScenarioLibrary(root)
    except ScenarioError as exc:
        print(f"drivetwin scenarios: {exc}", file=sys.stderr)
        return 1
    if args.show:
        try:
            scenario = library.load(args.show)
        except KeyError:
            close = close_scenario_ids(library, args.show)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            print(f"drivetwin scenarios: no scenario {args.show!r} in {root}{hint}", file=sys.stderr)
            return 1
        for key, value in scenario.summary().items():
            print(f"{key:>18}  {value}")
        p = scenario.provenance
        print(f"{'frame':>18}  {p.frame}")
        if p.notes:
            print(f"{'notes':>18}  {p.notes}")
        if scenario.tags:
            print(f"{'tags':>18}  {', '.join(scenario.tags)}")
        return 0
    table = library.summaries()
    if args.dataset:
        table = table[table["dataset"] == args.dataset]
    columns = [c for c in ("id", "dataset", "ego_id", "num_agents", "num_steps", "duration_s") if c in table.columns]
    with pd.option_context("display.max_rows", args.limit, "display.width", 160, "display.max_colwidth", 60):
        print(table[columns].head(args.limit).to_string(index=False))
    print(f"{len(table)} scenarios in {root}" + (f" (showing {args.limit})" if len(table) > args.limit else ""))
    return 0


def _print_summary(summary: "Any", limit: int = 15) -> None:
    """A short table of a run: per status, the mean scores, the worst variants."""
    import pandas as pd

    if summary.empty:
        print("no variants ran")
        return
    ok = summary[summary["status"] == "ok"]
    errors = summary[summary["status"] != "ok"]
    print(f"{len(summary)} variants: {len(ok)} ok, {len(errors)} errors")
    if len(ok):
        cols = ["closed_loop_score", "driving_score", "progress_ratio", "ade_m"]
        means = {c: ok[c].astype(float).mean() for c in cols if c in ok}
        print("mean " + ", ".join(f"{c} {v:.3f}" for c, v in means.items()) + f"; median min_ttc_s {ok['min_ttc_s'].astype(float).median():.2f}")
        print(f"at-fault collisions in {int((ok['at_fault_collisions'].fillna(0) > 0).sum())} variants, "
              f"any collision in {int((ok['collisions'].fillna(0) > 0).sum())}")
        from evaluators.verdicts import causes, rank

        worst = rank(ok, head=min(limit, 5))  # by severity: at-fault collisions first, then the score
        worst = worst.assign(causes=[", ".join(causes(row)) or "-" for row in worst.to_dict("records")])
        show = [c for c in ("variant_id", "closed_loop_score", "driving_score", "at_fault_collisions", "progress_ratio", "causes") if c in worst]
        with pd.option_context("display.width", 160, "display.max_colwidth", 70):
            print("worst:")
            print(worst[show].to_string(index=False))
    if "planner_latency_p50_ms" in summary and summary["planner_latency_p50_ms"].notna().any():
        lat = summary["planner_latency_p50_ms"].astype(float)
        misses = summary["deadline_misses"].dropna().astype(int) if "deadline_misses" in summary else []
        line = (f"planner latency: median of the p50s {lat.median():.2f} ms, worst p99 "
                f"{summary['planner_latency_p99_ms'].astype(float).max():.2f} ms, max {summary['planner_latency_max_ms'].astype(float).max():.2f} ms")
        if len(misses):
            line += f"; deadline misses {int(misses.sum())} in {int((misses > 0).sum())} variants"
        print(line)
    if len(errors):
        from harness.report import grouped_errors

        for cause, where, ids in grouped_errors(errors):
            at = f", at {where}" if where else ""
            print(f"{len(ids)} variant{'s' if len(ids) != 1 else ''}: {cause}{at} (first {min(ids)})")


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.config import ConfigError, GateConfig, load_suite
    from harness.runner import RunError, run_suite

    try:
        config = load_suite(args.config)
        result = run_suite(
            config,
            out=args.out,
            workers=args.workers,
            address=args.address,
            executor="sequential" if args.sequential else None,
            resume=args.resume,
            policy=args.policy,
        )
    except (ConfigError, RunError) as exc:
        print(f"drivetwin run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = args.out or "the run directory above"
        print(f"drivetwin run: interrupted; finished variants are kept. Finish with: drivetwin run {args.config} --resume --out {where}",
              file=sys.stderr)
        return 130
    _print_summary(result.summary)
    rejected = sum(result.rejected.values())
    if rejected:
        print(f"{rejected} implausible or inapplicable variants rejected before simulation: {result.rejected}")
    print(f"run {result.run_dir} in {result.wall_s:.1f} s")
    if config.gate != GateConfig():  # the suite has a [gate] section: its verdict ends the output
        from harness.gate import gate

        verdict = gate(result.summary, config.gate, run_id=Path(result.run_dir).name, suite=config.name)
        _print_gate(verdict, 5)
        print("verdict: " + ("PASS" if verdict.passed else "FAIL") + f" (drivetwin gate {result.run_dir} --junit junit.xml)")
    return 1 if result.num_errors else 0


def _run_gate_config(run_dir: Path, config_path: str | None) -> tuple[Any, str]:
    """The gate thresholds: from ``--config`` when given, else from the run's manifest."""
    from harness.config import load_suite, parse_suite
    from harness.rundir import RunDirectory

    if config_path:
        suite = load_suite(config_path)
        return suite.gate, suite.name
    run = RunDirectory(run_dir)
    if not run.manifest.exists():
        return parse_suite({}).gate, ""
    data = run.read_manifest()
    gate = data.get("config", {}).get("gate", {})
    return parse_suite({"gate": gate}, str(run.manifest)).gate, data.get("suite", "")


def _cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from harness.gate import compare
    from harness.rundir import RunDirectory, RunError

    try:
        base, cand = RunDirectory(args.base).read_summary(), RunDirectory(args.cand).read_summary()
        gate_config, _ = _run_gate_config(Path(args.cand), args.config)
    except RunError as exc:
        print(f"drivetwin compare: {exc}", file=sys.stderr)
        return 2
    c = compare(base, cand, gate_config)
    print(f"baseline  {args.base}: {len(base)} variants")
    print(f"candidate {args.cand}: {len(cand)} variants; {c.paired} paired by variant id")
    print(
        f"mean closed-loop score {c.mean_baseline:.4f} -> {c.mean_candidate:.4f}: change {c.delta:+.4f}, "
        f"{c.confidence:.0%} bootstrap CI [{c.delta_lo:+.4f}, {c.delta_hi:+.4f}]"
    )
    for title, ids in (("newly failing", c.newly_failing), ("newly passing", c.newly_passing),
                       ("only in baseline", c.missing), ("only in candidate", c.added)):
        print(f"{title}: {len(ids)}" + ("".join(f"\n  {v}" for v in ids[: args.limit]) if ids else ""))
        if len(ids) > args.limit:
            print(f"  ... and {len(ids) - args.limit} more")
    changed = c.per_scenario[c.per_scenario["mean_delta"].abs() > 1e-12]
    print(f"scenarios whose mean score changed: {len(changed)} of {len(c.per_scenario)}")
    if len(changed):
        with pd.option_context("display.width", 160, "display.max_colwidth", 70):
            print(changed.head(args.limit).to_string(index=False))
    if args.csv:
        c.table.to_csv(args.csv, index=False)
        print(f"per-variant table written to {args.csv}")
    return 0


def _cmd_gate(args: argparse.Namespace) -> int:
    from harness.gate import gate, write_junit
    from harness.rundir import RunDirectory, RunError

    run_dir = Path(args.run)
    try:
        summary = RunDirectory(run_dir).read_summary()
        baseline = RunDirectory(args.baseline).read_summary() if args.baseline else None
        gate_config, suite = _run_gate_config(run_dir, args.config)
    except RunError as exc:
        print(f"drivetwin gate: {exc}", file=sys.stderr)
        return 2
    result = gate(summary, gate_config, baseline, run_id=run_dir.name, suite=suite)
    _print_gate(result, args.limit)
    if args.junit:
        path = write_junit(result, args.junit, run_dir=run_dir)
        print(f"JUnit XML: {path}")
    print("verdict: " + ("PASS" if result.passed else "FAIL"))
    return 0 if result.passed else 1


def _print_gate(result: Any, limit: int) -> None:
    """Each gate check, then the variants that fail their own verdict and why (at most ``limit``)."""
    from evaluators.verdicts import rank

    for check in result.checks:
        print(f"{'PASS' if check.passed else 'FAIL'}  {check.name}: {check.message}")
    failing = rank(result.variants[~result.variants["passed"]])
    for vid, reasons in failing[["variant_id", "reasons"]].head(limit).itertuples(index=False):
        print(f"      variant {vid}: {'; '.join(reasons)}")
    if len(failing) > limit:
        print(f"      ... and {len(failing) - limit} more")


def _cmd_replay(args: argparse.Namespace) -> int:
    from harness.replay import (
        Replayer,
        ReplayError,
        default_picture_path,
        format_scores,
    )
    from harness.rundir import RunError

    out = Path(args.out) if args.out else default_picture_path(args.run, args.variant_id)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in ("png", "gif"):
        print(f"drivetwin replay: --out {out}: the picture is a .png or a .gif", file=sys.stderr)
        return 2
    try:
        with Replayer(args.run) as replayer:
            result = replayer.replay(args.variant_id)
    except (ReplayError, RunError) as exc:
        print(f"drivetwin replay: {exc}", file=sys.stderr)
        return 2
    print(f"replayed {result.variant_id} of run {result.run_dir} (seed {result.task.seed})")
    print(format_scores(result.row))
    if result.row.get("status") == "error":
        print(f"error: {result.row.get('error')}")
    if result.stored is None:
        print("no stored result for this variant in the run: nothing to compare with")
    elif result.exact:
        print("exact: the replay matches the stored summary row in every metric column")
    else:
        print(f"MISMATCH: the replay differs from the stored row in {len(result.mismatches)} columns:")
        for mismatch in result.mismatches:
            print(f"  {mismatch}")
    try:
        result.picture(out)
        print(f"picture: {out}")
    except Exception as exc:  # noqa: BLE001 - the verdict above stands without a picture
        print(f"no picture: {exc}", file=sys.stderr)
    if args.check and not result.exact:
        names = ", ".join(m.column for m in result.mismatches) or "no stored row"
        print(f"drivetwin replay: --check failed for {result.variant_id}: {names}", file=sys.stderr)
        return 1
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.report import build_report
    from harness.rundir import RunError

    if args.worst < 0 or args.modes < 0:
        print(f"drivetwin report: --{'worst' if args.worst < 0 else 'modes'} must not be negative", file=sys.stderr)
        return 2
    try:
        path = build_report(
            args.run, out=args.out, worst=args.worst, gif=args.gif, baseline=args.baseline,
            warn=lambda message: print(f"drivetwin report: {message}", file=sys.stderr),
        )
    except RunError as exc:
        print(f"drivetwin report: {exc}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    from harness.report import failure_mode_lines
    from harness.rundir import RunDirectory

    for line in failure_mode_lines(RunDirectory(args.run).read_summary(), args.run, limit=args.modes):
        print(line)
    return 0


def _cmd_serve_policy(args: argparse.Namespace) -> int:
    import json
    import signal
    import threading

    try:
        options = json.loads(args.options) if args.options else {}
        if not isinstance(options, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        print(f"drivetwin serve-policy: --options {args.options!r}: {exc}", file=sys.stderr)
        return 2
    from harness.remote import serve_policy
    from harness.remote.server import served_by, serve_policy_frames

    if args.socket and args.transport == "grpc":
        print("drivetwin serve-policy: --socket serves the frames transport; drop --transport grpc", file=sys.stderr)
        return 2
    if args.socket:
        path = os.path.abspath(args.socket)
        where = f"unix+frames://{path}"
    elif args.transport == "frames":
        where = f"tcp+frames://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}"
    else:
        where = f"{args.host}:{args.port}"
    try:
        if args.socket or args.transport == "frames":
            server = serve_policy_frames(args.policy, where, options)
            address = server.address
        else:
            server, port = serve_policy(args.policy, args.port, options, args.host)
            address = f"{args.host}:{port}"
    except (ValueError, TypeError) as exc:
        print(f"drivetwin serve-policy: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:
        print(f"drivetwin serve-policy: {where}: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"drivetwin serve-policy: serving {args.policy!r} on {address} ({served_by(server)} server)", flush=True)
    stop.wait()
    server.stop(grace=1.0).wait()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drivetwin", description="Test autonomous driving on a digital twin of real logs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a suite: every scenario variant, scored, streamed to a run directory")
    p.add_argument("config", metavar="CONFIG", help="suite TOML (e.g. configs/smoke.toml)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="parallel workers (default: the suite's, 0 = cores)")
    p.add_argument("--address", default=None, metavar="A", help="join this Ray cluster instead of a local one")
    p.add_argument("--sequential", action="store_true", help="run in this process, one variant at a time (debugging)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run in --out")
    p.add_argument("--out", default=None, metavar="DIR", help="run directory (default runs/<suite>-<time>)")
    p.add_argument("--policy", default=None, metavar="NAME", help="run this policy (a name or package.module:Name) instead of the suite's")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("compare", help="compare a candidate run with a baseline run, variant by variant")
    p.add_argument("base", metavar="BASE", help="baseline run directory")
    p.add_argument("cand", metavar="CAND", help="candidate run directory")
    p.add_argument("--config", default=None, metavar="SUITE", help="take the confidence level from this suite")
    p.add_argument("--csv", default=None, metavar="FILE", help="write the per-variant comparison")
    p.add_argument("--limit", type=int, default=20, help="rows to print per list")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("gate", help="exit 0 when a run meets its thresholds (and does not regress), 1 when not")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--baseline", default=None, metavar="BASE", help="baseline run: also fail on a significant regression")
    p.add_argument("--junit", default=None, metavar="PATH", help="write JUnit XML (a test case per variant)")
    p.add_argument("--config", default=None, metavar="SUITE", help="thresholds from this suite (default: the run's own)")
    p.add_argument("--limit", type=int, default=20, help="failing variants to print")
    p.set_defaults(func=_cmd_gate)

    p = sub.add_parser("import", help="import real log files into a Parquet scenario library")
    p.add_argument("sources", nargs="+", metavar="SRC", help="log files or directories (formats detected by content)")
    p.add_argument("--out", required=True, metavar="LIBRARY", help="library directory (created or appended to)")
    p.add_argument("--egos", choices=("logged", "vehicles"), default="logged", help="the logged ego, or every vehicle")
    p.add_argument("--window-s", type=float, default=None, metavar="S", help="cut long logs into S-second scenarios")
    p.add_argument("--min-ego-s", type=float, default=2.0, metavar="S", help="least time [s] an ego must be observed")
    p.add_argument(
        "--min-ego-travel-m", type=float, default=5.0, metavar="M",
        help="with --egos vehicles: least distance [m] a vehicle must drive to be an ego (0 keeps parked cars)",
    )
    p.add_argument("--workers", type=int, default=1, metavar="N", help="files read in parallel by N Ray workers (0: one per CPU)")
    p.add_argument("--address", default="", metavar="ADDR", help="read on this Ray cluster (sources on a path every node reads)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("scenarios", help="list a library, or summarise one scenario")
    p.add_argument("library", metavar="LIBRARY", help=f"library directory, or '{SAMPLE_NAME}' for the built-in sample")
    p.add_argument("--show", metavar="ID", help="summarise this scenario")
    p.add_argument("--dataset", help="only this dataset")
    p.add_argument("--limit", type=int, default=50, help="rows to print")
    p.set_defaults(func=_cmd_scenarios)

    p = sub.add_parser("replay", help="re-run one variant of a run exactly, check it against the stored row, draw it")
    p.add_argument("variant_id", metavar="VARIANT_ID", help="the variant's id (as in the run's summary)")
    p.add_argument("--run", required=True, metavar="RUN", help="the run directory")
    p.add_argument("--out", default=None, metavar="FILE", help="picture, .png or .gif (default <run>/replays/<id>.png)")
    p.add_argument("--check", action="store_true", help="exit 1 when the replay differs from the stored row")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("report", help="a self-contained HTML report of a run, with pictures of the worst variants")
    p.add_argument("run", metavar="RUN", help="the run directory")
    p.add_argument("--out", default=None, metavar="FILE", help="the HTML file (default <run>/report.html)")
    p.add_argument("--baseline", default=None, metavar="RUN", help="a baseline run: the verdict compares with it, the page shows what changed")
    p.add_argument("--worst", type=int, default=5, metavar="N", help="replay and draw the N worst variants (by severity: at-fault collisions first)")
    p.add_argument("--gif", action="store_true", help="also embed an animation of each of the worst variants")
    p.add_argument("--modes", type=int, default=20, metavar="N", help="list at most N distinct at-fault failure modes here (the page has them all)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("serve-policy", help="serve a Python policy over the planner protocol (gRPC or frames) for remote suites")
    p.add_argument("policy", metavar="NAME_OR_PATH", help="a baseline (expert, idm, constant_velocity) or package.module:Name")
    p.add_argument("--port", type=int, default=50051, metavar="P", help="port to listen on (0: a free one, printed)")
    p.add_argument(
        "--transport", choices=("grpc", "frames"), default=None,
        help="gRPC (default), or the lock-step frames transport on --host:--port (tcp+frames://)",
    )
    p.add_argument("--socket", default="", metavar="PATH", help="serve the frames transport on this Unix socket (unix+frames://PATH) instead of a port")
    p.add_argument("--host", default="127.0.0.1", metavar="H", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--options", default="", metavar="JSON", help="keyword arguments of the policy's constructor, a JSON object")
    p.set_defaults(func=_cmd_serve_policy)
    return parser


def version() -> str:
    """The installed drivetwin's version (the source tree's pyproject when it is not installed)."""
    from importlib import metadata

    try:
        return metadata.version("drivetwin")
    except metadata.PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        return str(tomllib.loads(pyproject.read_text())["project"]["version"]) if pyproject.exists() else "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    from harness.executor import prepend_paths

    prepend_paths([os.getcwd()])  # modules in the working directory import, as under every executor
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
