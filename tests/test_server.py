"""``GatewayServer``: one runtime, and the REST and gRPC doors as peers in front of its one data plane."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import tritonclient.grpc.aio as grpcaio
from tritonclient.grpc import InferInput
from tritonclient.utils import InferenceServerException

from gateway.server import GatewayServer
from tests.support.backend import FakeBackend
from gateway.testing.processes import free_port
from gateway.testing.tensors import binary_infer_request

from tests.support.data import POOL_MODELS
from tests.support.gateway import settings_for

LIMIT = 4


async def test_one_in_flight_limit_for_both_doors(fake_repository):
    """With both ports open and ``max_in_flight`` N, N+1 slow requests split across HTTP and gRPC: exactly one
    is refused, whichever door it came through (each door used to count alone, admitting 2N)."""
    settings = settings_for(fake_repository, grpc_port=free_port(), limits__max_in_flight=LIMIT)
    batch = np.zeros((1, 3, 224, 224), np.float32)
    body, headers = binary_infer_request(batch)
    server = GatewayServer(settings, FakeBackend(POOL_MODELS, delay_s=1.0))
    async with server, httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app), base_url="http://g",
                                         timeout=30) as http:
        grpc = grpcaio.InferenceServerClient(f"127.0.0.1:{settings.grpc_port}")
        tensor = InferInput("input", [1, 3, 224, 224], "FP32")
        tensor.set_data_from_numpy(batch)

        async def over_http() -> str:
            response = await http.post("/v2/models/auto/infer", content=body, headers=headers)
            return "refused" if response.status_code == 429 else str(response.status_code)

        async def over_grpc() -> str:
            try:
                await grpc.infer("auto", [tensor])
            except InferenceServerException as exc:
                return "refused" if "RESOURCE_EXHAUSTED" in str(exc.status()) else str(exc)
            return "200"

        try:
            answers = await asyncio.gather(*(over_http() for _ in range(LIMIT // 2 + 1)),
                                           *(over_grpc() for _ in range(LIMIT - LIMIT // 2)))
        finally:
            await grpc.close()
    assert sorted(answers) == ["200"] * LIMIT + ["refused"]
    assert server.runtime.plane.admission.in_flight == 0
