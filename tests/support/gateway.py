"""Settings for a test, and the gateway on an in-process ASGI client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from gateway.server import GatewayServer
from gateway.serving.backend import InferenceBackend
from gateway.settings import GatewaySettings, load_settings


def settings_for(model_repository: Path, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {"triton": {"model_repository": str(model_repository)}}
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split("__")
        target = values
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return load_settings(None, values)


@asynccontextmanager
async def gateway_client(settings: GatewaySettings,
                         backend: str | InferenceBackend) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app with its lifespan running, reached in-process over ASGI; ``backend``: a Triton's
    gRPC address, or an ``InferenceBackend``."""
    async with GatewayServer(settings, backend) as server:
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60) as client:
            yield client


def pids_that_served(multiproc_dir: Path) -> set[str]:
    """The processes whose multiprocess metric files count a served request (gateway workers, not a sampler)."""
    from prometheus_client.mmap_dict import MmapedDict

    pids = set()
    for path in multiproc_dir.glob("counter_*.db"):
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            if '"carbon_gateway_requests_total"' in key and value > 0:
                pids.add(path.stem.rsplit("_", 1)[-1])
    return pids


def multiproc_dir_of(pid: int) -> Path:
    """The metrics directory that ``serve --workers N`` (process ``pid``) made for its workers."""
    import psutil

    workers = psutil.Process(pid).children()
    return Path(workers[0].environ()["PROMETHEUS_MULTIPROC_DIR"])
