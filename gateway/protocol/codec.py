"""The KServe v2 (Open Inference Protocol) tensor codec of ``/v2/models/{model}/infer``.

A request carries one FP32 ``[N, 3, 224, 224]`` input, as JSON ``data`` or by the binary tensor
extension: ``Inference-Header-Content-Length`` bytes of JSON header, then the tensor's raw
little-endian bytes, announced by ``parameters.binary_data_size`` and used in place, without a copy.

A JSON tensor's numbers are read by simdjson straight into one array (3x faster than making a Python float
of each, 150,528 for one image); the rest of the JSON, and anything simdjson's reading does not fit, by
orjson (6x faster than the standard library).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import simdjson

from ..arrays import Float32Array, OutputArray
from ..errors import InvalidJson, InvalidTensorRequest
from .signature import RESNET, TensorSignature


@dataclass(frozen=True)
class TensorRequest:
    batch: Float32Array  # [N, 3, 224, 224]
    binary_output: bool  # the client wants the logits as raw bytes
    id: str | None


def decode_request(body: bytes, max_batch: int, header_length: str | None = None,
                   expected: TensorSignature = RESNET) -> TensorRequest:
    """Parse and check a request against ``expected``; raises ``InvalidJson`` or ``InvalidTensorRequest`` (400)
    saying what is wrong."""
    offset = _json_length(body, header_length)
    payload = (_with_numbers(body) or _load(body)) if offset == len(body) else _load(body[:offset])
    spec = _single_input(payload)
    shape = check_input(spec, max_batch, expected)
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
    return TensorRequest(array.reshape(shape), _wants_binary_output(payload, expected.output_name),
                         request_id if isinstance(request_id, str) else None)


def _load(document: bytes) -> Any:
    try:
        return orjson.loads(document)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError; deep nesting
        raise InvalidJson(f"body is not valid JSON: {exc}") from exc


def _with_numbers(document: bytes) -> dict[str, Any] | None:
    """A JSON request whose ``inputs[0].data`` is a list of numbers, with that list as one float32 array.

    Nested lists are read in row-major order whatever their nesting, as Triton reads them: their count
    must match the shape. None for anything else (not JSON, no such list, a non-number in it, a key twice),
    which ``_load`` then reads and ``decode_request`` words the error for.
    """
    try:
        root = simdjson.Parser().parse(document)
        if not isinstance(root, simdjson.Object) or not _unique_keys(root):
            return None
        inputs = root.get("inputs")
        spec = inputs[0] if isinstance(inputs, simdjson.Array) and len(inputs) == 1 else None
        if not isinstance(spec, simdjson.Object) or not _unique_keys(spec):
            return None
        data = spec.get("data")
        if not isinstance(data, simdjson.Array):
            return None
        with np.errstate(over="ignore"):  # past FP32's range: infinite, refused by decode_request
            numbers = np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64).astype(np.float32)
    except (ValueError, TypeError, RuntimeError):  # invalid JSON, a non-number in data, too deep
        return None
    # By key: simdjson's items() would make Python objects of the numbers too.
    payload = {key: _plain(root[key]) for key in root if key != "inputs"}
    payload["inputs"] = [{key: _plain(spec[key]) for key in spec if key != "data"} | {"data": numbers}]
    return payload


def _unique_keys(value: simdjson.Object) -> bool:
    """Whether no key is repeated: orjson keeps the last of repeated keys, simdjson's lookup the first."""
    keys = list(value.keys())
    return len(keys) == len(set(keys))


def _plain(value: Any) -> Any:
    """A simdjson value as Python objects."""
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


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


def check_input(spec: dict[str, Any], max_batch: int, expected: TensorSignature) -> list[int]:
    """The input's shape, once its name, datatype and shape are what ``expected`` says (else 400)."""
    shape, datatype, parameters = spec.get("shape"), spec.get("datatype"), spec.get("parameters") or {}
    if (not isinstance(spec.get("name"), str) or not isinstance(datatype, str) or not isinstance(shape, list)
            or not all(type(d) is int for d in shape) or not isinstance(parameters, dict)):
        raise InvalidTensorRequest("inputs[0]: needs `name` (a string), `shape` (a list of integers), `datatype` "
                                   "(a string) and optional `parameters` (an object)")
    if spec["name"] != expected.input_name:
        raise InvalidTensorRequest(f"inputs[0]: the model has no input {spec['name'][:40]!r}; its input is "
                                   f"{expected.input_name!r}")
    if datatype != expected.input_datatype:
        raise InvalidTensorRequest(f"datatype {datatype[:40]} is not supported; send {expected.input_datatype}")
    if (len(shape) != len(expected.input_dims) + 1 or tuple(shape[1:]) != expected.input_dims
            or not 1 <= shape[0] <= max_batch):
        dims = ", ".join(str(d) for d in expected.input_dims)
        raise InvalidTensorRequest(f"shape {shape[:8]} is not [N, {dims}] with 1 <= N <= {max_batch}")
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
    values = data if isinstance(data, np.ndarray) else _numbers(data)  # an array: read by _with_numbers
    count = int(np.prod(shape))
    if values.size != count:
        raise InvalidTensorRequest(f"data has {values.size} values; shape {shape} needs {count}")
    with np.errstate(over="ignore"):
        return values.astype(np.float32, copy=False)


def _numbers(data: Any) -> np.ndarray:
    if not isinstance(data, list):
        raise InvalidTensorRequest("inputs[0]: `data` must be a list (or send binary data with "
                                   "parameters.binary_data_size)")
    try:
        values = np.asarray(data)
    except (TypeError, ValueError, OverflowError):
        values = None
    if values is None or values.dtype.kind not in "biuf":
        raise InvalidTensorRequest("data must be a flat or nested list of numbers")
    return values


def _wants_binary_output(payload: dict[str, Any], output_name: str) -> bool:
    """Whether the logits go back as raw bytes; a requested output the model lacks is refused."""
    outputs = payload.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            raise InvalidTensorRequest("`outputs` must be a list of objects with a `name`")
        check_outputs([o.get("name") for o in outputs], output_name)
    wanted = payload.get("parameters")
    if isinstance(wanted, dict) and wanted.get("binary_data_output") is True:
        return True
    return isinstance(outputs, list) and any(
        isinstance(o.get("parameters"), dict) and o["parameters"].get("binary_data") is True for o in outputs)


def check_outputs(names: list[Any], output_name: str) -> None:
    """Refuse (400) outputs the model does not have."""
    unknown = [str(name)[:40] for name in names if name != output_name]
    if unknown:
        raise InvalidTensorRequest(f"the model has no output {unknown}; its output is {output_name!r}")


def encode_response(header: dict[str, Any], outputs: OutputArray, binary: bool,
                    output_name: str = RESNET.output_name) -> tuple[bytes, dict[str, str]]:
    """The response body for ``header`` (without its outputs' data) and the logits, and headers to add.

    Binary: the JSON header, then the raw little-endian FP32 logits, with ``Inference-Header-Content-Length``.
    """
    outputs = np.ascontiguousarray(outputs, dtype="<f4")
    output: dict[str, Any] = {"name": output_name, "shape": list(outputs.shape), "datatype": "FP32"}
    header = {**header, "outputs": [output]}
    if binary:
        raw = outputs.tobytes()
        output["parameters"] = {"binary_data_size": len(raw)}
        encoded = orjson.dumps(header)
        return encoded + raw, {"Inference-Header-Content-Length": str(len(encoded))}
    output["data"] = outputs.reshape(-1).tolist()
    return orjson.dumps(header), {}
