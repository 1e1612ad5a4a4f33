"""Profile the pool on the Triton in front of it: latency and energy per inference, per model.

This is the paper's Table 1 procedure on whatever hardware runs it: each model serves ``requests``
single-image inferences one after another (after ``warmup``), and the energy counter is read
before and after. Energy per inference = counter delta / inferences (minus idle power x time when
``idle_power_w`` is given). The counter is NVML on a GPU; on a CPU host without one, the CPU time of
the local Triton's processes times a per-core power, which is an estimate and labelled as one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel

from .energy import EnergyCounter
from .pool import ModelPool, ModelSpec
from .triton import TritonClient


class ProcessCpuEnergyCounter:
    """Estimated joules: CPU seconds of a process tree (Triton and its backend stubs) x watts per busy core."""

    def __init__(self, pid: int, watts_per_core: float):
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


class ProfileResult(BaseModel):
    model: str
    inferences: int
    seconds: float
    latency_p50_ms: float
    latency_p95_ms: float
    energy_mj: float | None
    energy_source: str


async def profile_model(triton: TritonClient, spec: ModelSpec, counter: EnergyCounter | None, *,
                        requests: int = 50, warmup: int = 5, idle_power_w: float = 0.0,
                        step: Callable[[], None] = lambda: None) -> ProfileResult:
    signature = await triton.signature(spec.backend_name, spec.triton_version)
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((1, *signature.input_dims)).astype(np.float32)
    for _ in range(warmup):
        await triton.infer(spec.backend_name, batch, spec.triton_version)
    before = await asyncio.to_thread(counter.read_joules) if counter else None
    latencies = []
    started = time.perf_counter()
    for _ in range(requests):
        t0 = time.perf_counter()
        await triton.infer(spec.backend_name, batch, spec.triton_version)
        latencies.append(time.perf_counter() - t0)
        step()
    seconds = time.perf_counter() - started
    energy_mj = None
    source = "not measured: no energy counter"
    if counter is not None:
        joules = await asyncio.to_thread(counter.read_joules) - before - idle_power_w * seconds
        energy_mj = max(joules, 0.0) / requests * 1e3
        source = counter.name if not idle_power_w else f"{counter.name}, minus {idle_power_w:g} W idle"
    p50, p95 = np.percentile(np.array(latencies) * 1e3, [50, 95])
    return ProfileResult(model=spec.name, inferences=requests, seconds=seconds, latency_p50_ms=float(p50),
                         latency_p95_ms=float(p95), energy_mj=energy_mj, energy_source=source)


def profiled_pool(pool: ModelPool, results: list[ProfileResult], hardware: str) -> ModelPool:
    """The pool with measured latency and (where measured) energy; other fields untouched."""
    by_model = {r.model: r for r in results}
    models = []
    for spec in pool.models:
        result = by_model.get(spec.name)
        if result is None:
            models.append(spec)
            continue
        update: dict = {"latency_ms": round(result.latency_p50_ms, 3)}
        if result.energy_mj is not None and result.energy_mj > 0:
            update |= {"energy_mj": round(result.energy_mj, 4),
                       "energy_source": f"profiled: {result.energy_source}, batch 1, {result.inferences} inferences"}
        models.append(ModelSpec.model_validate({**spec.model_dump(), **update}))
    # Validated afresh rather than model_copy'd: the pool caches derived views of its models.
    return ModelPool.model_validate({**pool.model_dump(), "models": [m.model_dump() for m in models],
                                     "hardware": hardware})
