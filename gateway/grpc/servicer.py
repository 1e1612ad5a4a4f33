"""The gRPC servicer: ``inference.GRPCInferenceService`` (the Open Inference Protocol), as Triton serves it.

Stock ``tritonclient.grpc`` clients work against it: health, server and model metadata, readiness,
configuration, statistics, the repository index, and ``ModelInfer`` on a pool model or on ``auto``. Each
call converts its message (``converters``), calls the data plane, and converts the answer back; admission,
metrics, the selector, energy and CO2 are the data plane's, as for the REST door.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from ..errors import GatewayError, UnknownModel
from ..serving.dataplane import DataPlane
from .converters import infer_response, request_batch, request_options, status_code

logger = logging.getLogger(__name__)

Reply = TypeVar("Reply")


async def _abort(context: grpc.aio.ServicerContext, exc: GatewayError) -> None:
    """End the call with the error's status and message, and log it as the REST handler does."""
    code = status_code(exc.status)
    logger.log(logging.WARNING if exc.status >= 500 else logging.INFO, "grpc -> %s %s: %s", code.name, exc.code,
               exc.detail)
    await context.abort(code, exc.detail)


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """Each call converts, calls the data plane, and turns a ``GatewayError`` into its status."""

    def __init__(self, plane: DataPlane):
        self.plane = plane

    async def _answer(self, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[Reply]]) -> Reply:
        try:
            return await work()
        except GatewayError as exc:
            await _abort(context, exc)
            raise  # not reached: abort ends the call

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def ready() -> Any:
            return service_pb2.ServerReadyResponse(ready=await self.plane.server_ready())

        return await self._answer(context, ready)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return json_format.ParseDict(self.plane.server_metadata(), service_pb2.ServerMetadataResponse())

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def ready() -> Any:
            try:
                found = await self.plane.model_ready(request.name, request.version or None)
            except UnknownModel:  # not ready, as REST's /ready says with its 404
                found = False
            return service_pb2.ModelReadyResponse(ready=found)

        return await self._answer(context, ready)

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def describe() -> Any:
            found = await self.plane.model_metadata(request.name, request.version or None)
            return json_format.ParseDict(found, service_pb2.ModelMetadataResponse(), ignore_unknown_fields=True)

        return await self._answer(context, describe)

    async def ModelConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def configure() -> Any:
            found = await self.plane.model_config(request.name, request.version or None)
            config = json_format.ParseDict(found, model_config_pb2.ModelConfig(), ignore_unknown_fields=True)
            return service_pb2.ModelConfigResponse(config=config)

        return await self._answer(context, configure)

    async def ModelStatistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def statistics() -> Any:
            found = await self.plane.model_statistics(request.name or None, request.version or None)
            return json_format.ParseDict(found, service_pb2.ModelStatisticsResponse(), ignore_unknown_fields=True)

        return await self._answer(context, statistics)

    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def index() -> Any:
            entries = await self.plane.repository_index()
            return json_format.ParseDict({"models": entries}, service_pb2.RepositoryIndexResponse())

        return await self._answer(context, index)

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        plane = self.plane
        with plane.track("grpc") as record:
            try:
                with plane.admit():
                    target = plane.target(request.model_name, request.model_version or None)
                    expected = await plane.signature()
                    batch = request_batch(request, expected, plane.max_batch)
                    constraints, receipt = request_options(request.parameters)
                    outcome = await plane.infer(target, batch, constraints, receipt)
                record.status, record.model = 200, outcome.decision.model.name
                return infer_response(request.id, outcome, expected)
            except GatewayError as exc:
                record.status = exc.status
                await _abort(context, exc)


async def start_server(servicer: InferenceServicer, host: str, port: int) -> grpc.aio.Server:
    """A gRPC server on ``host:port`` with ``servicer``; ``SO_REUSEPORT`` lets several workers share the port."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024),
                                      ("grpc.max_send_message_length", 64 * 1024 * 1024), ("grpc.so_reuseport", 1)])
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"cannot listen for gRPC on {host}:{port}")
    await server.start()
    logger.info("gRPC (KServe v2 / Triton) on %s:%d", host, port)
    return server
