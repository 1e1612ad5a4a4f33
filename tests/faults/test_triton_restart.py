"""Triton killed mid-load and restarted: fast 503s, /readyz says so, and service resumes by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from gateway.triton import LocalTritonServer

from gateway.testing.processes import free_port
from tests.support.data import IMAGES
from tests.support.gateway import gateway_client, settings_for

JPEG = {"content-type": "image/jpeg"}


@pytest.fixture
async def own_triton(model_repository, tmp_path):
    ports = {"grpc_port": free_port(), "http_port": free_port(), "metrics_port": free_port()}
    servers = []

    def start() -> LocalTritonServer:
        server = LocalTritonServer(model_repository, log_file=tmp_path / "triton.log",
                                   extra_args=["--model-control-mode=explicit", "--load-model=resnet18"], **ports)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


async def test_triton_killed_and_restarted_under_load(model_repository, own_triton, tmp_path):
    pool = tmp_path / "pool.yaml"
    pool.write_text("models: [{name: resnet18, energy_mj: 178, error_rate: 10.9}]\n")
    server = own_triton()
    await server.wait_ready(["resnet18"])
    settings = settings_for(model_repository, pool_file=str(pool), watch_pool=False)
    async with gateway_client(settings, server.grpc_url) as client:
        log: list[tuple[float, int, float]] = []  # (when, status, seconds taken)
        stop = asyncio.Event()

        async def load() -> None:
            while not stop.is_set():
                started = time.monotonic()
                response = await client.post("/v1/classify", content=IMAGES[0].read_bytes(), headers=JPEG)
                log.append((started, response.status_code, time.monotonic() - started))
                if response.status_code == 503:
                    assert response.json()["error"] in ("triton_unavailable", "model_not_ready")
                    assert response.headers["retry-after"]
                    await asyncio.sleep(0.05)

        workers = [asyncio.create_task(load()) for _ in range(3)]
        await asyncio.sleep(1.5)
        os.killpg(server.process.pid, signal.SIGKILL)  # Triton and its backend stubs, without warning
        server.process.wait()
        killed_at = time.monotonic()
        await asyncio.sleep(1.5)
        down = await client.get("/readyz")
        restarted = own_triton()
        await restarted.wait_ready(["resnet18"])
        back_at = time.monotonic()
        deadline = back_at + 15
        while not any(when > back_at and status == 200 for when, status, _ in log):
            assert time.monotonic() < deadline, "the gateway did not resume after Triton came back"
            await asyncio.sleep(0.1)
        up = await client.get("/readyz")
        stop.set()
        await asyncio.gather(*workers)

    assert down.status_code == 503 and down.json()["triton_reachable"] is False
    assert up.status_code == 200
    statuses = {status for _, status, _ in log}
    assert statuses == {200, 503}, statuses  # nothing but successes and clean 503s
    outage = [seconds for when, status, seconds in log if status == 503 and killed_at <= when < back_at]
    assert outage and max(outage) < 2.0, "503s must come fast while Triton is down"
    assert any(status == 200 for when, status, _ in log if when < killed_at)
