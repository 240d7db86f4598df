"""The scenario model: recorded tracks as arrays, the road map, traffic signals, provenance.

Everything here is SI (m, s, rad, m/s) in the source's metric world frame; time is integer
microseconds. Objects are frozen and their arrays read-only, so a scenario can be shared
between envs, workers and mutations without copies or surprises. Constructing a ``Scenario``
validates it: an invalid scenario cannot exist.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scenarios.errors import ScenarioError

#: Lane width [m] assumed where a source gives centerlines without boundaries.
DEFAULT_LANE_WIDTH = 3.6

# --- bounds every scenario obeys -------------------------------------------------------------
# The one place for them: ``Scenario.validate`` checks every scenario against them, and the
# importers check the values they read against them (through ``check_*`` below) where they can
# still name the file's own field, and before they allocate arrays sized by the file.

#: Most time steps in one scenario (2.8 h at 10 Hz; the longest real logs are minutes).
MAX_STEPS = 100_000
#: Most agent x step cells in one scenario's tracks (each cell is about 50 bytes of arrays).
MAX_TRACK_CELLS = 5_000_000
#: Longest agent, lane, feature, signal or log id [characters].
MAX_ID_LENGTH = 256
#: Longest scenario id [characters]: a log id plus window and ego suffixes.
MAX_SCENARIO_ID_LENGTH = 4 * MAX_ID_LENGTH
#: Largest |t_us| [us] (about 3,170 years from the epoch; int64 holds 292,000 years).
MAX_ABS_TIME_US = 10**17
#: Longest gap between consecutive timestamps [us] (logs sample at 2-50 Hz).
MAX_STEP_US = 60_000_000
#: Largest |x|, |y|, |z| [m] of any point: no metric frame of a road on Earth reaches 20,000 km.
MAX_COORDINATE_M = 2e7
#: Largest |yaw| [rad] (unwrapped headings of 160 turns; beyond that the value is corrupt).
MAX_ABS_YAW_RAD = 1000.0
#: Fastest a road user moves [m/s] (360 km/h), logged or implied by consecutive positions.
MAX_SPEED_MPS = 100.0
#: Position jitter [m] allowed on top of ``MAX_SPEED_MPS`` x the time between two samples, so that
#: label noise at high sampling rates is not read as speed.
POSITION_JITTER_M = 2.0
#: Largest box length, width or height [m] (CommonRoad's static road boundaries can be long).
MAX_SIZE_M = 1000.0
#: Largest speed limit [m/s]; a limit is positive or NaN (unknown).
MAX_SPEED_LIMIT_MPS = MAX_SPEED_MPS


def _short(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages about huge values."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(str(value))} characters)"


def check_text(value: object, source: object, field: str, max_length: int = MAX_ID_LENGTH) -> str:
    """``value`` as a str of at most ``max_length`` characters that UTF-8 can encode.

    Raises ``ScenarioError`` naming ``source`` and ``field`` for a longer text (checked before
    anything is built from it) or one holding lone surrogates (``"\\ud800"`` from a JSON escape),
    which no Parquet file can store.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) > max_length:
        raise ScenarioError(source, field, f"{len(text)} characters, more than {max_length}: {_short(text)}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ScenarioError(source, field, f"not valid Unicode ({exc.reason} at character {exc.start}): {_short(text)}") from None
    return text


def check_ids(values: Iterable[object], source: object, field: str) -> list[str]:
    """Every id of ``values`` through ``check_text``, without building an array of them first."""
    return [check_text(v, source, field) for v in values]


def check_grid(source: object, field: str, num_agents: int, num_steps: int) -> None:
    """Refuse track arrays of ``num_agents`` x ``num_steps`` beyond ``MAX_STEPS``/``MAX_TRACK_CELLS``,
    before they are allocated."""
    if num_steps > MAX_STEPS:
        raise ScenarioError(source, field, f"{num_steps} time steps, more than a scenario may have ({MAX_STEPS})")
    if num_agents * num_steps > MAX_TRACK_CELLS:
        raise ScenarioError(
            source,
            field,
            f"{num_agents} agents x {num_steps} steps = {num_agents * num_steps} track cells, more than a scenario "
            f"may have ({MAX_TRACK_CELLS}); cut the log into shorter files",
        )


def check_times(values: Any, source: object, field: str, us_per_unit: float = 1.0) -> None:
    """Refuse timestamps (a number or an array, in units of ``us_per_unit`` microseconds: 1000 for
    ms, 0.001 for ns) that are not finite or lie beyond ``MAX_ABS_TIME_US``, before they are
    converted to int64 microseconds (where they would wrap)."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ScenarioError(source, field, f"not a number of the int64 range: {_short(values)}") from None
    bad = ~(np.abs(array) * us_per_unit <= MAX_ABS_TIME_US)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0]) if array.ndim else ()
        value = array[where] if where else array
        at = f" (at index {where[0]})" if where else ""
        limit = MAX_ABS_TIME_US / us_per_unit
        raise ScenarioError(source, field, f"{float(value)!r}{at} is not a time within +-{limit:.3g} (int64 microseconds)")


def check_speed_limit(value: float, source: object, field: str) -> float:
    """A speed limit [m/s]: NaN (unknown) or in (0, ``MAX_SPEED_LIMIT_MPS``]."""
    value = float(value)
    if not math.isnan(value) and not 0.0 < value <= MAX_SPEED_LIMIT_MPS:
        raise ScenarioError(source, field, f"speed limit {value!r} m/s is not in (0, {MAX_SPEED_LIMIT_MPS:g}]")
    return value


def _first_beyond(array: np.ndarray, limit: float, mask: np.ndarray | None = None) -> tuple[int, ...] | None:
    """Index of the first element of ``array`` (where ``mask``) whose magnitude exceeds ``limit``."""
    bad = np.abs(array) > limit
    if mask is not None:
        bad &= mask
    if not bad.any():
        return None
    return tuple(int(i) for i in np.argwhere(bad)[0])


def check_points(points: np.ndarray, source: object, field: str) -> None:
    """Every coordinate of ``points`` [m] within ``MAX_COORDINATE_M``."""
    where = _first_beyond(np.asarray(points, dtype=np.float64), MAX_COORDINATE_M)
    if where is not None:
        value = float(np.asarray(points)[where])
        raise ScenarioError(source, field, f"coordinate {value!r} m (point {where[0]}) is beyond +-{MAX_COORDINATE_M:g} m")


class AgentType(enum.IntEnum):
    """Kind of road user; stored as int8."""

    VEHICLE = 0
    PEDESTRIAN = 1
    CYCLIST = 2
    OTHER = 3


class FeatureKind(enum.IntEnum):
    """Kind of non-lane map feature; stored as int8."""

    ROAD_EDGE = 0
    ROAD_LINE = 1
    CROSSWALK = 2  # polygon
    STOP_LINE = 3
    STOP_SIGN = 4  # a single point, ``lane_ids`` the lanes it controls
    DRIVABLE_AREA = 5  # polygon
    SPEED_BUMP = 6  # polygon
    DRIVEWAY = 7  # polygon


#: Kinds whose points describe a closed polygon (first point not repeated).
POLYGON_KINDS = frozenset(
    {FeatureKind.CROSSWALK, FeatureKind.DRIVABLE_AREA, FeatureKind.SPEED_BUMP, FeatureKind.DRIVEWAY}
)


class SignalState(enum.IntEnum):
    """State of a traffic signal controlling one lane; stored as int8."""

    UNKNOWN = 0
    STOP = 1  # red
    CAUTION = 2  # yellow
    GO = 3  # green
    FLASHING_STOP = 4
    FLASHING_CAUTION = 5


_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def make_scenario_id(
    dataset: str, log_id: str, *, window_start_step: int | None = None, ego_id: str | None = None
) -> str:
    """A stable, filesystem- and shell-safe scenario id.

    The id depends only on what the source file says (dataset and log id), the window's first
    step when a long log is cut into windows, and the ego's agent id when every vehicle of a
    log becomes an ego; importing the same file twice gives the same ids.
    """
    scenario_id = f"{safe_id_part(dataset)}-{safe_id_part(log_id)}"
    if window_start_step is not None:
        scenario_id += window_suffix(window_start_step)
    if ego_id is not None:
        scenario_id += ego_suffix(ego_id)
    return scenario_id


def safe_id_part(text: object) -> str:
    """``text`` with every run of characters outside ``[A-Za-z0-9._-]`` replaced by ``_``, and then,
    when anything was replaced, ``_`` and 8 hex digits of a hash of ``text`` itself.

    The suffix keeps ids apart that differ only in their unsafe characters ("?" and "!" would
    both be "_"), so two source logs never share a scenario id; safe text is kept as it is.
    """
    text = str(text)
    safe = _ID_UNSAFE.sub("_", text)
    if safe == text:
        return safe
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    return f"{safe}_{digest}"


def window_suffix(start_step: int) -> str:
    """What a window starting at ``start_step`` adds to its log's scenario id."""
    return f".w{int(start_step)}"


def ego_suffix(ego_id: object) -> str:
    """What choosing agent ``ego_id`` as the ego adds to a scenario id."""
    return f".ego-{safe_id_part(ego_id)}"


def _frozen_array(value: Any, dtype: Any, name: str, source: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=dtype, copy=True)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(source, name, f"cannot be read as {np.dtype(dtype).name}: {exc}") from None
    array.setflags(write=False)
    return array


def _points(value: Any, name: str, source: str) -> np.ndarray:
    """(P, 3) float64 read-only points; (P, 2) input gets z = 0."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] not in (2, 3):
        raise ScenarioError(source, name, f"points must have shape (P, 2) or (P, 3), got {array.shape}")
    if array.shape[1] == 2:
        array = np.column_stack([array, np.zeros(len(array))])
    else:
        array = array.copy()
    if not np.isfinite(array).all():
        raise ScenarioError(source, name, "points contain NaN or infinite values")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a scenario came from.

    Attributes:
        dataset: short dataset name, e.g. ``"av2"``, ``"waymo"``, ``"commonroad"``.
        source_file: the file it was read from (as given to the importer).
        source_log_id: the log or scenario id the source itself uses.
        frame: how the world frame relates to the source's (e.g. "city frame [m], as recorded").
        notes: anything an analyst should know (interpolation, dropped objects, ...).
    """

    dataset: str
    source_file: str
    source_log_id: str
    frame: str = "source metric frame [m]"
    notes: str = ""


AGENTS_MODES = ("", "replay", "reactive")


@dataclass(frozen=True, slots=True)
class Conditions:
    """Twin settings that travel with a scenario, so that a mutation can change them.

    The defaults are the recorded world: dry road, no latency, perfect perception.

    Attributes:
        road_friction: tyre-road friction coefficient of the road surface (0.9 dry, 0.5 wet, 0.15 ice).
        ego_latency_s: delay between the policy's action and its effect [s].
        position_noise_m: standard deviation of the noise on other agents' observed positions [m].
        heading_noise_rad: standard deviation of the noise on their observed headings [rad].
        detection_dropout: probability that an agent is missing from one step's observation.
        agents_mode: "replay" or "reactive" for every other agent; "" leaves it to the env config.
        reactive_agents: agents that react (IDM) whatever ``agents_mode`` says.
        replay_agents: agents that replay their (possibly mutated) track whatever ``agents_mode``
            says: a staged manoeuvre (a hard-braking lead, a cut-in) must not be replaced by IDM.
    """

    # Each field is a column of the library's scenarios table (unit from the name's suffix or
    # ``metadata["unit"]``; see ``scenarios.library.schema.condition_fields``).
    road_friction: float = field(default=0.9, metadata={"description": "tyre-road friction coefficient"})
    ego_latency_s: float = 0.0
    position_noise_m: float = 0.0
    heading_noise_rad: float = 0.0
    detection_dropout: float = field(default=0.0, metadata={"description": "probability"})
    agents_mode: str = ""
    reactive_agents: tuple[str, ...] = ()
    replay_agents: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "reactive_agents", tuple(str(a) for a in self.reactive_agents))
        object.__setattr__(self, "replay_agents", tuple(str(a) for a in self.replay_agents))
        checks = {
            "road_friction": 0.0 < self.road_friction <= 2.0,
            "ego_latency_s": 0.0 <= self.ego_latency_s <= 5.0,
            "position_noise_m": 0.0 <= self.position_noise_m,
            "heading_noise_rad": 0.0 <= self.heading_noise_rad,
            "detection_dropout": 0.0 <= self.detection_dropout <= 1.0,
            "agents_mode": self.agents_mode in AGENTS_MODES,
        }
        for name, ok in checks.items():
            if not ok:
                raise ScenarioError("conditions", name, f"out of range: {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True, eq=False)
class Tracks:
    """Every road user's state over time, as a struct of arrays.

    N agents, T steps. Entries where ``valid`` is False carry no meaning and are stored as 0.

    Attributes:
        agent_ids: (N,) str, unique within the scenario.
        agent_types: (N,) int8 ``AgentType``.
        length, width, height: (N,) float64 box size [m].
        x, y, z: (N, T) float64 box centre [m].
        yaw: (N, T) float64 heading [rad], counter-clockwise from +x.
        vx, vy: (N, T) float64 velocity in the world frame [m/s].
        valid: (N, T) bool, whether the agent was observed at that step.
    """

    agent_ids: np.ndarray
    agent_types: np.ndarray
    length: np.ndarray
    width: np.ndarray
    height: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    yaw: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    valid: np.ndarray

    STATE_FIELDS = ("x", "y", "z", "yaw", "vx", "vy")
    SIZE_FIELDS = ("length", "width", "height")

    def __post_init__(self) -> None:
        src = "tracks"
        set_ = object.__setattr__
        ids = [str(a) for a in (self.agent_ids.ravel() if isinstance(self.agent_ids, np.ndarray) else self.agent_ids)]
        long = [len(a) for a in ids if len(a) > MAX_ID_LENGTH]
        if long:  # before the (N, longest) character array is allocated
            raise ScenarioError(src, "agent_ids", f"an agent id of {long[0]} characters, more than {MAX_ID_LENGTH}")
        set_(self, "agent_ids", _frozen_array(ids, np.str_, "agent_ids", src))
        set_(self, "agent_types", _frozen_array(self.agent_types, np.int8, "agent_types", src))
        for name in self.SIZE_FIELDS:
            set_(self, name, _frozen_array(getattr(self, name), np.float64, name, src))
        valid = _frozen_array(self.valid, bool, "valid", src)
        set_(self, "valid", valid)
        for name in self.STATE_FIELDS:
            array = np.array(getattr(self, name), dtype=np.float64, copy=True)
            if array.shape == valid.shape:
                array[~valid] = 0.0  # canonical: invalid entries are 0, so round trips are exact
            array.setflags(write=False)
            set_(self, name, array)

    @property
    def num_agents(self) -> int:
        return int(self.agent_ids.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.valid.shape[1]) if self.valid.ndim == 2 else 0

    @property
    def speed(self) -> np.ndarray:
        """(N, T) speed [m/s]."""
        return np.hypot(self.vx, self.vy)

    def index_of(self, agent_id: str) -> int:
        """Row of ``agent_id``; raises ``KeyError`` when absent."""
        hits = np.flatnonzero(self.agent_ids == str(agent_id))
        if hits.size == 0:
            raise KeyError(agent_id)
        return int(hits[0])

    def select(self, rows: Sequence[int] | np.ndarray, steps: slice | np.ndarray = slice(None)) -> Tracks:
        """A new ``Tracks`` with the given agent rows and steps."""
        rows = np.asarray(rows)
        fields = {n: getattr(self, n)[rows] for n in ("agent_ids", "agent_types", *self.SIZE_FIELDS)}
        fields |= {n: getattr(self, n)[rows][:, steps] for n in (*self.STATE_FIELDS, "valid")}
        return Tracks(**fields)

    def replace(self, **changes: Any) -> Tracks:
        return dataclasses.replace(self, **changes)

    def validate(self, source: str) -> None:
        """Raise ``ScenarioError`` naming ``source`` on bad shapes, ids or values."""
        n = self.num_agents
        if n == 0:
            raise ScenarioError(source, "tracks", "no tracks (the scenario has no road users)")
        if self.agent_ids.ndim != 1:
            raise ScenarioError(source, "agent_ids", f"must be 1-D, got shape {self.agent_ids.shape}")
        unique, counts = np.unique(self.agent_ids, return_counts=True)
        if (counts > 1).any():
            raise ScenarioError(source, "agent_ids", f"duplicate agent ids: {sorted(unique[counts > 1].tolist())[:5]}")
        if self.valid.ndim != 2 or self.valid.shape[0] != n:
            raise ScenarioError(source, "valid", f"shape {self.valid.shape} does not match ({n}, T)")
        if self.valid.shape[1] == 0:
            raise ScenarioError(source, "valid", "tracks have no time steps")
        for name in ("agent_types", *self.SIZE_FIELDS):
            if getattr(self, name).shape != (n,):
                raise ScenarioError(source, name, f"shape {getattr(self, name).shape} does not match ({n},)")
        known = np.isin(self.agent_types, [t.value for t in AgentType])
        if not known.all():
            raise ScenarioError(source, "agent_types", f"unknown agent type codes {np.unique(self.agent_types[~known]).tolist()}")
        limits = {"x": (MAX_COORDINATE_M, "m"), "y": (MAX_COORDINATE_M, "m"), "z": (MAX_COORDINATE_M, "m"),
                  "yaw": (MAX_ABS_YAW_RAD, "rad"), "vx": (MAX_SPEED_MPS, "m/s"), "vy": (MAX_SPEED_MPS, "m/s")}  # fmt: skip
        for name in self.STATE_FIELDS:
            array = getattr(self, name)
            if array.shape != self.valid.shape:
                raise ScenarioError(source, name, f"shape {array.shape} does not match valid's {self.valid.shape}")
            bad = ~np.isfinite(array) & self.valid
            if bad.any():
                agent, step = np.argwhere(bad)[0]
                raise ScenarioError(
                    source, name, f"NaN or infinite value where valid (agent {self.agent_ids[agent]!r}, step {step})"
                )
            limit, unit = limits[name]
            where = _first_beyond(array, limit, self.valid)
            if where is not None:
                agent, step = where
                problem = f"{float(array[agent, step])!r} {unit} is beyond +-{limit:g} {unit} (agent {str(self.agent_ids[agent])!r}, step {step})"
                raise ScenarioError(source, name, problem)
        for name in self.SIZE_FIELDS:
            array = getattr(self, name)
            bad = ~np.isfinite(array) | (array < 0)
            if bad.any():
                raise ScenarioError(source, name, f"negative, NaN or infinite size for agent {self.agent_ids[np.argmax(bad)]!r}")
            if (array > MAX_SIZE_M).any():
                row = int(np.argmax(array > MAX_SIZE_M))
                problem = f"{float(array[row])!r} m for agent {str(self.agent_ids[row])!r} is larger than any road user ({MAX_SIZE_M:g} m)"
                raise ScenarioError(source, name, problem)
        empty = ~self.valid.any(axis=1)
        if empty.any():
            raise ScenarioError(source, "valid", f"empty tracks (never valid): {self.agent_ids[empty][:5].tolist()}")
        speed = np.where(self.valid, np.hypot(self.vx, self.vy), 0.0)
        if (speed > MAX_SPEED_MPS).any():
            agent, step = np.argwhere(speed > MAX_SPEED_MPS)[0]
            problem = (
                f"logged speed {speed[agent, step]:.6g} m/s is faster than any road user ({MAX_SPEED_MPS:g} m/s) "
                f"(agent {str(self.agent_ids[agent])!r}, step {step})"
            )
            raise ScenarioError(source, "vx, vy", problem)
        ids = self.agent_ids.tolist()
        try:
            "".join(ids).encode("utf-8")  # lengths were checked on construction
        except UnicodeEncodeError:
            for agent_id in ids:
                check_text(agent_id, source, "agent_ids")

    def check_motion(self, source: str, t_us: np.ndarray) -> None:
        """Refuse a jump between consecutive valid samples of a track (invalid steps between them
        allowed) faster than ``MAX_SPEED_MPS`` plus ``POSITION_JITTER_M``: teleporting boxes."""
        if self.num_steps < 2:
            return
        steps = np.arange(self.num_steps)
        last = np.where(self.valid, steps, -1)
        np.maximum.accumulate(last, axis=1, out=last)
        previous = np.concatenate([np.full((self.num_agents, 1), -1), last[:, :-1]], axis=1)
        pairs = self.valid & (previous >= 0)
        if not pairs.any():
            return
        agents, now = np.nonzero(pairs)
        before = previous[agents, now]
        distance = np.hypot(self.x[agents, now] - self.x[agents, before], self.y[agents, now] - self.y[agents, before])
        seconds = (t_us[now] - t_us[before]) / 1e6
        bad = distance > MAX_SPEED_MPS * seconds + POSITION_JITTER_M
        if bad.any():
            k = int(np.argmax(bad))
            problem = (
                f"agent {str(self.agent_ids[agents[k]])!r} moves {distance[k]:.6g} m in {seconds[k]:.6g} s from step {before[k]} "
                f"to step {now[k]}: faster than any road user ({MAX_SPEED_MPS:g} m/s + {POSITION_JITTER_M:g} m of jitter)"
            )
            raise ScenarioError(source, "x, y", problem)


@dataclass(frozen=True, slots=True, eq=False)
class Lane:
    """A lane: its centerline, optional boundaries, limits and topology.

    Attributes:
        id: unique among the map's lanes.
        centerline: (P, 3) [m], in driving direction.
        left_boundary, right_boundary: (L, 3) [m] in driving direction, or None when unknown.
        speed_limit: [m/s], NaN when unknown.
        lane_type: "driving", "bike", "bus", ... as the source names it, lower case.
        predecessors, successors, left_neighbors, right_neighbors: lane ids.
    """

    id: str
    centerline: np.ndarray
    left_boundary: np.ndarray | None = None
    right_boundary: np.ndarray | None = None
    speed_limit: float = float("nan")
    lane_type: str = "driving"
    predecessors: tuple[str, ...] = ()
    successors: tuple[str, ...] = ()
    left_neighbors: tuple[str, ...] = ()
    right_neighbors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        src = f"lane {self.id}"
        set_ = object.__setattr__
        set_(self, "id", str(self.id))
        set_(self, "centerline", _points(self.centerline, "centerline", src))
        for name in ("left_boundary", "right_boundary"):
            value = getattr(self, name)
            if value is not None:
                set_(self, name, _points(value, name, src))
        set_(self, "speed_limit", float(self.speed_limit))
        for name in ("predecessors", "successors", "left_neighbors", "right_neighbors"):
            set_(self, name, tuple(str(v) for v in getattr(self, name)))

    def polygon(self, default_width: float = DEFAULT_LANE_WIDTH) -> np.ndarray:
        """(P, 2) outline [m]: boundaries where known, else the centerline widened."""
        if self.left_boundary is not None and self.right_boundary is not None:
            return np.vstack([self.left_boundary[:, :2], self.right_boundary[::-1, :2]])
        return _widen(self.centerline[:, :2], default_width)


@dataclass(frozen=True, slots=True, eq=False)
class MapFeature:
    """A road edge, road line, crosswalk, stop line, stop sign, drivable area, ...

    Attributes:
        id: unique among the map's features.
        kind: ``FeatureKind``.
        points: (P, 3) [m]; a polygon's outline for ``POLYGON_KINDS``, one point for a stop sign.
        subtype: the source's finer type, lower case (e.g. "solid_white", "broken_yellow").
        lane_ids: lanes the feature refers to (a stop sign's controlled lanes).
    """

    id: str
    kind: FeatureKind
    points: np.ndarray
    subtype: str = ""
    lane_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "id", str(self.id))
        set_(self, "kind", FeatureKind(self.kind))
        set_(self, "points", _points(self.points, "points", f"map feature {self.id}"))
        set_(self, "lane_ids", tuple(str(v) for v in self.lane_ids))


