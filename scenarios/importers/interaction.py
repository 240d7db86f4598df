"""INTERACTION dataset: drone-recorded tracks (CSV) on a Lanelet2 map (OSM XML).

The dataset's layout: ``recorded_trackfiles/<location>/vehicle_tracks_NNN.csv`` with
``pedestrian_tracks_NNN.csv`` beside it where pedestrians and cyclists were recorded, and the map
in ``maps/<location>.osm``. One scenario per vehicle file, with the pedestrian file of the same
number merged in (its ids, already "P1", "P2", ... in the dataset, are given a "P" prefix where
they lack one, so that they never collide with vehicle ids).

Frame: the map's nodes are lat/lon around (0, 0) and are projected with UTM zone 31 (WGS84)
minus the projection of (0, 0) (Lanelet2's ``UtmProjector`` with origin (0, 0), see
``projection.LocalUtm``); the tracks' x, y [m] are recorded in that frame. ``t_us`` is the
recorded ``timestamp_ms`` x 1000 (the dataset's first frame is at 100 ms).

Tracks: vehicles carry heading ``psi_rad`` and box length/width; pedestrian files do not, so a
pedestrian's heading follows its velocity (see ``MIN_HEADING_SPEED``) and its box is a default
(``PEDESTRIAN_SIZES``). Heights are defaults (``HEIGHT_M``). There is no logged ego:
``pick_ego`` chooses it.

Map: ways are linestrings (``type`` line_thin/line_thick -> ROAD_LINE, curbstone/road_border/...
-> ROAD_EDGE, stop_line -> STOP_LINE); relations of ``type=lanelet`` join a ``left`` and a
``right`` way into a lane, each bound reversed where needed so that both run in the driving
direction (the left bound lies on the left, as Lanelet2's loader decides it). Successors are
lanelets whose bounds start at the nodes where this one's end; neighbours share a bound in the
same direction. Speed limits come from a lanelet's ``speed_limit`` tag or its ``speed_limit``
regulatory elements (Lanelet2's default unit is km/h; a sign type carries its number: German
``de274-50`` in km/h, US ``15mph``, ``us25``, ``usR2-1-25`` in mph); traffic lights from ``traffic_light``
regulatory elements, whose states INTERACTION does not record (``SignalState.UNKNOWN``).

The v1.2 release (motion prediction) keeps one CSV per location and split instead:
``<root>/train/<location>_train.csv`` (``val``, ``test`` likewise) with the map in
``<root>/maps/<location>.osm``, in the columns ``case_id`` + the vehicle files' columns, where
pedestrian and cyclist rows leave ``psi_rad``, ``length`` and ``width`` empty. Each case (a
short scene, ``case_id`` written as a float such as ``1.0``, timestamps restarting) becomes one
scenario ``<location>_<split>_case<N>``; its rows of agent types other than vehicles are read as
the pedestrian files are (ids given the "P" prefix, heading from velocity, default box). The map
is read once per file.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scenarios.errors import ScenarioError
from scenarios.importers.base import (
    agent_type,
    centerline_from_bounds,
    parse_xml,
    pick_ego,
    register,
)
from scenarios.importers.projection import MAX_LATITUDE_DEG, MAX_LONGITUDE_DEG, LocalUtm
from scenarios.model import (
    AgentType,
    FeatureKind,
    Lane,
    MapFeature,
    Provenance,
    RoadMap,
    Scenario,
    Signals,
    SignalState,
    Tracks,
    MAX_ABS_TIME_US,
    MAX_ID_LENGTH,
    MAX_SPEED_LIMIT_MPS,
    check_grid,
    check_speed_limit,
    make_scenario_id,
)

DATASET = "interaction"

COL_CASE_ID = "case_id"
COL_TRACK_ID = "track_id"
COL_FRAME_ID = "frame_id"
COL_TIMESTAMP = "timestamp_ms"
COL_AGENT_TYPE = "agent_type"
COL_X = "x"
COL_Y = "y"
COL_VX = "vx"
COL_VY = "vy"
COL_PSI = "psi_rad"
COL_LENGTH = "length"
COL_WIDTH = "width"
PEDESTRIAN_COLUMNS = (COL_TRACK_ID, COL_FRAME_ID, COL_TIMESTAMP, COL_AGENT_TYPE, COL_X, COL_Y, COL_VX, COL_VY)
VEHICLE_COLUMNS = (*PEDESTRIAN_COLUMNS, COL_PSI, COL_LENGTH, COL_WIDTH)
#: The v1.2 train/val/test files: a case id before the vehicle files' columns.
CASE_COLUMNS = (COL_CASE_ID, *VEHICLE_COLUMNS)
#: ``<location>_<split>`` of a v1.2 file's stem.
CASE_FILE = re.compile(r"^(?P<location>.+)_(?P<split>train|val|test)$")

VEHICLE_FILE = re.compile(r"^vehicle_tracks_(\d+)$")
PEDESTRIAN_FILE = re.compile(r"^pedestrian_tracks_(\d+)$")
TRACKFILES_DIR = "recorded_trackfiles"
MAPS_DIR = "maps"
#: Largest ``case_id`` (whole numbers are exact in the float the files write them as).
MAX_CASE_ID = 2**53
#: Prefix that keeps pedestrian ids apart from the (numeric) vehicle ids.
PEDESTRIAN_ID_PREFIX = "P"
#: Origin [deg] of the dataset's map frame.
MAP_ORIGIN = (0.0, 0.0)

#: Box height [m] per agent type word: the dataset gives length and width of vehicles only.
HEIGHT_M: dict[str, float] = {"car": 1.5, "truck": 3.5, "bus": 3.2, "motorcycle": 1.4}
DEFAULT_VEHICLE_HEIGHT_M = 1.5
#: Box (length, width, height) [m] of pedestrian-file agents, which come without a size: a
#: standing adult, and a bicycle with its rider.
PEDESTRIAN_SIZES: dict[AgentType, tuple[float, float, float]] = {
    AgentType.PEDESTRIAN: (0.5, 0.5, 1.75),
    AgentType.CYCLIST: (1.8, 0.6, 1.7),
    AgentType.OTHER: (0.5, 0.5, 1.75),
    AgentType.VEHICLE: (4.5, 1.8, 1.5),
}
#: Speed [m/s] above which a pedestrian's heading is its direction of travel; slower, it keeps
#: its last heading (its first moving heading before it moves; 0 if it never does).
MIN_HEADING_SPEED = 0.2

#: Lanelet2 way types -> map feature kinds (others, e.g. virtual, traffic_sign: no feature).
LINE_TYPES = frozenset({"line_thin", "line_thick"})
EDGE_TYPES = frozenset({"curbstone", "road_border", "guard_rail", "wall", "fence", "keepout"})
STOP_LINE_TYPES = frozenset({"stop_line"})
#: Lanelet subtypes -> ``Lane.lane_type``; crosswalks become CROSSWALK polygons and the
#: ``NOT_LANES`` are dropped; any other subtype is "driving".
LANE_TYPES: dict[str, str] = {"bus_lane": "bus", "bicycle_lane": "bike"}
NOT_LANES = frozenset({"walkway", "stairs", "crosswalk"})
#: Speed units Lanelet2 knows -> m/s; a bare number is km/h (Lanelet2's default).
SPEED_UNITS: dict[str, float] = {
    "": 1 / 3.6, "km/h": 1 / 3.6, "kmh": 1 / 3.6, "kph": 1 / 3.6, "mph": 0.44704, "mps": 1.0, "m/s": 1.0,
}  # fmt: skip
_SPEED = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([A-Za-z/]*)\s*$")
#: German max-speed sign types carrying their limit in km/h, e.g. "de274-50".
_SIGN_SPEED = re.compile(r"^de274(?:\.1)?-([0-9]+(?:\.[0-9]+)?)$", re.IGNORECASE)
#: US speed-limit signs (INTERACTION's US maps), in mph: "15mph", "25 mph", "us25", "us-25",
#: "us_25mph", and the MUTCD code with its value, "usR2-1-25".
_US_SIGN_SPEED = re.compile(r"^(?:us(?:r2-1)?[-_ ]?)?([0-9]+(?:\.[0-9]+)?)\s*(mph)?$", re.IGNORECASE)


def _sniff(path: Path, head: bytes) -> bool:
    first = head.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()[:1]
    columns = [c.strip() for c in first[0].split(",")] if first else []
    return bool(columns) and columns[0] in (COL_TRACK_ID, COL_CASE_ID) and COL_FRAME_ID in columns


def _is_case_file(path: Path) -> bool:
    """Whether ``path`` is a v1.2 train/val/test file (its header starts with ``case_id``)."""
    try:
        with path.open("rb") as fh:
            first = fh.read(4096).decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()[:1]
    except OSError:
        return False  # reported by the CSV reader
    return bool(first) and first[0].split(",")[0].strip() == COL_CASE_ID


def _companion(path: Path) -> bool:
    """A ``pedestrian_tracks_NNN.csv`` with its ``vehicle_tracks_NNN.csv`` beside it is read with that file."""
    number = PEDESTRIAN_FILE.match(path.stem)
    return bool(number) and path.with_name(f"vehicle_tracks_{number.group(1)}.csv").exists()


@register(DATASET, sniff=_sniff, has_logged_ego=False, companion=_companion)
def read_interaction(path: str | Path, map_path: str | Path | None = None) -> list[Scenario]:
    """Read an INTERACTION ``vehicle_tracks_NNN.csv`` (with its pedestrians and map) into one scenario,
    or a v1.2 ``<location>_<split>.csv`` into one scenario per case.

    Args:
        path: the vehicle tracks CSV, or a v1.2 train/val/test CSV.
        map_path: the Lanelet2 OSM map; by default ``maps/<location>.osm`` of the dataset's layout.

    Raises:
        ScenarioError: naming the file, the field (and, in a v1.2 file, the case) and the problem.
    """
    path = Path(path)
    if _is_case_file(path):
        return _read_cases(path, map_path)
    if PEDESTRIAN_FILE.match(path.stem):
        raise ScenarioError(
            path, "", "pedestrian tracks are imported with the vehicle_tracks file of the same number; load that file"
        )
    location = path.parent.name
    parts = [(_read_csv(path, VEHICLE_COLUMNS), False)]
    map_path = Path(map_path) if map_path is not None else _default_map(path, location)
    notes = []
    number = VEHICLE_FILE.match(path.stem)
    pedestrian_path = path.with_name(f"pedestrian_tracks_{number.group(1)}.csv") if number else None
    if pedestrian_path is not None and pedestrian_path.is_file():
        parts.append((_read_csv(pedestrian_path, PEDESTRIAN_COLUMNS), True))
        notes.append(
            f"pedestrians merged from {pedestrian_path.name}, ids prefixed {PEDESTRIAN_ID_PREFIX!r}; "
            "their heading follows their velocity and their boxes are default sizes"
        )
    t_ms, tracks = _tracks(parts, path)
    road_map, signals_lanes = _read_map(map_path)
    signals = _signals(signals_lanes, len(t_ms))
    if signals is not None:
        notes.append(LIGHTS_NOTE)
    try:
        ego = pick_ego(tracks)
    except ScenarioError as exc:
        raise ScenarioError(path, "ego", exc.problem) from None
    log_id = f"{location}_{path.stem}"
    return [_scenario(path, map_path, location, log_id, t_ms, tracks, ego, road_map, signals, notes)]


LIGHTS_NOTE = "traffic lights from the map; INTERACTION records no light states (UNKNOWN)"


def _signals(signals_lanes: list[tuple[str, list[float]]], steps: int) -> Signals | None:
    if not signals_lanes:
        return None
    lane_ids, stops = zip(*signals_lanes)
    states = np.full((len(lane_ids), steps), SignalState.UNKNOWN, dtype=np.int8)
    return Signals(np.array(lane_ids), states, np.array(stops))


def _scenario(
    path: Path,
    map_path: Path,
    location: str,
    log_id: str,
    t_ms: np.ndarray,
    tracks: Tracks,
    ego: int,
    road_map: RoadMap,
    signals: Signals | None,
    notes: list[str],
) -> Scenario:
    notes = [
        "no logged ego (a drone recording): the ego was chosen by pick_ego (the vehicle observed for the most steps, "
        "then the one that travels furthest, then the smallest id)",
        *notes,
        "heights are per-type defaults (the dataset gives none)",
    ]
    return Scenario(
        id=make_scenario_id(DATASET, log_id),
        provenance=Provenance(
            dataset=DATASET,
            source_file=str(path),
            source_log_id=log_id,
            frame=f"map {map_path.name}: UTM zone 31 (WGS84) minus the projection of (0, 0) [m]; tracks as recorded",
            notes="; ".join(notes),
        ),
        t_us=t_ms * 1000,
        tracks=tracks,
        ego_index=ego,
        road_map=road_map,
        signals=signals,
        tags=tuple(word for word in ("intersection", "roundabout", "merging") if word in location.lower()),
    )


def _read_cases(path: Path, map_path: str | Path | None) -> list[Scenario]:
    """A v1.2 ``<location>_<split>.csv``: one scenario per case, all on the one map."""
    match = CASE_FILE.match(path.stem)
    # a file renamed without its split suffix: the split is its folder's name
    location, split = (match["location"], match["split"]) if match else (path.stem, path.parent.name)
    map_path = Path(map_path) if map_path is not None else _default_case_map(path, location)
    frame = _read_csv(path, CASE_COLUMNS)
    road_map, signals_lanes = _read_map(map_path)
    scenes = []
    for case, rows in frame.groupby(COL_CASE_ID, sort=False):
        where = f"case {case}"
        pedestrian = np.array([agent_type(word) != AgentType.VEHICLE for word in rows[COL_AGENT_TYPE]])
        parts = [(part, flag) for part, flag in ((rows[~pedestrian], False), (rows[pedestrian], True)) if not part.empty]
        t_ms, tracks = _tracks(parts, path, where)
        try:
            ego = pick_ego(tracks)
        except ScenarioError as exc:
            raise ScenarioError(path, "ego", f"{where}: {exc.problem}") from None
        notes = [f"case {case} of {path.name}; pedestrians and cyclists: heading from velocity, default box sizes"]
        signals = _signals(signals_lanes, len(t_ms))
        if signals is not None:
            notes.append(LIGHTS_NOTE)
        log_id = f"{location}_{split}_case{case}"
        scenes.append(_scenario(path, map_path, location, log_id, t_ms, tracks, ego, road_map, signals, notes))
    return scenes


def _default_case_map(path: Path, location: str) -> Path:
    """``<root>/maps/<location>.osm`` for ``<root>/<split>/<location>_<split>.csv``."""
    return _map_up(path, location, 1, "<root>/maps/<location>.osm")


def _default_map(path: Path, location: str) -> Path:
    """``<root>/maps/<location>.osm`` for ``<root>/recorded_trackfiles/<location>/<file>.csv``."""
    return _map_up(path, location, 2, "maps/<location>.osm")


def _map_up(path: Path, location: str, levels: int, layout: str) -> Path:
    """``maps/<location>.osm`` in the folder ``levels`` above the one holding ``path``.

    ``path`` is taken as the user gave it (made absolute, ``..`` collapsed, symlinks not followed):
    a track file linked into a dataset's layout finds that dataset's map. Only when there is none
    is the link's target's layout tried.
    """
    candidates = []
    for absolute in (Path(os.path.abspath(path)), path.resolve()):
        parents = absolute.parents
        if len(parents) > levels:
            candidates.append(parents[levels] / MAPS_DIR / f"{location}.osm")
    for expected in candidates:
        if expected.is_file():
            return expected
    expected = candidates[0] if candidates else Path(MAPS_DIR) / f"{location}.osm"
    raise ScenarioError(path, "map", f"no Lanelet2 map at {expected} (the dataset keeps {layout}; or pass map_path=)")


# ---- tracks ---------------------------------------------------------------------------------


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype={COL_CASE_ID: str, COL_TRACK_ID: str, COL_AGENT_TYPE: str}, skipinitialspace=True)
    except FileNotFoundError:
        raise ScenarioError(path, "", "no such file") from None
    except OSError as exc:
        raise ScenarioError(path, "", f"cannot read the file: {exc.strerror or exc}") from None
    except pd.errors.EmptyDataError:
        raise ScenarioError(path, "", "the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ScenarioError(path, "", f"not a readable CSV: {str(exc).splitlines()[0]}") from None
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ScenarioError(path, ", ".join(missing), f"missing column(s); the file has {list(frame.columns)}")
    if frame.empty:
        raise ScenarioError(path, "", "no rows (a header only)")
    cases = COL_CASE_ID in columns
    for column in (COL_CASE_ID, COL_TRACK_ID, COL_AGENT_TYPE) if cases else (COL_TRACK_ID, COL_AGENT_TYPE):
        blank = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
        if blank.any():
            row = int(np.flatnonzero(blank.to_numpy())[0])
            after = f" (the row after case {_case_name(frame[COL_CASE_ID].iat[row - 1])}'s)" if column == COL_CASE_ID and row else ""
            raise ScenarioError(path, column, f"empty at line {row + 2}{after}")
        frame[column] = frame[column].astype(str).str.strip()
        lengths = frame[column].str.len().to_numpy()
        if (lengths > MAX_ID_LENGTH).any():  # before any array of them is built
            row = int(np.argmax(lengths > MAX_ID_LENGTH))
            raise ScenarioError(path, column, f"{lengths[row]} characters, more than {MAX_ID_LENGTH} (line {row + 2})")
    if cases:
        values = pd.to_numeric(frame[COL_CASE_ID], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(values) | (values != np.round(values)) | (values < 0) | (values > MAX_CASE_ID)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ScenarioError(
                path, COL_CASE_ID, f"not a whole non-negative number at line {row + 2}: {frame[COL_CASE_ID].iat[row]!r}"
            )
        frame[COL_CASE_ID] = values.astype(np.int64)
    # in a v1.2 file, only vehicles carry a heading and a size
    vehicle_rows = (
        np.array([agent_type(word) == AgentType.VEHICLE for word in frame[COL_AGENT_TYPE]])
        if cases
        else np.ones(len(frame), dtype=bool)
    )
    for column in columns:
        if column in (COL_CASE_ID, COL_TRACK_ID, COL_AGENT_TYPE):
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=np.float64, na_value=np.nan))
        if column in (COL_PSI, COL_LENGTH, COL_WIDTH):
            bad &= vehicle_rows
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            value = frame[column].iat[row]
            raise ScenarioError(path, column, f"not a finite number at line {row + 2} ({_where(frame, row)}): {value!r}")
        frame[column] = values.astype(np.float64)
    ts = frame[COL_TIMESTAMP].to_numpy()
    if (ts != np.round(ts)).any() or (ts < 0).any():
        row = int(np.flatnonzero((ts != np.round(ts)) | (ts < 0))[0])
        raise ScenarioError(
            path, COL_TIMESTAMP, f"not a whole non-negative number of milliseconds at line {row + 2} ({_where(frame, row)})"
        )
    if (ts * 1000 > MAX_ABS_TIME_US).any():  # x 1000 to microseconds would wrap int64
        row = int(np.argmax(ts * 1000 > MAX_ABS_TIME_US))
        problem = f"{ts[row]:.6g} ms at line {row + 2} ({_where(frame, row)}) is beyond {MAX_ABS_TIME_US / 1000:.0e} ms"
        raise ScenarioError(path, COL_TIMESTAMP, problem)
    for column in (COL_LENGTH, COL_WIDTH):
        if column in frame.columns and ((frame[column] <= 0) & vehicle_rows).any():
            row = int(np.flatnonzero(((frame[column] <= 0) & vehicle_rows).to_numpy())[0])
            raise ScenarioError(path, column, f"not positive at line {row + 2} ({_where(frame, row)})")
    _check_time_order(frame, path)
    return frame


def _case_name(text: str) -> str:
    """A case id as its scenario names it: "1.0" -> "1" (the text itself when not a whole number)."""
    try:
        value = float(text)
    except ValueError:
        return str(text)
    return str(int(value)) if math.isfinite(value) and value == round(value) else str(text)


def _where(frame: pd.DataFrame, row: int) -> str:
    """"case C, track T" (v1.2 files) or "track T" of the frame's ``row``-th row."""
    track = f"track {frame[COL_TRACK_ID].iat[row]}"
    return f"case {frame[COL_CASE_ID].iat[row]}, {track}" if COL_CASE_ID in frame.columns else track


