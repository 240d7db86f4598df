"""The scenarios package's registries (importers, operators, samplers) are ``scenarios.common.Registry``:
a plug-in registers the same way a built-in does, a duplicate is refused, an unknown name lists the known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import scenarios.mutations as m
from scenarios import ScenarioError, detect
from scenarios.common import Registry, wrap_angle
from scenarios.importers import base as importers_base
from scenarios.mutations import base as mutations_base
from scenarios.mutations import geometry
from scenarios.mutations.samplers import SAMPLERS, Sampler


def test_each_registry_is_the_common_type() -> None:
    assert isinstance(importers_base._REGISTRY, Registry)
    assert isinstance(mutations_base._REGISTRY, Registry)
    assert isinstance(SAMPLERS, Registry)
    assert SAMPLERS.names() == ["cem", "grid", "halton", "lhs", "random"]
    assert set(importers_base.importers()) >= {"av2", "commonroad", "interaction", "scenarionet", "waymo_json"}


@pytest.fixture
def plugin_importer():
    """A format a plug-in adds with the public decorator: files starting with ``PLUGIN``."""
    name = "plugin_test_format"
    read = importers_base.register(name, sniff=lambda path, head: head.startswith(b"PLUGIN"), has_logged_ego=False)(
        lambda path: []
    )
    yield name, read
    importers_base._REGISTRY.remove(name)


def test_a_plugin_importer_registers_and_is_detected(tmp_path: Path, plugin_importer) -> None:
    name, read = plugin_importer
    (tmp_path / "x.log").write_bytes(b"PLUGIN v1\n")
    importer = detect(tmp_path / "x.log")
    assert (importer.name, importer.read, importer.has_logged_ego) == (name, read, False)
    with pytest.raises(ValueError, match=f"importer '{name}' is already registered"):
        importers_base.register(name, sniff=lambda path, head: False)(lambda path: [])
    (tmp_path / "y.log").write_bytes(b"neither\n")
    with pytest.raises(ScenarioError, match=f"unknown format: not one of .*'{name}'"):
        detect(tmp_path / "y.log")


def test_an_unknown_operator_is_a_mutation_error_listing_the_known() -> None:
    with pytest.raises(m.MutationError, match=r"unknown operator 'lead_brak'; known: \[.*'lead_brake'") as err:
        m.get("lead_brak")
    assert (err.value.source, err.value.field) == ("mutation", "operator")
    with pytest.raises(ValueError, match="operator 'cut_in' is already registered"):
        m.register("cut_in")(lambda scenario, rng: scenario)


class _MidpointSampler(Sampler):
    """Every point at the middle of the unit cube."""

    def propose_unit(self, n: int) -> np.ndarray:
        return np.full((n, self.space.dim), 0.5)


def test_a_plugin_sampler_is_made_by_name_and_accepted_by_a_plan() -> None:
    SAMPLERS.decorator("midpoint_test")(_MidpointSampler)
    try:
        space = m.SearchSpace.single("lead_brake", decel=m.Uniform(2.0, 8.0, "m/s2"))
        sampler = m.make_sampler("midpoint_test", space, 0)
        assert sampler.propose(2) == [{"lead_brake.decel": 5.0}, {"lead_brake.decel": 5.0}]
        table = {"sampler": "midpoint_test", "chain": [{"operator": "lead_brake", "params": {"decel": {"uniform": [2.0, 8.0], "unit": "m/s2"}}}]}
        assert m.MutationPlan.from_table(table, "suite.toml").sampler == "midpoint_test"
        with pytest.raises(ValueError, match="sampler 'midpoint_test' is already registered"):
            SAMPLERS.add("midpoint_test", _MidpointSampler)
    finally:
        SAMPLERS.remove("midpoint_test")
    with pytest.raises(m.MutationError, match=r"unknown sampler 'midpoint_test'; known: \['cem', 'grid'"):
        m.make_sampler("midpoint_test", space, 0)


def test_operators_wrap_angles_with_the_common_function() -> None:
    assert geometry.wrap_angle is wrap_angle
    assert np.allclose(geometry.wrap_angle(np.array([3 * np.pi / 2, -3 * np.pi / 2, np.pi])), [-np.pi / 2, np.pi / 2, -np.pi])
