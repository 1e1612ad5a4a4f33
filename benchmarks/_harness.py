"""Shared by the benchmarks: a local Triton and a gateway process on free ports, latency statistics.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))  # the checkout's gateway package, installed or not
from gateway.testing.processes import GatewayProcess, running_triton  # noqa: E402
REPOSITORY = PROJECT / "model_repository"
POOL_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
SHARED_DATA = Path(os.environ.get("CARBON_GATEWAY_SHARED_DATA", PROJECT.parent / "shared" / "data"))
IMAGE = SHARED_DATA / "images" / "n02129604_tiger.JPEG"


def local_triton(log_dir: Path, model_config_name: str = "cpu"):
    return running_triton(REPOSITORY, POOL_MODELS, log_dir / "tritonserver.log", model_config_name=model_config_name)


@asynccontextmanager
async def gateway_process(triton_url: str, log_dir: Path, *extra: str, env: dict[str, str] | None = None):
    """``carbon-gateway serve`` (uvicorn) in a subprocess with the paper's interpolation policy on a dirty grid,
    so that ``auto`` picks the smallest model (the default ``error-target`` would meet its accuracy target)."""
    env = {"CARBON_GATEWAY_POLICY__NAME": "interpolation", **(env or {})}
    gateway = GatewayProcess("--triton", triton_url, "--repository", str(REPOSITORY), "--carbon-intensity", "1000",
                             "--c-low", "100", "--c-high", "300", "--log-level", "warning", *extra, cwd=PROJECT,
                             env=env, log_file=log_dir / "gateway.log", timeout_s=60)
    gateway.start()
    try:
        await asyncio.to_thread(gateway.wait_ready)
        yield gateway.process, gateway.url
    finally:
        gateway.stop(timeout_s=15)


def save_json(path: Path, result: dict) -> None:
    """Write a benchmark's result as JSON and say where."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {path}")


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="carbon-gateway-bench-"))


def stats(latencies_s: list[float], elapsed_s: float) -> dict[str, float]:
    values = np.asarray(latencies_s) * 1e3
    if values.size == 0:
        return {"requests": 0, "throughput_rps": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan"),
                "mean_ms": float("nan")}
    return {"requests": int(values.size), "throughput_rps": values.size / elapsed_s,
            "p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
            "mean_ms": float(values.mean())}
