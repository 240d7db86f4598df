"""Harness fixtures: one local Ray for the whole session, and both executors."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """A 2-CPU local Ray started once (ray.init costs seconds).

    Test modules are not importable in Ray workers, so Ray's cloudpickle sends them by value.
    """
    ray = pytest.importorskip("ray")
    from ray import cloudpickle

    from harness.executor import init_ray

    init_ray(num_cpus=2)
    for name, module in list(sys.modules.items()):
        if name.startswith("tests.") or name.startswith("test_"):
            cloudpickle.register_pickle_by_value(module)
    yield ray
    ray.shutdown()


@pytest.fixture(params=["sequential", "ray"])
def executor_kind(request):
    """Every test that takes this runs once on each executor."""
    if request.param == "ray":
        request.getfixturevalue("ray_local")
    return request.param
