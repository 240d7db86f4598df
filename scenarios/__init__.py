"""Recorded driving scenarios: the model, the Parquet library, importers of real log formats."""

from scenarios.errors import ScenarioError
from scenarios.importers import ImportOutcome, detect, iter_load, load, load_many
from scenarios.library import AppendResult, ScenarioLibrary, open_library, write_library
from scenarios.model import (
    AgentType,
    Conditions,
    FeatureKind,
    Lane,
    MapFeature,
    Provenance,
    RoadMap,
    Scenario,
    Signals,
    SignalState,
    Tracks,
    make_scenario_id,
    scenarios_equal,
)
from scenarios.mutations import mutate

__all__ = [
    "AgentType",
    "AppendResult",
    "Conditions",
    "FeatureKind",
    "ImportOutcome",
    "Lane",
    "MapFeature",
    "Provenance",
    "RoadMap",
    "Scenario",
    "ScenarioError",
    "ScenarioLibrary",
    "SignalState",
    "Signals",
    "Tracks",
    "detect",
    "iter_load",
    "load",
    "load_many",
    "make_scenario_id",
    "mutate",
    "open_library",
    "scenarios_equal",
    "write_library",
]
