"""The ``energy`` section of the configuration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..choices import one_of
from .registry import choices


class EnergySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    meter: str = Field(default="auto", description="auto: NVML when a GPU is visible, else the pool's estimates; "
                       "estimate; or a meter of ``gateway.energy.registry``: nvml, triton.")
    sample_interval_s: float = Field(default=0.1, gt=0, description="How often the energy counter is read.")
    idle_power_w: float = Field(default=0.0, ge=0, description="Power charged as idle before attributing.")
    triton_metrics_url: str | None = Field(default=None, description="meter=triton: Triton's /metrics URL.")
    gateway_watts_per_core: float = Field(default=10.0, ge=0, description="Power of one busy core of the "
                                          "gateway's host: its own CPU seconds x this are exported as its "
                                          "estimated energy (carbon_gateway_own_energy_joules_total).")
    receipt_timeout_s: float = Field(default=2.0, gt=0, description="How long a request asking for its measured "
                                     "energy (?energy=measured) waits for it before answering with the estimate.")

    @field_validator("meter")
    @classmethod
    def _registered(cls, meter: str) -> str:
        return one_of(meter, choices(), "energy meter")
