"""Measured energy through the gateway: a meter's joules, checked against a reference, split per model.

    python benchmarks/energy_attribution.py            # no GPU: a synthetic 250 W GPU, 2 workers, 30 s
    python benchmarks/energy_attribution.py --meter nvml --triton-config python-gpu --seconds 60   # on a GPU

Starts a local Triton and a gateway with ``--workers`` processes and a measured ``energy.meter``, then
sends binary tensor requests to every pool model in turn (pinned by name) at ``--concurrency`` for
``--seconds``. Over the same interval it takes an independent reference: NVML's total-energy counter
read by this script (``--meter nvml``), or the known draw of a synthetic GPU (``--meter synthetic``: a
local ``nv_energy_consumption`` endpoint rising at ``--watts``, which the gateway reads as
``energy.meter: triton``). It prints the reference against what the gateway measured, attributed to
requests and left idle, and per model the measured energy per request beside the pool's profiled one.
With ``--receipts`` every request asks for its measured share (``?energy=measured``); the report then
compares the receipts with the attributed total and gives the latency with and without them.

With the synthetic GPU the per-model split only shows the apportioning (by overlap x profiled cost),
not real cost; the totals still test that N workers measure the GPU once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
from prometheus_client.parser import text_string_to_metric_families
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import PROJECT, REPOSITORY, gateway_process, local_triton, save_json, workdir

from gateway.energy import NvmlEnergyCounter
from gateway.pool import load_pool
from gateway.testing.http import MetricsEndpoint, SyntheticGpuEnergy
from gateway.testing.tensors import binary_infer_request


class Reference:
    """Joules by an independent reading: NVML read here, or the synthetic GPU's known draw."""

    def __init__(self, meter: str, watts: float):
        self.synthetic = SyntheticGpuEnergy(watts) if meter == "synthetic" else None
        self.endpoint = MetricsEndpoint(self.synthetic.render) if self.synthetic else None
        self.nvml = NvmlEnergyCounter() if meter == "nvml" else None

    def gateway_env(self) -> dict[str, str]:
        if self.endpoint is not None:
            return {"CARBON_GATEWAY_ENERGY__METER": "triton",
                    "CARBON_GATEWAY_ENERGY__TRITON_METRICS_URL": self.endpoint.url}
        return {"CARBON_GATEWAY_ENERGY__METER": "nvml"}

    def read(self) -> float:
        if self.nvml is not None:
            return self.nvml.read_joules()
        return self.synthetic.watts * time.monotonic()

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()
        if self.nvml is not None:
            self.nvml.close()


def rss_by_process(pid: int) -> dict[str, float]:
    """MiB resident, of the gateway's parent (the sampler) and of its workers together."""
    import psutil

    parent = psutil.Process(pid)
    workers = parent.children(recursive=True)
    return {"parent": parent.memory_info().rss / 2**20,
            "workers": sum(p.memory_info().rss for p in workers) / 2**20}


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(value for (n, pairs), value in samples.items()
               if n == name and all(dict(pairs).get(k) == v for k, v in labels.items()))


class Served:
    """What the load got back: requests per model, latencies, and the energy receipts' joules."""

    def __init__(self, models: list[str]):
        self.by_model = {m: 0 for m in models}
        self.latencies: list[float] = []
        self.receipt_joules = 0.0
        self.receipts = 0

    @property
    def total(self) -> int:
        return sum(self.by_model.values())


async def load(url: str, models: list[str], seconds: float, concurrency: int, receipts: bool = False) -> Served:
    batch = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    body, headers = binary_infer_request(batch, binary_output=True)
    served = Served(models)
    params = {"energy": "measured"} if receipts else {}
    stop = time.perf_counter() + seconds

    async def client_loop(client: httpx.AsyncClient, offset: int) -> None:
        i = offset
        while time.perf_counter() < stop:
            model = models[i % len(models)]
            i += 1
            started = time.perf_counter()
            response = await client.post(f"/v2/models/{model}/infer", content=body, headers=headers, params=params)
            if response.status_code != 200:
                raise RuntimeError(f"{model}: {response.status_code} {response.text[:200]}")
            served.latencies.append(time.perf_counter() - started)
            served.by_model[model] += 1
            header = orjson.loads(response.content[:int(response.headers["inference-header-content-length"])])
            if header["parameters"]["energy_measured"]:
                served.receipts += 1
                served.receipt_joules += header["parameters"]["energy_joules"]

    async def progress_bar() -> None:
        columns = (TextColumn("load"), BarColumn(), TextColumn("{task.fields[n]} requests"), TimeRemainingColumn())
        with Progress(*columns, transient=True) as progress:
            task = progress.add_task("load", total=seconds, n=0)
            began = time.perf_counter()
            while time.perf_counter() < stop:
                progress.update(task, completed=time.perf_counter() - began, n=served.total)
                await asyncio.sleep(0.5)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)  # spread over the workers
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(progress_bar(), *(client_loop(client, k) for k in range(concurrency)))
    return served


