"""The shared registry, LRU, angle wrapping, ego frame and table-to-dataclass loader."""

import copy
import dataclasses
import math
import pickle

import numpy as np
import pytest

from scenarios.common import LRU, Registry, dataclass_from_mapping, from_ego_frame, to_ego_frame, wrap_angle
from scenarios.errors import ScenarioError


def test_registry_rejects_duplicates_and_names_the_known_on_unknown():
    reg: Registry[int] = Registry("widget", unknown=lambda name, msg: ScenarioError("widgets", name, msg))
    reg.decorator("a")(1)
    reg.add("b", 2)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.add("a", 3)
    with pytest.raises(ScenarioError, match=r"unknown widget 'c'; known: \['a', 'b'\]"):
        reg.get("c")
    assert reg.get("b") == 2 and "a" in reg and reg.names() == ["a", "b"] and len(reg) == 2


def test_lru_evicts_least_recent_and_copies_empty():
    cache: LRU[str, int] = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert cache.get_or_make("d", lambda: 4) == 4 and "a" not in cache
    for clone in (copy.deepcopy(cache), copy.copy(cache), pickle.loads(pickle.dumps(cache))):
        assert len(clone) == 0 and clone.maxsize == 2


def test_lru_on_evict_sees_each_evicted_value_in_order():
    evicted: list[int] = []
    cache: LRU[str, int] = LRU(2, on_evict=evicted.append)
    for key, value in (("a", 1), ("b", 2), ("c", 3)):
        cache.put(key, value)
    cache.get("b")
    cache.get_or_make("d", lambda: 4)
    assert evicted == [1, 3] and cache.values() == [2, 4]
    cache.clear()  # clearing is not eviction
    assert evicted == [1, 3]
    clone = copy.deepcopy(cache)
    assert clone.on_evict is cache.on_evict and len(clone) == 0
    assert pickle.loads(pickle.dumps(LRU(3))).on_evict is None


def test_wrap_angle_range_and_types():
    assert wrap_angle(math.pi) == pytest.approx(-math.pi)
    assert wrap_angle(3 * math.pi / 2) == pytest.approx(-math.pi / 2)
    assert isinstance(wrap_angle(1.0), float)
    out = wrap_angle(np.array([0.0, 2 * math.pi, -3 * math.pi]))
    np.testing.assert_allclose(out, [0.0, 0.0, -math.pi], atol=1e-12)


def test_ego_frame_round_trip_and_known_point():
    # ego at (10, 5) facing +y: a point 2 m north of it is 2 m ahead, one 3 m east is 3 m to the right
    local = to_ego_frame(np.array([[10.0, 7.0], [13.0, 5.0]]), (10.0, 5.0), math.pi / 2)
    np.testing.assert_allclose(local, [[2.0, 0.0], [0.0, -3.0]], atol=1e-12)
    back = from_ego_frame(local, (10.0, 5.0), math.pi / 2)
    np.testing.assert_allclose(back, [[10.0, 7.0], [13.0, 5.0]], atol=1e-12)


@dataclasses.dataclass(frozen=True)
class _Inner:
    k: int = 1


@dataclasses.dataclass(frozen=True)
class _Outer:
    a: float = 0.0
    inner: _Inner = dataclasses.field(default_factory=_Inner)

    def __post_init__(self):
        if self.a < 0:
            raise ScenarioError("cfg.toml", "a", "must be >= 0")


def test_dataclass_from_mapping_names_file_and_key():
    out = dataclass_from_mapping(_Outer, {"a": 1.5, "inner": {"k": 3}}, "cfg.toml", ScenarioError, nested={"inner": _Inner})
    assert out == _Outer(1.5, _Inner(3))
    with pytest.raises(ScenarioError, match=r"cfg.toml: env.inner.zz: unknown key \(known: k\)"):
        dataclass_from_mapping(_Outer, {"inner": {"zz": 1}}, "cfg.toml", ScenarioError, prefix="env", nested={"inner": _Inner})
    with pytest.raises(ScenarioError, match="cfg.toml: a: must be >= 0"):
        dataclass_from_mapping(_Outer, {"a": -1.0}, "cfg.toml", ScenarioError)
    with pytest.raises(ScenarioError, match="must be a table"):
        dataclass_from_mapping(_Outer, [1, 2], "cfg.toml", ScenarioError)
