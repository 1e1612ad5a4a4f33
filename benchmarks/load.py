"""A bounded load test: sustained concurrency against a gateway process, errors counted, its memory sampled.

    python benchmarks/load.py                          # 60 s, concurrency 8
    python benchmarks/load.py --seconds 150 --concurrency 16 --json var/bench/load.json

Starts a local CPU Triton and a gateway process (as benchmarks/overhead.py does), then runs
``--concurrency`` async httpx clients back to back for ``--seconds``, all to 127.0.0.1, with a mix of
requests: JPEGs on ``/v1/classify`` (the sample images in turn), binary tensors on ``/v2/models/auto/infer``,
and a few deliberately bad ones (garbage bytes, malformed tensor JSON) that must get their 4xx. Anything
else, a 5xx, a wrong status or a transport error, is an *unexpected error*; the run fails if there is one.
The gateway's RSS (from /proc/<pid>/status, the process and its children) is sampled every second; the
report gives it after warm-up, at the end, its peak, and the least-squares slope over the run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import PROJECT, SHARED_DATA, gateway_process, local_triton, stats, save_json, workdir

from gateway.testing.tensors import binary_infer_request


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn may fork workers)."""
    import psutil

    try:
        process = psutil.Process(pid)
        return sum(p.memory_info().rss for p in (process, *process.children(recursive=True)))
    except psutil.NoSuchProcess:
        return 0


async def run(args) -> dict:
    images = [path.read_bytes() for path in sorted((SHARED_DATA / "images").glob("*.JPEG"))]
    batch = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    tensor_body, tensor_headers = binary_infer_request(batch, binary_output=True)
    requests = []  # (name, method, path, content, headers, expected status)
    for i, image in enumerate(images):
        requests.append(("image", "/v1/classify", image, {"content-type": "image/jpeg"}, 200))
        requests.append(("tensor", "/v2/models/auto/infer", tensor_body, tensor_headers, 200))
        if i % 3 == 0:
            requests.append(("bad-image", "/v1/classify", b"not an image at all", {"content-type": "image/jpeg"}, 415))
            requests.append(("bad-tensor", "/v2/models/auto/infer", b'{"inputs": [',
                             {"content-type": "application/json"}, 400))
    logs = workdir()
    async with local_triton(logs) as triton, gateway_process(triton.grpc_url, logs) as (process, url):
        samples: list[tuple[float, int]] = []
        latencies: dict[str, list[float]] = {}
        statuses: dict[str, int] = {}
        unexpected: list[str] = []
        limits = httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency * 2)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
            for _name, path, content, headers, _ in requests[:4]:  # warm up
                await client.post(path, content=content, headers=headers)
            began = time.perf_counter()
            stop = began + args.seconds

            async def sampler():
                while time.perf_counter() < stop:
                    samples.append((time.perf_counter() - began, rss_bytes(process.pid)))
                    await asyncio.sleep(1.0)

            async def worker(offset: int):
                i = offset
                while time.perf_counter() < stop:
                    name, path, content, headers, expected = requests[i % len(requests)]
                    i += 1
                    started = time.perf_counter()
                    try:
                        response = await client.post(path, content=content, headers=headers)
                    except httpx.HTTPError as exc:
                        unexpected.append(f"{name}: {type(exc).__name__}: {exc}")
                        continue
                    latencies.setdefault(name, []).append(time.perf_counter() - started)
                    key = f"{name} {response.status_code}"
                    statuses[key] = statuses.get(key, 0) + 1
                    if response.status_code != expected:
                        unexpected.append(f"{name}: {response.status_code} {response.text[:200]}")

            await asyncio.gather(sampler(), *(worker(k * 7) for k in range(args.concurrency)))
            elapsed = time.perf_counter() - began
            samples.append((elapsed, rss_bytes(process.pid)))
    times = np.array([t for t, _ in samples])
    rss_mb = np.array([r for _, r in samples]) / 2**20
    settled = rss_mb[times >= min(10.0, args.seconds / 4)]
    settled_times = times[times >= min(10.0, args.seconds / 4)]
    slope = float(np.polyfit(settled_times, settled, 1)[0] * 60) if settled.size > 2 else 0.0
    total = sum(len(v) for v in latencies.values())
    return {
        "seconds": elapsed, "concurrency": args.concurrency, "requests": total, "throughput_rps": total / elapsed,
        "by_kind": {name: stats(values, elapsed) for name, values in sorted(latencies.items())},
        "statuses": dict(sorted(statuses.items())), "unexpected_errors": len(unexpected), "unexpected": unexpected[:20],
        "rss_mb": {"after_warmup": float(settled[0]) if settled.size else float("nan"), "end": float(rss_mb[-1]),
                   "peak": float(rss_mb.max()), "slope_mb_per_min": slope},
        "rss_samples": [[round(float(t), 1), round(float(r), 1)] for t, r in zip(times, rss_mb, strict=True)],
    }


def report(result: dict) -> str:
    lines = [f"{result['requests']} requests in {result['seconds']:.0f} s at concurrency {result['concurrency']}: "
             f"{result['throughput_rps']:.1f} req/s, unexpected errors: {result['unexpected_errors']}",
             "", "| kind | requests | req/s | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    for name, cell in result["by_kind"].items():
        lines.append(f"| {name} | {cell['requests']} | {cell['throughput_rps']:.1f} | {cell['p50_ms']:.1f} | "
                     f"{cell['p99_ms']:.1f} |")
    lines += ["", "statuses: " + ", ".join(f"{k}: {v}" for k, v in result["statuses"].items()), "",
              "| t (s) | gateway RSS (MiB) |", "|---:|---:|"]
    step = max(1, len(result["rss_samples"]) // 12)
    samples = result["rss_samples"]
    for t, mb in samples[::step] + ([samples[-1]] if len(samples) % step != 1 else []):
        lines.append(f"| {t:.0f} | {mb:.1f} |")
    rss = result["rss_mb"]
    lines.append(f"\nRSS after warm-up {rss['after_warmup']:.1f} MiB, end {rss['end']:.1f} MiB, "
                 f"peak {rss['peak']:.1f} MiB, "
                 f"slope {rss['slope_mb_per_min']:+.2f} MiB/min")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", type=Path, default=PROJECT / "var" / "bench" / "load.json")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(report(result))
    for line in result["unexpected"]:
        print("unexpected:", line, file=sys.stderr)
    save_json(args.json, result)
    sys.exit(1 if result["unexpected_errors"] else 0)


if __name__ == "__main__":
    main()
