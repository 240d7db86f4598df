"""Small pieces every package shares: a registry by name, an LRU, angle wrapping, the ego frame,
building a frozen config dataclass from a parsed TOML table, and what a stop at a stop line is
(``evaluators.avoidability`` judges it, ``scenarios.mutations.operators.priority`` finds it in logs).

This module sits at the bottom of the layering (``scenarios``), so ``sim``, ``evaluators`` and
``harness`` all use the one copy. It imports nothing but the standard library and numpy.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: Standing still, as logs show it: box-velocity noise keeps a standing car from reading 0 [m/s].
STOP_SPEED_MPS = 0.5
#: A stop for a stop sign counts with the front this far [m] or closer before the line (and, in
#: ``evaluators.avoidability``, within its ``lateral_m`` of the stop point to the side).
STOP_ZONE_M = 6.0


class Registry(Generic[T]):
    """Named entries of one kind (importers, operators, metrics, policies, dynamics, ...).

    A duplicate name is an error; an unknown name is an error that lists the known ones. Plug-ins
    register into the same registry from their own modules (see ``harness.plugins``).

    Args:
        kind: what the entries are, for messages ("policy", "dynamics model").
        unknown: builds the exception raised for an unknown name, given the message; a package
            passes its own error type (default ``KeyError``-compatible ``LookupError``).
    """

    def __init__(self, kind: str, unknown: Callable[[str, str], Exception] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._unknown = unknown

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a name taken already is a ``ValueError``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator("name")``: register the decorated object under ``name``."""

        def decorate(entry: T) -> T:
            self.add(name, entry)
            return entry

        return decorate

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests and plug-in reloads); an unknown name is ignored."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The entry named ``name``; an unknown name raises with the known names listed."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            message = f"unknown {self.kind} {name!r}; known: {self.names()}"
            if self._unknown is not None:
                raise self._unknown(name, message) from None
            raise LookupError(message) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs in registration order."""
        return list(self._entries.items())

    def as_dict(self) -> dict[str, T]:
        """A copy of the registry as a dict (registration order)."""
        return dict(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


class LRU(Generic[K, V]):
    """A small least-recently-used cache (prepared plans, road geometry, map lookups).

    A deep copy is an empty cache of the same size: cached values are derived data, often holding
    engine handles that cannot be copied, and a copy rebuilds them on demand.
    """

    def __init__(self, maxsize: int, on_evict: Callable[[V], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"LRU maxsize must be >= 1, got {maxsize}")
        self.maxsize = int(maxsize)
        self.on_evict = on_evict  # called with each value evicted past maxsize (closes file handles)
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value for ``key`` (now the most recent), or ``default``."""
        try:
            self._data.move_to_end(key)
        except KeyError:
            return default
        return self._data[key]

    def put(self, key: K, value: V) -> V:
        """Store ``value`` under ``key``, evicting the least recent entry past ``maxsize``."""
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            _, evicted = self._data.popitem(last=False)
            if self.on_evict is not None:
                self.on_evict(evicted)
        return value

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The value for ``key``, made by ``make()`` and stored when absent."""
        try:
            self._data.move_to_end(key)
        except KeyError:
            return self.put(key, make())
        return self._data[key]

    def pop(self, key: K, default: V | None = None) -> V | None:
        return self._data.pop(key, default)

    def clear(self) -> None:
        self._data.clear()

    def values(self) -> list[V]:
        return list(self._data.values())

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __deepcopy__(self, memo: dict) -> LRU[K, V]:
        return type(self)(self.maxsize, self.on_evict)

    def __copy__(self) -> LRU[K, V]:
        return type(self)(self.maxsize, self.on_evict)

    def __getstate__(self) -> dict:  # pickled (Ray, AsyncVectorEnv): an empty cache of the same size
        return {"maxsize": self.maxsize} if self.on_evict is None else {"maxsize": self.maxsize, "on_evict": self.on_evict}

    def __setstate__(self, state: dict) -> None:
        self.maxsize = state["maxsize"]
        self.on_evict = state.get("on_evict")
        self._data = OrderedDict()


def wrap_angle(angle: np.ndarray | float) -> np.ndarray | float:
    """Angle(s) wrapped to [-pi, pi) [rad]; a float stays a float, an array stays an array."""
    if isinstance(angle, (float, int)) and not isinstance(angle, bool):
        return (float(angle) + np.pi) % (2 * np.pi) - np.pi
    return (np.asarray(angle, dtype=np.float64) + np.pi) % (2 * np.pi) - np.pi


def to_ego_frame(xy: np.ndarray, origin: np.ndarray | tuple[float, float], yaw: float) -> np.ndarray:
    """(..., 2) world points [m] in the frame at ``origin`` heading ``yaw`` [rad] (x ahead, y left)."""
    xy = np.asarray(xy, dtype=np.float64)
    c, s = np.cos(yaw), np.sin(yaw)
    dx = xy[..., 0] - origin[0]
    dy = xy[..., 1] - origin[1]
    return np.stack([c * dx + s * dy, -s * dx + c * dy], axis=-1)


def from_ego_frame(xy: np.ndarray, origin: np.ndarray | tuple[float, float], yaw: float) -> np.ndarray:
    """(..., 2) points given in the frame at ``origin`` heading ``yaw`` back in the world frame [m]."""
    xy = np.asarray(xy, dtype=np.float64)
    c, s = np.cos(yaw), np.sin(yaw)
    x, y = xy[..., 0], xy[..., 1]
    return np.stack([origin[0] + c * x - s * y, origin[1] + s * x + c * y], axis=-1)


def dataclass_from_mapping(
    cls: type[T],
    values: Mapping[str, Any],
    source: str,
    error: Callable[[str, str, str], Exception],
    *,
    prefix: str = "",
    nested: Mapping[str, type] | None = None,
    skip: frozenset[str] = frozenset(),
) -> T:
    """Build the (frozen) dataclass ``cls`` from a parsed table, naming the file and key on error.

    Unknown keys, a table that is not a mapping and a constructor that rejects its arguments all
    raise ``error(source, key, problem)``; validation itself lives in ``cls.__post_init__``, so an
    invalid config cannot be built at all.

    Args:
        cls: the dataclass to build.
        values: the table (a ``Mapping``).
        source: the file or config the table came from, for messages.
        error: the package's error type, called as ``error(source, field, problem)``.
        prefix: the table's own key path ("env", "evaluators.ttc") for field names in messages.
        nested: field name -> dataclass for fields that are tables of their own.
        skip: fields that may not be set from a table (e.g. ``source``).
    """

    def key(name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    if not isinstance(values, Mapping):
        raise error(source, prefix, f"must be a table, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)} - set(skip)  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise error(source, key(str(unknown[0])), f"unknown key (known: {', '.join(sorted(known))})")
    kwargs = dict(values)
    for name, sub in (nested or {}).items():
        if isinstance(kwargs.get(name), Mapping):
            kwargs[name] = dataclass_from_mapping(sub, kwargs[name], source, error, prefix=key(name))
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise error(source, prefix, str(exc)) from None


def plain(value: Any) -> Any:
    """``value`` as plain TOML/JSON data: dataclasses to dicts, enums to values, tuples to lists."""
    import enum

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return copy.copy(value)
