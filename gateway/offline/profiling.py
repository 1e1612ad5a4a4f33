"""Profile the pool on the Triton in front of it: latency and energy per inference, per model.

This is the paper's Table 1 procedure on whatever hardware runs it: each model serves ``requests``
single-image inferences one after another (after ``warmup``), and the energy counter is read
before and after. Energy per inference = counter delta / inferences (minus idle power x time when
``idle_power_w`` is given). The counter is NVML on a GPU; on a CPU host without one, the CPU time of
the local Triton's processes times a per-core power, which is an estimate and labelled as one.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from ..energy import EnergyCounter, EnergyOptions, MeterContext, energy_settings
from ..energy.options import CpuTimeOptions
from ..pool import ModelPool, ModelSpec
from ..serving.backend import InferenceBackend
from ..triton import TritonClient
from ..triton.server import LocalTritonServer, start_local_triton
from ..settings import TritonSettings

#: ``progress(model, total)`` returns the callback to call after each timed inference.
Progress = Callable[[str, int], Callable[[], None]]


class ProfileResult(BaseModel):
    model: str
    inferences: int
    seconds: float
    latency_p50_ms: float
    latency_p95_ms: float
    energy_mj: float | None
    energy_source: str


async def profile_model(triton: InferenceBackend, spec: ModelSpec, counter: EnergyCounter | None, *,
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
        assert before is not None  # read above whenever there is a counter
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


class ProfileRun(BaseModel):
    hardware: str
    energy_meter: str
    results: list[ProfileResult]


async def profile_pool(pool: ModelPool, *, triton_url: str | None, repository: Path, triton_config: str = "cpu",
                       meter: EnergyOptions | None = None, requests: int = 50,
                       warmup: int = 5, idle_power_w: float = 0.0,
                       progress: Progress = lambda model, total: lambda: None) -> ProfileRun:
    """Profile every model of ``pool`` on the Triton at ``triton_url`` (else a local one on ``repository``).

    ``meter``: a meter's options (``gateway.energy.registry``); ``auto`` (the default) measures with NVML, else
    the local Triton's CPU time; ``estimate`` measures nothing. Raises ``MeterError`` or ``TritonError``.
    """
    local: LocalTritonServer | None = None
    if triton_url is None:
        local = await start_local_triton(TritonSettings(model_repository=repository, model_config_name=triton_config),
                                         [m.backend_name for m in pool.models])
    counter: EnergyCounter | None = None
    try:
        meter = meter or energy_settings()
        context = MeterContext()
        if local is not None:
            assert local.process is not None  # start_local_triton started it
            context = MeterContext(triton_pid=local.process.pid)
        counter = meter.counter(context)
        if counter is None and meter.meter == "auto" and local is not None:
            counter = CpuTimeOptions().counter(context)
        url = local.grpc_url if local is not None else triton_url
        assert url is not None
        client = TritonClient(url)
        try:
            results = [await profile_model(client, spec, counter, requests=requests, warmup=warmup,
                                           idle_power_w=idle_power_w, step=progress(spec.name, requests))
                       for spec in pool.models]
        finally:
            await client.close()
        return ProfileRun(hardware=hardware_description(local is not None),
                          energy_meter=counter.name if counter else "not measured (no counter)", results=results)
    finally:
        if counter is not None:
            counter.close()
        if local is not None:
            local.stop()


def hardware_description(local: bool) -> str:
    """The GPUs NVML sees, else the CPU: where a profile's figures hold."""
    try:
        import pynvml

        pynvml.nvmlInit()
        names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
                 for i in range(pynvml.nvmlDeviceGetCount())]
        pynvml.nvmlShutdown()
        return "GPU: " + ", ".join(str(n) for n in names)
    except Exception:  # noqa: BLE001 - no NVIDIA driver: describe the CPU
        pass
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU: {cpu}, {os.cpu_count()} cores" + (" (local CPU Triton)" if local else "")


def write_profile(pool_file: Path, *, output: Path | None, triton_url: str | None, repository: Path,
                  triton_config: str, meter: str, triton_metrics_url: str | None, cpu_watts_per_core: float,
                  requests: int, warmup: int, idle_power_w: float, report: Path | None) -> ProfileRun:
    """``carbon-gateway profile``: profile with a progress bar, print the table, write the updated pool file
    (``output``, default ``pool_file``) and, if asked, the ``report`` JSON."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar
    from rich.table import Table

    from ..pool import dump_pool, load_pool

    pool = load_pool(pool_file)
    console = Console()
    options = energy_settings(meter=meter, **({"triton_metrics_url": triton_metrics_url} if meter == "triton" else {}),
                              **({"cpu_watts_per_core": cpu_watts_per_core} if meter == "cpu-time" else {}))
    with Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
             console=console) as bar:
        def progress(model: str, total: int) -> Callable[[], None]:
            task = bar.add_task(f"{model:>10}", total=total)
            return lambda: bar.advance(task)

        run = asyncio.run(profile_pool(pool, triton_url=triton_url, repository=repository,
                                       triton_config=triton_config, meter=options,
                                       requests=requests, warmup=warmup, idle_power_w=idle_power_w,
                                       progress=progress))
    table = Table(title=f"Pool {pool.name}: energy and latency per inference (batch 1)")
    for column in ("model", "energy mJ/inference", f"error % ({pool.error_metric})", "p50 ms", "p95 ms"):
        table.add_column(column, justify="right")
    for spec, result in zip(pool.models, run.results, strict=True):
        energy = f"{result.energy_mj:.1f}" if result.energy_mj is not None else "-"
        table.add_row(spec.name, energy, f"{spec.error_rate:.3f}", f"{result.latency_p50_ms:.1f}",
                      f"{result.latency_p95_ms:.1f}")
    console.print(f"energy: {run.energy_meter}")
    console.print(table)
    console.print(f"energy source: {run.results[0].energy_source}")
    target = output or pool_file
    dump_pool(profiled_pool(pool, run.results, run.hardware), target)
    console.print(f"wrote {target}")
    if report is not None:
        report.write_text(json.dumps({"hardware": run.hardware, "results": [r.model_dump() for r in run.results]},
                                     indent=2))
    return run