def _widen(centerline: np.ndarray, width: float) -> np.ndarray:
    """(2P, 2) polygon around a (P, 2) polyline, ``width`` [m] wide."""
    if len(centerline) < 2:
        c = centerline[0]
        h = width / 2
        return np.array([[c[0] - h, c[1] - h], [c[0] + h, c[1] - h], [c[0] + h, c[1] + h], [c[0] - h, c[1] + h]])
    d = np.gradient(centerline, axis=0)
    norm = np.hypot(d[:, 0], d[:, 1])
    norm[norm == 0] = 1.0
    normal = np.column_stack([-d[:, 1], d[:, 0]]) / norm[:, None]
    left = centerline + normal * width / 2
    right = centerline - normal * width / 2
    return np.vstack([left, right[::-1]])


@dataclass(frozen=True, slots=True, eq=False)
class RoadMap:
    """Lanes plus the other map features."""

    lanes: tuple[Lane, ...] = ()
    features: tuple[MapFeature, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "lanes", tuple(self.lanes))
        object.__setattr__(self, "features", tuple(self.features))

    @classmethod
    def from_parts(
        cls, lanes: Iterable[Lane], features: Iterable[MapFeature] = (), *, derive_drivable: bool = True
    ) -> RoadMap:
        """A map whose drivable area is derived from the lanes when the source gives none."""
        lanes = tuple(lanes)
        features = tuple(features)
        if derive_drivable and not any(f.kind == FeatureKind.DRIVABLE_AREA for f in features):
            features += tuple(
                MapFeature(f"drivable-{lane.id}", FeatureKind.DRIVABLE_AREA, lane.polygon(), subtype="derived_from_lane")
                for lane in lanes
            )
        return cls(lanes, features)

    def of_kind(self, kind: FeatureKind) -> tuple[MapFeature, ...]:
        return tuple(f for f in self.features if f.kind == kind)

    @property
    def drivable_areas(self) -> tuple[MapFeature, ...]:
        return self.of_kind(FeatureKind.DRIVABLE_AREA)

    @property
    def road_edges(self) -> tuple[MapFeature, ...]:
        return self.of_kind(FeatureKind.ROAD_EDGE)

    @property
    def road_lines(self) -> tuple[MapFeature, ...]:
        return self.of_kind(FeatureKind.ROAD_LINE)

    @property
    def crosswalks(self) -> tuple[MapFeature, ...]:
        return self.of_kind(FeatureKind.CROSSWALK)

    @property
    def stop_signs(self) -> tuple[MapFeature, ...]:
        return self.of_kind(FeatureKind.STOP_SIGN)

    def lane(self, lane_id: str) -> Lane:
        for lane in self.lanes:
            if lane.id == lane_id:
                return lane
        raise KeyError(lane_id)

    def validate(self, source: str) -> None:
        if not self.lanes and not self.features:
            raise ScenarioError(source, "road_map", "the map is empty (no lanes and no features)")
        for what, items in (("lanes", self.lanes), ("features", self.features)):
            ids = [item.id for item in items]
            if len(set(ids)) != len(ids):
                dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
                raise ScenarioError(source, what, f"duplicate ids: {dup}")
        if self._within_bounds():
            return
        # something is out of bounds: find it, to name it
        for lane in self.lanes:
            where = f"lanes[{_short(lane.id)}]"
            check_text(lane.id, source, f"{where}.id")
            check_text(lane.lane_type, source, f"{where}.lane_type")
            for name in ("centerline", "left_boundary", "right_boundary"):
                if getattr(lane, name) is not None:
                    check_points(getattr(lane, name), source, f"{where}.{name}")
            check_speed_limit(lane.speed_limit, source, f"{where}.speed_limit")
            for name in ("predecessors", "successors", "left_neighbors", "right_neighbors"):
                check_ids(getattr(lane, name), source, f"{where}.{name}")
        for feature in self.features:
            where = f"features[{_short(feature.id)}]"
            check_text(feature.id, source, f"{where}.id")
            check_text(feature.subtype, source, f"{where}.subtype")
            check_points(feature.points, source, f"{where}.points")
            check_ids(feature.lane_ids, source, f"{where}.lane_ids")

    def _within_bounds(self) -> bool:
        """Every point, speed limit and text of the map within the bounds, checked at once (fast)."""
        lanes, features = self.lanes, self.features
        points = [p for lane in lanes for p in (lane.centerline, lane.left_boundary, lane.right_boundary) if p is not None]
        points += [f.points for f in features]
        if points and not np.abs(np.concatenate(points)).max() <= MAX_COORDINATE_M:
            return False
        limits = np.array([lane.speed_limit for lane in lanes], dtype=np.float64)
        if not (np.isnan(limits) | ((limits > 0) & (limits <= MAX_SPEED_LIMIT_MPS))).all():
            return False
        texts = [t for lane in lanes for t in (lane.id, lane.lane_type, *lane.predecessors, *lane.successors,
                                                *lane.left_neighbors, *lane.right_neighbors)]  # fmt: skip
        texts += [t for f in features for t in (f.id, f.subtype, *f.lane_ids)]
        if any(len(t) > MAX_ID_LENGTH for t in texts):
            return False
        try:
            "".join(texts).encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True


