"""Bird's-eye pictures of one variant: a PNG of the whole episode and an animated GIF of its boxes.

Drawn with matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), never ``pyplot``: no
display, no global state, safe beside other users of matplotlib in the same process.

The picture shows the drivable area, lane lines, road edges and crosswalks; the logged ego path
(dashed), the driven ego path coloured by speed, the other agents' paths; every box at the
*worst moment* (the first collision, else the lowest time to collision, else the last step); a
marker where a collision or an off-road excursion happened; a title with the variant id and its
key scores. Axes are world metres, equal aspect, cropped around the ego's paths.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scenarios.model import POLYGON_KINDS, AgentType, FeatureKind, Scenario
from scenarios.rollout import Rollout

#: Margin around the ego's paths [m], and the smallest side of the view [m].
VIEW_MARGIN_M = 15.0
MIN_VIEW_M = 40.0
#: A GIF follows the ego in a window this wide [m] when its path is longer than ``GIF_FOLLOW_ABOVE_M``.
GIF_WINDOW_M = 70.0
GIF_FOLLOW_ABOVE_M = 140.0

_ROAD = "#b8bcc4"
_GROUND = "#e4e9df"
_EGO = "#f28e2b"
_COLLIDED = "#d62728"
_AGENT_COLOURS = {
    AgentType.VEHICLE: "#4e79a7",
    AgentType.PEDESTRIAN: "#edc948",
    AgentType.CYCLIST: "#59a14f",
    AgentType.OTHER: "#9c9c9c",
}


@dataclass(frozen=True, slots=True)
class Marker:
    """A place to mark: ``kind`` is "collision", "off-road" or "off-road (engine)"; x, y [m]."""

    kind: str
    step: int
    x: float
    y: float
    label: str = ""


@dataclass(frozen=True, slots=True)
class Moment:
    """The step the boxes are drawn at, and why.

    Attributes:
        step: index into the rollout's steps.
        kind: "collision" (the first one), "off_road" (furthest off the drivable area, when the
            verdict is off-road), "min_ttc" (the lowest time to collision) or "last".
        t_s: time since the start [s].
        agent: the rollout row of the agent the ego collided with (-1: none).
        ttc_s: the time to collision at that step [s] (NaN when not computed).
        markers: collisions and off-road excursions over the whole episode.
        offroad_m: the largest corner distance off the drivable area at that step [m] ("off_road").
    """

    step: int
    kind: str
    t_s: float
    agent: int = -1
    ttc_s: float = float("nan")
    markers: tuple[Marker, ...] = field(default_factory=tuple)
    offroad_m: float = float("nan")

    def describe(self, rollout: Rollout) -> str:
        """A short phrase: what happened at this moment."""
        when = f"t = {self.t_s:.1f} s"
        if self.kind == "collision":
            return f"boxes at {when}: first collision, with agent {rollout.agent_ids[self.agent]}"
        if self.kind == "off_road":
            return f"boxes at {when}: furthest off the drivable area, {self.offroad_m:.2f} m"
        if self.kind == "min_ttc":
            return f"boxes at {when}: lowest time to collision, {self.ttc_s:.2f} s"
        if not rollout.termination:
            return f"boxes at {when}: where the episode stopped (it did not finish)"
        return f"boxes at {when}: last step ({rollout.termination})"


def key_moment(scenario: Scenario, rollout: Rollout, eval_config: Any = None, summary: Mapping[str, Any] | None = None) -> Moment:
    """The worst moment of an episode and its collision/off-road markers, as the evaluators define them.

    Uses the evaluators' collision events, projected TTC and corner off-road distances (with
    ``eval_config``, default thresholds when None). The first collision is the moment; else, when
    the variant's ``summary`` row says it left the drivable area (judged against the log: beyond
    the log's own distance plus its margin where the log itself is off), the step furthest off;
    else the lowest TTC. Falls back to the last step when the rollout cannot be evaluated (e.g.
    an episode cut short by a failing policy).
    """
    last = rollout.num_steps - 1
    t_s = (np.asarray(rollout.t_us, np.int64) - int(rollout.t_us[0])) / 1e6
    try:
        from evaluators import EvaluatorConfig
        from evaluators.collisions import collision_table
        from evaluators.context import Context
        from evaluators.ttc import projected_ttc

        config = eval_config or EvaluatorConfig()
        ctx = Context(rollout, scenario, config)
        collisions = sorted(collision_table(ctx), key=lambda c: (c["step"], c["agent_id"]))
        ttc = projected_ttc(ctx)
        offroad = ctx.corner_offroad_m
        corners = ctx.ego_corners
    except Exception:  # noqa: BLE001 - a picture of an unscorable episode still helps
        return Moment(last, "last", float(t_s[last]))

    markers: list[Marker] = []
    e = rollout.ego_index
    for c in collisions:
        row = int(np.flatnonzero(rollout.agent_ids == c["agent_id"])[0])
        x, y = _contact_point(rollout, e, row, c["step"])
        fault = "at fault" if c["at_fault"] else "not at fault"
        markers.append(Marker("collision", c["step"], x, y, f"{c['type']}, {fault}"))
    worst = np.where(np.isfinite(offroad), offroad, -np.inf).max(axis=1)
    area = config.of("drivable_area")
    limit = area.max_distance_m
    log_m = _number((summary or {}).get("log_drivable_area_max_distance_m"))
    if log_m > limit:  # the log itself is off the road: the verdict's limit is relative to it
        limit = log_m + area.log_margin_m
    beyond = np.flatnonzero(worst > limit)
    if beyond.size:
        k = int(beyond[0])
        corner = int(np.nanargmax(offroad[k]))
        markers.append(Marker("off-road", k, float(corners[k, corner, 0]), float(corners[k, corner, 1]), f"{worst[k]:.2f} m off"))
    else:
        engine = np.flatnonzero(np.asarray(rollout.offroad, bool))
        if engine.size:
            k = int(engine[0])
            markers.append(Marker("off-road (engine)", k, float(rollout.x[e, k]), float(rollout.y[e, k])))

    if collisions:
        first = collisions[0]
        row = int(np.flatnonzero(rollout.agent_ids == first["agent_id"])[0])
        k = int(first["step"])
        return Moment(k, "collision", float(t_s[k]), row, float(ttc[k]), tuple(markers))
    off_road = _number((summary or {}).get("drivable_area_compliance")) < 1
    if off_road and np.isfinite(worst).any() and worst.max() > 0:
        k = int(np.argmax(worst))
        return Moment(k, "off_road", float(t_s[k]), -1, float(ttc[k]), tuple(markers), float(worst[k]))
    finite = np.isfinite(ttc)
    if finite.any():
        k = int(np.flatnonzero(finite)[np.argmin(ttc[finite])])
        return Moment(k, "min_ttc", float(t_s[k]), -1, float(ttc[k]), tuple(markers))
    return Moment(last, "last", float(t_s[last]), -1, float("nan"), tuple(markers))


def _number(value: Any) -> float:
    """A summary cell as a float (NaN when missing or not a number)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _contact_point(rollout: Rollout, ego: int, other: int, step: int) -> tuple[float, float]:
    """Where two boxes touch at ``step`` [m]: the centroid of their overlap, else the middle of the gap."""
    import shapely

    a, b = (shapely.Polygon(_corners(rollout, i, step)) for i in (ego, other))
    overlap = a.intersection(b)
    if not overlap.is_empty and overlap.area > 0:
        c = overlap.centroid
    else:
        c = shapely.shortest_line(a, b).centroid
    return float(c.x), float(c.y)


