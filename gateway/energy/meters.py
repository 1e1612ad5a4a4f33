"""Energy counters: the GPU's own (NVML), Triton's ``nv_energy_consumption`` for a Triton elsewhere, or an
estimate from a process tree's CPU time (a CPU host, for ``profile``)."""

from __future__ import annotations

import logging
import time

from ..errors import MeterError

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
            millijoules: int = sum(nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles)
            return millijoules / 1000.0
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


class ProcessCpuEnergyCounter:
    """Estimated joules: CPU seconds of a process tree (Triton and its backend stubs) x watts per busy core."""

    def __init__(self, pid: int, watts_per_core: float) -> None:
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(pid)
        self.watts_per_core = watts_per_core
        self.name = f"estimate: Triton CPU time x {watts_per_core:g} W per busy core"

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in (self.root, *self.root.children(recursive=True)):
            try:
                times = process.cpu_times()
            except self._psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def read_joules(self) -> float:
        return self.cpu_seconds() * self.watts_per_core

    def close(self) -> None:
        return None
