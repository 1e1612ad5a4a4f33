"""The energy meters the configuration can name: one line each.

Besides these, ``auto`` (NVML when a GPU is visible, else none) and ``estimate`` (no meter: the pool's
profiled energy is charged) are modes of ``make_counter`` rather than meters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..choices import one_of
from ..errors import MeterError
from .base import EnergyCounter
from .meters import NvmlEnergyCounter, ProcessCpuEnergyCounter, TritonMetricsEnergyCounter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeterOptions:
    """What a meter may need besides its name."""

    triton_metrics_url: str | None = None
    triton_pid: int | None = None  # the local Triton's process, whose CPU time ``cpu-time`` reads
    cpu_watts_per_core: float = 5.0


def _triton(options: MeterOptions) -> EnergyCounter:
    if not options.triton_metrics_url:
        raise MeterError("energy.meter=triton needs energy.triton_metrics_url")
    return TritonMetricsEnergyCounter(options.triton_metrics_url)


def _cpu_time(options: MeterOptions) -> EnergyCounter:
    if options.triton_pid is None:
        raise MeterError("the cpu-time meter reads the local Triton's CPU time: it needs a local Triton")
    return ProcessCpuEnergyCounter(options.triton_pid, options.cpu_watts_per_core)


METERS: dict[str, Callable[[MeterOptions], EnergyCounter]] = {
    "nvml": lambda options: NvmlEnergyCounter(),
    "triton": _triton,
    "cpu-time": _cpu_time,
}

def choices() -> tuple[str, ...]:
    """Every name ``make_counter`` takes, read now: a meter registered after import counts."""
    return ("auto", "estimate", *METERS)


def make_counter(kind: str, options: MeterOptions | None = None) -> EnergyCounter | None:
    """The named counter; ``auto`` tries NVML and settles for none (pool estimates) without a GPU.

    Raises ``MeterError`` when the named meter cannot be had.
    """
    options = options or MeterOptions()
    if kind == "estimate":
        return None
    if kind == "auto":
        try:
            return NvmlEnergyCounter()
        except MeterError as exc:
            logger.info("no NVML energy counter (%s): charging pool estimates", exc)
            return None
    return METERS[one_of(kind, choices(), "energy meter", MeterError)](options)
