"""``drivetwin report``: one self-contained HTML page about a run.

The page opens with the verdict: the gate's checks (the suite's ``[gate]``), the failures by
cause (``evaluators.verdicts``: at-fault collisions, other collisions, off-road, red lights, ...,
each with its variants linked), and, given a baseline run, what changed variant by variant
(newly failing, newly passing, the largest score changes and the mean change with its paired
bootstrap interval). Then the worst variants ranked by severity (at-fault collisions first, then
other collisions, off-road, red lights, then the score), each with what set its score, the
moment drawn, a bird's-eye picture and the command that replays it; a summary table (overall,
per dataset, per mutation sweep), histograms of the scores, the errors grouped by message, every
failing variant, and the run's identity. The run stores no trajectories, so the worst variants
are replayed (``harness.replay``) to draw them; the page says whether each replay matched the
stored row. No external assets: pictures are inline base64 PNG (or GIF), the CSS is inline, and
every string from the run is escaped.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.rundir import REPORT_FILE, RunDirectory
#: Score columns whose distributions the report shows.
SCORE_COLUMNS = ("closed_loop_score", "driving_score")
#: Columns shown for each of the worst variants.
WORST_COLUMNS = (
    "closed_loop_score", "driving_score", "termination", "collisions", "at_fault_collisions", "excused_collisions", "first_collision_s",
    "min_ttc_s", "min_distance_m", "progress_ratio", "drivable_area_max_distance_m", "driving_direction_compliance",
    "speed_limit_compliance", "comfortable", "ade_m", "fde_m",
)  # fmt: skip
ORIGINAL = "(original)"
UNKNOWN = "(unknown)"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:1.02em;margin:0 0 6px 0;font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
table{border-collapse:collapse;font-size:.88em;margin:8px 0}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}pre{background:#f7f7f7;padding:8px;overflow-x:auto;white-space:pre-wrap;word-break:break-word}
.card{border:1px solid #ddd;border-radius:6px;padding:12px;margin:14px 0}.muted{color:#777}
.ok{color:#1a7f37}.bad{color:#b42318}img{max-width:100%;height:auto;display:block;margin:8px 0}
.cmd{background:#0d1117;color:#e6edf3;padding:6px 10px;border-radius:4px;display:block;overflow-x:auto;white-space:pre}
.verdict{font-size:1.3em;font-weight:600;padding:6px 12px;border-radius:4px;display:inline-block}
.verdict.ok{background:#e6f4ea}.verdict.bad{background:#fdecea}.cause{font-weight:600;color:#b42318}
a{color:#0b5cad}
"""


