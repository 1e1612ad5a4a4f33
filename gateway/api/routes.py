"""HTTP routes: image classification, the KServe v2 tensor route, health and model info."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import time
from typing import Literal

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import Response as RawResponse
from starlette.datastructures import UploadFile

from .. import __version__, metrics
from ..carbon import CarbonState
from ..selection import Constraints
from ..service import Decision, GatewayService, Outcome
from .errors import ApiError
from .schemas import (CarbonOut, ClassifyResponse, EnergyOut, ErrorResponse, HealthResponse, InferResponse,
                      ModelChoice, ModelStatus, PredictionOut, ReadyResponse, ReloadOut, TensorInput)

router = APIRouter()

AUTO_MODEL = "auto"
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
_ERRORS = {status: {"model": ErrorResponse} for status in (400, 404, 413, 415, 422, 503)}


def get_service(request: Request) -> GatewayService:
    return request.app.state.service


def _carbon_out(state: CarbonState) -> CarbonOut:
    return CarbonOut(intensity=state.intensity, unit=state.reading.unit, source=state.reading.source,
                     timestamp=state.reading.timestamp, age_seconds=round(state.age_seconds(), 3),
                     window_low=state.window.low, window_high=state.window.high, window_basis=state.window_basis,
                     status=state.status,
                     stale=state.stale, source_up=state.source_up, last_error=state.last_error)


def request_constraints(
    x_min_accuracy: float | None = Header(None, ge=0, le=100, description="Least accuracy (%, 100 - the pool's "
                                          "error rate) of the model that may serve this request."),
    x_max_latency_ms: float | None = Header(None, gt=0, description="Slowest model latency (ms) accepted."),
) -> Constraints | None:
    if x_min_accuracy is None and x_max_latency_ms is None:
        return None
    return Constraints(min_accuracy=x_min_accuracy, max_latency_ms=x_max_latency_ms)


def wants_receipt(
    energy: Literal["estimate", "measured"] = Query(
        "estimate", description="`measured`: wait for this request's sampling window to close (about "
        "`energy.sample_interval_s`) and answer with its measured energy share; the profiled estimate "
        "where no meter exists, or after `energy.receipt_timeout_s`. `energy.measured` says which."),
) -> bool:
    return energy == "measured"


def _weights(service: GatewayService, decision: Decision) -> str:
    signature = service.triton.cached_signature(decision.model.backend_name, decision.model.triton_version)
    return signature.parameters.get("weights", "unknown") if signature else "unknown"


def _model_choice(service: GatewayService, decision: Decision) -> ModelChoice:
    spec = decision.model
    return ModelChoice(name=spec.name, triton_name=spec.backend_name, weights=_weights(service, decision),
                       expected_error_rate=spec.error_rate, error_metric=service.pool.error_metric,
                       energy_mj_per_inference=spec.energy_mj,
                       selected_by=_selected_by(service, decision), fallback_from=decision.fallback_from)


def _selected_by(service: GatewayService, decision: Decision) -> str:
    if decision.pinned:
        return "client"
    return f"fallback:{service.policy.name}" if decision.fallback_from else service.policy.name


def _decision_headers(service: GatewayService, outcome: Outcome, elapsed_s: float) -> dict[str, str]:
    decision = outcome.decision
    return {
        "X-Model": decision.model.name,
        "X-Model-Weights": _weights(service, decision),
        "X-Selected-By": _selected_by(service, decision),
        "X-Carbon-Intensity": f"{decision.carbon.intensity:.3f}",
        "X-Carbon-Source": decision.carbon.reading.source,
        "X-Expected-Error-Rate": f"{decision.model.error_rate:.3f}",
        "X-Energy-Joules": f"{outcome.energy.joules:.6g}",
        "X-Energy-Source": outcome.energy.source,
        "Server-Timing": f"triton;dur={outcome.compute_seconds * 1e3:.2f}, total;dur={elapsed_s * 1e3:.2f}",
        **({"X-CO2-Grams": f"{outcome.co2_g:.6g}"} if outcome.co2_g is not None else {}),
        **({"X-Fallback-From": decision.fallback_from} if decision.fallback_from else {}),
    }


async def _image_bytes(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=4)
        uploads = [value for value in form.values() if isinstance(value, UploadFile)]
        if not uploads:
            raise ApiError(400, "missing_file", "multipart body has no file part; send the image as field `file`")
        return await uploads[0].read()
    if content_type and not (content_type.startswith("image/") or content_type == "application/octet-stream"):
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type {content_type!r} is not an image; send image/jpeg, image/png, image/webp, "
                       "application/octet-stream or multipart/form-data")
    return await request.body()


@router.post(
    "/v1/classify",
    response_model=ClassifyResponse,
    responses=_ERRORS,
    summary="Classify an image with the model the grid's carbon intensity calls for",
    openapi_extra={"requestBody": {"required": True, "content": {
        **{t: {"schema": {"type": "string", "format": "binary"}} for t in (*IMAGE_TYPES, "application/octet-stream")},
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"}}}},
    }}},
)
async def classify(request: Request, response: Response,
                   top_k: int = Query(5, ge=1, le=1000, description="How many classes to return."),
                   constraints: Constraints | None = Depends(request_constraints),
                   receipt: bool = Depends(wants_receipt),
                   service: GatewayService = Depends(get_service)) -> ClassifyResponse:
    started = time.perf_counter()
    outcome, predictions = await service.classify(await _image_bytes(request), top_k, constraints, receipt)
    elapsed = time.perf_counter() - started
    response.headers.update(_decision_headers(service, outcome, elapsed))
    return ClassifyResponse(
        model=_model_choice(service, outcome.decision),
        predictions=[PredictionOut(index=p.index, label=p.label, score=p.score) for p in predictions],
        carbon=_carbon_out(outcome.decision.carbon),
        energy=EnergyOut(joules=outcome.energy.joules, source=outcome.energy.source,
                         measured=outcome.energy.measured, co2_grams=outcome.co2_g),
        latency_ms=round(elapsed * 1e3, 3),
    )


def _parse_tensor_request(body: bytes, max_batch: int, header_length: str | None = None
                          ) -> tuple[np.ndarray, bool, str | None]:
    """A KServe v2 request to its one FP32 [N, 3, 224, 224] input, whether binary output is wanted, and its id.

    The input comes as JSON ``data`` or, with the ``Inference-Header-Content-Length`` header, by the binary
    tensor extension: that many bytes of JSON header, then the tensor's raw little-endian bytes, announced by
    ``parameters.binary_data_size``, which are used in place, without a copy. JSON is parsed by orjson
    (6x faster than the standard library on 150k floats).
    """

    def bad(detail: str) -> ApiError:
        return ApiError(400, "invalid_tensor_request", detail)

    offset = len(body)
    if header_length is not None:
        try:
            offset = int(header_length)
        except ValueError:
            raise bad(f"Inference-Header-Content-Length {header_length[:40]!r} is not an integer") from None
        if not 0 < offset <= len(body):
            raise bad(f"Inference-Header-Content-Length {offset} does not fit a body of {len(body)} bytes")
    try:
        payload = orjson.loads(body if offset == len(body) else body[:offset])
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError; deep nesting (json)
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or len(payload["inputs"]) != 1:
        raise bad("expected a KServe v2 request with exactly one entry in `inputs`")
    spec = payload["inputs"][0]
    if not isinstance(spec, dict):
        raise bad("inputs[0]: must be an object with `name`, `shape`, `datatype` and `data`")
    shape, datatype, parameters = spec.get("shape"), spec.get("datatype"), spec.get("parameters") or {}
    if (not isinstance(spec.get("name"), str) or not isinstance(datatype, str) or not isinstance(shape, list)
            or not all(type(d) is int for d in shape) or not isinstance(parameters, dict)):
        raise bad("inputs[0]: needs `name` (a string), `shape` (a list of integers), `datatype` (a string) "
                  "and optional `parameters` (an object)")
    if datatype != "FP32":
        raise bad(f"datatype {datatype[:40]} is not supported; send FP32")
    if len(shape) != 4 or shape[1:] != [3, 224, 224] or not 1 <= shape[0] <= max_batch:
        raise bad(f"shape {shape[:8]} is not [N, 3, 224, 224] with 1 <= N <= {max_batch}")
    count = shape[0] * 3 * 224 * 224
    binary_size = parameters.get("binary_data_size")
    if binary_size is not None:
        if header_length is None:
            raise bad("inputs[0]: binary_data_size needs the Inference-Header-Content-Length header")
        if type(binary_size) is not int or binary_size != len(body) - offset:
            raise bad(f"inputs[0]: binary_data_size {binary_size!r} does not match the "
                      f"{len(body) - offset} bytes after the JSON header")
        if binary_size != count * 4:
            raise bad(f"inputs[0]: binary data has {binary_size} bytes; shape {shape} needs {count * 4} (FP32)")
        array = np.frombuffer(body, dtype="<f4", count=count, offset=offset)
    else:
        if offset != len(body):
            raise bad(f"{len(body) - offset} bytes follow the JSON header but inputs[0] has no binary_data_size")
        data = spec.get("data")
        if not isinstance(data, list):
            raise bad("inputs[0]: `data` must be a list (or send binary data with parameters.binary_data_size)")
        try:
            values = np.asarray(data)
        except (TypeError, ValueError, OverflowError):
            values = None
        if values is None or values.dtype.kind not in "biuf":
            raise bad("data must be a flat or nested list of numbers")
        if values.size != count:
            raise bad(f"data has {values.size} values; shape {shape} needs {count}")
        with np.errstate(over="ignore"):
            array = values.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise bad("data holds NaN or infinite values (as FP32)")
    wanted = payload.get("parameters")
    binary_output = isinstance(wanted, dict) and wanted.get("binary_data_output") is True
    outputs = payload.get("outputs")
    if isinstance(outputs, list):
        binary_output = binary_output or any(
            isinstance(o, dict) and isinstance(o.get("parameters"), dict) and o["parameters"].get("binary_data") is True
            for o in outputs)
    request_id = payload.get("id")
    return array.reshape(shape), binary_output, request_id if isinstance(request_id, str) else None


@router.post(
    "/v2/models/{model_name}/infer",
    response_model=InferResponse,
    responses=_ERRORS,
    summary="KServe v2 inference on a tensor; model `auto` lets the gateway choose",
    description="JSON `data`, or the binary tensor extension: send `Inference-Header-Content-Length: <n>`, "
                "n bytes of JSON header whose input has `parameters.binary_data_size`, then the raw little-endian "
                "FP32 bytes. `\"parameters\": {\"binary_data_output\": true}` returns the logits the same way.",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "properties": {
            "inputs": {"type": "array", "items": TensorInput.model_json_schema()}}}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    }}},
)
async def infer_tensor(model_name: str, request: Request,
                       constraints: Constraints | None = Depends(request_constraints),
                       receipt: bool = Depends(wants_receipt),
                       service: GatewayService = Depends(get_service)) -> RawResponse:
    started = time.perf_counter()
    body = await request.body()
    header_length = request.headers.get("inference-header-content-length")
    max_batch = request.app.state.settings.limits.max_batch
    if header_length is None and len(body) > 65536:  # parsing a large JSON tensor takes ms: not on the event loop
        batch, binary_output, request_id = await asyncio.to_thread(_parse_tensor_request, body, max_batch)
    else:
        batch, binary_output, request_id = _parse_tensor_request(body, max_batch, header_length)
    outcome = await service.run(batch, None if model_name == AUTO_MODEL else model_name, constraints, receipt)
    outputs = np.ascontiguousarray(outcome.outputs, dtype="<f4")
    decision = outcome.decision
    header = {
        "model_name": decision.model.name,
        "model_version": decision.model.triton_version,
        "id": request_id,
        "outputs": [{"name": "logits", "shape": list(outputs.shape), "datatype": "FP32"}],
        "parameters": {"carbon_intensity": decision.carbon.intensity, "expected_error_rate": decision.model.error_rate,
                       "energy_joules": outcome.energy.joules, "energy_source": outcome.energy.source,
                       "energy_measured": outcome.energy.measured,
                       "co2_grams": outcome.co2_g, "selected_by": _selected_by(service, decision)},
    }
    headers = _decision_headers(service, outcome, time.perf_counter() - started)
    if binary_output:
        raw = outputs.tobytes()
        header["outputs"][0]["parameters"] = {"binary_data_size": len(raw)}
        encoded = orjson.dumps(header)
        headers["Inference-Header-Content-Length"] = str(len(encoded))
        return RawResponse(encoded + raw, media_type="application/octet-stream", headers=headers)
    header["outputs"][0]["data"] = outputs.reshape(-1).tolist()
    return RawResponse(orjson.dumps(header), media_type="application/json", headers=headers)


@router.get("/healthz", response_model=HealthResponse, summary="Liveness: the process answers")
async def healthz() -> HealthResponse:
    return HealthResponse(version=__version__)


async def _model_statuses(service: GatewayService) -> tuple[bool, list[ModelStatus]]:
    """Whether Triton answers, and the pool's models with their readiness and weights."""
    reachable, ready = await service.readiness()
    weights = await service.weights() if any(ready.values()) else {}
    return reachable, [ModelStatus(name=s.name, triton_name=s.backend_name, ready=ready[s.name],
                                   weights=weights.get(s.name, "unknown"), energy_mj=s.energy_mj,
                                   error_rate=s.error_rate, energy_source=s.energy_source)
                       for s in service.pool.models if s.name in ready]


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}},
            summary="Readiness: Triton reachable and every pool model ready")
