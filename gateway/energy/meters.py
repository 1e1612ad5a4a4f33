"""Energy counters: the GPU's own (NVML), or Triton's ``nv_energy_consumption`` for a Triton elsewhere."""

from __future__ import annotations

import logging
import time

from .base import EnergyCounter, MeterError

logger = logging.getLogger(__name__)


class NvmlEnergyCounter:
    """NVML: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load) summed over the GPUs.

    On GPUs without that counter (pre-Volta) it integrates ``nvmlDeviceGetPowerUsage`` between reads,
    which is only as good as the sampling interval, and says so in its name.
    """

    def __init__(self, device_indices: list[int] | None = None):
        try:
            import pynvml
        except ImportError as exc:
            raise MeterError("nvidia-ml-py is not installed") from exc
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            indices = device_indices if device_indices is not None else list(range(count))
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
        except pynvml.NVMLError as exc:
            raise MeterError(f"NVML unavailable: {exc}") from exc
        if not self._handles:
            raise MeterError("NVML found no GPU")
        try:
            for handle in self._handles:
                pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            self.name = "nvml"
            self._power_mode = False
        except pynvml.NVMLError:
            self.name = "nvml-power-sampling"
            self._power_mode = True
            self._joules = 0.0
            self._last: float | None = None

    def read_joules(self) -> float:
        nvml = self._nvml
        if not self._power_mode:
            return sum(nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles) / 1000.0
        now = time.monotonic()
        watts = sum(nvml.nvmlDeviceGetPowerUsage(h) for h in self._handles) / 1000.0
        if self._last is not None:
            self._joules += watts * (now - self._last)
        self._last = now
        return self._joules

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass


class TritonMetricsEnergyCounter:
    """Triton's own ``nv_energy_consumption`` (joules, per GPU) from its Prometheus endpoint."""

    name = "triton-metrics"

    def __init__(self, url: str, timeout_s: float = 2.0):
        import httpx

        self.url = url
        self._client = httpx.Client(timeout=timeout_s)

    def read_joules(self) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        import httpx

        try:
            response = self._client.get(self.url)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise MeterError(f"Triton metrics at {self.url} unavailable: {exc}") from exc
        samples = [sample.value for family in text_string_to_metric_families(response.text)
                   if family.name == "nv_energy_consumption" for sample in family.samples]
        if not samples:
            raise MeterError(f"{self.url} has no nv_energy_consumption (Triton without a GPU?)")
        return float(sum(samples))

    def close(self) -> None:
        self._client.close()


def make_counter(kind: str, triton_metrics_url: str | None = None) -> EnergyCounter | None:
    """The configured counter; ``auto`` tries NVML and settles for none (pool estimates) without a GPU."""
    if kind == "estimate":
        return None
    if kind == "triton":
        if not triton_metrics_url:
            raise MeterError("energy.meter=triton needs energy.triton_metrics_url")
        return TritonMetricsEnergyCounter(triton_metrics_url)
    try:
        return NvmlEnergyCounter()
    except MeterError as exc:
        if kind == "nvml":
            raise
        logger.info("no NVML energy counter (%s): charging pool estimates", exc)
        return None
