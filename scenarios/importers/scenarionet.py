"""ScenarioNet scenario descriptions: Waymo, nuScenes, nuPlan, Argoverse 2 as converted by ScenarioNet.

A ScenarioNet file is a Python pickle of one dict: ``id``, ``version``, ``length``, ``metadata``
(``sdc_id``, ``ts``, ``dataset``, ``scenario_id``, ...), ``tracks`` {id: {type, state, metadata}},
``map_features`` {id: {type, polyline | polygon, ...}} and ``dynamic_map_states`` (traffic lights).

**Safety.** ``pickle.load`` runs whatever callable a file names. Files are read with
``_SafeUnpickler``, whose ``find_class`` returns only the objects in ``_ALLOWED`` (what numpy
arrays, numpy scalars, dtypes and sets need, and the converters' ``collections.defaultdict``
with a built-in factory and ``collections.OrderedDict``, each through a wrapper that accepts
only the arguments pickles write; a named built-in type resolves to an inert token that only
the defaultdict wrapper turns back into the type) and raises ``ScenarioError(path, "pickle", "refused
to load <module>.<name>: ...")`` for anything else, before it is imported or called. Before
that, ``_prescan`` walks the opcodes (``pickletools.genops``, which builds nothing): refused
GLOBALs, extension/persistent-id/buffer opcodes and memo indices that would make the
unpickler allocate gigabytes stop there. ``numpy.ndarray`` resolves to a token only
``_reconstruct`` accepts, and nested lists may expand to at most ``MAX_FIELD_ELEMENTS`` numbers,
so a small file cannot claim unbounded memory either.

**Decisions** (also written into each scenario's provenance notes where they apply):

- Dataset name ``"scenarionet-<metadata.dataset>"`` (``"scenarionet-nuscenes"``, ``"scenarionet-waymo"``);
  log id ``metadata.scenario_id``, else the top-level ``id``; one scenario per file.
- Time: ``metadata.ts`` [s] rounded to integer microseconds; when every step lies within 2 us
  of a uniform grid (float32 timestamps), the grid itself. Without ``ts``: step x
  ``metadata.sample_rate`` [s].
- Sizes: ScenarioNet stores a size per step; each agent gets the median over its valid steps.
  A vehicle whose length is less than its width is taken as swapped (ScenarioNet's nuScenes
  converter writes the ego's 4.08 m x 1.73 m the wrong way round).
- Types: the track's ScenarioNet ``type`` through ``agent_type``; TRAFFIC_CONE, TRAFFIC_BARRIER,
  UNSET, OTHER become ``OTHER``. Agents never valid are dropped.
- Map: LANE_* -> ``Lane`` (entry/exit -> predecessors/successors, neighbours kept when they
  name a lane of the file; speed limit mph or km/h -> m/s, 0 or absent -> NaN); a lane's
  ``polygon`` -> a DRIVABLE_AREA feature ``drivable-<lane id>``, lanes without one get the
  widened centerline as ``derived_from_lane``. ROAD_LINE_* -> ROAD_LINE (subtype e.g.
  ``broken_single_white``), ``UNKNOWN`` -> ROAD_LINE ``unknown``; ROAD_EDGE_*, BOUNDARY_LINE,
  GUARDRAIL -> ROAD_EDGE; CROSSWALK, SPEED_BUMP, DRIVEWAY -> polygons; STOP_SIGN -> a point
  with its lanes; STOP_LINE -> STOP_LINE. Other types are skipped and counted in the notes.
- Lane centerlines whose third column is the segment heading (nuScenes' ``discretize_lane``
  poses ``(x, y, yaw)``) are recognised by comparing it with the polyline's own heading, and
  get z = 0.
- A file with no lane topology at all (nuScenes' converter writes none) gets successor links
  inferred from geometry (``base.infer_lane_links``: a lane starting within 0.1 m of another's
  end, heading within 60 deg), so a lane seam is not "between lanes" to the evaluators.
- nuScenes only: ``boundary_*`` lines are the outlines of the drivable area (typed as solid
  white lines by the converter) and become ROAD_EDGE ``drivable_area_boundary``; the converter's
  constant ``speed_limit_kmh`` 100 on lane connectors is a placeholder and is dropped (NaN).
- Traffic lights: ``dynamic_map_states`` -> ``Signals`` via ``SIGNAL_STATES``; ``None`` and
  unrecognised states are UNKNOWN.
"""

from __future__ import annotations

import collections
import importlib
import io
import pickle
import pickletools
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from scenarios.errors import ScenarioError
from scenarios.importers.base import LINK_MAX_TURN_RAD, LINK_TOLERANCE_M, agent_type, infer_lane_links, register
from scenarios.model import (
    POLYGON_KINDS,
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
    MAX_SPEED_LIMIT_MPS,
    MAX_STEP_US,
    MAX_STEPS,
    check_grid,
    check_text,
    make_scenario_id,
    safe_id_part,
)

__all__ = ["SIGNAL_STATES", "read_scenarionet", "signal_state"]