async def readyz(response: Response, service: GatewayService = Depends(get_service)) -> ReadyResponse:
    reachable, models = await _model_statuses(service)
    metrics.TRITON_UP.set(1 if reachable else 0)
    ready = reachable and all(m.ready for m in models)
    if not ready:
        response.status_code = 503
    return ReadyResponse(ready=ready, triton_url=service.triton.url, triton_reachable=reachable, models=models,
                         carbon=_carbon_out(service.carbon.state), policy=service.policy.name,
                         energy_meter=service.meter_name, energy_meter_up=service.meter_up)


@router.get("/v1/models", response_model=list[ModelStatus], summary="The pool: models, figures, readiness, weights")
async def list_models(service: GatewayService = Depends(get_service)) -> list[ModelStatus]:
    return (await _model_statuses(service))[1]


@router.get("/metrics", summary="Prometheus metrics", response_class=RawResponse,
            responses={200: {"content": {"text/plain": {}}}})
async def prometheus_metrics(service: GatewayService = Depends(get_service)) -> RawResponse:
    service.publish_state()
    metrics.TRITON_UP.set(1 if await service.triton.server_live() else 0)
    body, content_type = metrics.render()
    return RawResponse(body, media_type=content_type)


def require_admin(request: Request, authorization: str | None = Header(None)) -> None:
    """Bearer-token check for the admin API, in constant time; disabled without a configured token."""
    token = request.app.state.settings.admin_token
    if token is None:
        raise ApiError(403, "admin_disabled", "the admin API is disabled: set admin_token to enable it")
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), token.get_secret_value().encode()):
        raise ApiError(401, "unauthorized", "a valid `Authorization: Bearer <admin token>` header is required",
                       {"WWW-Authenticate": "Bearer"})


@router.post("/admin/reload-pool", response_model=ReloadOut, dependencies=[Depends(require_admin)],
             responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
             summary="Reload the pool file now (admin); a bad file is refused and the running pool stays")
async def reload_pool(request: Request) -> ReloadOut:
    result = await request.app.state.reloader.reload("admin")
    return ReloadOut(**dataclasses.asdict(result))
