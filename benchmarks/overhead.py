"""What the gateway adds on top of Triton: direct gRPC vs the gateway's routes, same Triton, same model.

    python benchmarks/overhead.py                      # concurrency 1, 4, 16; 4 s per cell in 4 turns
    python benchmarks/overhead.py --seconds 2 --concurrency 1 4 --json var/overhead.json

Starts its own local CPU Triton (the model repository's five ResNets) and a gateway process
(``carbon-gateway serve --triton``, uvicorn), then for each concurrency runs each target closed-loop
for a fixed time:

* ``direct-grpc``: tritonclient.grpc.aio, one shared client, resnet18, a [1,3,224,224] tensor;
* ``tensor-bin``:  ``POST /v2/models/resnet18/infer``, the same tensor, KServe v2 binary extension in and out;
* ``tensor-auto``: the same on ``/v2/models/auto/infer`` (the selector runs; a dirty grid makes it pick resnet18);
* ``tensor-json``: ``/v2/models/resnet18/infer`` with the tensor as JSON ``data`` (150,528 numbers, 3 MB);
* ``image``:       ``POST /v1/classify`` with a JPEG (decode + resize + normalise in the gateway, top-5);
* ``healthz``:     ``GET /healthz``, the floor of an HTTP round trip through the gateway's middleware.

Reports throughput and p50/p99 latency per cell, the gateway/direct ratios, the gateway's own time
per request from its ``Server-Timing`` header (total minus the Triton call), and ns per call of the
selector (``InterpolationPolicy.select`` on ``gateway/pools/paper-v100.yaml``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import IMAGE, PROJECT, gateway_process, local_triton, stats, save_json, workdir

from tests.support.kserve import binary_infer_request

TARGETS = ("direct-grpc", "tensor-bin", "tensor-auto", "tensor-json", "image", "healthz")


def selector_ns_per_call(calls: int = 200_000) -> dict[str, float]:
    from gateway.pool import load_pool
    from gateway.policy import CarbonWindow, InterpolationPolicy

    policy = InterpolationPolicy(load_pool(PROJECT / "gateway" / "pools" / "paper-v100.yaml"))
    window = CarbonWindow(100.0, 300.0)
    intensities = np.random.default_rng(0).uniform(50, 350, 1024).tolist()
    for intensity in intensities:  # warm up
        policy.select(intensity, window)
    started = time.perf_counter_ns()
    for i in range(calls):
        policy.select(intensities[i & 1023], window)
    return {"calls": calls, "ns_per_call": (time.perf_counter_ns() - started) / calls}


async def closed_loop(call, concurrency: int, seconds: float) -> tuple[dict, list[float], list[float]]:
    """``concurrency`` workers each calling ``call()`` back to back for ``seconds``; errors are counted."""
    latencies: list[float] = []
    gateway_own: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker():
        nonlocal errors
        while time.perf_counter() < stop:
            started = time.perf_counter()
            try:
                own = await call()
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors += 1
                if errors <= 3:
                    print(f"  error: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
                continue
            latencies.append(time.perf_counter() - started)
            if own is not None:
                gateway_own.append(own)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result = stats(latencies, time.perf_counter() - began)
    result["errors"] = errors
    return result, latencies, gateway_own


def server_timing_own(headers) -> float | None:
    """Seconds the gateway spent on a request outside its Triton call, from ``Server-Timing``."""
    parts = dict(item.strip().split(";dur=") for item in headers.get("server-timing", "").split(",")
                 if ";dur=" in item)
    if "triton" in parts and "total" in parts:
        return (float(parts["total"]) - float(parts["triton"])) / 1e3
    return None


@contextlib.asynccontextmanager
async def http_client(kind: str, url: str, connections: int):
    """``(get, post)`` over httpx or aiohttp; each raises on a non-2xx status and returns the headers.

    The client runs on the same two cores as Triton and the gateway, so its own cost shows in every
    gateway figure: aiohttp's is about a third of httpx's.
    """
    if kind == "httpx":
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            async def get(path):
                response = await client.get(path)
                response.raise_for_status()
                return response.headers

            async def post(path, content, headers):
                response = await client.post(path, content=content, headers=headers)
                response.raise_for_status()
                return response.headers

            yield get, post
        return
    import aiohttp

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def get(path):
            async with session.get(path) as response:
                response.raise_for_status()
                await response.read()
                return response.headers

        async def post(path, content, headers):
            async with session.post(path, data=content, headers=headers) as response:
                response.raise_for_status()
                await response.read()
                return response.headers

        yield get, post


async def run(args) -> dict:
    import tritonclient.grpc as grpcclient
    import tritonclient.grpc.aio as grpcaio

    results: dict = {"selector": selector_ns_per_call(), "cells": [], "seconds_per_cell": args.seconds,
                     "rounds": args.rounds, "concurrency": args.concurrency, "client": args.client,
                     "machine": {"cpus": __import__("os").cpu_count()}}
    print(f"selector: InterpolationPolicy.select = {results['selector']['ns_per_call']:.0f} ns per call")
    batch = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    binary_body, binary_headers = binary_infer_request(batch, binary_output=True)
    json_body = json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                        "data": batch.reshape(-1).tolist()}]}).encode()
    image = IMAGE.read_bytes()
    logs = workdir()
    async with local_triton(logs) as triton, gateway_process(triton.grpc_url, logs) as (_, url):
        grpc = grpcaio.InferenceServerClient(triton.grpc_url)
        tensor = grpcclient.InferInput("input", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        output = grpcclient.InferRequestedOutput("logits")
        async with http_client(args.client, url, max(args.concurrency) * 2) as (get, post_raw):

            async def direct():
                result = await grpc.infer("resnet18", [tensor], outputs=[output])
                assert result.as_numpy("logits").shape == (1, 1000)

            async def post(path, content, headers):
                return server_timing_own(await post_raw(path, content, headers))

            async def healthz():
                await get("/healthz")

            calls = {
                "direct-grpc": direct,
                "tensor-bin": lambda: post("/v2/models/resnet18/infer", binary_body, binary_headers),
                "tensor-auto": lambda: post("/v2/models/auto/infer", binary_body, binary_headers),
                "tensor-json": lambda: post("/v2/models/resnet18/infer", json_body,
                                            {"content-type": "application/json"}),
                "image": lambda: post("/v1/classify", image, {"content-type": "image/jpeg"}),
                "healthz": healthz,
            }
            checked = await post_raw("/v2/models/auto/infer", binary_body, binary_headers)
            assert checked["x-model"] == "resnet18", checked  # auto must pick the same model
            for call in calls.values():  # warm up every path
                for _ in range(3):
                    await call()
            for concurrency in args.concurrency:
                # Targets take turns in short slices, round after round, so that load from anything else on
                # the machine falls on all of them alike rather than on whichever ran at the time.
                gathered = {t: {"latencies": [], "own": [], "elapsed": 0.0, "errors": 0} for t in args.targets}
                for _ in range(args.rounds):
                    for target in args.targets:
                        began = time.perf_counter()
                        part, latencies, own = await closed_loop(calls[target], concurrency, args.seconds / args.rounds)
                        entry = gathered[target]
                        entry["elapsed"] += time.perf_counter() - began
                        entry["latencies"] += latencies
                        entry["own"] += own
                        entry["errors"] += part["errors"]
                for target, entry in gathered.items():
                    cell = stats(entry["latencies"], entry["elapsed"])
                    cell.update(target=target, concurrency=concurrency, errors=entry["errors"])
                    if entry["own"]:
                        cell["gateway_own_p50_ms"] = float(np.percentile(np.asarray(entry["own"]) * 1e3, 50))
                    results["cells"].append(cell)
                    own_p50 = cell.get("gateway_own_p50_ms")
                    own = f"  gateway-own p50 {own_p50:.2f} ms" if own_p50 is not None else ""
                    print(f"c={concurrency:<3} {target:<12} {cell['throughput_rps']:8.1f} req/s  "
                          f"p50 {cell['p50_ms']:8.2f} ms"
                          f"  p99 {cell['p99_ms']:8.2f} ms  errors {cell['errors']}{own}", flush=True)
        await grpc.close()
    return results


def table(results: dict) -> str:
    cells = {(c["target"], c["concurrency"]): c for c in results["cells"]}
    lines = ["| concurrency | target | req/s | p50 ms | p99 ms | p50 vs direct | req/s vs direct "
             "| gateway-own p50 ms | errors |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for concurrency in results["concurrency"]:
        direct = cells.get(("direct-grpc", concurrency))
        for target in TARGETS:
            cell = cells.get((target, concurrency))
            if cell is None:
                continue
            ratio_p50 = ratio_rps = "-"
            if direct and target not in ("direct-grpc", "healthz") and cell["requests"]:
                ratio_p50 = f"{cell['p50_ms'] / direct['p50_ms']:.3f}"
                ratio_rps = f"{cell['throughput_rps'] / direct['throughput_rps']:.3f}"
            own = f"{cell['gateway_own_p50_ms']:.2f}" if "gateway_own_p50_ms" in cell else "-"
            lines.append(f"| {concurrency} | {target} | {cell['throughput_rps']:.1f} | {cell['p50_ms']:.2f} | "
                         f"{cell['p99_ms']:.2f} | {ratio_p50} | {ratio_rps} | {own} | {cell['errors']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=4, help="slices each cell's time into this many turns")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--json", type=Path, default=PROJECT / "var" / "bench" / "overhead.json")
    parser.add_argument("--client", choices=("httpx", "aiohttp"), default="aiohttp",
                        help="HTTP client for the gateway targets (it shares the cores with the server)")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    print()
    print(table(results))
    save_json(args.json, results)


if __name__ == "__main__":
    main()