#: Miles per hour to metres per second.
MPH_TO_MPS = 0.44704
#: Kilometres per hour to metres per second.
KMH_TO_MPS = 1.0 / 3.6
#: Largest distance [us] of a timestamp from a uniform grid for the grid to be used instead.
GRID_TOLERANCE_US = 2
#: Median distance [rad] between a lane polyline's third column and its segment headings below
#: which that column is read as a heading rather than a height.
HEADING_COLUMN_TOLERANCE_RAD = 0.1
#: Largest file read [bytes]; ScenarioNet descriptions are a few MB.
MAX_FILE_BYTES = 1 << 30
#: Most numbers one field may expand to from nested lists (memo references can multiply them).
MAX_FIELD_ELEMENTS = 10_000_000
#: Opcodes a scenario description never needs: extension registry, persistent ids, out-of-band buffers.
_REFUSED_OPCODES = frozenset({"EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID", "NEXT_BUFFER", "READONLY_BUFFER"})
#: Largest |timestamp| [s] accepted (the model's bound; int64 microseconds hold about 9e12 s).
_MAX_TIME_S = MAX_ABS_TIME_US / 1e6
#: Top-level keys of a scenario description; one of them must be in a file's first bytes.
_SNIFF_KEYS = (b"metadata", b"tracks", b"map_features", b"dynamic_map_states")

#: ScenarioNet / MetaDrive / Waymo traffic-light state -> ``SignalState``.
SIGNAL_STATES: dict[str, SignalState] = {
    "LANE_STATE_UNKNOWN": SignalState.UNKNOWN,
    "LANE_STATE_ARROW_STOP": SignalState.STOP,
    "LANE_STATE_ARROW_CAUTION": SignalState.CAUTION,
    "LANE_STATE_ARROW_GO": SignalState.GO,
    "LANE_STATE_STOP": SignalState.STOP,
    "LANE_STATE_CAUTION": SignalState.CAUTION,
    "LANE_STATE_GO": SignalState.GO,
    "LANE_STATE_FLASHING_STOP": SignalState.FLASHING_STOP,
    "LANE_STATE_FLASHING_CAUTION": SignalState.FLASHING_CAUTION,
    "TRAFFIC_LIGHT_RED": SignalState.STOP,
    "TRAFFIC_LIGHT_YELLOW": SignalState.CAUTION,
    "TRAFFIC_LIGHT_GREEN": SignalState.GO,
    "TRAFFIC_LIGHT_UNKNOWN": SignalState.UNKNOWN,
}
#: Waymo's ``TrafficSignalLaneState`` enum values, in order, for files that store integers.
_WAYMO_SIGNAL_ORDER = (
    "LANE_STATE_UNKNOWN",
    "LANE_STATE_ARROW_STOP",
    "LANE_STATE_ARROW_CAUTION",
    "LANE_STATE_ARROW_GO",
    "LANE_STATE_STOP",
    "LANE_STATE_CAUTION",
    "LANE_STATE_GO",
    "LANE_STATE_FLASHING_STOP",
    "LANE_STATE_FLASHING_CAUTION",
)

_TRACK_FIELDS = ("agent_ids", "agent_types", "length", "width", "height", "x", "y", "z", "yaw", "vx", "vy", "valid")
#: (``Lane`` field, ScenarioNet lane key).
_LANE_TOPOLOGY = (
    ("predecessors", "entry_lanes"),
    ("successors", "exit_lanes"),
    ("left_neighbors", "left_neighbor"),
    ("right_neighbors", "right_neighbor"),
)
_NUSCENES_NOTE = "nuScenes 2 Hz labels interpolated to 10 Hz by ScenarioNet; velocities are its finite differences"
_NUSCENES_MAP_NOTE = (
    "nuScenes boundary_* lines (drivable-area outlines) read as road edges; placeholder lane speed limits dropped"
)
_LANE_TYPES = {
    "LANE_FREEWAY": "driving",
    "LANE_SURFACE_STREET": "driving",
    "LANE_BIKE_LANE": "bike",
    "LANE_SURFACE_UNSTRUCTURE": "unstructured",
    "LANE_UNKNOWN": "unknown",
}
_POLYGON_TYPES = {
    "CROSSWALK": FeatureKind.CROSSWALK,
    "SPEED_BUMP": FeatureKind.SPEED_BUMP,
    "DRIVEWAY": FeatureKind.DRIVEWAY,
}


# --------------------------------------------------------------------------- safe unpickling


def _numpy_object(modules: tuple[str, ...], name: str) -> Any:
    """``name`` from the first of ``modules`` that has it (numpy 2 moved ``core`` to ``_core``)."""
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {name} in {modules}")


