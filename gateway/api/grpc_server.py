"""The gRPC front door: ``inference.GRPCInferenceService`` (the Open Inference Protocol), as Triton serves it.

Stock ``tritonclient.grpc`` clients work against it: health, server and model metadata, readiness,
configuration, statistics, the repository index, and ``ModelInfer`` on a pool model or on ``auto``. The
request's ``raw_input_contents`` become the batch as they are (a NumPy view, no decoding), so this is the
cheapest way in. The selector, energy and CO2 accounting, metrics, the in-flight limit and fallback are the
HTTP routes' own (``GatewayService``); the carbon, model and energy facts ride in the response's
``parameters``. The protos are tritonclient's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from ..errors import GatewayError, InvalidTensorRequest, Overloaded, UnknownModel
from ..policy import Constraints
from ..serving import health, metadata
from ..serving.service import GatewayService, Outcome
from ..telemetry import MetricsSink
from .kserve import check_input, check_outputs, tensor_spec
from .middleware import _outcome

logger = logging.getLogger(__name__)

#: The HTTP status of a ``GatewayError`` as a gRPC status code.
STATUS_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
                403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
                413: grpc.StatusCode.RESOURCE_EXHAUSTED, 415: grpc.StatusCode.INVALID_ARGUMENT,
                422: grpc.StatusCode.FAILED_PRECONDITION, 429: grpc.StatusCode.RESOURCE_EXHAUSTED,
                502: grpc.StatusCode.INTERNAL, 503: grpc.StatusCode.UNAVAILABLE}

Reply = TypeVar("Reply")


def _parameters(outcome: Outcome, selected_by: str) -> dict[str, service_pb2.InferParameter]:
    decision, energy = outcome.decision, outcome.energy
    values: dict[str, service_pb2.InferParameter] = {
        "carbon_intensity": service_pb2.InferParameter(double_param=decision.carbon.intensity),
        "expected_error_rate": service_pb2.InferParameter(double_param=decision.model.error_rate),
        "energy_joules": service_pb2.InferParameter(double_param=energy.joules),
        "energy_source": service_pb2.InferParameter(string_param=energy.source),
        "energy_measured": service_pb2.InferParameter(bool_param=energy.measured),
        "selected_by": service_pb2.InferParameter(string_param=selected_by),
        "model": service_pb2.InferParameter(string_param=decision.model.name),
    }
    if outcome.co2_g is not None:
        values["co2_grams"] = service_pb2.InferParameter(double_param=outcome.co2_g)
    if decision.fallback_from:
        values["fallback_from"] = service_pb2.InferParameter(string_param=decision.fallback_from)
    return values


def _constraints(parameters: Any) -> tuple[Constraints | None, bool]:
    """The request's ``min_accuracy`` / ``max_latency_ms`` (numbers) and ``energy`` ("measured") parameters."""
    def number(key: str) -> float | None:
        if key not in parameters:
            return None
        parameter = parameters[key]
        kind = parameter.WhichOneof("parameter_choice")
        if kind not in ("double_param", "int64_param", "uint64_param"):
            raise InvalidTensorRequest(f"parameter {key!r} must be a number")
        return float(getattr(parameter, kind))

    minimum, latency = number("min_accuracy"), number("max_latency_ms")
    try:
        constraints = (Constraints(min_accuracy=minimum, max_latency_ms=latency)
                       if minimum is not None or latency is not None else None)
    except ValueError as exc:
        raise InvalidTensorRequest(f"bad constraint: {exc}") from None
    receipt = "energy" in parameters and parameters["energy"].string_param == "measured"
    return constraints, receipt


