"""What the gateway costs on top of Triton: direct gRPC vs the gateway's routes, same Triton, same model.

    python benchmarks/overhead.py                    # null model; workers 1 and 2; concurrency 1, 8, 32
    python benchmarks/overhead.py --model resnet18 --workers 1 --concurrency 1 4 16   # behind a CPU ResNet

With ``--model null`` (the default) the model is the builder's null model: the pool's exact signature
([N,3,224,224] FP32 in, [N,1000] out) but a mean-pool and a 3x1000 linear layer, so inference is
nearly free and what is left is the gateway's own cost, as it would be in front of a GPU that runs a
ResNet in a millisecond. It is built into its own repository (``var/bench/null-repository``) with a
pool of that one model. ``image-triton`` adds the ``image`` model to whichever repository is used.

Starts its own local CPU Triton and, per ``--workers`` value, a gateway process (``carbon-gateway
serve --triton``, uvicorn), then for each concurrency runs each target closed-loop for a fixed time:

* ``direct-grpc``: tritonclient.grpc.aio, one shared client, the model, a [1,3,224,224] tensor;
* ``direct-shm``:  the same client with the tensor in system shared memory, as the gateway sends it to a
  Triton on its host (``triton.shared_memory_slots``): the best a client of its own could do here;
* ``grpc-auto``:   the gateway's gRPC front door (``--grpc-port``), the same client and tensor, model ``auto``;
* ``tensor-bin``:  ``POST /v2/models/<model>/infer``, the same tensor, KServe v2 binary extension in and out;
* ``tensor-auto``: the same on ``/v2/models/auto/infer`` (the selector runs; a dirty grid picks the model);
* ``tensor-json``: ``/v2/models/<model>/infer`` with the tensor as JSON ``data`` (150,528 numbers, 3 MB);
* ``image``:       ``POST /v1/classify`` with the shared ImageNet JPEGs in turn (decode, resize, normalise, top-5);
* ``image-triton``: the same through a second gateway process that hands the uploads to Triton's ``image``
  model (``triton.image_model``): decoding moves from the gateway's CPU to Triton's, so compare the gateway
  and Triton columns together;
* ``healthz``:     ``GET /healthz``, the floor of an HTTP round trip through the gateway's middleware.

Per cell: throughput, p50/p99 latency, and CPU per request: the gateway's processes (parent and
workers, from /proc), the client's (this process), and Triton's. Targets take turns in short slices so
that any other load on the machine falls on all of them alike.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from multiprocessing.shared_memory import SharedMemory

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import PROJECT, REPOSITORY, SHARED_DATA, gateway_process, save_json, stats, workdir

from gateway.testing.tensors import binary_infer_request
from gateway.testing.processes import free_port, running_triton

TARGETS = ("direct-grpc", "direct-shm", "grpc-auto", "tensor-bin", "tensor-auto", "tensor-json", "image",
           "image-triton", "healthz")


def selector_ns_per_call(calls: int = 200_000) -> dict[str, float]:
    """What choosing costs per request: the paper's heuristic (``select``), and the default policy's whole
    per-request path (``advance``, ``select``, ``observe``) after one plan."""
    from gateway.pool import load_pool
    from gateway.policy import CarbonWindow, ErrorTargetPolicy, InterpolationPolicy

    pool = load_pool(PROJECT / "gateway" / "pools" / "paper-v100.yaml")
    window = CarbonWindow(100.0, 300.0)
    intensities = np.random.default_rng(0).uniform(50, 350, 1024).tolist()
    interpolation = InterpolationPolicy(pool)
    target = ErrorTargetPolicy(pool)
    now = time.time()
    target.plan(now, 200.0, np.empty(0), np.empty(0))

    def interpolation_request(intensity: float) -> None:
        interpolation.select(intensity, window)

    def target_request(intensity: float) -> None:
        target.advance(now)
        target.observe(intensity, target.select(intensity, window))

    result: dict[str, float] = {"calls": calls}
    for name, request in (("ns_per_call", interpolation_request), ("error_target_ns_per_request", target_request)):
        for intensity in intensities:  # warm up
            request(intensity)
        started = time.perf_counter_ns()
        for i in range(calls):
            request(intensities[i & 1023])
        result[name] = (time.perf_counter_ns() - started) / calls
    return result


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
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        def absolute(path):  # a path on ``url``, or a URL of its own (another gateway)
            return path if "://" in path else url + path

        async def get(path):
            async with session.get(absolute(path)) as response:
                response.raise_for_status()
                await response.read()
                return response.headers

        async def post(path, content, headers):
            async with session.post(absolute(path), data=content, headers=headers) as response:
                response.raise_for_status()
                await response.read()
                return response.headers

        yield get, post


def null_repository(torch_weights: bool = False) -> Path:
    """The null model in a repository of its own (pool and labels included), built once."""
    from gateway.modelzoo.build import build_repository

    repository = PROJECT / "var" / "bench" / "null-repository"
    build_repository(repository, ["null"], weights="random", labels_file=REPOSITORY / "labels.txt",
                     torch_weights=torch_weights)
    return repository


class CpuClock:
    """CPU seconds of process trees (the gateways' parents and workers; Triton and its stubs) and of this process."""

    def __init__(self, **roots: list[int]):
        import psutil

        self._psutil = psutil
        self.roots = {name: [psutil.Process(pid) for pid in pids] for name, pids in roots.items()}

    def _tree(self, root) -> float:
        total = 0.0
        for process in (root, *root.children(recursive=True)):
            with contextlib.suppress(self._psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def read(self) -> dict[str, float]:
        return {"client": time.process_time(),
                **{name: sum(self._tree(root) for root in roots) for name, roots in self.roots.items()}}


async def run(args) -> dict:
    import tritonclient.grpc as grpcclient
    import tritonclient.grpc.aio as grpcaio

    model = args.model
    repository = null_repository(torch_weights=args.triton_config == "torch-gpu") if model == "null" else REPOSITORY
    results: dict = {"selector": selector_ns_per_call(), "cells": [], "seconds_per_cell": args.seconds,
                     "triton_config": args.triton_config,
                     "rounds": args.rounds, "concurrency": args.concurrency, "workers": args.workers,
                     "client": args.client, "model": model, "machine": {"cpus": os.cpu_count()}}
    print(f"selector: InterpolationPolicy.select = {results['selector']['ns_per_call']:.0f} ns per call; "
          f"error-target advance+select+observe = {results['selector']['error_target_ns_per_request']:.0f} ns")
    batch = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    binary_body, binary_headers = binary_infer_request(batch, binary_output=True)
    json_body = json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                        "data": batch.reshape(-1).tolist()}]}).encode()
    images = [path.read_bytes() for path in sorted((SHARED_DATA / "images").glob("*.JPEG"))]
    handing = "image-triton" in args.targets
    if handing:
        from gateway.modelzoo.build import IMAGE_MODEL, write_image_model

        write_image_model(repository)
    logs = workdir()
    async with running_triton(repository, [model, IMAGE_MODEL] if handing else [model], logs / "tritonserver.log",
                              model_config_name=args.triton_config) as triton:
        grpc = grpcaio.InferenceServerClient(triton.grpc_url)
        tensor = grpcclient.InferInput("input", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        output = grpcclient.InferRequestedOutput("logits")

        def grpc_call(client, name):
            async def call():
                result = await client.infer(name, [tensor], outputs=[output])
                assert result.as_numpy("logits").shape == (1, 1000)
            return call

        # The best a client of its own can do on this host: tritonclient with system shared memory, as the
        # gateway sends to a local Triton (gateway/triton/shm.py).
        regions = [SharedMemory(create=True, size=batch.nbytes) for _ in range(max(args.concurrency))]
        free = []
        for index, region in enumerate(regions):
            await grpc.register_system_shared_memory(f"bench-{index}", "/" + region.name, batch.nbytes)
            shared_input = grpcclient.InferInput("input", list(batch.shape), "FP32")
            shared_input.set_shared_memory(f"bench-{index}", batch.nbytes)
            free.append((region, shared_input))

        async def shm_call():
            region, shared_input = free.pop()
            try:
                region.buf[:batch.nbytes] = batch.data.cast("B")
                result = await grpc.infer(model, [shared_input], outputs=[output])
                assert result.as_numpy("logits").shape == (1, 1000)
            finally:
                free.append((region, shared_input))

        for workers in args.workers:
            grpc_port = free_port()
            options = ("--repository", str(repository), "--workers", str(workers))
            async with contextlib.AsyncExitStack() as stack:
                process, url = await stack.enter_async_context(
                    gateway_process(triton.grpc_url, logs, *options, "--grpc-port", str(grpc_port)))
                gateways, posts = [process.pid], {
                    "tensor-bin": (f"/v2/models/{model}/infer", binary_body, binary_headers),
                    "tensor-auto": ("/v2/models/auto/infer", binary_body, binary_headers),
                    "tensor-json": (f"/v2/models/{model}/infer", json_body, {"content-type": "application/json"}),
                    "image": ("/v1/classify", images, {"content-type": "image/jpeg"}),
                }
                if handing:
                    # It idles while the first is measured, and the other way round; the clock counts both.
                    (logs / "image-triton").mkdir(exist_ok=True)
                    second, second_url = await stack.enter_async_context(gateway_process(
                        triton.grpc_url, logs / "image-triton", *options,
                        env={"CARBON_GATEWAY_TRITON__IMAGE_MODEL": IMAGE_MODEL}))
                    gateways.append(second.pid)
                    posts["image-triton"] = (second_url + "/v1/classify", images, {"content-type": "image/jpeg"})
                front_door = grpcaio.InferenceServerClient(f"127.0.0.1:{grpc_port}")
                clock = CpuClock(gateway=gateways, triton=[triton.process.pid])
                calls = {"direct-grpc": grpc_call(grpc, model), "direct-shm": shm_call,
                         "grpc-auto": grpc_call(front_door, "auto")}
                await measure(args, results, workers, url, clock, calls, posts)
                await front_door.close()
        await grpc.unregister_system_shared_memory()
        await grpc.close()
        for region in regions:
            region.close()
            region.unlink()
    return results


async def measure(args, results: dict, workers: int, url: str, clock: CpuClock, grpc_calls: dict, posts: dict) -> None:
    """Every target at every concurrency against one gateway process; appends a cell per pair to ``results``."""
    async with http_client(args.client, url, max(args.concurrency) * 2) as (get, post_raw):
        def poster(path, content, headers):
            if isinstance(content, list):  # the images, in turn
                turn = iter(range(1 << 62))
                return lambda: post_raw(path, content[next(turn) % len(content)], headers)
            return lambda: post_raw(path, content, headers)

        calls = {**grpc_calls, **{t: poster(*request) for t, request in posts.items()},
                 "healthz": lambda: get("/healthz")}
        checked = await calls["tensor-auto"]()
        assert checked["x-model"] == args.model, checked  # auto must pick the same model
        for call in calls.values():  # warm up every path (and both workers)
            for _ in range(10):
                await call()
        for concurrency in args.concurrency:
            gathered = {t: {"latencies": [], "elapsed": 0.0, "errors": 0, "cpu": dict.fromkeys(
                ("client", "gateway", "triton"), 0.0)} for t in args.targets}
            for _ in range(args.rounds):
                for target in args.targets:
                    before, began = clock.read(), time.perf_counter()
                    part, latencies = await closed_loop(calls[target], concurrency, args.seconds / args.rounds)
                    after, entry = clock.read(), gathered[target]
                    entry["elapsed"] += time.perf_counter() - began
                    entry["latencies"] += latencies
                    entry["errors"] += part["errors"]
                    for name in entry["cpu"]:
                        entry["cpu"][name] += after[name] - before[name]
            for target, entry in gathered.items():
                cell = stats(entry["latencies"], entry["elapsed"])
                served = max(cell["requests"], 1)
                cell.update(target=target, concurrency=concurrency, workers=workers, errors=entry["errors"],
                            **{f"{name}_cpu_ms": seconds / served * 1e3 for name, seconds in entry["cpu"].items()})
                results["cells"].append(cell)
                print(f"w={workers} c={concurrency:<3} {target:<12} {cell['throughput_rps']:8.1f} req/s  "
                      f"p50 {cell['p50_ms']:7.2f} ms  p99 {cell['p99_ms']:7.2f} ms  "
                      f"gateway {cell['gateway_cpu_ms']:5.2f}  client {cell['client_cpu_ms']:5.2f}  "
                      f"triton {cell['triton_cpu_ms']:5.2f} CPU ms/req  errors {cell['errors']}", flush=True)


async def closed_loop(call, concurrency: int, seconds: float) -> tuple[dict, list[float]]:
    """``concurrency`` workers each calling ``call()`` back to back for ``seconds``; errors are counted."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker():
        nonlocal errors
        while time.perf_counter() < stop:
            started = time.perf_counter()
            try:
                await call()
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors += 1
                if errors <= 3:
                    print(f"  error: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
                continue
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result = stats(latencies, time.perf_counter() - began)
    result["errors"] = errors
    return result, latencies


def table(results: dict) -> str:
    cells = {(c["workers"], c["target"], c["concurrency"]): c for c in results["cells"]}
    lines = ["| workers | concurrency | target | req/s | p50 ms | p99 ms | gateway CPU ms/req | client CPU ms/req "
             "| Triton CPU ms/req | req/s vs direct | p50 - direct ms | errors |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for workers in results["workers"]:
        for concurrency in results["concurrency"]:
            direct = cells.get((workers, "direct-grpc", concurrency))
            for target in TARGETS:
                cell = cells.get((workers, target, concurrency))
                if cell is None:
                    continue
                ratio = delta = "-"
                if direct and target not in ("direct-grpc", "direct-shm", "healthz") and cell["requests"]:
                    ratio = f"{cell['throughput_rps'] / direct['throughput_rps']:.2f}"
                    delta = f"{cell['p50_ms'] - direct['p50_ms']:+.2f}"
                gateway = "-" if target.startswith("direct") else f"{cell['gateway_cpu_ms']:.2f}"
                lines.append(f"| {workers} | {concurrency} | {target} | {cell['throughput_rps']:.0f} | "
                             f"{cell['p50_ms']:.2f} | {cell['p99_ms']:.2f} | {gateway} | {cell['client_cpu_ms']:.2f} | "
                             f"{cell['triton_cpu_ms']:.2f} | {ratio} | {delta} | {cell['errors']} |")
    return "\n".join(lines)


#: The gateway's budget on the null model (issue "Not the bottleneck"), as (what, limit, how it is read).
TARGETS_MET = (
    ("gateway CPU per binary tensor request, ms", 1.0, "max"),
    ("gateway CPU per /v1/classify JPEG, ms", 2.5, "max"),
    ("the same, decoded in Triton (image-triton), ms", 2.5, "max"),
    ("tensor-route throughput at c=8 / direct gRPC", 0.65, "min"),
    ("p50 at c=1 minus direct gRPC, ms", 1.0, "max"),
)


def verdicts(results: dict) -> str:
    """Each target against this run, per worker count: the worst cell over the concurrencies it applies to."""
    cells = {(c["workers"], c["target"], c["concurrency"]): c for c in results["cells"]}
    lines = []
    for workers in results["workers"]:
        ours = [c for c in results["cells"] if c["workers"] == workers]
        tensor = [c["gateway_cpu_ms"] for c in ours if c["target"] == "tensor-bin"]
        image = [c["gateway_cpu_ms"] for c in ours if c["target"] == "image"]
        handed = [c["gateway_cpu_ms"] for c in ours if c["target"] == "image-triton"]
        c8 = cells.get((workers, "tensor-bin", 8)), cells.get((workers, "direct-grpc", 8))
        c1 = cells.get((workers, "tensor-bin", 1)), cells.get((workers, "direct-grpc", 1))
        measured = (
            max(tensor, default=None),
            max(image, default=None),
            max(handed, default=None),
            c8[0]["throughput_rps"] / c8[1]["throughput_rps"] if c8[0] and c8[1] else None,
            c1[0]["p50_ms"] - c1[1]["p50_ms"] if c1[0] and c1[1] else None,
        )
        for (what, limit, kind), value in zip(TARGETS_MET, measured, strict=True):
            if value is None:
                continue
            met = value <= limit if kind == "max" else value >= limit
            lines.append(f"workers={workers}  {what}: {value:.3f} (target {'<=' if kind == 'max' else '>='} {limit})"
                         f"  {'met' if met else 'NOT met'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="null", help="null (the gateway's own cost) or a pool model, e.g. resnet18")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="gateway worker processes")
    parser.add_argument("--triton-config", default="cpu",
                        help="the local Triton's configs/<name>.pbtxt: cpu, or python-gpu or torch-gpu on a GPU host")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=3, help="slices each cell's time into this many turns")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--json", type=Path, default=PROJECT / "var" / "bench" / "overhead.json")
    parser.add_argument("--client", choices=("httpx", "aiohttp"), default="aiohttp",
                        help="HTTP client for the gateway targets (it shares the cores with the server)")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    print()
    print(table(results))
    if args.model == "null":
        print()
        print(verdicts(results))
    save_json(args.json, results)


if __name__ == "__main__":
    main()