def _latin1_encode(text: object, encoding: object = "latin1", errors: object = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``: latin-1 of a str, nothing else."""
    if not isinstance(text, str) or str(encoding).lower().replace("-", "").replace("_", "") != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is only allowed to turn a str into latin-1 bytes")
    return text.encode("latin-1")


_NUMPY_RECONSTRUCT = _numpy_object(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")


class _NdarrayToken:
    """What ``numpy.ndarray`` resolves to in a pickle: a token that only ``_reconstruct`` accepts.

    The real class must not reach the pickle: called through REDUCE, ``ndarray(shape, object,
    buffer=bytes)`` would make an object array of pointers read from the file.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<numpy.ndarray, for _reconstruct only>"


_NDARRAY_TOKEN = _NdarrayToken()


def _reconstruct(subtype: object, shape: object, dtype: object) -> np.ndarray:
    """numpy's ``_reconstruct(ndarray, (0,), b"b")``, the empty array ``__setstate__`` then fills.

    numpy always writes exactly these arguments; any other shape could allocate (and for an
    object dtype, fill) an array of any size before the file's data is checked.
    """
    if subtype is not _NDARRAY_TOKEN or not (isinstance(shape, tuple) and shape == (0,)) or dtype != b"b":
        raise pickle.UnpicklingError("_reconstruct is only allowed as numpy writes it: (ndarray, (0,), b'b')")
    return _NUMPY_RECONSTRUCT(np.ndarray, (0,), b"b")


class _FactoryToken:
    """What a built-in type named in a pickle resolves to: a token only ``_defaultdict`` accepts.

    ScenarioNet's converters write ``collections.defaultdict(int)`` and friends, which pickle as
    ``defaultdict(<factory>)``; the factory itself must not become callable from the pickle.
    """

    __slots__ = ("factory",)

    def __init__(self, factory: type) -> None:
        self.factory = factory

    def __repr__(self) -> str:
        return f"<builtins.{self.factory.__name__}, as a defaultdict factory only>"


#: Built-in types a ``defaultdict`` in a ScenarioNet pickle may take as its factory.
DEFAULTDICT_FACTORIES: tuple[type, ...] = (int, float, bool, str, bytes, list, dict, tuple, set, frozenset)
_FACTORY_TOKENS = {factory.__name__: _FactoryToken(factory) for factory in DEFAULTDICT_FACTORIES}


def _defaultdict(*args: object) -> collections.defaultdict:
    """``collections.defaultdict(factory)`` as pickles write it: no factory, or one of the allowed built-ins."""
    if len(args) > 1:
        raise pickle.UnpicklingError("collections.defaultdict is only allowed with one factory argument")
    factory = args[0] if args else None
    if factory is set or factory is frozenset:
        return collections.defaultdict(factory)
    if factory is not None and not isinstance(factory, _FactoryToken):
        raise pickle.UnpicklingError(
            f"collections.defaultdict is only allowed with a built-in factory ({', '.join(_FACTORY_TOKENS)})"
        )
    return collections.defaultdict(factory.factory if factory is not None else None)


def _ordered_dict(*args: object) -> collections.OrderedDict:
    """``collections.OrderedDict()`` as pickles write it: empty, filled by SETITEMS afterwards."""
    if args:
        raise pickle.UnpicklingError("collections.OrderedDict is only allowed as pickles write it: with no arguments")
    return collections.OrderedDict()


_SCALAR = _numpy_object(("numpy._core.multiarray", "numpy.core.multiarray"), "scalar")
_FROMBUFFER = _numpy_object(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")

#: Every global a ScenarioNet pickle may name, and what it resolves to. Nothing else is imported.
_ALLOWED: dict[tuple[str, str], Any] = {
    # ndarray.__reduce__: _reconstruct(ndarray, (0,), b"b") then __setstate__ (protocols 2-4;
    # numpy < 2 writes numpy.core, numpy 2 numpy._core).
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY_TOKEN,  # the subtype _reconstruct builds; never the callable class
    ("numpy", "dtype"): np.dtype,  # every array's and scalar's dtype (numpy refuses object data from bytes)
    # numpy scalars (np.float32(1.5) in a dict) reduce to scalar(dtype, bytes).
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    # ndarray.__reduce_ex__(5): _frombuffer(buffer, dtype, shape, order).
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    # protocol 2 writes bytes (array data) as _codecs.encode(str, "latin1"); wrapped to allow only that.
    ("_codecs", "encode"): _latin1_encode,
    # protocols 2-3 have no set opcodes (ScenarioNet's number_summary holds sets).
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,  # protocol 2 as Python 3 writes it (fix_imports)
    ("__builtin__", "frozenset"): frozenset,
    # the converters' containers (ScenarioNet's Waymo converter writes defaultdict(int)): the
    # factory resolves to a token, which only _defaultdict turns back into the built-in.
    ("collections", "defaultdict"): _defaultdict,
    ("collections", "OrderedDict"): _ordered_dict,
    **{
        (module, name): token
        for module in ("builtins", "__builtin__")
        for name, token in _FACTORY_TOKENS.items()
        if name not in ("set", "frozenset")  # already the real types, which protocols 2-3 call to build sets
    },
    # protocol 2 as Python 3 writes int and str (fix_imports: Python 2's names)
    ("__builtin__", "long"): _FACTORY_TOKENS["int"],
    ("__builtin__", "unicode"): _FACTORY_TOKENS["str"],
}


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``_ALLOWED``.

    numpy itself refuses object arrays and object scalars built from raw bytes (``__setstate__``,
    ``_frombuffer``, ``scalar``), and ``ndarray(buffer=...)`` is out of reach, so an object
    array's elements come from the pickle stream, where any global they need passes through
    ``find_class`` like every other.
    """

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise _refused(self._source, module, name) from None


def _refused(source: object, module: object, name: object) -> ScenarioError:
    what = f"{module}.{name}"[:200]
    return ScenarioError(
        source,
        "pickle",
        f"refused to load {what}: a ScenarioNet pickle may only hold numpy arrays, numpy scalars "
        "and built-in containers, and loading anything else could run code",
    )


def _prescan(data: bytes, source: str) -> None:
    """Check the opcode stream before anything is built from it.

    Refuses every GLOBAL/INST outside ``_ALLOWED`` (STACK_GLOBAL's names are only known at load
    time and go through ``find_class``), the extension-registry, persistent-id and out-of-band
    buffer opcodes, and memo indices beyond the number of opcodes (the unpickler would size its
    memo to them: a few bytes could claim gigabytes). Declared lengths beyond the end of the data
    fail here too.
    """
    for count, (op, arg, pos) in enumerate(pickletools.genops(data)):
        if op.name in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            if (module, name) not in _ALLOWED:
                raise _refused(source, module, name)
        elif op.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > count:
            raise ScenarioError(source, "pickle", f"memo index {arg} out of range at byte {pos}")
        elif op.name in _REFUSED_OPCODES:
            raise ScenarioError(source, "pickle", f"refused opcode {op.name} at byte {pos}")


def _unpickle(path: Path) -> Any:
    """The object pickled in ``path``: pre-scanned, then read with ``_SafeUnpickler``."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ScenarioError(path, "", f"{size} bytes is larger than a scenario file may be ({MAX_FILE_BYTES})")
        data = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(path, "", f"cannot read the file: {exc.strerror or exc}") from None
    try:
        _prescan(data, str(path))
        return _SafeUnpickler(io.BytesIO(data), str(path)).load()
    except ScenarioError:
        raise
    except Exception as exc:  # a corrupt stream fails in many ways; nothing outside _ALLOWED ran
        raise ScenarioError(path, "pickle", f"not a readable pickle ({type(exc).__name__}: {str(exc)[:200]})") from None


def _sniff(path: Path, head: bytes) -> bool:
    """A pickle (protocol 2-5) whose first bytes name a top-level key of a scenario description."""
    return len(head) > 2 and head[0] == 0x80 and 2 <= head[1] <= 5 and any(k in head for k in _SNIFF_KEYS)


# --------------------------------------------------------------------------- the reader


def _expands_beyond(value: Any, limit: int) -> bool:
    """Whether nested lists, tuples and object arrays in ``value`` hold more than ``limit`` items.

    Shared references count each time they are reached, as ``np.asarray`` would copy them; the
    walk stops as soon as the limit is passed, so it costs at most ``limit`` steps.
    """
    stack, count = [value], 0
    while stack:
        item = stack.pop()
        if isinstance(item, np.ndarray):
            count += item.size
            if item.dtype == object and count <= limit:
                stack.extend(item.ravel().tolist())
        elif isinstance(item, (list, tuple)):
            count += len(item)
            if count <= limit:
                stack.extend(item)
        else:
            count += 1
        if count > limit:
            return True
    return False


def _empty(value: Any) -> bool:
    """None or an empty sequence; a scalar is not empty (it is rejected later as not points)."""
    if value is None:
        return True
    try:
        return len(value) == 0
    except TypeError:
        return False


@register("scenarionet", sniff=_sniff)
def read_scenarionet(path: str | Path) -> list[Scenario]:
    """Read a ScenarioNet scenario-description pickle into one scenario (see the module docstring).

    Raises:
        ScenarioError: naming the file, the field and the problem, for a refused global, a
            truncated or corrupt pickle, or a description that is malformed.
    """
    path = Path(path)
    return [_Converter(path, _unpickle(path)).scenario()]


def signal_state(value: object) -> SignalState:
    """A ScenarioNet traffic-light state (string, Waymo enum integer or None) as ``SignalState``."""
    if isinstance(value, str):
        return SIGNAL_STATES.get(value.strip().upper(), SignalState.UNKNOWN)
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        index = int(value)
        if not 0 <= index < len(_WAYMO_SIGNAL_ORDER):
            return SignalState.UNKNOWN
        return SIGNAL_STATES[_WAYMO_SIGNAL_ORDER[index]]
    return SignalState.UNKNOWN


class _Converter:
    """One scenario description -> ``Scenario``; every error names ``path`` and the field."""

    def __init__(self, path: Path, raw: Any) -> None:
        self.path = path
        if not isinstance(raw, dict):
            self.fail("", f"expected a dict (a ScenarioNet scenario description), got {type(raw).__name__}")
        self.raw = raw
        self.meta = self.mapping(raw, "metadata", "metadata")
        self.dataset_word = (self.text(self.meta.get("dataset"), "metadata.dataset") or "").strip().lower()
        self.nuscenes = self.dataset_word == "nuscenes"
        self.notes: list[str] = []

    # ---- helpers

    def fail(self, field: str, problem: str) -> NoReturn:
        raise ScenarioError(self.path, field, problem)

    def mapping(self, parent: Mapping[Any, Any], key: str, field: str, *, required: bool = True) -> dict[Any, Any]:
        value = parent.get(key)
        if value is None:
            if required:
                self.fail(field, "missing")
            return {}
        if not isinstance(value, dict):
            self.fail(field, f"must be a dict, got {type(value).__name__}")
        return value

    def text(self, value: Any, field: str) -> str | None:
        """An id or name: a string or an integer as a string; None when absent or empty."""
        if value is None:
            return None
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            return str(int(value))
        if not isinstance(value, str):
            self.fail(field, f"must be a string or an integer, got {type(value).__name__}")
        return check_text(value, self.path, field) or None

    def floats(self, value: Any, field: str) -> np.ndarray:
        """``value`` as float64; nested lists may expand to at most ``MAX_FIELD_ELEMENTS`` numbers."""
        if not (isinstance(value, np.ndarray) and value.dtype != object) and _expands_beyond(value, MAX_FIELD_ELEMENTS):
            self.fail(field, f"expands to more than {MAX_FIELD_ELEMENTS} values")
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as exc:
            self.fail(field, f"cannot be read as numbers: {str(exc)[:200]}")
        return array

    def points(self, value: Any, field: str) -> np.ndarray:
        """(P, 2) or (P, 3) finite points [m]."""
        array = self.floats(value, field)
        if array.ndim != 2 or array.shape[1] not in (2, 3):
            self.fail(field, f"points must have shape (P, 2) or (P, 3), got {array.shape}")
        if not np.isfinite(array).all():
            self.fail(field, "points contain NaN or infinite values")
        return array

    # ---- the scenario

    def scenario(self) -> Scenario:
        log_id = self.text(self.meta.get("scenario_id"), "metadata.scenario_id") or self.text(self.raw.get("id"), "id")
        if log_id is None:
            self.fail("metadata.scenario_id", "missing (and no top-level id)")
        dataset = f"scenarionet-{safe_id_part(self.dataset_word)}" if self.dataset_word else "scenarionet"
        t_us = self.timestamps()
        tracks, ego_index = self.tracks(t_us.size)
        road_map = self.road_map()
        signals = self.signals(t_us.size)
        if self.nuscenes:
            self.notes.insert(0, _NUSCENES_NOTE)
        frame = "ScenarioNet world frame [m], as stored"
        map_name = self.meta.get("map")
        if isinstance(map_name, str) and map_name:
            frame += f" ({self.dataset_word or 'source'} map {map_name})"
        provenance = Provenance(
            dataset=dataset,
            source_file=str(self.path),
            source_log_id=str(log_id),
            frame=frame,
            notes="; ".join(self.notes),
        )
        return Scenario(
            id=make_scenario_id(dataset, str(log_id)),
            provenance=provenance,
            t_us=t_us,
            tracks=tracks,
            ego_index=ego_index,
            road_map=road_map,
            signals=signals,
        )

    def timestamps(self) -> np.ndarray:
        """(T,) int64 [us]."""
        ts = self.meta.get("ts")
        if ts is not None:
            seconds = self.floats(ts, "metadata.ts")
            if seconds.ndim != 1 or seconds.size == 0:
                self.fail("metadata.ts", f"must be a non-empty 1-D array of seconds, got shape {seconds.shape}")
            if seconds.size > MAX_STEPS:
                self.fail("metadata.ts", f"{seconds.size} time steps, more than a scenario may have ({MAX_STEPS})")
            if not (np.abs(seconds) < _MAX_TIME_S).all():
                self.fail("metadata.ts", f"contains NaN, infinite or out-of-range (> {_MAX_TIME_S:.0e} s) values")
            t_us = np.rint(seconds * 1e6).astype(np.int64)
            if t_us.size > 1:
                dt_us = int(np.rint(np.median(np.diff(seconds)) * 1e6))
                grid = t_us[0] + dt_us * np.arange(t_us.size, dtype=np.int64)
                if dt_us > 0 and np.abs(t_us - grid).max() <= GRID_TOLERANCE_US:
                    t_us = grid
        else:
            rate = self.meta.get("sample_rate")
            length = self.length()
            if rate is None or length is None:
                self.fail("metadata.ts", "missing (and no metadata.sample_rate with a top-level length)")
            try:
                dt_s, steps = float(rate), length
            except (TypeError, ValueError):
                self.fail("metadata.sample_rate", f"{rate!r} / length {length!r} are not numbers")
            if not (0 < dt_s <= MAX_STEP_US / 1e6 and 0 < steps <= MAX_STEPS):
                self.fail("metadata.sample_rate", f"must be positive with a positive length, got {rate!r}, {length!r}")
            t_us = np.rint(np.arange(steps) * dt_s * 1e6).astype(np.int64)
            self.notes.append(f"no metadata.ts: time is step x {dt_s} s")
        if t_us.size > 1 and not (np.diff(t_us) > 0).all():
            step = int(np.argmax(np.diff(t_us) <= 0)) + 1
            self.fail("metadata.ts", f"timestamps are not strictly increasing (step {step})")
        length = self.length()
        if length is not None and length != t_us.size:
            self.fail("length", f"{length} steps but metadata.ts has {t_us.size}")
        return t_us

    def length(self) -> int | None:
        """The top-level ``length`` (number of steps), when present."""
        length = self.raw.get("length")
        if length is None:
            return None
        if not isinstance(length, (int, np.integer)) or isinstance(length, (bool, np.bool_)):
            self.fail("length", f"must be an integer number of steps, got {type(length).__name__}")
        return int(length)

    def tracks(self, num_steps: int) -> tuple[Tracks, int]:
        raw_tracks = self.mapping(self.raw, "tracks", "tracks")
        if not raw_tracks:
            self.fail("tracks", "no tracks (the scenario has no road users)")
        sdc = self.text(self.meta.get("sdc_id"), "metadata.sdc_id")
        if sdc is None:
            self.fail("metadata.sdc_id", "missing (the ego's track id)")
        ids = [self.text(k, "tracks") or "" for k in raw_tracks]
        check_grid(self.path, "tracks", len(ids), num_steps)
        if str(sdc) not in ids:
            self.fail("metadata.sdc_id", f"{sdc!r} is not among the {len(ids)} tracks")
        rows: dict[str, list[Any]] = {name: [] for name in _TRACK_FIELDS}
        dropped, swapped, held = 0, [], 0
        for agent_id, track in zip(ids, raw_tracks.values()):
            where = f"tracks.{agent_id}"
            if not isinstance(track, dict):
                self.fail(where, f"must be a dict, got {type(track).__name__}")
            state = self.mapping(track, "state", f"{where}.state")
            valid = self.state(state, "valid", where, num_steps)
            if not np.isfinite(valid).all():
                self.fail(f"{where}.state.valid", "contains NaN or infinite values")
            valid = valid != 0
            if not valid.any():
                if agent_id == str(sdc):
                    self.fail("metadata.sdc_id", f"the ego {agent_id!r} is never valid")
                dropped += 1
                continue
            position = self.state(state, "position", where, num_steps, columns=(2, 3))
            heading = self.state(state, "heading", where, num_steps)
            velocity = self.state(state, "velocity", where, num_steps, columns=(2,))
            for name, array in (("position", position), ("heading", heading), ("velocity", velocity)):
                bad = ~np.isfinite(array.reshape(num_steps, -1)).all(axis=1) & valid
                if bad.any():
                    step = int(np.argmax(bad))
                    self.fail(f"{where}.state.{name}", f"NaN or infinite value where valid (step {step})")
            kind = agent_type(self.text(track.get("type"), f"{where}.type") or "UNSET")
            size = [self.size(state, name, where, num_steps, valid) for name in ("length", "width", "height")]
            if kind == AgentType.VEHICLE and size[0] < size[1]:
                size[0], size[1] = size[1], size[0]
                swapped.append(agent_id)
            z = position[:, 2] if position.shape[1] == 3 else np.zeros(num_steps)
            x, y = position[:, 0], position[:, 1]
            vx, vy = velocity[:, 0].copy(), velocity[:, 1].copy()
            held += _hold_last_velocity(vx, vy, valid)
            for name, value in zip(_TRACK_FIELDS, (agent_id, int(kind), *size, x, y, z, heading, vx, vy, valid)):
                rows[name].append(value)
        if dropped:
            self.notes.append(f"{dropped} tracks never valid, dropped")
        if swapped:
            self.notes.append(f"length and width swapped (length < width) for vehicles {swapped}")
        if held:
            self.notes.append(
                f"{held} track ends whose velocity was exactly 0 after motion (ScenarioNet's forward differences) "
                "given the previous step's velocity"
            )
        tracks = Tracks(**{name: np.array(values) for name, values in rows.items()})
        return tracks, tracks.index_of(str(sdc))

    def state(
        self, state: Mapping[Any, Any], name: str, where: str, num_steps: int, columns: tuple[int, ...] = ()
    ) -> np.ndarray:
        """A per-step state array: (T,) when ``columns`` is empty ((T, 1) is flattened), else (T, C)."""
        field = f"{where}.state.{name}"
        if name not in state:
            self.fail(field, "missing")
        array = self.floats(state[name], field)
        if not columns and array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        expected = "(T,)" if not columns else " or ".join(f"(T, {c})" for c in columns)
        if array.ndim != (2 if columns else 1) or (columns and array.shape[1] not in columns):
            self.fail(field, f"must have shape {expected}, got {array.shape}")
        if array.shape[0] != num_steps:
            self.fail(field, f"has {array.shape[0]} steps but the scenario has {num_steps}")
        return array

    def size(self, state: Mapping[Any, Any], name: str, where: str, num_steps: int, valid: np.ndarray) -> float:
        """Median box size [m] over the valid steps."""
        values = self.state(state, name, where, num_steps)[valid]
        if not np.isfinite(values).all() or (values < 0).any():
            self.fail(f"{where}.state.{name}", "negative, NaN or infinite size where valid")
        return float(np.median(values))

    # ---- the map

    def road_map(self) -> RoadMap:
        raw_map = self.mapping(self.raw, "map_features", "map_features", required=False)
        lanes: list[Lane] = []
        polygons: dict[str, np.ndarray] = {}
        features: list[MapFeature] = []
        skipped: Counter[str] = Counter()
        lane_entries: list[tuple[str, dict[Any, Any]]] = []
        for key, item in raw_map.items():
            feature_id = self.text(key, "map_features") or ""
            where = f"map_features.{feature_id}"
            if not isinstance(item, dict):
                self.fail(where, f"must be a dict, got {type(item).__name__}")
            word = (self.text(item.get("type"), f"{where}.type") or "").strip().upper()
            if word.startswith("LANE_"):
                lane_entries.append((feature_id, item))
                continue
            feature = self.feature(feature_id, word, item, where)
            if feature is None:
                skipped[word or "<no type>"] += 1
            else:
                features.append(feature)
        lane_ids = {feature_id for feature_id, _ in lane_entries}
        centerlines: dict[str, np.ndarray | None] = {}
        for feature_id, item in lane_entries:
            line = item.get("polyline")
            centerlines[feature_id] = None if _empty(line) else self.points(line, f"map_features.{feature_id}.polyline")
        heading_column = self.heading_column([c for c in centerlines.values() if c is not None])
        dangling = 0
        for feature_id, item in lane_entries:
            where = f"map_features.{feature_id}"
            centerline = centerlines[feature_id]
            if centerline is None:
                skipped["LANE_* without points"] += 1
                continue
            if heading_column and centerline.shape[1] == 3:
                centerline = centerline[:, :2]
            topology = {}
            for name, key in _LANE_TOPOLOGY:
                refs = self.lane_refs(item.get(key), f"{where}.{key}")
                topology[name] = [r for r in refs if r in lane_ids]
                dangling += len(refs) - len(topology[name])
            word = str(item["type"]).strip().upper()
            lane = Lane(
                feature_id,
                centerline,
                speed_limit=self.speed_limit(item, where),
                lane_type=_LANE_TYPES.get(word, word.removeprefix("LANE_").lower()),
                **topology,
            )
            lanes.append(lane)
            polygon = item.get("polygon")
            if not _empty(polygon):
                outline = self.polygon(polygon, f"{where}.polygon")
                if outline is not None:
                    polygons[feature_id] = outline
        if len(lanes) > 1 and not any(lane.predecessors or lane.successors or lane.left_neighbors or lane.right_neighbors for lane in lanes):
            lanes, links = infer_lane_links(lanes)  # nuScenes' converter writes no lane topology
            self.notes.append(
                f"no lane topology in the file: {links} successor links inferred where a lane starts within "
                f"{LINK_TOLERANCE_M:g} m of another's end, heading within {np.degrees(LINK_MAX_TURN_RAD):.0f} deg"
            )
        for lane in lanes:
            if lane.id in polygons:
                outline, subtype = polygons[lane.id], "lane_polygon"
            else:
                outline, subtype = lane.polygon(), "derived_from_lane"
            features.append(MapFeature(f"drivable-{lane.id}", FeatureKind.DRIVABLE_AREA, outline, subtype=subtype))
        if heading_column:
            self.notes.append("lane polylines carry (x, y, heading): heading column dropped, lane z = 0")
        if self.nuscenes:
            self.notes.append(_NUSCENES_MAP_NOTE)
        if dangling:
            self.notes.append(f"{dangling} lane references to lanes not in the file dropped")
        if skipped:
            self.notes.append("map features skipped: " + ", ".join(f"{n} {w}" for w, n in sorted(skipped.items())))
        if not lanes and not features:
            self.fail("map_features", "the map is empty (no lanes and no usable features)")
        return RoadMap.from_parts(lanes, features, derive_drivable=False)

    def heading_column(self, centerlines: list[np.ndarray]) -> bool:
        """True when the lanes' third column is the polyline's heading [rad], not a height [m]."""
        errors = []
        for line in centerlines:
            if line.shape[1] != 3 or len(line) < 2:
                continue
            d = np.diff(line[:, :2], axis=0)
            moving = np.hypot(d[:, 0], d[:, 1]) > 1e-6
            heading = np.arctan2(d[:, 1], d[:, 0])
            errors.append(np.abs(np.angle(np.exp(1j * (heading - line[:-1, 2]))))[moving])
        if not errors:
            return False
        pooled = np.concatenate(errors)
        third = np.concatenate([line[:, 2] for line in centerlines if line.shape[1] == 3])
        if pooled.size == 0 or not (np.abs(third) <= np.pi + 1e-6).all():
            return False
        return float(np.median(pooled)) < HEADING_COLUMN_TOLERANCE_RAD

    def lane_refs(self, value: Any, field: str) -> list[str]:
        """Lane ids from a list of ids or of neighbour dicts (``feature_id``)."""
        if value is None:
            return []
        try:
            if isinstance(value, (str, bytes, dict)):
                raise TypeError
            items = list(value)
        except TypeError:
            self.fail(field, f"must be a list of lane ids, got {type(value).__name__}")
        refs = []
        for ref in items:
            if isinstance(ref, dict):
                ref = ref.get("feature_id", ref.get("id"))
            text = self.text(ref, field)
            if text is None:
                self.fail(field, "a lane reference is empty (or a neighbour entry has no feature_id)")
            refs.append(text)
        return refs

    def speed_limit(self, item: Mapping[Any, Any], where: str) -> float:
        """[m/s]; NaN when absent, zero, or a nuScenes placeholder."""
        if self.nuscenes:
            return float("nan")
        for key, factor in (("speed_limit_mph", MPH_TO_MPS), ("speed_limit_kmh", KMH_TO_MPS)):
            if item.get(key) is not None:
                try:
                    value = float(item[key]) * factor
                except (TypeError, ValueError, OverflowError):
                    self.fail(f"{where}.{key}", f"not a number: {item[key]!r}"[:300])
                if value == 0:
                    return float("nan")  # Waymo's "no limit known"
                if not 0 < value <= MAX_SPEED_LIMIT_MPS:
                    self.fail(f"{where}.{key}", f"{item[key]!r} is not a speed limit in (0, {MAX_SPEED_LIMIT_MPS:g}] m/s")
                return value
        return float("nan")

    def polygon(self, value: Any, field: str) -> np.ndarray | None:
        """A polygon's outline without the repeated closing point; None when under 3 points."""
        outline = self.points(value, field)
        if len(outline) > 1 and np.array_equal(outline[0], outline[-1]):
            outline = outline[:-1]
        return outline if len(outline) >= 3 else None

    def feature(self, feature_id: str, word: str, item: Mapping[Any, Any], where: str) -> MapFeature | None:
        """A non-lane feature, or None for a type this importer does not use."""
        if word == "STOP_SIGN":
            position = item.get("position")
            field = f"{where}.position"
            if position is None and item.get("polyline") is not None:
                position, field = item["polyline"], f"{where}.polyline"
            if position is None:
                self.fail(field, "missing")
            point = self.floats(position, field)
            point = self.points(point.reshape(1, -1) if point.ndim <= 1 else point[:1], field)
            lane_ids = self.lane_refs(item.get("lane"), f"{where}.lane")
            return MapFeature(feature_id, FeatureKind.STOP_SIGN, point, lane_ids=lane_ids)
        kind: FeatureKind | None = None
        subtype = ""
        if word.startswith("ROAD_LINE_") or word == "UNKNOWN":
            kind, subtype = FeatureKind.ROAD_LINE, word.removeprefix("ROAD_LINE_").lower()
            if self.nuscenes and feature_id.startswith("boundary_"):
                kind, subtype = FeatureKind.ROAD_EDGE, "drivable_area_boundary"
        elif word.startswith("ROAD_EDGE_") or word in ("BOUNDARY_LINE", "GUARDRAIL"):
            kind, subtype = FeatureKind.ROAD_EDGE, word.removeprefix("ROAD_EDGE_").lower()
        elif word in _POLYGON_TYPES:
            kind = _POLYGON_TYPES[word]
        elif word == "STOP_LINE":
            kind = FeatureKind.STOP_LINE
        if kind is None:
            return None
        if kind in POLYGON_KINDS:
            source = item.get("polygon") if item.get("polygon") is not None else item.get("polyline")
            if _empty(source):
                return None
            outline = self.polygon(source, f"{where}.polygon")
            return None if outline is None else MapFeature(feature_id, kind, outline, subtype=subtype)
        line = item.get("polyline")
        closed = line is None and item.get("polygon") is not None  # e.g. a sidewalk outline as a road edge
        if closed:
            line = item["polygon"]
        if _empty(line):
            return None
        points = self.points(line, f"{where}.{'polygon' if closed else 'polyline'}")
        if closed and not np.array_equal(points[0], points[-1]):
            points = np.vstack([points, points[:1]])
        return MapFeature(feature_id, kind, points, subtype=subtype)

    # ---- traffic lights

    def signals(self, num_steps: int) -> Signals | None:
        raw = self.mapping(self.raw, "dynamic_map_states", "dynamic_map_states", required=False)
        lane_ids, states, stops = [], [], []
        unknown: Counter[str] = Counter()
        for key, item in raw.items():
            signal_id = self.text(key, "dynamic_map_states") or ""
            where = f"dynamic_map_states.{signal_id}"
            if not isinstance(item, dict):
                self.fail(where, f"must be a dict, got {type(item).__name__}")
            if (self.text(item.get("type"), f"{where}.type") or "TRAFFIC_LIGHT").upper() != "TRAFFIC_LIGHT":
                continue
            per_step = self.mapping(item, "state", f"{where}.state").get("object_state")
            listed = isinstance(per_step, (list, tuple)) or (isinstance(per_step, np.ndarray) and per_step.ndim == 1)
            if not listed or len(per_step) != num_steps:
                got = f"{len(per_step)} entries" if listed else type(per_step).__name__
                self.fail(f"{where}.state.object_state", f"must list one state per step ({num_steps}), got {got}")
            codes = [int(signal_state(value)) for value in per_step]
            unknown.update(str(v) for v in per_step if isinstance(v, str) and v.strip().upper() not in SIGNAL_STATES)
            stop = item.get("stop_point")
            if stop is None:
                self.fail(f"{where}.stop_point", "missing")
            stop = self.floats(stop, f"{where}.stop_point").ravel()
            if stop.size not in (2, 3) or not np.isfinite(stop).all():
                self.fail(f"{where}.stop_point", f"must be 2 or 3 finite numbers, got {stop.size} values")
            lane_ids.append(self.text(item.get("lane"), f"{where}.lane") or signal_id)
            states.append(codes)
            stops.append(np.r_[stop, 0.0] if stop.size == 2 else stop)
        if unknown:
            self.notes.append(f"unrecognised signal states read as UNKNOWN: {dict(unknown)}")
        if not lane_ids:
            return None
        return Signals(np.array(lane_ids), np.array(states, dtype=np.int8), np.array(stops))


def _hold_last_velocity(vx: np.ndarray, vy: np.ndarray, valid: np.ndarray) -> int:
    """Fix ScenarioNet's forward-difference artefact in place: the last step of each valid run has
    velocity exactly 0 even for a moving agent; give it the previous step's. Returns the count fixed."""
    ends = np.flatnonzero(valid & ~np.append(valid[1:], False))
    fixed = 0
    for k in ends:
        if k > 0 and valid[k - 1] and vx[k] == 0.0 and vy[k] == 0.0 and (vx[k - 1] != 0.0 or vy[k - 1] != 0.0):
            vx[k], vy[k] = vx[k - 1], vy[k - 1]
            fixed += 1
    return fixed