def _corners(rollout: Rollout, row: int | np.ndarray, step: int) -> np.ndarray:
    """(4, 2) or (M, 4, 2) box corners [m] of agent row(s) at ``step``."""
    from evaluators.geometry import box_corners

    return box_corners(rollout.x[row, step], rollout.y[row, step], rollout.yaw[row, step], rollout.length[row], rollout.width[row])


# --- the view --------------------------------------------------------------------------------


def _ego_paths(scenario: Scenario, rollout: Rollout) -> tuple[np.ndarray, np.ndarray]:
    """(driven (S', 2), logged (T', 2)) ego centres [m] where valid."""
    e = rollout.ego_index
    v = np.asarray(rollout.valid[e], bool)
    driven = np.column_stack([rollout.x[e][v], rollout.y[e][v]])
    tr = scenario.tracks
    lv = tr.valid[scenario.ego_index]
    logged = np.column_stack([tr.x[scenario.ego_index][lv], tr.y[scenario.ego_index][lv]])
    return driven, logged


def view_box(points: np.ndarray, margin_m: float = VIEW_MARGIN_M, min_side_m: float = MIN_VIEW_M) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) [m]: the points' bounding box, widened by ``margin_m`` and to at least ``min_side_m``."""
    pts = points[np.isfinite(points).all(axis=1)] if len(points) else points
    if len(pts) == 0:
        return (-min_side_m / 2, min_side_m / 2, -min_side_m / 2, min_side_m / 2)
    (x0, y0), (x1, y1) = pts.min(axis=0) - margin_m, pts.max(axis=0) + margin_m
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = max(x1 - x0, min_side_m), max(y1 - y0, min_side_m)
    return (cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2)


