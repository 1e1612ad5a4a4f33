"""Async gRPC client for Triton: one shared channel, errors mapped to what the gateway can say.

The ``InferenceBackend`` of a real deployment (``gateway.serving.backend``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc.aio as grpcaio
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from ..arrays import Float32Array, OutputArray
from ..errors import ImageModelNotReady, InvalidTensor, ModelNotReady, TritonError, TritonUnavailable, UnknownVersion
from ..imagenet.decode import image_error_from
from ..protocol.signature import TensorSignature
from ..serving.backend import EncodedImage, Inference
from .shm import Region, SharedInputs, sweep_orphans

logger = logging.getLogger(__name__)


#: gRPC's default reconnect backoff grows to two minutes: after Triton restarts the gateway would keep
#: answering 503 that long. Retry the connection every second at most instead.
CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def _status(exc: InferenceServerException | grpc.aio.AioRpcError) -> tuple[grpc.StatusCode | None, str]:
    """The gRPC status code and message of a failed call, whichever client made it."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code(), exc.details() or ""
    name = str(exc.status() or "").removeprefix("StatusCode.")  # tritonclient writes the code as text
    return getattr(grpc.StatusCode, name, None), exc.message() or str(exc)


def _classify(exc: InferenceServerException | grpc.aio.AioRpcError, model: str | None = None) -> TritonError:
    """The gateway's error for a failed call, by its status code.

    NOT_FOUND is what Triton answers for a model it does not have loaded, and also for a version it does not
    have of a loaded model: ``TritonClient._not_found`` tells the two apart where a version was asked for.
    """
    code, message = _status(exc)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return TritonUnavailable(f"Triton is unreachable: {message}")
    if code == grpc.StatusCode.NOT_FOUND:
        return ModelNotReady(f"model {model!r} is not ready in Triton: {message}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidTensor(message)
    return TritonError(f"Triton error: {message}")


#: ``ModelInferRequest.raw_input_contents`` (field 7, length-delimited) on the wire.
RAW_INPUT_TAG = bytes([7 << 3 | 2])


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


@lru_cache(maxsize=1024)
def _request_head(name: str, version: str, input_name: str, datatype: str, output_name: str,
                  shape: tuple[int, ...], region: str | None = None, nbytes: int = 0) -> bytes:
    """A ``ModelInferRequest`` without its tensor bytes, serialized: the same for every batch of this shape
    (and, for a tensor in shared memory, this region)."""
    request = service_pb2.ModelInferRequest(model_name=name, model_version=version)
    tensor = request.inputs.add(name=input_name, datatype=datatype, shape=shape)
    if region is not None:
        tensor.parameters["shared_memory_region"].string_param = region
        tensor.parameters["shared_memory_byte_size"].int64_param = nbytes
    request.outputs.add(name=output_name)
    return bytes(request.SerializeToString())


@lru_cache(maxsize=256)
def _image_request_head(image_model: str, output_name: str, target: str, version: str, target_input: str,
                        target_output: str, max_pixels: int) -> bytes:
    """A ``ModelInferRequest`` for the image model without the upload: one BYTES element, and the model to
    run it through in the request's parameters (``gateway/modelzoo/triton_image_model.py`` reads them)."""
    request = service_pb2.ModelInferRequest(model_name=image_model)
    for key, value in (("model", target), ("version", version), ("input", target_input), ("output", target_output)):
        request.parameters[key].string_param = value
    request.parameters["max_pixels"].int64_param = max_pixels
    request.inputs.add(name="IMAGE", datatype="BYTES", shape=(1, 1))
    request.outputs.add(name=output_name)
    return bytes(request.SerializeToString())


def encode_image_request(image_model: str, output_name: str, target: str, version: str, signature: TensorSignature,
                         image: EncodedImage) -> bytes:
    """The wire bytes of a request that hands ``image`` to the image model: Triton's BYTES element is the
    upload with its length in four little-endian bytes before it."""
    head = _image_request_head(image_model, output_name, target, version, signature.input_name,
                               signature.output_name, image.max_pixels)
    element = len(image.data).to_bytes(4, "little")
    return b"".join((head, RAW_INPUT_TAG, _varint(len(element) + len(image.data)), element, image.data))


def _raw(batch: Float32Array) -> memoryview:
    return np.ascontiguousarray(batch, dtype="<f4").data.cast("B")


def encode_infer_request(name: str, version: str, signature: TensorSignature, batch: Float32Array) -> bytes:
    """The wire bytes of a ``ModelInferRequest`` carrying ``batch`` as ``raw_input_contents``.

    Protobuf fields may come in any order, so the cached head is followed by the tensor's bytes as they
    are: one copy into the message, where building the message through tritonclient costs three.
    """
    raw = _raw(batch)
    head = _request_head(name, version, signature.input_name, signature.input_datatype, signature.output_name,
                         batch.shape)
    return b"".join((head, RAW_INPUT_TAG, _varint(raw.nbytes), raw))


def encode_shared_request(name: str, version: str, signature: TensorSignature, batch: Float32Array,
                          region: Region) -> bytes:
    """Write ``batch`` into ``region``; the ``ModelInferRequest`` that names it instead of carrying it."""
    raw = _raw(batch)
    region.memory.buf[:raw.nbytes] = raw
    return _request_head(name, version, signature.input_name, signature.input_datatype, signature.output_name,
                         batch.shape, region.name, raw.nbytes)


def decode_infer_response(response: service_pb2.ModelInferResponse) -> Inference:
    """The first output of a ``ModelInferResponse``, as an array over its raw bytes, and the model's version."""
    output = response.outputs[0]
    dtype = np.dtype(triton_to_np_dtype(output.datatype)).newbyteorder("<")
    array: OutputArray = np.frombuffer(response.raw_output_contents[0], dtype=dtype).reshape(tuple(output.shape))
    return Inference(array, response.model_version)


def _numbers(value: Any, key: str = "") -> Any:
    """Protobuf's JSON writes int64 as strings; Triton's HTTP API writes shapes and dims as numbers."""
    if isinstance(value, dict):
        return {k: _numbers(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v, key) for v in value]
    if isinstance(value, str) and key in INT64_FIELDS and value.lstrip("-").isdigit():
        return int(value)
    return value


#: The int64 fields of model metadata, configuration and statistics that protobuf's JSON writes as strings.
INT64_FIELDS = frozenset({"shape", "dims", "max_batch_size", "count", "ns", "inference_count", "execution_count",
                          "last_inference", "batch_size", "max_queue_delay_microseconds", "memory_usage",
                          "byte_size", "preferred_batch_size", "priority_levels", "default_priority_level",
                          "max_queue_size", "default_timeout_microseconds"})


class TritonClient:
    """``shared_memory_slots`` > 0: tensors up to ``shared_memory_bytes`` go through that many system
    shared-memory regions when Triton can open them (``gateway.triton.shm``). ``image_model``: the Triton
    model that ``infer_image`` hands uploads to."""

    def __init__(self, url: str, request_timeout_s: float = 30.0, *, shared_memory_slots: int = 0,
                 shared_memory_bytes: int = 1 << 20, image_model: str | None = None):
        self.url = url
        self.image_model = image_model
        self.request_timeout_s = request_timeout_s
        self._client = grpcaio.InferenceServerClient(url=url, channel_args=CHANNEL_ARGS)
        # Inference on a channel of its own, with the request written by ``encode_infer_request``.
        self._channel = grpc.aio.insecure_channel(url, options=CHANNEL_ARGS)
        self._model_infer = self._channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer", request_serializer=None,
            response_deserializer=service_pb2.ModelInferResponse.FromString)
        self._signatures: dict[tuple[str, str], TensorSignature] = {}
        self.shared = SharedInputs(shared_memory_slots, shared_memory_bytes) if shared_memory_slots > 0 else None

    async def close(self) -> None:
        if self.shared is not None:
            await self.shared.close(self._unregister)
        await self._channel.close()
        await self._client.close()

    async def _register(self, name: str, key: str, nbytes: int) -> None:
        try:
            await self._client.register_system_shared_memory(name, key, nbytes, client_timeout=5.0)
        except InferenceServerException as exc:
            if "already" not in str(exc).lower():  # still registered from before: as good as new
                raise

    async def _unregister(self, name: str) -> None:
        await self._client.unregister_system_shared_memory(name, client_timeout=2.0)

    async def _registered(self) -> list[str]:
        status = await self._client.get_system_shared_memory_status(as_json=True, client_timeout=5.0)
        return list(status.get("regions", {}))

    async def _sweep(self, ours: set[str]) -> list[str]:
        return await sweep_orphans(self._registered, self._unregister, ours)

    async def server_ready(self) -> bool:
        try:
            return bool(await self._client.is_server_ready(client_timeout=2.0))
        except InferenceServerException:
            return False

    async def server_live(self) -> bool:
        """Triton answers (whether or not every model is ready, which strict readiness would require)."""
        try:
            return bool(await self._client.is_server_live(client_timeout=2.0))
        except InferenceServerException:
            return False

    async def model_ready(self, name: str, version: str = "") -> bool:
        try:
            return bool(await self._client.is_model_ready(name, version, client_timeout=2.0))
        except InferenceServerException:
            return False

    async def signature(self, name: str, version: str = "") -> TensorSignature:
        """Input/output names and shapes of a model, read once from its Triton config."""
        key = (name, version)
        if key not in self._signatures:
            try:
                response = await self._client.get_model_config(name, version, as_json=True, client_timeout=5.0)
            except InferenceServerException as exc:
                raise await self._classified(exc, name, version) from exc
            config = response["config"]
            first_input, first_output = config["input"][0], config["output"][0]
            self._signatures[key] = TensorSignature(
                input_name=first_input["name"],
                input_datatype=first_input["data_type"].removeprefix("TYPE_"),
                input_dims=tuple(int(d) for d in first_input["dims"]),
                output_name=first_output["name"],
                output_datatype=first_output["data_type"].removeprefix("TYPE_"),
                output_dims=tuple(int(d) for d in first_output["dims"]),
                max_batch_size=int(config.get("max_batch_size", 0)),
                parameters={k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()},
            )
        return self._signatures[key]

    async def repository_index(self) -> dict[str, tuple[str, str]]:
        """Every model in Triton's repository, loaded or not: name -> (state, reason)."""
        try:
            response = await self._client.get_model_repository_index(as_json=True, client_timeout=5.0)
        except InferenceServerException as exc:
            raise _classify(exc) from exc
        return {entry["name"]: (entry.get("state", ""), entry.get("reason", ""))
                for entry in response.get("models", [])}

    async def load_model(self, name: str) -> None:
        """Load (or reload) a model; Triton must run in explicit model-control mode."""
        try:
            await self._client.load_model(name, client_timeout=self.request_timeout_s * 10)
        except InferenceServerException as exc:
            raise _classify(exc, name) from exc
        self._signatures = {k: v for k, v in self._signatures.items() if k[0] != name}

    async def unload_model(self, name: str) -> None:
        try:
            await self._client.unload_model(name, client_timeout=self.request_timeout_s)
        except InferenceServerException as exc:
            raise _classify(exc, name) from exc

    def cached_signature(self, name: str, version: str = "") -> TensorSignature | None:
        return self._signatures.get((name, version))

    async def infer(self, name: str, batch: Float32Array, version: str = "") -> Inference:
        """Run a batch through a model: its first output, and the version that ran."""
        signature = self._signatures.get((name, version)) or await self.signature(name, version)
        shared = self.shared
        if shared is not None and await shared.ensure_registered(self._register, self._sweep):
            taken = shared.acquire(batch.nbytes)
            if taken is not None:
                slot, region = taken
                try:
                    response = await self._model_infer(encode_shared_request(name, version, signature, batch, region),
                                                       timeout=self.request_timeout_s)
                    shared.sent += 1
                    return decode_infer_response(response)
                except grpc.aio.AioRpcError as exc:
                    if "shared memory" not in (exc.details() or "").lower():
                        raise await self._failed(exc, name, version) from exc
                    shared.forgotten()  # and send this one as bytes
                finally:
                    shared.release(slot)
        try:
            response = await self._model_infer(encode_infer_request(name, version, signature, batch),
                                               timeout=self.request_timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise await self._failed(exc, name, version) from exc
        return decode_infer_response(response)

    async def infer_image(self, name: str, image: EncodedImage, version: str = "") -> Inference:
        """Hand an upload to the image model, which decodes it and runs it through ``name``."""
        signature = self._signatures.get((name, version)) or await self.signature(name, version)
        image_model = self.image_model
        if image_model is None:
            raise self._image_model_missing("this client was given none")
        decoder = self._signatures.get((image_model, "")) or await self._image_model_signature(image_model)
        request = encode_image_request(image_model, decoder.output_name, name, version, signature, image)
        try:
            response = await self._model_infer(request, timeout=self.request_timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:  # Triton's answer for the model it was sent to: ours
                self._signatures.pop((image_model, ""), None)
                raise self._image_model_missing(exc.details() or "") from exc
            refused = exc.code() == grpc.StatusCode.INVALID_ARGUMENT and image_error_from(exc.details() or "")
            raise (refused or await self._failed(exc, name, version)) from exc
        inference = decode_infer_response(response)
        # The response's version is the image model's; which version of ``name`` ran, BLS does not say.
        return Inference(inference.outputs, version)

    async def _image_model_signature(self, image_model: str) -> TensorSignature:
        try:
            return await self.signature(image_model)
        except ModelNotReady as exc:
            raise self._image_model_missing(str(exc)) from exc

    def _image_model_missing(self, detail: str) -> ImageModelNotReady:
        error = ImageModelNotReady(f"the image model {self.image_model!r} (triton.image_model) is not ready in Triton; "
                                   f"build it with `carbon-gateway build-models --image-model`: {detail}")
        logger.warning("%s", error)
        return error

    async def _failed(self, exc: grpc.aio.AioRpcError, name: str, version: str) -> TritonError:
        error = await self._classified(exc, name, version)
        logger.warning("triton infer on %s failed: %s", name, error)
        return error

    async def _classified(self, exc: InferenceServerException | grpc.aio.AioRpcError, name: str,
                          version: str) -> TritonError:
        """``_classify``, and for NOT_FOUND on an explicit version of a model that is ready: ``UnknownVersion``."""
        error = _classify(exc, name)
        if isinstance(error, ModelNotReady) and version and await self.model_ready(name):
            return UnknownVersion(f"model {name!r}: {_status(exc)[1]}")
        return error

    async def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        return await self._described(self._client.get_model_metadata, name, version)

    async def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        config: dict[str, Any] = (await self._described(self._client.get_model_config, name, version))["config"]
        return config

    async def model_statistics(self, name: str, version: str = "") -> dict[str, Any]:
        return await self._described(self._client.get_inference_statistics, name, version)

    async def _described(self, ask: Callable[..., Awaitable[Any]], name: str, version: str) -> dict[str, Any]:
        """One of tritonclient's JSON descriptions of a model, with Triton's HTTP number types."""
        try:
            found = await ask(name, version, as_json=True, client_timeout=5.0)
        except InferenceServerException as exc:
            raise await self._classified(exc, name, version) from exc
        described: dict[str, Any] = _numbers(found)
        return described
