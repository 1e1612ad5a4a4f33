"""Protobuf messages of ``inference.GRPCInferenceService`` to and from the data plane's terms.

The protos are tritonclient's. A request's ``raw_input_contents`` become the batch as they are (a NumPy view,
no decoding); its tensor is checked against the pool's signature as the REST codec checks it.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2

from ..arrays import Float32Array
from ..errors import InvalidTensorRequest
from ..policy import Constraints
from ..protocol.codec import check_input, check_outputs
from ..protocol.signature import TensorSignature
from ..serving.dataplane import ParameterValue, response_parameters
from ..serving.service import Outcome

#: The HTTP status of a ``GatewayError`` as a gRPC status code.
STATUS_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
                403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
                408: grpc.StatusCode.DEADLINE_EXCEEDED, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
                415: grpc.StatusCode.INVALID_ARGUMENT, 422: grpc.StatusCode.FAILED_PRECONDITION,
                429: grpc.StatusCode.RESOURCE_EXHAUSTED, 499: grpc.StatusCode.CANCELLED,
                502: grpc.StatusCode.INTERNAL, 503: grpc.StatusCode.UNAVAILABLE}


def status_code(http_status: int) -> grpc.StatusCode:
    return STATUS_CODES.get(http_status, grpc.StatusCode.INTERNAL)


def infer_parameter(value: ParameterValue) -> service_pb2.InferParameter:
    """One protocol parameter: bool, int64, double or string, by the value's type."""
    if isinstance(value, bool):
        return service_pb2.InferParameter(bool_param=value)
    if isinstance(value, int):
        return service_pb2.InferParameter(int64_param=value)
    if isinstance(value, float):
        return service_pb2.InferParameter(double_param=value)
    return service_pb2.InferParameter(string_param=value)


def request_options(parameters: Any) -> tuple[Constraints | None, bool]:
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


def request_batch(request: Any, expected: TensorSignature, max_batch: int) -> Float32Array:
    """The request's one FP32 input as a ``[N, ...]`` batch, after the checks the REST codec makes too."""
    if len(request.inputs) != 1:
        raise InvalidTensorRequest(f"expected exactly one input, got {len(request.inputs)}")
    tensor = request.inputs[0]
    shape = check_input({"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)},
                        max_batch, expected)
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
    return batch


def infer_response(request_id: str, outcome: Outcome, expected: TensorSignature) -> Any:
    """A ``ModelInferResponse``: the logits as raw bytes, the outcome's facts as parameters."""
    outputs = np.ascontiguousarray(outcome.outputs, dtype="<f4")
    response = service_pb2.ModelInferResponse(model_name=outcome.decision.model.name,
                                              model_version=outcome.model_version, id=request_id,
                                              raw_output_contents=[outputs.tobytes()])
    response.outputs.add(name=expected.output_name, datatype="FP32", shape=outputs.shape)
    for key, value in response_parameters(outcome).items():
        response.parameters[key].CopyFrom(infer_parameter(value))
    return response
