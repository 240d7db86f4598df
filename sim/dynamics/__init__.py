"""Ego dynamics models, by name: ``bicycle`` (kinematic, the fast default) and ``bullet`` (wheeled)."""

from sim.dynamics.base import EgoDynamics, EgoState, VehicleParams, make, names, register
from sim.dynamics import bicycle, bullet_vehicle  # noqa: F401

__all__ = ["EgoDynamics", "EgoState", "VehicleParams", "make", "names", "register"]