async def _abort(context: grpc.aio.ServicerContext, exc: GatewayError) -> None:
    """End the call with the error's status and message, and log it as the HTTP handler does."""
    code = STATUS_CODES.get(exc.status, grpc.StatusCode.INTERNAL)
    logger.log(logging.WARNING if exc.status >= 500 else logging.INFO, "grpc -> %s %s: %s", code.name, exc.code,
               exc.detail)
    await context.abort(code, exc.detail)


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """Delegates every call to the running ``GatewayService`` (``service()``), turning errors into statuses."""

    def __init__(self, service: Callable[[], GatewayService], sink: MetricsSink, max_batch: int,
                 max_in_flight: int):
        self._service = service
        self.sink = sink
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def _answer(self, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[Reply]]) -> Reply:
        try:
            return await work()
        except GatewayError as exc:
            await _abort(context, exc)
            raise  # not reached: abort ends the call

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        service = self._service()

        async def ready() -> Any:
            return service_pb2.ServerReadyResponse(ready=await health.server_ready(service.backend, service.pool))

        return await self._answer(context, ready)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return json_format.ParseDict(metadata.server_metadata(), service_pb2.ServerMetadataResponse())

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        service = self._service()

        async def ready() -> Any:
            try:
                found = await metadata.model_ready(service.backend, service.pool, request.name,
                                                   request.version or None)
            except UnknownModel:  # not ready, as HTTP's /ready says with its 404
                found = False
            return service_pb2.ModelReadyResponse(ready=found)

        return await self._answer(context, ready)

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        service = self._service()

        async def describe() -> Any:
            found = await metadata.model_metadata(service.backend, service.pool, request.name, request.version or None)
            return json_format.ParseDict(found, service_pb2.ModelMetadataResponse(), ignore_unknown_fields=True)

        return await self._answer(context, describe)

    async def ModelConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        service = self._service()

        async def configure() -> Any:
            found = await metadata.model_config(service.backend, service.pool, request.name, request.version or None)
            config = json_format.ParseDict(found, model_config_pb2.ModelConfig(), ignore_unknown_fields=True)
            return service_pb2.ModelConfigResponse(config=config)

        return await self._answer(context, configure)

    async def ModelStatistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        service = self._service()

        async def statistics() -> Any:
            found = await metadata.model_statistics(service.backend, service.pool, request.name or None,
                                                    request.version or None)
            return json_format.ParseDict(found, service_pb2.ModelStatisticsResponse(), ignore_unknown_fields=True)

        return await self._answer(context, statistics)

    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        service = self._service()

        async def index() -> Any:
            entries = await metadata.repository_index(service.backend, service.pool)
            return json_format.ParseDict({"models": entries}, service_pb2.RepositoryIndexResponse())

        return await self._answer(context, index)

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        status, model = 500, "none"
        try:
            if self.in_flight >= self.max_in_flight:
                raise Overloaded(f"{self.in_flight} requests in flight, the limit is {self.max_in_flight}; retry later")
            self.in_flight += 1
            try:
                response = await self._infer(request)
            finally:
                self.in_flight -= 1
            status, model = 200, response.parameters["model"].string_param
            return response
        except GatewayError as exc:
            status = exc.status
            await _abort(context, exc)
        finally:
            self.sink.request("grpc", model, _outcome(status), time.perf_counter() - started)

    async def _infer(self, request: Any) -> Any:
        service = self._service()
        pinned = metadata.resolve(service.pool, request.model_name, request.model_version or None)
        expected = tensor_spec(await service.shared_io())
        if len(request.inputs) != 1:
            raise InvalidTensorRequest(f"expected exactly one input, got {len(request.inputs)}")
        tensor = request.inputs[0]
        shape = check_input({"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)},
                            self.max_batch, expected)
        check_outputs([output.name for output in request.outputs], expected.output_name)
        count = int(np.prod(shape))
        if len(request.raw_input_contents) == 1:
            raw = request.raw_input_contents[0]
            if len(raw) != count * 4:
                raise InvalidTensorRequest(f"raw_input_contents[0] has {len(raw)} bytes; shape {shape} needs "
                                           f"{count * 4} (FP32)")
            batch = np.frombuffer(raw, dtype="<f4").reshape(shape)
        elif not request.raw_input_contents and len(tensor.contents.fp32_contents) == count:
            batch = np.asarray(tensor.contents.fp32_contents, dtype=np.float32).reshape(shape)
        else:
            raise InvalidTensorRequest(f"send the input as one raw_input_contents entry or as {count} fp32_contents")
        if not np.isfinite(batch).all():
            raise InvalidTensorRequest("data holds NaN or infinite values (as FP32)")
        constraints, receipt = _constraints(request.parameters)
        outcome = await service.run(batch, None if pinned is None else pinned.name, constraints, receipt,
                                    version=request.model_version or None)
        outputs = np.ascontiguousarray(outcome.outputs, dtype="<f4")
        response = service_pb2.ModelInferResponse(model_name=outcome.decision.model.name,
                                                  model_version=outcome.model_version, id=request.id,
                                                  raw_output_contents=[outputs.tobytes()])
        response.outputs.add(name=expected.output_name, datatype="FP32", shape=outputs.shape)
        for key, value in _parameters(outcome, service.selected_by(outcome.decision)).items():
            response.parameters[key].CopyFrom(value)
        return response


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