@dataclass(frozen=True, slots=True, eq=False)
class Signals:
    """Traffic signal states per controlled lane over time.

    S signals, T steps (the scenario's). ``states`` is ``SignalState`` as int8.

    Attributes:
        lane_ids: (S,) str, the lane each signal controls.
        states: (S, T) int8.
        stop_points: (S, 3) [m], where traffic on that lane stops.
    """

    lane_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.str_))
    states: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int8))
    stop_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    def __post_init__(self) -> None:
        src = "signals"
        set_ = object.__setattr__
        ids = [str(v) for v in (self.lane_ids.ravel() if isinstance(self.lane_ids, np.ndarray) else self.lane_ids)]
        long = [len(v) for v in ids if len(v) > MAX_ID_LENGTH]
        if long:
            raise ScenarioError(src, "lane_ids", f"a lane id of {long[0]} characters, more than {MAX_ID_LENGTH}")
        set_(self, "lane_ids", _frozen_array(ids, np.str_, "lane_ids", src))
        set_(self, "states", _frozen_array(self.states, np.int8, "states", src))
        stop = np.asarray(self.stop_points, dtype=np.float64).reshape(-1, 3) if np.size(self.stop_points) else np.zeros((0, 3))
        set_(self, "stop_points", _frozen_array(stop, np.float64, "stop_points", src))

    @classmethod
    def empty(cls, num_steps: int) -> Signals:
        return cls(np.zeros(0, np.str_), np.zeros((0, num_steps), np.int8), np.zeros((0, 3)))

    @property
    def num_signals(self) -> int:
        return int(self.lane_ids.shape[0])

    def validate(self, source: str, num_steps: int) -> None:
        s = self.num_signals
        if s == 0:
            return
        if self.states.shape != (s, num_steps):
            raise ScenarioError(source, "signals.states", f"shape {self.states.shape} does not match ({s}, {num_steps})")
        if self.stop_points.shape != (s, 3) or not np.isfinite(self.stop_points).all():
            raise ScenarioError(source, "signals.stop_points", "must be (S, 3) and finite")
        check_points(self.stop_points, source, "signals.stop_points")
        check_ids(self.lane_ids.tolist(), source, "signals.lane_ids")
        known = np.isin(self.states, [v.value for v in SignalState])
        if not known.all():
            raise ScenarioError(source, "signals.states", f"unknown signal state codes {np.unique(self.states[~known]).tolist()}")


