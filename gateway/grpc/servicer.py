"""The gRPC servicer: ``inference.GRPCInferenceService`` (the Open Inference Protocol), as Triton serves it.

Stock ``tritonclient.grpc`` clients work against it: health, server and model metadata, readiness,
configuration, statistics, the repository index, and ``ModelInfer`` on a pool model or on ``auto``. Each
call converts its message (``converters``), calls the data plane, and converts the answer back; admission,
metrics, the selector, energy and CO2 are the data plane's, as for the REST door.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from ..errors import GatewayError, UnknownModel
from ..protocol.signature import TensorSignature
from ..serving.dataplane import DataPlane
from .converters import infer_response, request_batch, request_options, status_code

logger = logging.getLogger(__name__)

Reply = TypeVar("Reply")


class _Throttled:
    """One log line per ``interval_s`` for a kind of event a client can repeat at will, with the count since."""

    def __init__(self, interval_s: float = 60.0):
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def log(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -math.inf) < self.interval_s:
            self._since[key] = self._since.get(key, 0) + 1
            return
        repeated = self._since.pop(key, 0)
        self._last[key] = now
        logger.info(message + (f" (and {repeated} more like it)" if repeated else ""), *args)


_throttled = _Throttled()


def _refused(method: str, why: str) -> Callable[..., Awaitable[Any]]:
    """A call the gateway does not serve: UNIMPLEMENTED with ``why``, one log line a minute at most."""
    async def refuse(self: InferenceServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        _throttled.log(method, "grpc -> UNIMPLEMENTED %s: %s", method, why)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method}: {why}")

    refuse.__name__ = method
    return refuse


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


#: Bytes of a ModelInferRequest besides its tensor: names, shape, parameters, ids.
MESSAGE_OVERHEAD_BYTES = 64 * 1024
#: RPCs at once beyond the inference slots: readiness, metadata and statistics calls.
CONTROL_RPCS = 16
_ITEM_BYTES = {"FP32": 4, "FP16": 2, "BF16": 2, "FP64": 8, "INT8": 1, "UINT8": 1, "INT16": 2, "INT32": 4, "INT64": 8}


def message_limit(signature: TensorSignature, max_batch: int) -> int:
    """The largest valid ``ModelInferRequest``: ``max_batch`` inputs of the pool's signature, plus the rest of
    the message. A larger one is refused by gRPC as its length arrives, before it is read."""
    item = _ITEM_BYTES.get(signature.input_datatype, 8)
    return max_batch * math.prod(signature.input_dims) * item + MESSAGE_OVERHEAD_BYTES


@dataclass(frozen=True)
class ServerLimits:
    """What one client, or many, can make the gRPC server hold (the gateway's REST door has its own):

    - ``max_message_bytes``: the largest request read (``message_limit``);
    - ``max_concurrent_rpcs``: calls at once, counted from their headers, so a call over it is refused
      before its message is read; each holds at most one message;
    - ``idle_s``: a connection with no call for this long is closed;
    - ``max_age_s``: a connection is closed this long after it opened, its calls given a further
      ``grace_s``; so a stalled call holds its slot and its memory for a bounded time;
    - keepalive pings every ``keepalive_s``, and a peer silent for ``keepalive_timeout_s`` is dropped.
    """

    max_message_bytes: int
    max_concurrent_rpcs: int
    idle_s: float = 60.0
    max_age_s: float = 60.0
    grace_s: float = 10.0
    keepalive_s: float = 60.0
    keepalive_timeout_s: float = 20.0

    def options(self) -> list[tuple[str, int]]:
        return [("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_connection_idle_ms", int(self.idle_s * 1000)),
                ("grpc.max_connection_age_ms", int(self.max_age_s * 1000)),
                ("grpc.max_connection_age_grace_ms", int(self.grace_s * 1000)),
                ("grpc.keepalive_time_ms", int(self.keepalive_s * 1000)),
                ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout_s * 1000)),
                ("grpc.so_reuseport", 1)]


# What Triton serves and the gateway does not: refused in one line, never passed on to Triton.
_SHARED_MEMORY = "shared memory belongs to the gateway and its Triton; send tensors in the request"
_MODEL_CONTROL = "the gateway's pool is changed by its configuration (pool file, admin API), not by clients"
for _method, _why in (("SystemSharedMemoryRegister", _SHARED_MEMORY), ("SystemSharedMemoryStatus", _SHARED_MEMORY),
                      ("SystemSharedMemoryUnregister", _SHARED_MEMORY), ("CudaSharedMemoryRegister", _SHARED_MEMORY),
                      ("CudaSharedMemoryStatus", _SHARED_MEMORY), ("CudaSharedMemoryUnregister", _SHARED_MEMORY),
                      ("RepositoryModelLoad", _MODEL_CONTROL), ("RepositoryModelUnload", _MODEL_CONTROL),
                      ("ModelStreamInfer", "streaming inference is not served; call ModelInfer"),
                      ("TraceSetting", "tracing is not served"), ("LogSettings", "log settings are not served")):
    setattr(InferenceServicer, _method, _refused(_method, _why))


class _Undecodable:
    """What a request that is not a protobuf message of its kind decodes to (gRPC would log a traceback)."""


_UNDECODABLE = _Undecodable()


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except DecodeError:
            return _UNDECODABLE

    return decode


def _guarded(method: str, behaviour: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
             ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request is _UNDECODABLE:
            _throttled.log("undecodable", "grpc -> INVALID_ARGUMENT %s: the request is not a valid message", method)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{method}: the request is not a valid message")
        return await behaviour(request, context)

    return call


class _Handlers:
    """Takes what the generated ``add_GRPCInferenceServiceServicer_to_server`` registers, to register it changed."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        return None

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.service, self.handlers = service, handlers


def _register(servicer: InferenceServicer, server: grpc.aio.Server) -> None:
    """The service's methods as the generated code describes them, each request decoded tolerantly: an
    undecodable one is INVALID_ARGUMENT and one log line a minute, not UNKNOWN and a traceback each."""
    generated = _Handlers()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, generated)
    handlers = {}
    for method, handler in generated.handlers.items():
        if handler.unary_unary is not None:
            handler = handler._replace(request_deserializer=_tolerant(handler.request_deserializer),
                                       unary_unary=_guarded(method, handler.unary_unary))
        handlers[method] = handler
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(generated.service, handlers),))
    server.add_registered_method_handlers(generated.service, handlers)  # looked up by name, not by trying each


async def start_server(servicer: InferenceServicer, host: str, port: int, limits: ServerLimits) -> grpc.aio.Server:
    """A gRPC server on ``host:port`` with ``servicer`` within ``limits``; ``SO_REUSEPORT`` lets several workers
    share the port."""
    server = grpc.aio.server(options=limits.options(), maximum_concurrent_rpcs=limits.max_concurrent_rpcs)
    _register(servicer, server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"cannot listen for gRPC on {host}:{port}")
    await server.start()
    logger.info("gRPC (KServe v2 / Triton) on %s:%d; requests up to %d bytes, %d calls at once", host, port,
                limits.max_message_bytes, limits.max_concurrent_rpcs)
    return server
