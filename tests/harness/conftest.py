"""Harness fixtures: one local Ray for the whole session, and both executors."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """A 2-CPU local Ray started once (ray.init costs seconds).

    Test modules are not importable in Ray workers, so Ray's cloudpickle sends them by value.
    """
    ray = pytest.importorskip("ray")
    from ray import cloudpickle

    from harness.executor import init_ray

    # Ray workers import user policies by path; the tests' fault-injecting ones live beside this file.
    here = str(Path(__file__).resolve().parent)
    init_ray(num_cpus=2, runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}})
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