@dataclass(frozen=True, slots=True, eq=False)
class Scenario:
    """One recorded scene: who was where and when, on which roads, from which file.

    Attributes:
        id: stable id (see ``make_scenario_id``); a mutated scenario's id is its variant id.
        provenance: dataset, source file, source log id, frame notes.
        t_us: (T,) int64 timestamps [us], strictly increasing.
        tracks: every road user's state (``Tracks``).
        ego_index: row of the ego in ``tracks``.
        road_map: lanes and other features.
        signals: traffic signal states (possibly none).
        tags: free labels ("highway", "intersection", ...).
        conditions: twin settings (friction, latency, perception noise, agent modes).
    """

    id: str
    provenance: Provenance
    t_us: np.ndarray
    tracks: Tracks
    ego_index: int
    road_map: RoadMap
    signals: Signals | None = None
    tags: tuple[str, ...] = ()
    conditions: Conditions = Conditions()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "id", str(self.id))
        set_(self, "t_us", _frozen_array(self.t_us, np.int64, "t_us", self.source))
        set_(self, "ego_index", int(self.ego_index))
        if self.signals is None:
            set_(self, "signals", Signals.empty(len(self.t_us)))
        set_(self, "tags", tuple(str(t) for t in self.tags))
        self.validate()

    @property
    def source(self) -> str:
        """What an error message names: the source file and the scenario id."""
        scenario_id = self.id if len(self.id) <= 120 else f"{self.id[:120]}..."
        return f"{self.provenance.source_file} (scenario {scenario_id})"

    @property
    def num_agents(self) -> int:
        return self.tracks.num_agents

    @property
    def num_steps(self) -> int:
        return int(self.t_us.shape[0])

    @property
    def dt_us(self) -> int:
        """Median step [us]."""
        return int(np.median(np.diff(self.t_us))) if self.num_steps > 1 else 0

    @property
    def duration_s(self) -> float:
        return float(self.t_us[-1] - self.t_us[0]) / 1e6

    @property
    def ego_id(self) -> str:
        return str(self.tracks.agent_ids[self.ego_index])

    def replace(self, **changes: Any) -> Scenario:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_ego(self, agent_id: str, scenario_id: str | None = None) -> Scenario:
        """The same scene with another agent as the ego."""
        return self.replace(ego_index=self.tracks.index_of(agent_id), id=scenario_id or self.id)

    def window(self, start: int, stop: int, scenario_id: str | None = None) -> Scenario:
        """Steps ``[start, stop)`` as a scenario; agents never valid in the window are dropped.

        Raises ``ScenarioError`` when the ego is not valid in the window.
        """
        steps = slice(start, stop)
        valid = self.tracks.valid[:, steps]
        keep = np.flatnonzero(valid.any(axis=1))
        if self.ego_index not in keep:
            raise ScenarioError(self.source, "ego", f"the ego is not valid in steps [{start}, {stop})")
        signals = self.signals
        if signals.num_signals:
            signals = Signals(signals.lane_ids, signals.states[:, steps], signals.stop_points)
        else:
            signals = None
        return self.replace(
            id=scenario_id or self.id,
            t_us=self.t_us[steps],
            tracks=self.tracks.select(keep, steps),
            ego_index=int(np.searchsorted(keep, self.ego_index)),
            signals=signals,
        )

    def validate(self) -> None:
        """Raise ``ScenarioError`` on anything that would make the scenario meaningless."""
        src = self.source
        check_text(self.id, src, "id", MAX_SCENARIO_ID_LENGTH)
        for name in ("dataset", "source_file", "source_log_id", "frame", "notes"):
            check_text(getattr(self.provenance, name), src, f"provenance.{name}", max_length=1 << 20)
        for tag in self.tags:
            check_text(tag, src, "tags")
        t = self.t_us
        if t.ndim != 1 or t.size == 0:
            raise ScenarioError(src, "t_us", f"must be a non-empty 1-D array, got shape {t.shape}")
        if t.size > MAX_STEPS:
            raise ScenarioError(src, "t_us", f"{t.size} time steps, more than a scenario may have ({MAX_STEPS})")
        if np.abs(t).max() > MAX_ABS_TIME_US:
            step = int(np.argmax(np.abs(t) > MAX_ABS_TIME_US))
            raise ScenarioError(src, "t_us", f"{t[step]} us at step {step} is beyond +-{MAX_ABS_TIME_US:.0e} us")
        if t.size > 1 and not (np.diff(t) > 0).all():
            step = int(np.argmax(np.diff(t) <= 0)) + 1
            raise ScenarioError(src, "t_us", f"timestamps are not strictly increasing (step {step}: {t[step - 1]} -> {t[step]})")
        if t.size > 1 and np.diff(t).max() > MAX_STEP_US:
            step = int(np.argmax(np.diff(t) > MAX_STEP_US)) + 1
            problem = f"{(t[step] - t[step - 1]) / 1e6:g} s between steps {step - 1} and {step}, more than {MAX_STEP_US / 1e6:g} s"
            raise ScenarioError(src, "t_us", problem)
        self.tracks.validate(src)
        if self.tracks.num_steps != t.size:
            raise ScenarioError(src, "tracks", f"{self.tracks.num_steps} steps but t_us has {t.size}")
        self.tracks.check_motion(src, t)
        if not 0 <= self.ego_index < self.tracks.num_agents:
            raise ScenarioError(src, "ego_index", f"{self.ego_index} is not a track row (0..{self.tracks.num_agents - 1})")
        if not self.tracks.valid[self.ego_index].any():
            raise ScenarioError(src, "ego", f"the ego {self.ego_id!r} is never valid")
        self.road_map.validate(src)
        self.signals.validate(src, t.size)

    def summary(self) -> dict[str, Any]:
        """A one-line description for listings and the CLI."""
        types = np.bincount(self.tracks.agent_types.astype(np.int64), minlength=len(AgentType))
        return {
            "id": self.id,
            "dataset": self.provenance.dataset,
            "source_file": self.provenance.source_file,
            "log_id": self.provenance.source_log_id,
            "ego_id": self.ego_id,
            "num_agents": self.num_agents,
            **{f"num_{t.name.lower()}s": int(types[t.value]) for t in AgentType},
            "num_steps": self.num_steps,
            "dt_s": self.dt_us / 1e6,
            "duration_s": self.duration_s,
            "num_lanes": len(self.road_map.lanes),
            "num_map_features": len(self.road_map.features),
            "num_signals": self.signals.num_signals,
        }


def _arrays_equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _records_equal(a: Any, b: Any) -> bool:
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
            if not _arrays_equal(va, vb):
                return False
        elif isinstance(va, float) and isinstance(vb, float):
            if not (va == vb or (np.isnan(va) and np.isnan(vb))):
                return False
        elif va != vb:
            return False
    return True


def scenarios_equal(a: Scenario, b: Scenario) -> bool:
    """True when every field and every array of two scenarios are identical (NaN equals NaN)."""
    if (a.id, a.provenance, a.ego_index, a.tags, a.conditions) != (b.id, b.provenance, b.ego_index, b.tags, b.conditions):
        return False
    if not _arrays_equal(a.t_us, b.t_us):
        return False
    if not (_records_equal(a.tracks, b.tracks) and _records_equal(a.signals, b.signals)):
        return False
    if len(a.road_map.lanes) != len(b.road_map.lanes) or len(a.road_map.features) != len(b.road_map.features):
        return False
    return all(_records_equal(x, y) for x, y in zip(a.road_map.lanes, b.road_map.lanes)) and all(
        _records_equal(x, y) for x, y in zip(a.road_map.features, b.road_map.features)
    )
