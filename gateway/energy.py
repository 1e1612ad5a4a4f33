"""Energy per request, and the CO2 it implies.

Meters sit behind one interface so a deployment can pick how energy is known. This module has
the meter for machines without a usable energy counter: the pool's profiled energy per inference,
reported as an estimate (``source = "pool-estimate"``) so nobody mistakes it for a measurement.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from .pool import ModelSpec

JOULES_PER_KWH = 3.6e6


class EnergyReading(BaseModel):
    model_config = ConfigDict(frozen=True)

    joules: float
    source: str
    measured: bool


@runtime_checkable
class EnergyMeter(Protocol):
    name: str

    def attribute(self, model: ModelSpec, items: int, compute_seconds: float) -> EnergyReading:
        """The energy to charge to one request of ``items`` inferences on ``model``."""
        ...


class PoolEstimateMeter:
    """Energy = the pool's energy per inference x the number of inferences."""

    name = "pool-estimate"

    def attribute(self, model: ModelSpec, items: int, compute_seconds: float) -> EnergyReading:
        return EnergyReading(joules=model.energy_mj * 1e-3 * items, source=self.name, measured=False)


def co2_grams(joules: float, intensity_g_per_kwh: float, pue: float = 1.0) -> float:
    """CO2eq = energy x carbon intensity x PUE."""
    return joules / JOULES_PER_KWH * intensity_g_per_kwh * pue