def _with_aspect(box: tuple[float, float, float, float], low: float, high: float) -> tuple[float, float, float, float]:
    """``box`` widened (never cropped) so that its height / width lies in [low, high]."""
    x0, x1, y0, y1 = box
    w, h = x1 - x0, y1 - y0
    if h / w < low:
        h = w * low
    elif h / w > high:
        w = h / high
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2)


def _in_view(points: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    x0, x1, y0, y1 = box
    return bool(points[:, 0].max() >= x0 and points[:, 0].min() <= x1 and points[:, 1].max() >= y0 and points[:, 1].min() <= y1)


# --- drawing ---------------------------------------------------------------------------------


def _draw_map(ax: Any, scenario: Scenario, box: tuple[float, float, float, float]) -> None:
    """Drivable area, crosswalks, lane lines and road edges inside ``box``."""
    from matplotlib.collections import LineCollection, PolyCollection

    road_map = scenario.road_map
    grow = (box[0] - 20, box[1] + 20, box[2] - 20, box[3] + 20)
    near = [f for f in road_map.features if len(f.points) and _in_view(f.points, grow)]
    lanes = [lane for lane in road_map.lanes if _in_view(lane.centerline, grow)]

    drivable = [f.points[:, :2] for f in near if f.kind in (FeatureKind.DRIVABLE_AREA, FeatureKind.DRIVEWAY) and len(f.points) >= 3]
    if not drivable:
        drivable = [lane.polygon() for lane in lanes]
    if drivable:
        ax.add_collection(PolyCollection(drivable, facecolors=_ROAD, edgecolors=_ROAD, linewidths=0.3, zorder=1))
    crosswalks = [f.points[:, :2] for f in near if f.kind == FeatureKind.CROSSWALK and len(f.points) >= 3]
    if crosswalks:
        ax.add_collection(PolyCollection(crosswalks, facecolors="none", edgecolors="white", hatch="////", linewidths=0.8, zorder=2))
    others = [f.points[:, :2] for f in near if f.kind in POLYGON_KINDS - {FeatureKind.DRIVABLE_AREA, FeatureKind.DRIVEWAY, FeatureKind.CROSSWALK}]
    if others:
        ax.add_collection(PolyCollection(others, facecolors="#a6a29a", edgecolors="none", zorder=1.5))

    lines = [f for f in near if f.kind == FeatureKind.ROAD_LINE and len(f.points) >= 2]
    if lines:
        for dashed in (False, True):
            group = [f for f in lines if ("dash" in f.subtype or "broken" in f.subtype) == dashed]
            if group:
                colours = ["#f2c230" if "yellow" in f.subtype else "white" for f in group]
                ax.add_collection(LineCollection([f.points[:, :2] for f in group], colors=colours, linewidths=0.9,
                                                 linestyles=(0, (4, 4)) if dashed else "solid", zorder=2))
    else:
        bounds = [b[:, :2] for lane in lanes for b in (lane.left_boundary, lane.right_boundary) if b is not None and len(b) >= 2]
        if bounds:
            ax.add_collection(LineCollection(bounds, colors="white", linewidths=0.7, zorder=2))
        else:
            centres = [lane.centerline[:, :2] for lane in lanes if len(lane.centerline) >= 2]
            if centres:
                ax.add_collection(LineCollection(centres, colors="white", linewidths=0.6, linestyles=(0, (2, 4)), zorder=2))
    stops = [f.points[:, :2] for f in near if f.kind == FeatureKind.STOP_LINE and len(f.points) >= 2]
    if stops:
        ax.add_collection(LineCollection(stops, colors="white", linewidths=2.0, zorder=2))
    edges = [f.points[:, :2] for f in near if f.kind == FeatureKind.ROAD_EDGE and len(f.points) >= 2]
    if edges:
        ax.add_collection(LineCollection(edges, colors="#3a3a3a", linewidths=1.6, zorder=3))


def _agent_colours(scenario: Scenario, rows: np.ndarray) -> list[str]:
    types = scenario.tracks.agent_types[rows]
    return [_AGENT_COLOURS.get(AgentType(int(t)), "#9c9c9c") for t in types]


def _log_step(scenario: Scenario, rollout: Rollout, step: int) -> int:
    """The scenario's step at the rollout's ``step`` time (-1 when the log has no sample then)."""
    k = int(np.searchsorted(scenario.t_us, rollout.t_us[step]))
    return k if k < scenario.num_steps and scenario.t_us[k] == rollout.t_us[step] else -1


def _fmt(value: Any, digits: int = 2) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "n/a"
    return "inf" if math.isinf(v) else f"{v:.{digits}f}"


def score_line(summary: Mapping[str, Any] | None) -> str:
    """The key scores of a summary row in one line (empty without a row)."""
    if not summary:
        return ""
    if summary.get("status") == "error":
        message = str(summary.get("error", ""))
        return f"error: {message[:220]}" + ("…" if len(message) > 220 else "")
    parts = [
        f"closed-loop {_fmt(summary.get('closed_loop_score'))}",
        f"driving {_fmt(summary.get('driving_score'))}",
        f"collisions {_fmt(summary.get('collisions'), 0)} ({_fmt(summary.get('at_fault_collisions'), 0)} at fault)",
        f"min TTC {_fmt(summary.get('min_ttc_s'))} s",
        f"progress {_fmt(summary.get('progress_ratio'))}",
        f"off-road {_fmt(summary.get('drivable_area_max_distance_m'))} m",
    ]
    if summary.get("termination"):
        parts.append(str(summary["termination"]))
    return " · ".join(parts)


def bird_eye_figure(
    scenario: Scenario,
    rollout: Rollout,
    *,
    summary: Mapping[str, Any] | None = None,
    moment: Moment | None = None,
    eval_config: Any = None,
    title: str | None = None,
    width_in: float = 8.0,
    dpi: int = 100,
) -> Any:
    """The bird's-eye ``matplotlib.figure.Figure`` of one episode (see the module docstring).

    Args:
        summary: the variant's summary row, for the title's scores.
        moment: when to draw the boxes (default: ``key_moment``).
        eval_config: the evaluators' config, for ``key_moment``.
        title: the first title line (default: the summary's variant id, else the rollout's scenario id).
        width_in: figure width [in]; the height follows the view's aspect.
        dpi: pixels per inch.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    moment = moment or key_moment(scenario, rollout, eval_config, summary)
    driven, logged = _ego_paths(scenario, rollout)
    box = _with_aspect(view_box(np.vstack([driven, logged]) if len(logged) else driven), 0.45, 1.4)
    aspect = (box[3] - box[2]) / (box[1] - box[0])

    # about 1.7 in of the width go to the y labels and the colour bar, 1.2 in of the height to the title and x labels
    fig = Figure(figsize=(width_in, max(width_in - 1.7, 1.0) * aspect + 1.2), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_facecolor(_GROUND)
    _draw_map(ax, scenario, box)

    e, k = rollout.ego_index, moment.step
    others = np.flatnonzero(np.arange(rollout.num_agents) != e)
    paths = []
    for row in others:
        v = np.asarray(rollout.valid[row], bool)
        if v.sum() >= 2:
            pts = np.column_stack([rollout.x[row][v], rollout.y[row][v]])
            if _in_view(pts, box):
                paths.append(pts)
    if paths:
        ax.add_collection(LineCollection(paths, colors="#4e79a7", linewidths=0.8, alpha=0.45, zorder=4))
    if len(logged) >= 2:
        ax.plot(logged[:, 0], logged[:, 1], color="black", linestyle=(0, (5, 3)), linewidth=1.0, zorder=6.5)

    speed = np.hypot(rollout.vx[e], rollout.vy[e])[np.asarray(rollout.valid[e], bool)]
    norm = Normalize(0.0, max(float(np.nanmax(speed)) if speed.size else 1.0, 1.0))
    if len(driven) >= 2:
        segments = np.stack([driven[:-1], driven[1:]], axis=1)
        lc = LineCollection(segments, cmap="viridis", norm=norm, linewidths=2.8, zorder=6)
        lc.set_array((speed[:-1] + speed[1:]) / 2)
        ax.add_collection(lc)
        bar = fig.colorbar(lc, ax=ax, fraction=0.035, pad=0.02)
        bar.set_label("ego speed [m/s]", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    if len(driven):
        ax.plot(*driven[0], marker="o", color="black", markersize=4, zorder=6)

    present = others[np.asarray(rollout.valid[others, k], bool)]
    if present.size:
        polys = _corners(rollout, present, k)
        faces = _agent_colours(scenario, present)
        edges = ["#1f1f1f"] * len(present)
        for i, row in enumerate(present):
            if row == moment.agent:
                faces[i], edges[i] = _COLLIDED, "black"
        ax.add_collection(PolyCollection(list(polys), facecolors=faces, edgecolors=edges, linewidths=0.6, alpha=0.9, zorder=7))
    log_k = _log_step(scenario, rollout, k)
    tr, le = scenario.tracks, scenario.ego_index
    if log_k >= 0 and tr.valid[le, log_k]:
        from evaluators.geometry import box_corners

        ghost = box_corners(tr.x[le, log_k], tr.y[le, log_k], tr.yaw[le, log_k], tr.length[le], tr.width[le])
        ax.add_patch(_polygon(ghost, facecolor="none", edgecolor="black", linestyle=(0, (2, 2)), linewidth=0.9, zorder=7))
    if rollout.valid[e, k]:
        ego = _corners(rollout, e, k)
        ax.add_patch(_polygon(ego, facecolor=_EGO, edgecolor="black", linewidth=0.9, zorder=8))
        front = (ego[0] + ego[3]) / 2
        ax.plot([rollout.x[e, k], front[0]], [rollout.y[e, k], front[1]], color="black", linewidth=0.9, zorder=8)

    for m in moment.markers:
        style = {"collision": ("X", _COLLIDED, 13), "off-road": ("^", "#8c2d04", 11)}.get(m.kind, ("v", "#8c2d04", 10))
        ax.plot(m.x, m.y, marker=style[0], color=style[1], markersize=style[2], markeredgecolor="white", markeredgewidth=1.0, zorder=9)

    ax.set_xlim(box[0], box[1])
    ax.set_ylim(box[2], box[3])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.tick_params(labelsize=8)

    handles = [
        Line2D([], [], color="black", linestyle=(0, (5, 3)), label="logged ego path"),
        Line2D([], [], color="#21918c", linewidth=2.8, label="driven ego path (colour: speed)"),
        Patch(facecolor=_EGO, edgecolor="black", label="ego"),
        Patch(facecolor="none", edgecolor="black", linestyle="--", label="logged ego"),
    ]
    shown = {AgentType(int(t)) for t in scenario.tracks.agent_types[present]} if present.size else set()
    for kind in sorted(shown or {AgentType.VEHICLE}):
        name = "other vehicles" if kind == AgentType.VEHICLE else f"{kind.name.lower()}s"
        handles.append(Patch(facecolor=_AGENT_COLOURS[kind], edgecolor="#1f1f1f", label=name))
    if moment.agent >= 0:
        handles.append(Patch(facecolor=_COLLIDED, edgecolor="black", label="collided with"))
    kinds = {m.kind for m in moment.markers}
    if "collision" in kinds:
        handles.append(Line2D([], [], marker="X", color=_COLLIDED, linestyle="none", markersize=9, label="collision"))
    if kinds & {"off-road", "off-road (engine)"}:
        handles.append(Line2D([], [], marker="^", color="#8c2d04", linestyle="none", markersize=8, label="off-road"))
    ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.85)

    head = title or str((summary or {}).get("variant_id") or rollout.scenario_id)
    lines = [head, *textwrap.wrap(score_line(summary), int(width_in * 14)), moment.describe(rollout)]
    ax.set_title("\n".join(line for line in lines if line), fontsize=8.5, loc="left", parse_math=False)
    fig.tight_layout()
    return fig


def _polygon(points: np.ndarray, **style: Any) -> Any:
    from matplotlib.patches import Polygon

    return Polygon(points, closed=True, **style)


def _written(data: bytes, path: str | Path | None) -> bytes:
    """``data``, also written to ``path`` (its folder made) when one is given."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


def _save(fig: Any, fmt: str, path: str | Path | None) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    return _written(buf.getvalue(), path)


def render_png(
    scenario: Scenario,
    rollout: Rollout,
    *,
    summary: Mapping[str, Any] | None = None,
    eval_config: Any = None,
    path: str | Path | None = None,
    width_in: float = 8.0,
    dpi: int = 100,
    colors: int | None = None,
) -> bytes:
    """The bird's-eye picture as PNG bytes (``width_in * dpi`` pixels wide); also written to ``path`` if given.

    Args:
        colors: quantise to this many colours (a palette PNG, about a quarter of the size), e.g. for a report.
    """
    fig = bird_eye_figure(scenario, rollout, summary=summary, eval_config=eval_config, width_in=width_in, dpi=dpi)
    if colors is None:
        return _save(fig, "png", path)
    from PIL import Image

    image = Image.open(io.BytesIO(_save(fig, "png", None))).convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return _written(buf.getvalue(), path)


def render_gif(
    scenario: Scenario,
    rollout: Rollout,
    *,
    summary: Mapping[str, Any] | None = None,
    path: str | Path | None = None,
    stride: int = 2,
    size_px: int = 400,
    max_frames: int = 60,
) -> bytes:
    """An animated GIF of the boxes over time: every ``stride``-th step (more when the episode is long).

    The map, the logged and the driven ego paths are drawn once; each frame redraws only the
    boxes (blitting). The view holds the whole ego path, or follows the ego in a
    ``GIF_WINDOW_M`` window when the path is longer than ``GIF_FOLLOW_ABOVE_M``.

    Args:
        stride: steps per frame (at least; raised so that there are at most ``max_frames``).
        size_px: the square frame's side [px].
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure
    from PIL import Image

    driven, logged = _ego_paths(scenario, rollout)
    pts = np.vstack([driven, logged]) if len(logged) else driven
    x0, x1, y0, y1 = view_box(pts, margin_m=8.0)
    side = max(x1 - x0, y1 - y0)
    follow = side > GIF_FOLLOW_ABOVE_M
    if follow:
        side = GIF_WINDOW_M
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    whole = (cx - side / 2, cx + side / 2, cy - side / 2, cy + side / 2)

    dpi = 100
    fig = Figure(figsize=(size_px / dpi, size_px / dpi), dpi=dpi, facecolor=_GROUND)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_facecolor(_GROUND)
    ax.set_axis_off()
    map_box = view_box(pts, margin_m=GIF_WINDOW_M) if follow else whole
    _draw_map(ax, scenario, map_box)
    if len(logged) >= 2:
        ax.plot(logged[:, 0], logged[:, 1], color="black", linestyle=(0, (5, 3)), linewidth=0.8, zorder=5)
    if len(driven) >= 2:
        ax.plot(driven[:, 0], driven[:, 1], color=_EGO, linewidth=1.5, alpha=0.7, zorder=5)
    ax.set_xlim(whole[0], whole[1])
    ax.set_ylim(whole[2], whole[3])
    ax.set_aspect("equal", adjustable="box")
    boxes = PolyCollection([], linewidths=0.5, edgecolors="#1f1f1f", zorder=7, animated=True)
    ax.add_collection(boxes)
    clock = ax.text(0.02, 0.97, "", transform=ax.transAxes, fontsize=8, va="top", animated=True, parse_math=False,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 2})
    label = str((summary or {}).get("variant_id") or rollout.scenario_id)

    stride = max(int(stride), 1, math.ceil(rollout.num_steps / max_frames))
    steps = list(range(0, rollout.num_steps, stride))
    if steps[-1] != rollout.num_steps - 1:
        steps.append(rollout.num_steps - 1)
    e = rollout.ego_index
    colours = np.array(_agent_colours(scenario, np.arange(rollout.num_agents)), dtype=object)
    colours[e] = _EGO
    t0 = int(rollout.t_us[0])

    background = None
    current: tuple[float, float, float, float] | None = None
    frames: list[Any] = []
    for k in steps:
        view = whole
        if follow and rollout.valid[e, k]:
            h = GIF_WINDOW_M / 2
            view = (rollout.x[e, k] - h, rollout.x[e, k] + h, rollout.y[e, k] - h, rollout.y[e, k] + h)
        if view != current:
            ax.set_xlim(view[0], view[1])
            ax.set_ylim(view[2], view[3])
            canvas.draw()
            background = canvas.copy_from_bbox(fig.bbox)
            current = view
        canvas.restore_region(background)
        rows = np.flatnonzero(np.asarray(rollout.valid[:, k], bool))
        rows = np.concatenate([rows[rows != e], rows[rows == e]])  # the ego on top
        boxes.set_verts(list(_corners(rollout, rows, k)) if rows.size else [])
        boxes.set_facecolors(list(colours[rows]))
        clock.set_text(f"{label}\nt = {(int(rollout.t_us[k]) - t0) / 1e6:.1f} s")
        ax.draw_artist(boxes)
        ax.draw_artist(clock)
        frames.append(Image.fromarray(np.asarray(canvas.buffer_rgba())[:, :, :3].copy()))

    # one palette for every frame, so that each frame stores only what changed
    palette = frames[len(frames) // 2].quantize(colors=48, method=Image.Quantize.MEDIANCUT)
    frames = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]

    duration_ms = max(int(round(rollout.dt_s * 1000 * stride)), 20)
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0, optimize=True)
    return _written(buf.getvalue(), path)


def histogram_png(
    columns: Mapping[str, Sequence[float]],
    *,
    bins: int = 20,
    value_range: tuple[float, float] = (0.0, 1.0),
    width_in: float = 8.0,
    dpi: int = 90,
) -> bytes:
    """Side-by-side histograms (one per named series of scores in ``value_range``) as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    n = max(len(columns), 1)
    fig = Figure(figsize=(width_in, 2.6), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    for i, (name, values) in enumerate(columns.items()):
        ax = fig.add_subplot(1, n, i + 1)
        v = np.asarray([x for x in values if x is not None], dtype=float)
        v = v[np.isfinite(v)]
        ax.hist(v, bins=bins, range=value_range, color="#4e79a7", edgecolor="white")
        if v.size:
            ax.axvline(float(v.mean()), color=_COLLIDED, linewidth=1.2, label=f"mean {v.mean():.3f}")
            ax.legend(fontsize=7, loc="upper left")
        ax.set_title(name, fontsize=9, parse_math=False)
        ax.set_xlabel("score [0, 1]", fontsize=8)
        ax.set_ylabel("variants", fontsize=8)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _save(fig, "png", None)