def _check_time_order(frame: pd.DataFrame, path: Path) -> None:
    """Each track's timestamps strictly increase in file order (in each case of a v1.2 file)."""
    keys = [COL_CASE_ID, COL_TRACK_ID] if COL_CASE_ID in frame.columns else [COL_TRACK_ID]
    codes = frame.groupby(keys, sort=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    ts = frame[COL_TIMESTAMP].to_numpy()[order]
    same = codes[order][1:] == codes[order][:-1]
    bad = same & (np.diff(ts) <= 0)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        row, previous = int(order[k + 1]), int(order[k])
        what = "duplicate" if ts[k + 1] == ts[k] else "decreasing"
        raise ScenarioError(
            path,
            COL_TIMESTAMP,
            f"{what} timestamp for {_where(frame, row)}: {int(ts[k + 1])} ms at line {row + 2}"
            f" after {int(ts[k])} ms at line {previous + 2}",
        )


def _tracks(parts: list[tuple[pd.DataFrame, bool]], path: Path, where: str = "") -> tuple[np.ndarray, Tracks]:
    """The time grid [ms] (every recorded timestamp) and the merged tracks."""
    t_ms = np.unique(np.concatenate([frame[COL_TIMESTAMP].to_numpy(dtype=np.int64) for frame, _ in parts]))
    num_tracks = sum(frame[COL_TRACK_ID].nunique() for frame, _ in parts)
    check_grid(path, f"{where}: {COL_TRACK_ID}, {COL_TIMESTAMP}" if where else f"{COL_TRACK_ID}, {COL_TIMESTAMP}", num_tracks, len(t_ms))
    ids, types, sizes = [], [], []
    state = {name: [] for name in ("x", "y", "yaw", "vx", "vy", "valid")}
    for frame, pedestrians in parts:
        for track_id, group in frame.groupby(COL_TRACK_ID, sort=False):
            tid = str(track_id)
            if pedestrians and not tid.startswith(PEDESTRIAN_ID_PREFIX):
                tid = PEDESTRIAN_ID_PREFIX + tid
            word = group[COL_AGENT_TYPE].iat[0]
            kind = agent_type(word)
            cols = np.searchsorted(t_ms, group[COL_TIMESTAMP].to_numpy(dtype=np.int64))
            vx, vy = group[COL_VX].to_numpy(), group[COL_VY].to_numpy()
            if pedestrians:
                yaw = _heading_from_velocity(vx, vy)
                size = PEDESTRIAN_SIZES[kind]
            else:
                yaw = group[COL_PSI].to_numpy()
                height = HEIGHT_M.get(word.lower(), DEFAULT_VEHICLE_HEIGHT_M)
                size = (float(group[COL_LENGTH].median()), float(group[COL_WIDTH].median()), height)
            x, y = group[COL_X].to_numpy(), group[COL_Y].to_numpy()
            for name, values in (("x", x), ("y", y), ("yaw", yaw), ("vx", vx), ("vy", vy)):
                row = np.zeros(len(t_ms))
                row[cols] = values
                state[name].append(row)
            valid = np.zeros(len(t_ms), dtype=bool)
            valid[cols] = True
            state["valid"].append(valid)
            ids.append(tid)
            types.append(kind)
            sizes.append(size)
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        what = f"{where}: track ids repeat" if where else "track ids repeat across the vehicle and pedestrian files"
        raise ScenarioError(path, COL_TRACK_ID, f"{what}: {duplicates[:5]}")
    sizes_array = np.array(sizes, dtype=np.float64)
    tracks = Tracks(
        agent_ids=np.array(ids),
        agent_types=np.array(types, dtype=np.int8),
        length=sizes_array[:, 0],
        width=sizes_array[:, 1],
        height=sizes_array[:, 2],
        x=np.array(state["x"]),
        y=np.array(state["y"]),
        z=np.zeros((len(ids), len(t_ms))),
        yaw=np.array(state["yaw"]),
        vx=np.array(state["vx"]),
        vy=np.array(state["vy"]),
        valid=np.array(state["valid"]),
    )
    return t_ms, tracks


def _heading_from_velocity(vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
    """Heading [rad] of travel where faster than ``MIN_HEADING_SPEED``, held (and back-filled) elsewhere."""
    moving = np.hypot(vx, vy) > MIN_HEADING_SPEED
    if not moving.any():
        return np.zeros(len(vx))
    heading = np.arctan2(vy, vx)
    last = np.where(moving, np.arange(len(vx)), -1)
    np.maximum.accumulate(last, out=last)
    last[last < 0] = int(np.flatnonzero(moving)[0])
    return heading[last]


# ---- the Lanelet2 map -----------------------------------------------------------------------


#: Way id -> (node ids, tags); relation id -> (members, tags).
_Ways = dict[str, tuple[tuple[str, ...], dict[str, str]]]
_Relations = dict[str, tuple[list[ET.Element], dict[str, str]]]


@dataclass(frozen=True, slots=True)
class _Bound:
    way: str
    reversed: bool
    nodes: tuple[str, ...]
    points: np.ndarray


def _read_map(map_path: Path) -> tuple[RoadMap, list[tuple[str, list[float]]]]:
    """The lanes and features of a Lanelet2 OSM map, and (lane id, stop point) per traffic light."""
    root = parse_xml(map_path, "osm", "map")
    fail = lambda field, problem: ScenarioError(map_path, field, problem)  # noqa: E731
    node_ids, lats, lons = [], [], []
    for node in root.iter("node"):
        nid = node.get("id", "")
        node_ids.append(nid)
        for name, out in (("lat", lats), ("lon", lons)):
            try:
                value = float(node.get(name, ""))
            except ValueError:
                raise fail(f"node[@id={nid}]/@{name}", f"missing or not a number: {node.get(name)!r}") from None
            if not math.isfinite(value):
                raise fail(f"node[@id={nid}]/@{name}", f"not a finite number: {node.get(name)!r}")
            limit = MAX_LATITUDE_DEG if name == "lat" else MAX_LONGITUDE_DEG
            if abs(value) > limit:
                raise fail(f"node[@id={nid}]/@{name}", f"{value!r} is not a {'latitude' if name == 'lat' else 'longitude'} in [-{limit:g}, {limit:g}] degrees")
            out.append(value)
    x, y = LocalUtm(*MAP_ORIGIN).forward(np.array(lats), np.array(lons))
    points = {nid: (float(px), float(py)) for nid, px, py in zip(node_ids, x, y)}
    ways: _Ways = {}
    for way in root.iter("way"):
        wid = way.get("id", "")
        refs = tuple(nd.get("ref", "") for nd in way.iter("nd"))
        unknown = [r for r in refs if r not in points]
        if unknown:
            raise fail(f"way[@id={wid}]/nd", f"refers to nodes not in the map: {unknown[:5]}")
        ways[wid] = (refs, _tags(way))
    relations: _Relations = {rel.get("id", ""): (list(rel.iter("member")), _tags(rel)) for rel in root.iter("relation")}
    lanelets = {rid: rel for rid, rel in relations.items() if rel[1].get("type") == "lanelet"}
    if not lanelets:
        raise fail("lanelet", "the map has no lanelets (an empty map)")

    def bound(rid: str, members: list[ET.Element], role: str) -> tuple[str, np.ndarray]:
        refs = [m.get("ref", "") for m in members if m.get("role") == role and m.get("type") == "way"]
        if len(refs) != 1:
            raise fail(f"relation[@id={rid}]/member[@role={role}]", f"a lanelet needs exactly one {role} way, has {len(refs)}")
        if refs[0] not in ways:
            raise fail(f"relation[@id={rid}]/member[@role={role}]", f"way {refs[0]} is not in the map")
        nodes = ways[refs[0]][0]
        if len(nodes) < 2:
            raise fail(f"way[@id={refs[0]}]", f"a lanelet bound needs at least 2 nodes, has {len(nodes)}")
        return refs[0], np.array([points[n] for n in nodes])

    speeds = _regulatory_speeds(relations, ways, map_path)
    lanes, features, light_lanes = [], [], []
    bounds: dict[str, tuple[_Bound, _Bound]] = {}
    lane_meta: dict[str, tuple[str, float]] = {}
    for rid, (members, tags) in lanelets.items():
        left_way, left = bound(rid, members, "left")
        right_way, right = bound(rid, members, "right")
        flip_left, flip_right = _alignment(left, right)
        left_b = _Bound(left_way, flip_left, _oriented(ways[left_way][0], flip_left), left[::-1] if flip_left else left)
        right_b = _Bound(right_way, flip_right, _oriented(ways[right_way][0], flip_right), right[::-1] if flip_right else right)
        subtype = tags.get("subtype", "road").lower()
        if subtype == "crosswalk":
            outline = np.vstack([left_b.points, right_b.points[::-1]])
            features.append(MapFeature(f"crosswalk-{rid}", FeatureKind.CROSSWALK, outline))
            continue
        if subtype in NOT_LANES:
            continue
        regulatory = [m.get("ref", "") for m in members if m.get("role") == "regulatory_element"]
        limit = math.nan
        if "speed_limit" in tags:
            limit = _speed(tags["speed_limit"], map_path, f"relation[@id={rid}]/tag[@k=speed_limit]")
        else:
            found = [speeds[r] for r in regulatory if r in speeds]
            limit = min(found) if found else math.nan
            check_speed_limit(limit, map_path, f"relation[@id={rid}]/member[@role=regulatory_element]")
        bounds[rid] = (left_b, right_b)
        lane_meta[rid] = (LANE_TYPES.get(subtype, "driving"), limit)
        for ref in regulatory:
            members_of, reg_tags = relations.get(ref, ([], {}))
            if reg_tags.get("subtype") == "traffic_light":
                light_lanes.append((rid, _stop_point(members_of, ways, points, left_b, right_b)))
    starts: dict[tuple[str, str], list[str]] = {}
    sides: dict[tuple[str, bool, str], list[str]] = {}
    for rid, (left_b, right_b) in bounds.items():
        starts.setdefault((left_b.nodes[0], right_b.nodes[0]), []).append(rid)
        sides.setdefault((left_b.way, left_b.reversed, "left"), []).append(rid)
        sides.setdefault((right_b.way, right_b.reversed, "right"), []).append(rid)
    predecessors: dict[str, list[str]] = {rid: [] for rid in bounds}
    for rid, (left_b, right_b) in bounds.items():
        for successor in starts.get((left_b.nodes[-1], right_b.nodes[-1]), []):
            predecessors[successor].append(rid)
    for rid, (left_b, right_b) in bounds.items():
        lane_type, limit = lane_meta[rid]
        lanes.append(
            Lane(
                id=rid,
                centerline=centerline_from_bounds(left_b.points, right_b.points),
                left_boundary=left_b.points,
                right_boundary=right_b.points,
                speed_limit=limit,
                lane_type=lane_type,
                predecessors=tuple(sorted(predecessors[rid])),
                successors=tuple(sorted(starts.get((left_b.nodes[-1], right_b.nodes[-1]), []))),
                left_neighbors=tuple(sorted(sides.get((left_b.way, left_b.reversed, "right"), []))),
                right_neighbors=tuple(sorted(sides.get((right_b.way, right_b.reversed, "left"), []))),
            )
        )
    for wid, (refs, tags) in ways.items():
        kind_word, subtype = tags.get("type", "").lower(), tags.get("subtype", "").lower()
        if kind_word in LINE_TYPES:
            kind = FeatureKind.ROAD_LINE
        elif kind_word in EDGE_TYPES:
            kind = FeatureKind.ROAD_EDGE
        elif kind_word in STOP_LINE_TYPES:
            kind = FeatureKind.STOP_LINE
        else:
            continue
        if len(refs) < 2:
            continue
        name = f"{kind_word}_{subtype}" if subtype else kind_word
        features.append(MapFeature(f"way-{wid}", kind, np.array([points[n] for n in refs]), subtype=name))
    return RoadMap.from_parts(lanes, features), light_lanes



def _tags(elem: ET.Element) -> dict[str, str]:
    return {tag.get("k", ""): tag.get("v", "") for tag in elem.findall("tag")}


def _oriented(nodes: tuple[str, ...], flip: bool) -> tuple[str, ...]:
    return nodes[::-1] if flip else nodes


def _side(line: np.ndarray, point: np.ndarray) -> float:
    """Positive when ``point`` is left of the polyline (at its nearest segment), negative when right."""
    a, b = line[:-1], line[1:]
    d = b - a
    lengths2 = np.maximum((d**2).sum(axis=1), 1e-12)
    t = np.clip(((point - a) * d).sum(axis=1) / lengths2, 0.0, 1.0)
    nearest = a + t[:, None] * d
    k = int(np.argmin(((point - nearest) ** 2).sum(axis=1)))
    return float(d[k, 0] * (point[1] - a[k, 1]) - d[k, 1] * (point[0] - a[k, 0]))


def _alignment(left: np.ndarray, right: np.ndarray) -> tuple[bool, bool]:
    """Whether to reverse the left and the right way: the right bound must lie right of the left
    bound, and the left bound left of the right one (Lanelet2's ``geometry::align``)."""
    flip_left = _side(left, right[len(right) // 2]) > 0
    flip_right = _side(right, left[len(left) // 2]) < 0
    return flip_left, flip_right


def _speed(text: str, map_path: Path, field: str) -> float:
    match = _SPEED.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in SPEED_UNITS or not float(match.group(1)) > 0:
        raise ScenarioError(map_path, field, f"not a speed limit: {text[:60]!r} (a number in km/h, or with km/h, mph or mps)")
    speed = float(match.group(1)) * SPEED_UNITS[unit]
    if not speed <= MAX_SPEED_LIMIT_MPS:
        raise ScenarioError(map_path, field, f"{text[:60]!r} is {speed:.6g} m/s, faster than a speed limit can be ({MAX_SPEED_LIMIT_MPS:g} m/s)")
    return speed


def _sign_speed(sign: str) -> float | None:
    """The limit [m/s] a speed-limit sign type carries: German "de274-50" (km/h), US "15mph",
    "us25", "usR2-1-25" (mph); None for any other sign. A bare number is not a US sign: it
    must say mph or start with "us"."""
    sign = sign.strip()
    german = _SIGN_SPEED.match(sign)
    if german:
        return float(german.group(1)) / 3.6
    us = _US_SIGN_SPEED.match(sign)
    if us and (us.group(2) or sign.lower().startswith("us")) and float(us.group(1)) > 0:
        return float(us.group(1)) * SPEED_UNITS["mph"]
    return None


def _regulatory_speeds(relations: _Relations, ways: _Ways, map_path: Path) -> dict[str, float]:
    """Speed [m/s] of each ``speed_limit`` regulatory element: its tag, or the number on its sign
    (``_sign_speed``: German km/h signs, US mph signs)."""
    speeds = {}
    for rid, (members, tags) in relations.items():
        if tags.get("type") != "regulatory_element" or tags.get("subtype") != "speed_limit":
            continue
        if "speed_limit" in tags:
            speeds[rid] = _speed(tags["speed_limit"], map_path, f"relation[@id={rid}]/tag[@k=speed_limit]")
            continue
        signs = [tags.get("sign_type", "")] + [
            ways.get(m.get("ref", ""), ((), {}))[1].get("subtype", "") for m in members if m.get("role") == "refers"
        ]
        found = [v for v in (_sign_speed(s) for s in signs) if v is not None]
        if found:
            speeds[rid] = min(found)
    return speeds


def _stop_point(
    members: list[ET.Element],
    ways: _Ways,
    points: dict[str, tuple[float, float]],
    left: _Bound,
    right: _Bound,
) -> list[float]:
    """Midpoint of the light's stop line (``ref_line``), else of the lanelet's end."""
    for member in members:
        if member.get("role") == "ref_line" and member.get("ref", "") in ways:
            line = np.array([points[n] for n in ways[member.get("ref", "")][0]])
            if len(line):
                mid = 0.5 * (line[0] + line[-1])
                return [float(mid[0]), float(mid[1]), 0.0]
    mid = 0.5 * (left.points[-1] + right.points[-1])
    return [float(mid[0]), float(mid[1]), 0.0]