def _e(value: Any) -> str:
    """Escaped text of any value."""
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any, digits: int = 3) -> str:
    """A number for a table cell ("–" when missing)."""
    if value is None or value is pd.NA:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if np.isnan(v):
        return "–"
    if np.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:.{digits}f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] | None = None) -> str:
    """An HTML table; cells are escaped here (pass plain values)."""
    numeric = list(numeric or [False] * len(header))
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            cls = ' class="num"' if i < len(numeric) and numeric[i] else ""
            out.append(f"<td{cls}>{_e(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _img(data: bytes, fmt: str, alt: str) -> str:
    return f'<img src="data:image/{fmt};base64,{base64.b64encode(data).decode("ascii")}" alt="{_e(alt)}">'


def replay_command(variant_id: str, run_dir: str | Path) -> str:
    """The shell command that replays ``variant_id`` of ``run_dir`` (quoted for a POSIX shell)."""
    return f"drivetwin replay {shlex.quote(str(variant_id))} --run {shlex.quote(str(run_dir))}"


# --- numbers ---------------------------------------------------------------------------------


def _ok(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["status"] == "ok"]


def group_stats(summary: pd.DataFrame) -> dict[str, Any]:
    """Counts and score statistics of a set of summary rows (scores over the ok rows).

    Returns variants, ok, errors, for each score its mean / min / p10 / median / max, the
    at-fault collision rate and the any-collision rate (shares of the ok variants).
    """
    ok = _ok(summary)
    stats: dict[str, Any] = {"variants": len(summary), "ok": len(ok), "errors": len(summary) - len(ok)}
    for column in SCORE_COLUMNS:
        values = pd.to_numeric(ok[column], errors="coerce").dropna().to_numpy(float) if column in ok else np.zeros(0)
        if values.size:
            q = np.quantile(values, [0.0, 0.1, 0.5, 1.0])
            stats[column] = {"mean": float(values.mean()), "min": q[0], "p10": q[1], "median": q[2], "max": q[3]}
        else:
            stats[column] = {k: float("nan") for k in ("mean", "min", "p10", "median", "max")}
    for name, column in (("at_fault_collision_rate", "at_fault_collisions"), ("collision_rate", "collisions")):
        counts = pd.to_numeric(ok[column], errors="coerce").fillna(0) if column in ok else pd.Series(dtype=float)
        stats[name] = float((counts > 0).mean()) if len(ok) else float("nan")
    return stats


def _labels(summary: pd.DataFrame, column: str, empty: str) -> pd.Series:
    if column not in summary:
        return pd.Series([UNKNOWN] * len(summary), index=summary.index)
    values = summary[column].astype(object).where(summary[column].notna(), None)
    return values.map(lambda v: UNKNOWN if v is None else (empty if str(v) == "" else str(v)))


def _stats_rows(summary: pd.DataFrame) -> list[list[Any]]:
    groups: list[tuple[str, pd.DataFrame]] = [("all", summary)]
    for label, column, empty in (("dataset", "dataset", UNKNOWN), ("mutation", "mutation", ORIGINAL)):
        keys = _labels(summary, column, empty)
        if keys.nunique() > 1 or label == "dataset":
            groups += [(f"{label}: {key}", summary[keys == key]) for key in sorted(keys.unique())]
    rows = []
    for name, frame in groups:
        s = group_stats(frame)
        cl, dr = s["closed_loop_score"], s["driving_score"]
        rows.append([
            name, s["variants"], s["ok"], s["errors"],
            _num(cl["mean"]), _num(cl["min"]), _num(cl["p10"]), _num(cl["median"]), _num(cl["max"]),
            _num(dr["mean"]), _num(dr["median"]),
            _num(s["at_fault_collision_rate"]), _num(s["collision_rate"]),
        ])  # fmt: skip
    return rows


def error_groups(summary: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """The failed variants grouped by message, most frequent first: (message, variant ids).

    A message that names its own variant or scenario id is grouped with the same message of
    other variants (the id is shown as ``<variant>`` / ``<scenario>``).
    """
    errors = summary[summary["status"] != "ok"]
    groups: dict[str, list[str]] = {}
    for row in errors.to_dict("records"):
        groups.setdefault(_token_message(row), []).append(str(row["variant_id"]))
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+)')
_CHAINED = ("\nThe above exception was the direct cause", "\nDuring handling of the above exception")


def error_origin(traceback_text: str | None) -> tuple[str, str]:
    """(the root cause's "Type: message" line, "file.py:line" where it was raised) of a traceback.

    Chained exceptions print the root cause first: that block is the one read. ("", "") when
    ``traceback_text`` is empty or not a traceback.
    """
    if not traceback_text or not isinstance(traceback_text, str):
        return "", ""
    first = traceback_text
    for marker in _CHAINED:
        first = first.split(marker, 1)[0]
    lines = first.rstrip().splitlines()
    frames = [(i, m) for i, line in enumerate(lines) if (m := _FRAME.match(line))]
    if not frames:
        return "", ""
    i, frame = frames[-1]
    rest = [line for line in lines[i + 1 :] if not line.startswith(" ") and line.strip()]
    cause = rest[0].strip() if rest else ""
    return cause, f"{Path(frame['file']).name}:{frame['line']}"


def grouped_errors(summary: pd.DataFrame) -> list[tuple[str, str, list[str]]]:
    """Failed variants grouped by what failed, most frequent first: (cause, location, variant ids).

    Rows with a traceback group by its root cause and where it was raised (a policy that raises
    the same error at different steps is one group); others by their message, with their own
    variant and scenario ids replaced (as ``error_groups`` does).
    """
    errors = summary[summary["status"] != "ok"]
    groups: dict[tuple[str, str], list[str]] = {}
    for row in errors.to_dict("records"):
        cause, where = error_origin(row.get("traceback"))
        if not cause:
            cause, where = _token_message(row), ""
        groups.setdefault((cause, where), []).append(str(row["variant_id"]))
    return sorted(((c, w, ids) for (c, w), ids in groups.items()), key=lambda g: (-len(g[2]), g[0], g[1]))


def _token_message(row: Mapping[str, Any]) -> str:
    error = row.get("error")
    message = "(no message)" if error is None or (isinstance(error, float) and np.isnan(error)) else str(error)
    for key, token in (("variant_id", "<variant>"), ("scenario_id", "<scenario>")):
        ident = row.get(key)
        if isinstance(ident, str) and ident:
            message = message.replace(ident, token)
    return message


def worst_variants(summary: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` worst ok variants by severity (``evaluators.verdicts.rank``): at-fault collisions,
    other collisions, off-road, red lights, then the lowest closed-loop score (ties by id)."""
    from evaluators.verdicts import rank

    ok = _ok(summary)
    if ok.empty or n <= 0:
        return ok.iloc[:0]
    return rank(ok, head=n)


def _anchor(variant_id: str) -> str:
    """The page anchor of a variant's row in "Every failing variant"."""
    return "v-" + re.sub(r"[^A-Za-z0-9_-]+", "-", str(variant_id))


def _link(variant_id: str) -> str:
    return f'<a href="#{_anchor(variant_id)}"><code>{_e(variant_id)}</code></a>'


def _links(ids: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(_link(v) for v in ids[:limit])
    return shown + (f" … and {len(ids) - limit} more" if len(ids) > limit else "")


# --- sections --------------------------------------------------------------------------------


def _identity_section(manifest: Mapping[str, Any], summary: pd.DataFrame, run_dir: Path) -> str:
    config = manifest.get("config") or {}
    policy = config.get("policy") or {}
    options = policy.get("options") or {}
    stats = group_stats(summary) if len(summary) else {"variants": 0, "ok": 0, "errors": 0}
    wall = manifest.get("wall_s")
    rows = [
        ("suite", f"{manifest.get('suite', config.get('name', ''))}" + (f" — {config['description']}" if config.get("description") else "")),
        ("run id", manifest.get("run_id", run_dir.name)),
        ("run directory", str(run_dir)),
        ("status", manifest.get("status", "unknown")),
        ("started (UTC)", manifest.get("started_utc", "")),
        ("finished (UTC)", manifest.get("finished_utc", "–")),
        ("wall time", f"{wall:.1f} s" if isinstance(wall, (int, float)) else "–"),
        ("policy", policy.get("name", "") + (f" {json.dumps(options, sort_keys=True)}" if options else "")),
        ("env", json.dumps(config.get("env") or {}, sort_keys=True)),
        ("variants", f"{stats['variants']} ({stats['ok']} ok, {stats['errors']} errors)"
            + (f"; {manifest['num_rejected']} rejected before simulation" if manifest.get("num_rejected") else "")),
        ("scenarios", manifest.get("num_scenarios", "–")),
        ("seed", manifest.get("seed", "–")),
        ("executor", f"{manifest.get('executor', '')}, {manifest.get('workers', '')} workers" + (f" at {manifest['address']}" if manifest.get("address") else "")),
        ("host", ", ".join(f"{k} {v}" for k, v in (manifest.get("host") or {}).items())),
        ("packages", ", ".join(f"{k} {v}" for k, v in (manifest.get("packages") or {}).items())),
        ("command", manifest.get("command", "")),
    ]  # fmt: skip
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    cfg = json.dumps(config, indent=2, sort_keys=True, default=str)
    return f"<table>{body}</table><details><summary>resolved suite config</summary><pre>{_e(cfg)}</pre></details>"


def _summary_section(summary: pd.DataFrame) -> str:
    if summary.empty:
        return '<p class="muted">The run holds no results.</p>'
    header = [
        "group", "variants", "ok", "errors", "closed-loop mean", "min", "p10", "median", "max",
        "driving mean", "driving median", "at-fault collision rate", "collision rate",
    ]  # fmt: skip
    table = _table(header, _stats_rows(summary), [False] + [True] * (len(header) - 1))
    return table + '<p class="muted">Scores and rates are over the variants that ran (ok); rates are the share of them with at least one (at-fault) collision.</p>'


def _histogram_section(summary: pd.DataFrame) -> str:
    from harness.plots import histogram_png

    ok = _ok(summary)
    if ok.empty:
        return '<p class="muted">No scores to show: no variant ran to the end.</p>'
    columns = {c: pd.to_numeric(ok[c], errors="coerce").dropna().tolist() for c in SCORE_COLUMNS if c in ok}
    return _img(histogram_png(columns), "png", "score histograms")


def _errors_section(summary: pd.DataFrame, run_dir: Path) -> str:
    groups = error_groups(summary)
    if not groups:
        return '<p class="ok">No variant failed.</p>'
    out = ["<table><thead><tr><th>variants</th><th>message</th><th>examples</th></tr></thead><tbody>"]
    for message, ids in groups:
        examples = "<br>".join(f"<code>{_e(v)}</code>" for v in ids[:3]) + (f"<br>… and {len(ids) - 3} more" if len(ids) > 3 else "")
        out.append(
            f'<tr><td class="num">{len(ids)}</td><td><pre>{_e(message)}</pre>'
            f'<code class="cmd">{_e(replay_command(ids[0], run_dir))}</code></td><td>{examples}</td></tr>'
        )
    out.append("</tbody></table>")
    return "".join(out)


def _gate_section(result: Any) -> str:
    """The gate's verdict and each of its checks."""
    verdict = "PASS" if result.passed else "FAIL"
    rows = "".join(
        f'<tr><td class="{"ok" if c.passed else "bad"}">{"PASS" if c.passed else "FAIL"}</td><td><code>{_e(c.name)}</code></td>'
        f'<td class="num">{_e(_num(c.value, 4))}</td><td class="num">{_e(_num(c.bound, 4))}</td><td>{_e(c.message)}</td></tr>'
        for c in result.checks
    )
    failing = int((~result.variants["passed"]).sum()) if len(result.variants) else 0
    return (
        f'<p><span class="verdict {"ok" if result.passed else "bad"}">{verdict}</span> '
        f'<span class="muted">{failing} of {len(result.variants)} variants fail their own verdict</span></p>'
        "<table><thead><tr><th></th><th>check</th><th>value</th><th>bound</th><th>what was measured</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _causes_section(summary: pd.DataFrame) -> str:
    """How many variants fail by each cause, with the variants (linked), most severe cause first."""
    from evaluators.verdicts import VERDICT_CAUSES, failures_by_cause

    table = failures_by_cause(summary)
    if table.empty:
        return '<p class="ok">No variant failed any check.</p>'
    rows = "".join(
        f'<tr><td class="cause">{_e(r.cause)}</td><td class="num">{r.count}</td><td>{"yes" if r.cause in VERDICT_CAUSES else "no"}</td>'
        f'<td class="muted">{_e(r.meaning)}</td><td>{_links(r.variants)}</td></tr>'
        for r in table.itertuples()
    )
    return (
        "<table><thead><tr><th>cause</th><th>variants</th><th>fails the variant</th><th>meaning</th><th>variants (worst first)</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        '<p class="muted">Each verdict is judged against the log: a flag the logged trajectory itself raised (a box past the '
        "lane edge, tailgating, overlapping logged boxes) is no failure unless the planner did worse by the stated margin. "
        "A variant can have several causes; causes marked \"no\" lower its score but do not fail it on their own.</p>"
    )


def failure_mode_lines(summary: pd.DataFrame, run_dir: str | Path, limit: int = 20) -> list[str]:
    """The run's distinct at-fault failure modes (``evaluators.failure_modes``) as text lines, most
    severe first: where, with whom, how many variants, and the command replaying one of them."""
    from evaluators.failure_modes import failure_modes

    modes = failure_modes(summary)
    if modes.empty:
        return []
    scenarios = modes["scenario_id"].nunique()
    lines = [f"{len(modes)} distinct at-fault failure mode{'s' if len(modes) != 1 else ''} in {scenarios} scenario{'s' if scenarios != 1 else ''} "
             f"({int(modes['count'].sum())} variants):"]  # fmt: skip
    for m in modes.head(limit).itertuples():
        sweep = f" [{m.mutation}]" if isinstance(m.mutation, str) else ""
        lines.append(
            f"  #{m.mode} {m.scenario_id}: hits agent {m.agent_id} at {m.t_s:.1f} s, ego at ({m.x_m:.1f}, {m.y_m:.1f}) m; "
            f"{m.count} variant{'s' if m.count != 1 else ''}{sweep}"
        )
        lines.append(f"      {replay_command(m.variant_id, run_dir)}")
    if len(modes) > limit:
        lines.append(f"  ... and {len(modes) - limit} more (report.html lists them all)")
    return lines


def _modes_section(summary: pd.DataFrame, run_dir: Path) -> str:
    """One row per distinct at-fault failure mode, with one variant that replays it."""
    from evaluators.failure_modes import MODE_DISTANCE_M, MODE_TIME_S, failure_modes

    modes = failure_modes(summary)
    if modes.empty:
        return '<p class="ok">No at-fault collision.</p>'
    rows = "".join(
        f'<tr><td class="num">{m.mode}</td><td><code>{_e(m.scenario_id)}</code></td><td><code>{_e(m.agent_id)}</code></td>'
        f'<td class="num">{m.t_s:.1f}</td><td class="num">{m.x_m:.1f}, {m.y_m:.1f}</td><td class="num">{m.count}</td>'
        f'<td>{_e(m.mutation or "")}</td><td>{_link(m.variant_id)}<br><code class="muted">{_e(replay_command(m.variant_id, run_dir))}</code></td></tr>'
        for m in modes.itertuples()
    )
    return (
        "<table><thead><tr><th>mode</th><th>scenario</th><th>agent hit</th><th>at [s]</th><th>ego at [m]</th><th>variants</th>"
        f"<th>sweep</th><th>replay one</th></tr></thead><tbody>{rows}</tbody></table>"
        f'<p class="muted">Variants whose first at-fault collision is in the same scenario, with the same agent, within '
        f"{MODE_TIME_S:g} s and {MODE_DISTANCE_M:g} m of another's are one failure mode; each names its most severe variant.</p>"
    )


def _changes_section(comparison: Any, summary: pd.DataFrame, limit: int = 10) -> str:
    """Against the baseline: the mean change with its paired bootstrap interval, the variants
    that newly fail and newly pass, and the largest score changes."""
    from evaluators.verdicts import causes

    c = comparison
    by_id = {str(r["variant_id"]): r for r in summary.to_dict("records")}
    table = c.table.set_index("variant_id")
    head = (
        f"<p>{c.paired} variants paired by id. Mean closed-loop score {_num(c.mean_baseline)} → {_num(c.mean_candidate)}: "
        f'change <b class="{"bad" if c.delta_hi < 0 else "ok" if c.delta_lo > 0 else ""}">{c.delta:+.3f}</b>, '
        f"{c.confidence:.0%} paired bootstrap interval [{c.delta_lo:+.3f}, {c.delta_hi:+.3f}]"
        + (f"; {len(c.missing)} baseline variants missing, {len(c.added)} new" if c.missing or c.added else "")
        + ".</p>"
    )

    def rows(ids: Sequence[str]) -> str:
        out = []
        for v in ids[:limit]:
            r = table.loc[v]
            why = ", ".join(causes(by_id[v])) if v in by_id else ""
            out.append(
                f"<tr><td>{_link(v)}</td><td class=\"num\">{_num(r['closed_loop_score_baseline'])}</td>"
                f"<td class=\"num\">{_num(r['closed_loop_score_candidate'])}</td><td class=\"num\">{_num(r['closed_loop_score_delta'])}</td>"
                f"<td>{_e(why or '–')}</td></tr>"
            )
        more = f'<tr><td colspan="5" class="muted">… and {len(ids) - limit} more</td></tr>' if len(ids) > limit else ""
        return "".join(out) + more

    header = "<thead><tr><th>variant</th><th>baseline score</th><th>candidate score</th><th>change</th><th>candidate's causes</th></tr></thead>"
    parts = [head]
    for title, ids in (("Newly failing", c.newly_failing), ("Newly passing", c.newly_passing)):
        parts.append(f"<h3>{title}: {len(ids)}</h3>" + (f"<table>{header}<tbody>{rows(ids)}</tbody></table>" if ids else ""))
    deltas = table["closed_loop_score_delta"].astype("Float64").dropna()
    largest = deltas.abs().sort_values(ascending=False, kind="stable").index.tolist()
    largest = [v for v in largest if deltas[v] != 0]
    parts.append(f"<h3>Largest score changes: {len(largest)} variants changed</h3>")
    if largest:
        parts.append(f"<table>{header}<tbody>{rows(largest)}</tbody></table>")
    return "".join(parts)


def _failing_section(variants: pd.DataFrame, run_dir: Path) -> str:
    """Every variant with a cause, worst first: its causes, why it fails its verdict (the gate's
    ``reasons``), what set its score, why it was judged against the log, and its replay command
    (the anchors the cause table links to)."""
    from evaluators.verdicts import causes, rank, score_drivers

    rows = []
    for row in rank(variants).to_dict("records"):
        found = causes(row)
        if not found:
            continue
        vid = str(row["variant_id"])
        own = row["reasons"]
        rows.append(
            f'<tr id="{_anchor(vid)}"><td><code>{_e(vid)}</code></td><td class="cause">{_e(", ".join(found))}</td>'
            f'<td class="num">{_num(row.get("closed_loop_score"))}</td><td>{_e("; ".join(own) or "–")}</td>'
            f'<td>{_e("; ".join(score_drivers(row)) or "–")}</td><td class="muted">{_e(row.get("against_log") or "")}</td>'
            f'<td><code>{_e(replay_command(vid, run_dir))}</code></td></tr>'
        )
    if not rows:
        return '<p class="ok">No variant failed any check.</p>'
    return (
        "<table><thead><tr><th>variant</th><th>causes</th><th>closed-loop score</th><th>fails its verdict</th>"
        "<th>what set the score</th><th>judged against the log</th><th>replay</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _worst_section(summary: pd.DataFrame, run_dir: Path, n: int, gif: bool, warn: Callable[[str], None]) -> str:
    worst = worst_variants(summary, n)
    if worst.empty:
        return '<p class="muted">No variant ran to the end, so there is nothing to rank.</p>'
    from harness.replay import Replayer, ReplayError

    replayer: Replayer | None = None
    setup_error = ""
    try:
        replayer = Replayer(run_dir)
    except ReplayError as exc:
        setup_error = str(exc)
        warn(f"no pictures of the {len(worst)} worst variants: {setup_error}")
    cards = []
    try:
        for rank, row in enumerate(worst.to_dict("records"), start=1):
            cards.append(_worst_card(rank, row, run_dir, replayer, setup_error, gif, warn))
    finally:
        if replayer is not None:
            replayer.close()
    return "".join(cards)


def _worst_card(
    rank: int, row: Mapping[str, Any], run_dir: Path, replayer: Any, setup_error: str, gif: bool, warn: Callable[[str], None]
) -> str:
    vid = str(row["variant_id"])
    cells = [(c, _num(row[c]) if not isinstance(row[c], str) else row[c]) for c in WORST_COLUMNS if c in row]
    scores = "".join(f"<tr><th>{_e(c)}</th><td>{_e(v)}</td></tr>" for c, v in cells)
    params = row.get("params")
    meta = [("scenario", row.get("scenario_id")), ("ego", row.get("ego_id")), ("dataset", row.get("dataset"))]
    if row.get("mutation"):
        meta += [("mutation", row.get("mutation")), ("parameters", params)]
    meta_html = " · ".join(f"{_e(k)} <code>{_e(v)}</code>" for k, v in meta if v is not None and v == v)
    from evaluators.verdicts import causes, score_drivers

    found = causes(row)
    why = (
        f'<p><span class="cause">{_e(", ".join(found) or "no failure")}</span> · score set by '
        f'<code>{_e("; ".join(score_drivers(row)) or "nothing: a perfect score")}</code></p>'
    )
    if row.get("against_log"):
        why += f'<p class="muted">judged against the log: {_e(row["against_log"])}</p>'
    picture, status = "", ""
    if replayer is None:
        status = f'<p class="bad">Not replayed: {_e(setup_error)}</p>'
    else:
        try:
            result = replayer.replay(vid)
            if result.exact:
                status = '<p class="ok">Replayed exactly: every stored metric column matches.</p>'
            elif result.stored is None:
                status = '<p class="bad">Replayed, but the run holds no stored row to compare with.</p>'
            else:
                diffs = "; ".join(str(m) for m in result.mismatches[:8])
                status = f'<p class="bad">The replay differs from the stored row in {len(result.mismatches)} columns: {_e(diffs)}</p>'
            if result.rollout is not None and result.scenario is not None:
                from harness.plots import key_moment

                moment = key_moment(result.scenario, result.rollout, result.eval_config, result.row)
                status += f"<p>The moment drawn: {_e(moment.describe(result.rollout))}.</p>"
            picture = _img(result.picture(fmt="png", width_in=7.5, dpi=80, colors=128), "png", f"bird's-eye view of {vid}")
            if gif:
                picture += _img(result.picture(fmt="gif"), "gif", f"animation of {vid}")
        except Exception as exc:  # noqa: BLE001 - one variant's picture must not sink the report
            warn(f"no picture of {vid}: replay failed: {type(exc).__name__}: {exc}")
            status = f'<p class="bad">Replay failed: {_e(type(exc).__name__)}: {_e(exc)}</p>'
    return (
        f'<div class="card"><h3>#{rank} {_e(vid)}</h3><p class="muted">{meta_html}</p>{why}'
        f'<code class="cmd">{_e(replay_command(vid, run_dir))}</code>{status}{picture}'
        f"<table>{scores}</table></div>"
    )


# --- the page --------------------------------------------------------------------------------


def run_gate_config(manifest: Mapping[str, Any]) -> Any:
    """The gate thresholds a run was made with (its manifest's suite config; defaults without)."""
    from harness.config import parse_suite

    gate = (manifest.get("config") or {}).get("gate") or {}
    return parse_suite({"gate": gate}, "the run's manifest").gate


def build_report(
    run_dir: str | Path,
    *,
    out: str | Path | None = None,
    worst: int = 5,
    gif: bool = False,
    baseline: str | Path | None = None,
    gate_config: Any = None,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """Write the run's HTML report (default ``<run>/report.html``) and return its path.

    Args:
        run_dir: the run directory.
        out: where to write the page.
        worst: how many of the worst variants (by severity) to replay and picture.
        gif: also embed an animated GIF of each of the worst variants.
        baseline: a baseline run directory: the gate compares with it and the page shows what
            changed variant by variant.
        gate_config: the gate's thresholds (default: the run's own, from its manifest).
        warn: called with each problem the page shows that the caller should hear of too (the
            run's policy or plug-ins cannot be imported here, so there are no pictures).

    Raises:
        harness.runner.RunError: ``run_dir`` or ``baseline`` is not a run directory.
    """
    from harness.gate import gate
    from harness.replay import ReplayError, load_manifest

    directory = RunDirectory(Path(run_dir).resolve())
    run_dir = directory.path
    summary = directory.read_summary()
    base = RunDirectory(Path(baseline).resolve()).read_summary() if baseline is not None else None
    try:
        manifest = load_manifest(run_dir)
    except ReplayError:
        manifest = {}
    gate_config = gate_config if gate_config is not None else run_gate_config(manifest)
    verdict = gate(summary, gate_config, base, run_id=manifest.get("run_id", run_dir.name), suite=manifest.get("suite", ""))
    title = f"drivetwin report — {manifest.get('suite', '')} — {manifest.get('run_id', run_dir.name)}"
    policy = ((manifest.get("config") or {}).get("policy") or {}).get("name", "")
    lead = (
        f'<p class="muted">policy <code>{_e(policy)}</code> · {len(summary)} variants · run <code>{_e(run_dir)}</code>'
        + (f" · baseline <code>{_e(Path(baseline).resolve())}</code>" if baseline is not None else "")
        + "</p>"
    )
    sections = [
        ("Verdict", _gate_section(verdict)), ("Failures by cause", _causes_section(summary)),
        ("Distinct failure modes", _modes_section(summary, run_dir)),
    ]  # fmt: skip
    if verdict.comparison is not None:
        sections.append(("Changes against the baseline", _changes_section(verdict.comparison, summary)))
    sections += [
        (f"The {worst} worst variants (by severity: at-fault collisions, other collisions, off-road, red lights, then score)",
         _worst_section(summary, run_dir, worst, gif, warn or (lambda message: None))),
        ("Summary", _summary_section(summary)),
        ("Score distributions", _histogram_section(summary)),
        ("Errors", _errors_section(summary, run_dir)),
        ("Every failing variant", _failing_section(verdict.variants, run_dir)),
        ("Run", _identity_section(manifest, summary, run_dir)),
    ]  # fmt: skip
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    body = "".join(f'<h2 id="{re.sub(r"[^a-z]+", "-", name.lower())}">{_e(name)}</h2>{content}' for name, content in sections)
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head><body>'
        f"<h1>{_e(title)}</h1>{lead}{body}"
        f'<p class="muted">Made by <code>drivetwin report</code> at {_e(stamp)} UTC. Each command above re-runs its variant exactly and draws it.</p>'
        "</body></html>\n"
    )
    path = Path(out) if out else directory.report
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


__all__ = [
    "REPORT_FILE", "build_report", "error_groups", "error_origin", "failure_mode_lines", "group_stats", "grouped_errors", "replay_command",
    "run_gate_config", "worst_variants",
]  # fmt: skip