async def run(args) -> dict:
    pool_file = args.pool or REPOSITORY / "pool.yaml"
    pool = load_pool(pool_file)
    models = args.models.split(",") if args.models else [m.name for m in pool.models]
    reference = Reference(args.meter, args.watts)
    logs = workdir()
    env = {**reference.gateway_env(), "CARBON_GATEWAY_ENERGY__SAMPLE_INTERVAL_S": str(args.interval),
           "CARBON_GATEWAY_ENERGY__IDLE_POWER_W": str(args.idle_power_w),
           "CARBON_GATEWAY_TRITON__MODEL_CONFIG_NAME": args.triton_config}
    try:
        async with (local_triton(logs, args.triton_config) as triton,
                    gateway_process(triton.grpc_url, logs, "--workers", str(args.workers), "--pool",
                                    str(pool_file), env=env) as (process, url)):
            for model in models:  # warm up every model once
                await load(url, [model], 0.01, 1)
            await asyncio.sleep(2 * args.interval)
            before, ref_before, began = scrape(url), reference.read(), time.perf_counter()
            rss_before = rss_by_process(process.pid)
            served = await load(url, models, args.seconds, args.concurrency, args.receipts)
            await asyncio.sleep(3 * args.interval)  # the windows holding the last requests close
            after, ref_after, elapsed = scrape(url), reference.read(), time.perf_counter() - began
            rss_after = rss_by_process(process.pid)
    finally:
        reference.close()

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    meter = "triton-metrics" if args.meter == "synthetic" else args.meter
    measured = delta("carbon_gateway_measured_energy_joules_total")
    attributed = delta("carbon_gateway_energy_joules_total")
    idle = delta("carbon_gateway_idle_energy_joules_total")
    by_model = {}
    for spec in pool.models:
        count = delta("carbon_gateway_request_energy_joules_count", model=spec.name)
        joules = delta("carbon_gateway_request_energy_joules_sum", model=spec.name)
        by_model[spec.name] = {"served": served.by_model.get(spec.name, 0), "histogram_count": count,
                               "measured_j_per_request": joules / count if count else float("nan"),
                               "profiled_j_per_inference": spec.energy_mj / 1000.0,
                               "profiled_source": spec.energy_source}
    return {"meter": meter, "reference": args.meter, "workers": args.workers, "seconds": elapsed,
            "concurrency": args.concurrency, "requests": served.total,
            "receipts": served.receipts, "receipt_joules": served.receipt_joules,
            "latency_p50_ms": float(np.percentile(served.latencies, 50) * 1e3),
            "latency_p99_ms": float(np.percentile(served.latencies, 99) * 1e3),
            "reference_joules": ref_after - ref_before, "measured_joules": measured, "attributed_joules": attributed,
            "idle_joules": idle, "conservation_error_joules": measured - attributed - idle,
            "co2_grams": delta("carbon_gateway_co2_grams_total"), "by_model": by_model,
            "rss_mb": {"before": rss_before, "after": rss_after}}


def report(result: dict) -> str:
    ref, measured = result["reference_joules"], result["measured_joules"]
    lines = [f"{result['requests']} requests in {result['seconds']:.1f} s, {result['workers']} workers, "
             f"concurrency {result['concurrency']}, meter {result['meter']} (reference: {result['reference']})",
             "", "| | joules | W |", "|---|---:|---:|"]
    for name, value in (("reference", ref), ("measured by the gateway", measured),
                        ("attributed to requests", result["attributed_joules"]), ("idle", result["idle_joules"])):
        lines.append(f"| {name} | {value:.3f} | {value / result['seconds']:.2f} |")
    lines += ["", f"measured / reference: {measured / ref:.4f} (the two read over intervals a sampling period apart); "
              f"measured - attributed - idle: {result['conservation_error_joules']:.3g} J",
              f"latency p50 {result['latency_p50_ms']:.1f} ms, p99 {result['latency_p99_ms']:.1f} ms; "
              f"receipts: {result['receipts']} of {result['requests']} requests, "
              f"{result['receipt_joules']:.3f} J in all",
              "RSS (MiB) parent {before[parent]:.1f} -> {after[parent]:.1f}, workers {before[workers]:.1f} -> "
              "{after[workers]:.1f}".format(**result["rss_mb"]),
              "", "| model | requests | measured J/request | profiled J/inference | profiled by |",
              "|---|---:|---:|---:|---|"]
    for name, cell in result["by_model"].items():
        lines.append(f"| {name} | {cell['served']} | {cell['measured_j_per_request']:.4f} | "
                     f"{cell['profiled_j_per_inference']:.4f} | {cell['profiled_source']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meter", choices=("synthetic", "nvml"), default="synthetic")
    parser.add_argument("--watts", type=float, default=250.0, help="synthetic: the GPU's constant draw")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--interval", type=float, default=0.1, help="energy.sample_interval_s")
    parser.add_argument("--receipts", action="store_true", help="every request asks for ?energy=measured")
    parser.add_argument("--models", default=None, help="comma-separated pool models to send to (default: all)")
    parser.add_argument("--idle-power-w", type=float, default=0.0)
    parser.add_argument("--triton-config", default="cpu", help="cpu, or python-gpu on a GPU host")
    parser.add_argument("--pool", type=Path, default=None, help="default: model_repository/pool.yaml")
    parser.add_argument("--json", type=Path, default=PROJECT / "var" / "bench" / "energy-attribution.json")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(report(result))
    save_json(args.json, result)


if __name__ == "__main__":
    main()
