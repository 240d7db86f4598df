"""CommonRoad XML, formats 2018b and 2020a: lanelets, obstacles, traffic signs and traffic lights.

One scenario per file, in the file's own metric frame [m]. Time is an integer step (``<exact>``,
or for an interval its midpoint rounded down to a whole step) times the root's ``timeStepSize``;
step 0 is ``t_us`` 0, and the scenario runs to the last step any obstacle is recorded at. Other
values given as an interval (orientation, velocity) take the interval's midpoint.

Obstacles: 2020a ``<dynamicObstacle>`` / ``<staticObstacle>``, 2018b ``<obstacle>`` with a
``<role>``. A dynamic obstacle is valid only at the steps of its initial state and trajectory;
a static one is valid throughout, still. The velocity in a state is the speed along the
orientation, so ``vx = v cos(yaw)``, ``vy = v sin(yaw)``. CommonRoad gives no heights: see
``HEIGHT_M``. The ``planningProblem`` is a goal for a planned vehicle, not a recorded track,
and is not imported.

Lanelets become lanes (the centerline is the midpoint of the two bounds, see
``centerline_from_bounds``); neighbours only where ``drivingDir="same"``. Speed limits come from
2018b ``<speedLimit>`` or from 2020a max-speed traffic signs (see ``MAX_SPEED_SIGNS``). Line
markings become ``ROAD_LINE`` features, stop lines ``STOP_LINE`` features, crosswalk lanelets
``CROSSWALK`` polygons (sidewalk lanelets are not lanes), and traffic lights ``Signals`` (the
state at each step from the light's cycle).

The files are parsed with ``xml.etree.ElementTree`` (expat), which neither fetches external
entities nor DTDs; a file that declares entities at all is refused, which closes the
entity-expansion attacks that ``defusedxml`` exists for without the extra dependency.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scenarios.errors import ScenarioError
from scenarios.importers.base import (
    agent_type,
    centerline_from_bounds,
    parse_xml,
    pick_ego,
    register,
)
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
    MAX_STEP_US,
    MAX_STEPS,
    MAX_SPEED_LIMIT_MPS,
    check_grid,
    check_text,
    make_scenario_id,
)

DATASET = "commonroad"
ROOT_TAG = "commonRoad"
SUPPORTED_VERSIONS = ("2018b", "2020a")

#: Box height [m] per CommonRoad obstacle type (lower case): CommonRoad gives length and width
#: only. Typical values: a passenger car, an ambulance or police van, a lorry, a city bus, a
#: rider on a motorcycle or bicycle, a standing adult, a train, and static objects.
HEIGHT_M: dict[str, float] = {
    "car": 1.5,
    "taxi": 1.5,
    "parkedvehicle": 1.5,
    "priorityvehicle": 2.0,
    "truck": 3.5,
    "bus": 3.2,
    "motorcycle": 1.4,
    "bicycle": 1.7,
    "pedestrian": 1.75,
    "train": 4.0,
    "constructionzone": 1.0,
    "roadboundary": 0.8,
    "building": 10.0,
    "pillar": 3.0,
    "median_strip": 0.3,
    "unknown": 1.5,
}
#: Height [m] of a type missing from ``HEIGHT_M``.
DEFAULT_HEIGHT_M = 1.5
#: CommonRoad type words whose ``AgentType`` differs from ``base.agent_type``'s reading.
TYPE_OVERRIDES: dict[str, AgentType] = {"parkedvehicle": AgentType.VEHICLE}

#: Traffic sign ids of a maximum speed, per country code (the benchmark id's first part):
#: Germany's StVO sign 274 (and 274.1, the start of a speed zone), the US MUTCD R2-1 "SPEED
#: LIMIT", and 274 for the countries whose ids CommonRoad maps onto the German ones.
MAX_SPEED_SIGNS: dict[str, frozenset[str]] = {
    "DEU": frozenset({"274", "274.1"}),
    "USA": frozenset({"R2-1"}),
    "ZAM": frozenset({"274"}),
    "CHN": frozenset({"274"}),
    "ESP": frozenset({"274"}),
    "RUS": frozenset({"274"}),
}
#: A sign value's unit -> m/s. CommonRoad writes speeds in m/s (SI); a value that names its
#: unit ("50 km/h", "65 mph") is converted.
SPEED_UNITS: dict[str, float] = {"": 1.0, "m/s": 1.0, "mps": 1.0, "km/h": 1 / 3.6, "kmh": 1 / 3.6, "kph": 1 / 3.6, "mph": 0.44704}
#: A time step as CommonRoad writes it: an integer of at most 18 digits (int64).
_STEP = re.compile(r"[-+]?[0-9]{1,18}")
_SPEED = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z/]*)\s*$")

#: Traffic light colours -> ``SignalState``. Red-yellow (about to turn green) still means stop.
LIGHT_STATES: dict[str, SignalState] = {
    "red": SignalState.STOP,
    "redyellow": SignalState.STOP,
    "yellow": SignalState.CAUTION,
    "amber": SignalState.CAUTION,
    "green": SignalState.GO,
    "inactive": SignalState.UNKNOWN,
}

#: Lanelet types -> ``Lane.lane_type``; any other type is "driving".
LANE_TYPES: dict[str, str] = {"buslane": "bus", "busstop": "bus", "bicyclelane": "bike"}
#: Lanelet types that are not lanes: crosswalks become CROSSWALK polygons, sidewalks are dropped.
NOT_LANES = frozenset({"crosswalk", "sidewalk"})
#: Line markings that are no paint.
NO_MARKING = frozenset({"", "no_marking", "unknown"})
#: Line markings that are a kerb: ROAD_EDGE rather than ROAD_LINE.
EDGE_MARKINGS = frozenset({"curb", "lowered_curb"})
#: Bounds whose vertices agree to this many decimals [m] are the same painted line.
DEDUP_DECIMALS = 2


def _sniff(path: Path, head: bytes) -> bool:
    return b"<commonRoad" in head


@register(DATASET, sniff=_sniff, has_logged_ego=False)
def read_commonroad(path: str | Path) -> list[Scenario]:
    """Read a CommonRoad XML file (2018b or 2020a) into one scenario.

    The log has no logged ego: the ego is chosen by ``pick_ego`` (the vehicle observed for the
    most steps, then the one that travels furthest, then the smallest id).

    Raises:
        ScenarioError: naming the file, the field and the problem.
    """
    path = Path(path)
    root = parse_xml(path, ROOT_TAG)
    return [_Reader(path, root).scenario()]





@dataclass(frozen=True, slots=True)
class _Obstacle:
    """One obstacle as read: states at integer steps (position [m], yaw [rad], speed [m/s] or NaN)."""

    id: str
    type_word: str
    static: bool
    length: float
    width: float
    steps: np.ndarray
    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    speed: np.ndarray


@dataclass(frozen=True, slots=True)
class _Lanelet:
    id: str
    left: np.ndarray
    right: np.ndarray
    left_marking: str
    right_marking: str
    predecessors: tuple[str, ...]
    successors: tuple[str, ...]
    left_same: tuple[str, ...]
    right_same: tuple[str, ...]
    left_opposite: tuple[str, ...]
    right_opposite: tuple[str, ...]
    speed_limit: float
    types: tuple[str, ...]
    sign_refs: tuple[str, ...]
    light_refs: tuple[str, ...]
    stop_line: np.ndarray | None


class _Reader:
    """Reads one parsed file; every error names ``path`` and an XPath-like field."""

    def __init__(self, path: Path, root: ET.Element) -> None:
        self.path = path
        self.root = root
        self.notes: list[str] = []

    def fail(self, field: str, problem: str) -> ScenarioError:
        return ScenarioError(self.path, field, problem)

    # ---- values ---------------------------------------------------------------------------

    def number(self, elem: ET.Element | None, field: str) -> float:
        if elem is None or elem.text is None or not elem.text.strip():
            raise self.fail(field, "missing")
        try:
            value = float(elem.text)
        except ValueError:
            raise self.fail(field, f"not a number: {elem.text.strip()!r}") from None
        if not math.isfinite(value):
            raise self.fail(field, f"not a finite number: {elem.text.strip()!r}")
        return value

    def exact_or_mid(self, elem: ET.Element | None, field: str) -> float:
        """``<exact>``, or the midpoint of ``<intervalStart>``/``<intervalEnd>``."""
        if elem is None:
            raise self.fail(field, "missing")
        exact = elem.find("exact")
        if exact is not None:
            return self.number(exact, f"{field}/exact")
        start, end = elem.find("intervalStart"), elem.find("intervalEnd")
        if start is None or end is None:
            raise self.fail(field, "has neither <exact> nor <intervalStart>/<intervalEnd>")
        return 0.5 * (self.number(start, f"{field}/intervalStart") + self.number(end, f"{field}/intervalEnd"))

    def step(self, elem: ET.Element | None, field: str) -> int:
        """An integer time step: ``<exact>`` or an interval's midpoint rounded down."""
        if elem is None:
            raise self.fail(field, "missing")
        parts = [elem.find("exact")] if elem.find("exact") is not None else [elem.find("intervalStart"), elem.find("intervalEnd")]
        if any(p is None for p in parts):
            raise self.fail(field, "has neither <exact> nor <intervalStart>/<intervalEnd>")
        values = []
        for part in parts:
            text = (part.text or "").strip()
            if not _STEP.fullmatch(text):  # also keeps int() from a 5000-digit number
                raise self.fail(f"{field}/{part.tag}", f"not an integer time step: {text[:60]!r}")
            values.append(int(text))
        value = values[0] if len(values) == 1 else (values[0] + values[1]) // 2
        if value < 0:
            raise self.fail(field, f"negative time step {value}")
        return value

    def point(self, elem: ET.Element | None, field: str) -> tuple[float, float]:
        if elem is None:
            raise self.fail(field, "missing")
        return self.number(elem.find("x"), f"{field}/x"), self.number(elem.find("y"), f"{field}/y")

    def polyline(self, elem: ET.Element | None, field: str, min_points: int = 2) -> np.ndarray:
        if elem is None:
            raise self.fail(field, "missing")
        points = [self.point(p, f"{field}/point[{k + 1}]") for k, p in enumerate(elem.findall("point"))]
        if len(points) < min_points:
            raise self.fail(field, f"has {len(points)} points, needs at least {min_points}")
        return np.array(points, dtype=np.float64)

    def position(self, elem: ET.Element | None, field: str) -> tuple[float, float]:
        """A state's position: its point, or the centre of a rectangle, circle or polygon."""
        if elem is None:
            raise self.fail(field, "missing")
        if elem.find("point") is not None:
            return self.point(elem.find("point"), f"{field}/point")
        for shape in ("rectangle", "circle"):
            found = elem.find(shape)
            if found is not None:
                center = found.find("center")
                return self.point(center, f"{field}/{shape}/center") if center is not None else (0.0, 0.0)
        polygon = elem.find("polygon")
        if polygon is not None:
            return tuple(self.polyline(polygon, f"{field}/polygon", 3).mean(axis=0))  # type: ignore[return-value]
        raise self.fail(field, "has no <point>, <rectangle>, <circle> or <polygon>")

    # ---- header ---------------------------------------------------------------------------

    def header(self) -> tuple[str, str, int]:
        version = self.root.get("commonRoadVersion")
        if version is None:
            raise self.fail("commonRoadVersion", "missing on <commonRoad>")
        if version not in SUPPORTED_VERSIONS:
            raise self.fail("commonRoadVersion", f"unsupported format {version!r}; supported: {', '.join(SUPPORTED_VERSIONS)}")
        benchmark_id = check_text((self.root.get("benchmarkID") or "").strip(), self.path, "benchmarkID")
        if not benchmark_id:
            raise self.fail("benchmarkID", "missing on <commonRoad>")
        text = self.root.get("timeStepSize")
        if text is None:
            raise self.fail("timeStepSize", "missing on <commonRoad>")
        try:
            dt_s = float(text)
        except ValueError:
            raise self.fail("timeStepSize", f"not a number: {text!r}") from None
        if not (math.isfinite(dt_s) and 0 < dt_s <= MAX_STEP_US / 1e6):
            raise self.fail("timeStepSize", f"must be a positive number of seconds up to {MAX_STEP_US / 1e6:g}, got {text[:60]!r}")
        dt_us = int(round(dt_s * 1e6))
        if dt_us <= 0:
            raise self.fail("timeStepSize", f"{text} s is shorter than a microsecond")
        return version, benchmark_id, dt_us

    def tags(self, version: str) -> tuple[str, ...]:
        if version == "2018b":
            return tuple(self.root.get("tags", "").split())
        node = self.root.find("scenarioTags")
        return tuple(child.tag for child in node) if node is not None else ()

    def country(self, benchmark_id: str) -> str:
        return benchmark_id.removeprefix("C-").split("_", 1)[0].upper()

    # ---- obstacles ------------------------------------------------------------------------

    def obstacles(self, version: str) -> list[_Obstacle]:
        found: list[_Obstacle] = []
        if version == "2018b":
            for elem in self.root.findall("obstacle"):
                oid = self.id_of(elem, "obstacle")
                role = (elem.findtext("role") or "").strip()
                if role not in ("static", "dynamic"):
                    raise self.fail(f"obstacle[@id={oid}]/role", f"must be 'static' or 'dynamic', got {role!r}")
                found.append(self.obstacle(elem, f"obstacle[@id={oid}]", static=role == "static"))
        else:
            for elem in self.root.findall("staticObstacle"):
                found.append(self.obstacle(elem, f"staticObstacle[@id={self.id_of(elem, 'staticObstacle')}]", static=True))
            for elem in self.root.findall("dynamicObstacle"):
                found.append(self.obstacle(elem, f"dynamicObstacle[@id={self.id_of(elem, 'dynamicObstacle')}]", static=False))
        ids = [o.id for o in found]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise self.fail("obstacle id", f"duplicate obstacle ids {duplicates[:5]}")
        return found

    def id_of(self, elem: ET.Element, tag: str) -> str:
        """An element's ``id`` attribute ("?" when it has none), refused when too long or not text."""
        return check_text((elem.get("id") or "?").strip(), self.path, f"{tag}/@id")

    def obstacle(self, elem: ET.Element, field: str, *, static: bool) -> _Obstacle:
        oid = (elem.get("id") or "").strip()
        if not oid:
            raise self.fail(field, "has no id attribute")
        type_word = (elem.findtext("type") or "").strip()
        if not type_word:
            raise self.fail(f"{field}/type", "missing")
        length, width = self.shape(elem.find("shape"), f"{field}/shape")
        states: list[tuple[ET.Element, str]] = []
        initial = elem.find("initialState")
        if initial is not None:
            states.append((initial, f"{field}/initialState"))
        trajectory = elem.findall("trajectory/state")
        if static:  # a static obstacle stands where its initial (or, lacking one, first) state puts it
            trajectory = trajectory[:1] if initial is None else []
        states += [(s, f"{field}/trajectory/state[{k + 1}]") for k, s in enumerate(trajectory)]
        if not static and elem.find("occupancySet") is not None:
            self.notes.append(f"obstacle {oid}'s occupancy set (a prediction, not a record) is ignored")
        if not states:
            raise self.fail(field, "has no initialState and no trajectory states")
        steps, xs, ys, yaws, speeds = [], [], [], [], []
        for state, where in states:
            step = self.step(state.find("time"), f"{where}/time")
            if steps and step == steps[-1]:
                raise self.fail(f"{where}/time", f"duplicate time step {step} for obstacle {oid}")
            if steps and step < steps[-1]:
                raise self.fail(f"{where}/time", f"time steps decrease for obstacle {oid} ({step} after {steps[-1]})")
            x, y = self.position(state.find("position"), f"{where}/position")
            steps.append(step)
            xs.append(x)
            ys.append(y)
            yaws.append(self.exact_or_mid(state.find("orientation"), f"{where}/orientation"))
            velocity = state.find("velocity")
            if static:
                speeds.append(0.0)
            else:
                speeds.append(math.nan if velocity is None else self.exact_or_mid(velocity, f"{where}/velocity"))
        arrays = (np.array(v, dtype=np.float64) for v in (xs, ys, yaws, speeds))
        return _Obstacle(oid, type_word, static, length, width, np.array(steps), *arrays)

    def shape(self, elem: ET.Element | None, field: str) -> tuple[float, float]:
        """Length and width [m] of an obstacle's shape (the first rectangle, circle or polygon)."""
        if elem is None:
            raise self.fail(field, "missing")
        rectangle = elem.find("rectangle")
        if rectangle is None and elem.find("shapeGroup") is not None:
            return self.shape(elem.find("shapeGroup"), f"{field}/shapeGroup")
        if rectangle is not None:
            length = self.number(rectangle.find("length"), f"{field}/rectangle/length")
            width = self.number(rectangle.find("width"), f"{field}/rectangle/width")
        elif elem.find("circle") is not None:
            length = width = 2 * self.number(elem.find("circle/radius"), f"{field}/circle/radius")
        elif elem.find("polygon") is not None:
            points = self.polyline(elem.find("polygon"), f"{field}/polygon", 3)
            length, width = (float(v) for v in np.ptp(points, axis=0))
        else:
            raise self.fail(field, "has no <rectangle>, <circle> or <polygon>")
        if length < 0 or width < 0:
            raise self.fail(field, f"negative size {length} x {width}")
        return length, width

    def tracks(self, obstacles: list[_Obstacle], dt_us: int) -> Tracks:
        last = max((int(o.steps[-1]) for o in obstacles), default=0)
        if last + 1 > MAX_STEPS:
            raise self.fail("time", f"time step {last} is beyond {MAX_STEPS - 1}; a corrupt file?")
        n, t = len(obstacles), last + 1
        check_grid(self.path, "time", n, t)
        arrays = {name: np.zeros((n, t)) for name in ("x", "y", "z", "yaw", "vx", "vy")}
        valid = np.zeros((n, t), dtype=bool)
        types = np.zeros(n, dtype=np.int8)
        heights = np.zeros(n)
        derived: list[str] = []
        for row, o in enumerate(obstacles):
            key = o.type_word.lower()
            types[row] = TYPE_OVERRIDES.get(key, agent_type(o.type_word))
            heights[row] = HEIGHT_M.get(key, DEFAULT_HEIGHT_M)
            if o.static:
                cols = slice(None)
                x, y, yaw = o.x[0], o.y[0], o.yaw[0]
                vx = vy = 0.0
            else:
                cols = o.steps
                x, y, yaw = o.x, o.y, o.yaw
                if np.isnan(o.speed).any():
                    derived.append(o.id)
                    vx, vy = _velocity_from_positions(o.steps * (dt_us / 1e6), o.x, o.y)
                else:
                    vx, vy = o.speed * np.cos(o.yaw), o.speed * np.sin(o.yaw)
            for name, value in (("x", x), ("y", y), ("yaw", yaw), ("vx", vx), ("vy", vy)):
                arrays[name][row, cols] = value
            valid[row, cols] = True
        if derived:
            self.notes.append(f"obstacles without a velocity, derived from their positions: {derived[:10]}")
        return Tracks(
            agent_ids=np.array([o.id for o in obstacles]),
            agent_types=types,
            length=np.array([o.length for o in obstacles]),
            width=np.array([o.width for o in obstacles]),
            height=heights,
            valid=valid,
            **arrays,
        )

    # ---- lanelets -------------------------------------------------------------------------

    def lanelets(self) -> list[_Lanelet]:
        out = []
        for elem in self.root.findall("lanelet"):
            lid = check_text((elem.get("id") or "").strip(), self.path, "lanelet/@id")  # before it is in a field name
            field = f"lanelet[@id={lid or '?'}]"
            if not lid:
                raise self.fail(field, "has no id attribute")
            left = self.polyline(elem.find("leftBound"), f"{field}/leftBound")
            right = self.polyline(elem.find("rightBound"), f"{field}/rightBound")
            speed = math.nan
            if elem.find("speedLimit") is not None:
                speed = self.number(elem.find("speedLimit"), f"{field}/speedLimit")
                if not 0 < speed <= MAX_SPEED_LIMIT_MPS:
                    raise self.fail(f"{field}/speedLimit", f"{speed!r} m/s is not a speed limit in (0, {MAX_SPEED_LIMIT_MPS:g}]")
            stop_line = None
            stop = elem.find("stopLine")
            if stop is not None:
                points = self.polyline(stop, f"{field}/stopLine", min_points=0)
                stop_line = points if len(points) >= 2 else np.array([left[-1], right[-1]])
            refs = lambda tag: tuple((e.get("ref") or "").strip() for e in elem.findall(tag))  # noqa: E731
            adjacent = lambda tag, same: tuple(  # noqa: E731
                (e.get("ref") or "").strip() for e in elem.findall(tag) if (e.get("drivingDir") == "same") == same
            )
            out.append(
                _Lanelet(
                    id=lid,
                    left=left,
                    right=right,
                    left_marking=(elem.findtext("leftBound/lineMarking") or "").strip().lower(),
                    right_marking=(elem.findtext("rightBound/lineMarking") or "").strip().lower(),
                    predecessors=refs("predecessor"),
                    successors=refs("successor"),
                    left_same=adjacent("adjacentLeft", same=True),
                    right_same=adjacent("adjacentRight", same=True),
                    left_opposite=adjacent("adjacentLeft", same=False),
                    right_opposite=adjacent("adjacentRight", same=False),
                    speed_limit=speed,
                    types=tuple((e.text or "").strip() for e in elem.findall("laneletType")),
                    sign_refs=refs("trafficSignRef"),
                    light_refs=refs("trafficLightRef"),
                    stop_line=stop_line,
                )
            )
        ids = [ll.id for ll in out]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise self.fail("lanelet id", f"duplicate lanelet ids {duplicates[:5]}")
        return out

    def sign_speeds(self, country: str) -> dict[str, float]:
        """Max speed [m/s] of each 2020a traffic sign that sets one."""
        ids = MAX_SPEED_SIGNS.get(country, frozenset().union(*MAX_SPEED_SIGNS.values()))
        speeds: dict[str, float] = {}
        for sign in self.root.findall("trafficSign"):
            sid = (sign.get("id") or "").strip()
            for k, element in enumerate(sign.findall("trafficSignElement")):
                if (element.findtext("trafficSignID") or "").strip() not in ids:
                    continue
                field = f"trafficSign[@id={sid}]/trafficSignElement[{k + 1}]/additionalValue"
                value = element.findtext("additionalValue")
                if value is None:
                    raise self.fail(field, "a max-speed sign without its speed")
                speed = self.speed(value, field)
                speeds[sid] = min(speed, speeds.get(sid, math.inf))
        return speeds

    def speed(self, text: str, field: str) -> float:
        match = _SPEED.match(text)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in SPEED_UNITS:
            raise self.fail(field, f"not a speed: {text!r} (a number in m/s, or with km/h or mph)")
        value = float(match.group(1)) * SPEED_UNITS[unit]
        if not 0 < value <= MAX_SPEED_LIMIT_MPS:
            raise self.fail(field, f"speed limit must be in (0, {MAX_SPEED_LIMIT_MPS:g}] m/s, got {text[:60]!r}")
        return value

    def road_map(self, lanelets: list[_Lanelet], sign_speeds: dict[str, float]) -> RoadMap:
        lane_ids = {ll.id for ll in lanelets if not set(t.lower() for t in ll.types) & NOT_LANES}
        keep = lambda ids: tuple(i for i in ids if i in lane_ids)  # noqa: E731
        lanes, features = [], []
        seen_lines: set[tuple] = set()
        dropped = []
        for ll in lanelets:
            types = [t.lower() for t in ll.types]
            if "crosswalk" in types:
                features.append(MapFeature(f"crosswalk-{ll.id}", FeatureKind.CROSSWALK, np.vstack([ll.left, ll.right[::-1]])))
                continue
            if ll.id not in lane_ids:
                dropped.append(ll.id)
                continue
            speed = ll.speed_limit
            signed = [sign_speeds[s] for s in ll.sign_refs if s in sign_speeds]
            if signed:
                speed = min(signed)
            lane_type = next((LANE_TYPES[t] for t in types if t in LANE_TYPES), "driving")
            lanes.append(
                Lane(
                    id=ll.id,
                    centerline=centerline_from_bounds(ll.left, ll.right),
                    left_boundary=ll.left,
                    right_boundary=ll.right,
                    speed_limit=speed,
                    lane_type=lane_type,
                    predecessors=keep(ll.predecessors),
                    successors=keep(ll.successors),
                    left_neighbors=keep(ll.left_same),
                    right_neighbors=keep(ll.right_same),
                )
            )
            for side, bound, marking in (("left", ll.left, ll.left_marking), ("right", ll.right, ll.right_marking)):
                if marking in NO_MARKING or not _owns_bound(ll, side):
                    continue
                key = tuple(np.round(bound, DEDUP_DECIMALS).ravel())
                key_reversed = tuple(np.round(bound[::-1], DEDUP_DECIMALS).ravel())
                if key in seen_lines or key_reversed in seen_lines:
                    continue
                seen_lines.add(key)
                kind = FeatureKind.ROAD_EDGE if marking in EDGE_MARKINGS else FeatureKind.ROAD_LINE
                features.append(MapFeature(f"{side}-bound-{ll.id}", kind, bound, subtype=marking, lane_ids=(ll.id,)))
            if ll.stop_line is not None:
                features.append(MapFeature(f"stop-line-{ll.id}", FeatureKind.STOP_LINE, ll.stop_line, lane_ids=(ll.id,)))
        if dropped:
            self.notes.append(f"sidewalk lanelets are not lanes and were dropped: {dropped[:10]}")
        return RoadMap.from_parts(lanes, features)

    # ---- traffic lights -------------------------------------------------------------------

    def signals(self, lanelets: list[_Lanelet], road_map: RoadMap, num_steps: int) -> Signals | None:
        lights = {(e.get("id") or "").strip(): e for e in self.root.findall("trafficLight")}
        lane_ids = {lane.id for lane in road_map.lanes}
        rows_lanes, rows_states, rows_stops = [], [], []
        for ll in lanelets:
            if ll.id not in lane_ids:
                continue
            for ref in ll.light_refs:
                if ref not in lights:
                    raise self.fail(f"lanelet[@id={ll.id}]/trafficLightRef", f"refers to traffic light {ref!r}, not in the file")
                rows_lanes.append(ll.id)
                rows_states.append(self.light_states(lights[ref], f"trafficLight[@id={ref}]", num_steps))
                ends = ll.stop_line if ll.stop_line is not None else np.array([ll.left[-1], ll.right[-1]])
                mid = ends.mean(axis=0)
                rows_stops.append([mid[0], mid[1], 0.0])
        if not rows_lanes:
            return None
        return Signals(np.array(rows_lanes), np.array(rows_states, dtype=np.int8), np.array(rows_stops))

    def light_states(self, light: ET.Element, field: str, num_steps: int) -> np.ndarray:
        """The light's ``SignalState`` at each step 0..num_steps-1 from its repeating cycle."""
        active = (light.findtext("active") or "true").strip().lower() != "false"
        cycle = light.find("cycle")
        if cycle is None or not cycle.findall("cycleElement"):
            raise self.fail(f"{field}/cycle", "missing or without cycle elements")
        durations, states = [], []
        for k, element in enumerate(cycle.findall("cycleElement")):
            where = f"{field}/cycle/cycleElement[{k + 1}]"
            duration = self.number(element.find("duration"), f"{where}/duration")
            if not 0 < duration <= MAX_STEPS or duration != int(duration):
                raise self.fail(f"{where}/duration", f"must be a whole number of steps in [1, {MAX_STEPS}], got {duration:g}")
            colour = (element.findtext("color") or "").strip().lower().replace("_", "")
            if colour not in LIGHT_STATES:
                raise self.fail(f"{where}/color", f"unknown colour {colour!r}; known: {sorted(LIGHT_STATES)}")
            durations.append(int(duration))
            states.append(LIGHT_STATES[colour])
        offset_elem = cycle.find("timeOffset")
        if offset_elem is None:
            offset_elem = light.find("offset")
        offset = int(self.number(offset_elem, f"{field}/cycle/timeOffset")) if offset_elem is not None else 0
        if not active:
            return np.full(num_steps, SignalState.UNKNOWN, dtype=np.int8)
        starts = np.cumsum([0, *durations])
        offset %= int(starts[-1])  # exact in Python ints: a huge offset is one within the cycle
        phase = (np.arange(num_steps) - offset) % starts[-1]
        index = np.searchsorted(starts, phase, side="right") - 1
        return np.array(states, dtype=np.int8)[index]

    # ---- the scenario ---------------------------------------------------------------------

    def scenario(self) -> Scenario:
        version, benchmark_id, dt_us = self.header()
        obstacles = self.obstacles(version)
        if not obstacles:
            raise self.fail("obstacles", "the file has no obstacles (no road users to replay)")
        tracks = self.tracks(obstacles, dt_us)
        lanelets = self.lanelets()
        sign_speeds = self.sign_speeds(self.country(benchmark_id)) if version != "2018b" else {}
        road_map = self.road_map(lanelets, sign_speeds)
        if not road_map.lanes:
            raise self.fail("lanelet", "the file has no lanelets (an empty map)")
        signals = self.signals(lanelets, road_map, tracks.num_steps)
        try:
            ego = pick_ego(tracks)
        except ScenarioError as exc:
            raise self.fail("ego", exc.problem) from None
        planning = len(self.root.findall("planningProblem"))
        notes = [
            f"CommonRoad {version}; no logged ego: the ego was chosen by pick_ego (the vehicle observed for the most "
            "steps, then the one that travels furthest, then the smallest id)",
            f"{planning} planningProblem(s) ignored: a goal for a planned vehicle, not a recorded track",
            "heights are per-type defaults (CommonRoad gives length and width only)",
            *self.notes,
        ]
        return Scenario(
            id=make_scenario_id(DATASET, benchmark_id),
            provenance=Provenance(
                dataset=DATASET,
                source_file=str(self.path),
                source_log_id=benchmark_id,
                frame="CommonRoad scenario frame [m], as in the file; t_us = time step x timeStepSize",
                notes="; ".join(notes),
            ),
            t_us=np.arange(tracks.num_steps, dtype=np.int64) * dt_us,
            tracks=tracks,
            ego_index=ego,
            road_map=road_map,
            signals=signals,
            tags=self.tags(version),
        )


def _owns_bound(lanelet: _Lanelet, side: str) -> bool:
    """Whether a lanelet's bound is the one copy of a line its neighbour also describes.

    A same-direction neighbour's shared line is its left neighbour's right bound; a line shared
    with an opposite-direction neighbour (both lanelets' left bounds) belongs to the smaller id.
    """
    if side == "left":
        if lanelet.left_same:
            return False
        return all(_id_key(lanelet.id) < _id_key(other) for other in lanelet.left_opposite)
    return all(_id_key(lanelet.id) < _id_key(other) for other in lanelet.right_opposite)


def _id_key(text: str) -> tuple[int, int, str]:
    """Order ids numerically where they are numbers."""
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def _velocity_from_positions(t_s: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Velocity [m/s] by differences of positions [m] over the times ``t_s`` [s] of the states."""
    if len(t_s) < 2:
        return np.zeros(len(t_s)), np.zeros(len(t_s))
    with np.errstate(over="ignore", invalid="ignore"):  # absurd positions are refused by the model
        return np.gradient(x, t_s), np.gradient(y, t_s)
