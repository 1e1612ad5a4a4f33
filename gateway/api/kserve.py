"""The KServe v2 (Open Inference Protocol) tensor codec of ``/v2/models/{model}/infer``.

A request carries one FP32 ``[N, 3, 224, 224]`` input, as JSON ``data`` or by the binary tensor
extension: ``Inference-Header-Content-Length`` bytes of JSON header, then the tensor's raw
little-endian bytes, announced by ``parameters.binary_data_size`` and used in place, without a copy.
JSON is parsed by orjson (6x faster than the standard library on 150k floats).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ..arrays import Float32Array, OutputArray
from ..errors import InvalidJson, InvalidTensorRequest

INPUT_SHAPE = (3, 224, 224)


@dataclass(frozen=True)
class TensorRequest:
    batch: Float32Array  # [N, 3, 224, 224]
    binary_output: bool  # the client wants the logits as raw bytes
    id: str | None


def decode_request(body: bytes, max_batch: int, header_length: str | None = None) -> TensorRequest:
    """Parse and check a request; raises ``InvalidJson`` or ``InvalidTensorRequest`` (400) saying what is wrong."""
    offset = _json_length(body, header_length)
    try:
        payload = orjson.loads(body if offset == len(body) else body[:offset])
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError; deep nesting
        raise InvalidJson(f"body is not valid JSON: {exc}") from exc
    spec = _single_input(payload)
    shape = _checked_shape(spec, max_batch)
    parameters = spec.get("parameters") or {}
    if parameters.get("binary_data_size") is not None:
        array = _binary_tensor(body, offset, header_length, parameters["binary_data_size"], shape)
    else:
        if offset != len(body):
            raise InvalidTensorRequest(f"{len(body) - offset} bytes follow the JSON header but inputs[0] has no "
                                       "binary_data_size")
        array = _json_tensor(spec.get("data"), shape)
    if not np.isfinite(array).all():
        raise InvalidTensorRequest("data holds NaN or infinite values (as FP32)")
    request_id = payload.get("id")
    return TensorRequest(array.reshape(shape), _wants_binary_output(payload),
                         request_id if isinstance(request_id, str) else None)


def _json_length(body: bytes, header_length: str | None) -> int:
    """Where the JSON header ends: ``Inference-Header-Content-Length``, or the whole body."""
    if header_length is None:
        return len(body)
    try:
        offset = int(header_length)
    except ValueError:
        raise InvalidTensorRequest(f"Inference-Header-Content-Length {header_length[:40]!r} is not an integer") \
            from None
    if not 0 < offset <= len(body):
        raise InvalidTensorRequest(f"Inference-Header-Content-Length {offset} does not fit a body of {len(body)} bytes")
    return offset


def _single_input(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or len(payload["inputs"]) != 1:
        raise InvalidTensorRequest("expected a KServe v2 request with exactly one entry in `inputs`")
    spec = payload["inputs"][0]
    if not isinstance(spec, dict):
        raise InvalidTensorRequest("inputs[0]: must be an object with `name`, `shape`, `datatype` and `data`")
    return spec


def _checked_shape(spec: dict[str, Any], max_batch: int) -> list[int]:
    shape, datatype, parameters = spec.get("shape"), spec.get("datatype"), spec.get("parameters") or {}
    if (not isinstance(spec.get("name"), str) or not isinstance(datatype, str) or not isinstance(shape, list)
            or not all(type(d) is int for d in shape) or not isinstance(parameters, dict)):
        raise InvalidTensorRequest("inputs[0]: needs `name` (a string), `shape` (a list of integers), `datatype` "
                                   "(a string) and optional `parameters` (an object)")
    if datatype != "FP32":
        raise InvalidTensorRequest(f"datatype {datatype[:40]} is not supported; send FP32")
    if len(shape) != 4 or tuple(shape[1:]) != INPUT_SHAPE or not 1 <= shape[0] <= max_batch:
        raise InvalidTensorRequest(f"shape {shape[:8]} is not [N, 3, 224, 224] with 1 <= N <= {max_batch}")
    return shape


def _binary_tensor(body: bytes, offset: int, header_length: str | None, size: Any, shape: list[int]) -> Float32Array:
    count = int(np.prod(shape))
    if header_length is None:
        raise InvalidTensorRequest("inputs[0]: binary_data_size needs the Inference-Header-Content-Length header")
    if type(size) is not int or size != len(body) - offset:
        raise InvalidTensorRequest(f"inputs[0]: binary_data_size {size!r} does not match the "
                                   f"{len(body) - offset} bytes after the JSON header")
    if size != count * 4:
        raise InvalidTensorRequest(f"inputs[0]: binary data has {size} bytes; shape {shape} needs {count * 4} (FP32)")
    return np.frombuffer(body, dtype="<f4", count=count, offset=offset)


def _json_tensor(data: Any, shape: list[int]) -> Float32Array:
    if not isinstance(data, list):
        raise InvalidTensorRequest("inputs[0]: `data` must be a list (or send binary data with "
                                   "parameters.binary_data_size)")
    try:
        values = np.asarray(data)
    except (TypeError, ValueError, OverflowError):
        values = None
    if values is None or values.dtype.kind not in "biuf":
        raise InvalidTensorRequest("data must be a flat or nested list of numbers")
    count = int(np.prod(shape))
    if values.size != count:
        raise InvalidTensorRequest(f"data has {values.size} values; shape {shape} needs {count}")
    with np.errstate(over="ignore"):
        return values.astype(np.float32, copy=False)


def _wants_binary_output(payload: dict[str, Any]) -> bool:
    wanted = payload.get("parameters")
    if isinstance(wanted, dict) and wanted.get("binary_data_output") is True:
        return True
    outputs = payload.get("outputs")
    return isinstance(outputs, list) and any(
        isinstance(o, dict) and isinstance(o.get("parameters"), dict) and o["parameters"].get("binary_data") is True
        for o in outputs)


def encode_response(header: dict[str, Any], outputs: OutputArray, binary: bool) -> tuple[bytes, dict[str, str]]:
    """The response body for ``header`` (without its outputs' data) and the logits, and headers to add.

    Binary: the JSON header, then the raw little-endian FP32 logits, with ``Inference-Header-Content-Length``.
    """
    outputs = np.ascontiguousarray(outputs, dtype="<f4")
    output: dict[str, Any] = {"name": "logits", "shape": list(outputs.shape), "datatype": "FP32"}
    header = {**header, "outputs": [output]}
    if binary:
        raw = outputs.tobytes()
        output["parameters"] = {"binary_data_size": len(raw)}
        encoded = orjson.dumps(header)
        return encoded + raw, {"Inference-Header-Content-Length": str(len(encoded))}
    output["data"] = outputs.reshape(-1).tolist()
    return orjson.dumps(header), {}
