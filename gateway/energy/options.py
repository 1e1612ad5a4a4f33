"""What every energy meter's settings share, and each meter's own options, which make its counter.

The ``energy`` section of the settings is one of these models, told apart by ``meter``
(``gateway.energy.settings``). ``auto`` and ``estimate`` are modes rather than meters: NVML when a GPU is
visible else none, and none (the pool's profiled energy is charged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import MeterError
from .base import EnergyCounter
from .meters import NvmlEnergyCounter, ProcessCpuEnergyCounter, TritonMetricsEnergyCounter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeterContext:
    """What the running gateway knows that a meter may need."""

    triton_pid: int | None = None  # the local Triton's process, whose CPU time ``cpu-time`` reads


class EnergyOptions(BaseModel):
    """How energy is measured and charged (the ``energy`` section)."""

    model_config = ConfigDict(extra="forbid")

    meter: str
    sample_interval_s: float = Field(default=0.1, gt=0, description="How often the energy counter is read.")
    idle_power_w: float = Field(default=0.0, ge=0, description="Power charged as idle before attributing.")
    gateway_watts_per_core: float = Field(default=10.0, ge=0, description="Power of one busy core of the "
                                          "gateway's host: its own CPU seconds x this are exported as its "
                                          "estimated energy (carbon_gateway_own_energy_joules_total).")
    receipt_timeout_s: float = Field(default=2.0, gt=0, description="How long a request asking for its measured "
                                     "energy (?energy=measured) waits for it before answering with the estimate.")

    def counter(self, context: MeterContext = MeterContext()) -> EnergyCounter | None:
        """The meter's counter, or None when the pool's estimates are charged; ``MeterError`` if it cannot be had."""
        raise NotImplementedError


class AutoOptions(EnergyOptions):
    """``auto`` (the default): NVML when a GPU is visible, else the pool's estimates."""

    meter: Literal["auto"] = "auto"

    def counter(self, context: MeterContext = MeterContext()) -> EnergyCounter | None:
        try:
            return NvmlEnergyCounter()
        except MeterError as exc:
            logger.info("no NVML energy counter (%s): charging pool estimates", exc)
            return None


class EstimateOptions(EnergyOptions):
    """``estimate``: no meter; every request is charged its model's profiled energy."""

    meter: Literal["estimate"] = "estimate"

    def counter(self, context: MeterContext = MeterContext()) -> EnergyCounter | None:
        return None


class NvmlOptions(EnergyOptions):
    """``nvml``: the GPUs' total-energy counters; fails without a GPU."""

    meter: Literal["nvml"] = "nvml"

    def counter(self, context: MeterContext = MeterContext()) -> EnergyCounter | None:
        return NvmlEnergyCounter()


class TritonMeterOptions(EnergyOptions):
    """``triton``: Triton's ``nv_energy_consumption`` metric, for a Triton on another host."""

    meter: Literal["triton"] = "triton"
    triton_metrics_url: str = Field(description="Triton's /metrics URL.")

    def counter(self, context: MeterContext = MeterContext()) -> EnergyCounter | None:
        return TritonMetricsEnergyCounter(self.triton_metrics_url)


class CpuTimeOptions(EnergyOptions):
    """``cpu-time``: the local Triton's CPU seconds times a power per busy core (a CPU host, for ``profile``)."""

    meter: Literal["cpu-time"] = "cpu-time"
    cpu_watts_per_core: float = Field(default=5.0, gt=0, description="Power of one busy core.")

    def counter(self, context: MeterContext = MeterContext()) -> EnergyCounter | None:
        if context.triton_pid is None:
            raise MeterError("the cpu-time meter reads the local Triton's CPU time: it needs a local Triton")
        return ProcessCpuEnergyCounter(context.triton_pid, self.cpu_watts_per_core)
