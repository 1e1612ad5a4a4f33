"""The energy meters the configuration can name: one line each, name -> the meter's options model.

Each options model (``options``) makes its counter; the ``energy`` section of the settings is a union of
these models, told apart by ``meter``.
"""

from __future__ import annotations

from .options import AutoOptions, CpuTimeOptions, EnergyOptions, EstimateOptions, NvmlOptions, TritonMeterOptions

METERS: dict[str, type[EnergyOptions]] = {
    "auto": AutoOptions,
    "estimate": EstimateOptions,
    "nvml": NvmlOptions,
    "triton": TritonMeterOptions,
    "cpu-time": CpuTimeOptions,
}
DEFAULT_METER = "auto"
