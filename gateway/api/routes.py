"""HTTP routes: image classification, the KServe v2 tensor route, health and model info."""

from __future__ import annotations

import json
import time

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import Response as RawResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from .. import __version__, metrics
from ..carbon import CarbonState
from ..service import Decision, GatewayService, Outcome
from .errors import ApiError
from .schemas import (CarbonOut, ClassifyResponse, EnergyOut, ErrorResponse, HealthResponse, InferResponse,
                      ModelChoice, ModelStatus, PredictionOut, ReadyResponse, TensorInput, TensorOutput)

router = APIRouter()

AUTO_MODEL = "auto"
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
_ERRORS = {status: {"model": ErrorResponse} for status in (400, 404, 413, 415, 422, 503)}


def get_service(request: Request) -> GatewayService:
    return request.app.state.service


def _carbon_out(state: CarbonState) -> CarbonOut:
    return CarbonOut(intensity=state.intensity, source=state.reading.source, timestamp=state.reading.timestamp,
                     age_seconds=round(state.age_seconds(), 3), window_low=state.window.low,
                     window_high=state.window.high, window_basis=state.window_basis, status=state.status,
                     stale=state.stale, source_up=state.source_up, last_error=state.last_error)


def _weights(service: GatewayService, decision: Decision) -> str:
    signature = service.triton.cached_signature(decision.model.backend_name, decision.model.triton_version)
    return signature.parameters.get("weights", "unknown") if signature else "unknown"


def _model_choice(service: GatewayService, decision: Decision) -> ModelChoice:
    spec = decision.model
    return ModelChoice(name=spec.name, triton_name=spec.backend_name, weights=_weights(service, decision),
                       expected_error_rate=spec.error_rate, error_metric=service.pool.error_metric,
                       energy_mj_per_inference=spec.energy_mj,
                       selected_by="client" if decision.pinned else service.policy.name)


def _decision_headers(service: GatewayService, outcome: Outcome, elapsed_s: float) -> dict[str, str]:
    decision = outcome.decision
    return {
        "X-Model": decision.model.name,
        "X-Model-Weights": _weights(service, decision),
        "X-Selected-By": "client" if decision.pinned else service.policy.name,
        "X-Carbon-Intensity": f"{decision.carbon.intensity:.3f}",
        "X-Carbon-Source": decision.carbon.reading.source,
        "X-Expected-Error-Rate": f"{decision.model.error_rate:.3f}",
        "X-Energy-Joules": f"{outcome.energy.joules:.6g}",
        "X-Energy-Source": outcome.energy.source,
        "X-CO2-Grams": f"{outcome.co2_g:.6g}",
        "Server-Timing": f"triton;dur={outcome.compute_seconds * 1e3:.2f}, total;dur={elapsed_s * 1e3:.2f}",
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
                   service: GatewayService = Depends(get_service)) -> ClassifyResponse:
    started = time.perf_counter()
    outcome, predictions = await service.classify(await _image_bytes(request), top_k)
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


def _parse_tensor_request(body: bytes, max_batch: int) -> np.ndarray:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or len(payload["inputs"]) != 1:
        raise ApiError(400, "invalid_tensor_request", "expected a KServe v2 request with exactly one entry in `inputs`")
    try:
        tensor = TensorInput.model_validate(payload["inputs"][0])
    except ValidationError as exc:
        raise ApiError(400, "invalid_tensor_request", f"inputs[0]: {exc.errors()[0]['msg']}") from exc
    if tensor.datatype != "FP32":
        raise ApiError(400, "invalid_tensor_request", f"datatype {tensor.datatype} is not supported; send FP32")
    if len(tensor.shape) != 4 or tensor.shape[1:] != [3, 224, 224] or not 1 <= tensor.shape[0] <= max_batch:
        raise ApiError(400, "invalid_tensor_request",
                       f"shape {tensor.shape} is not [N, 3, 224, 224] with 1 <= N <= {max_batch}")
    try:
        array = np.asarray(tensor.data, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, "invalid_tensor_request", "data must be a flat or nested list of numbers") from exc
    if array.size != int(np.prod(tensor.shape)):
        raise ApiError(400, "invalid_tensor_request",
                       f"data has {array.size} values; shape {tensor.shape} needs {int(np.prod(tensor.shape))}")
    return array.reshape(tensor.shape)


@router.post(
    "/v2/models/{model_name}/infer",
    response_model=InferResponse,
    responses=_ERRORS,
    summary="KServe v2 inference on a tensor; model `auto` lets the gateway choose",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "properties": {"inputs": {"type": "array", "items": TensorInput.model_json_schema()}}}
    }}}},
)
async def infer_tensor(model_name: str, request: Request, response: Response,
                       service: GatewayService = Depends(get_service)) -> InferResponse:
    started = time.perf_counter()
    batch = _parse_tensor_request(await request.body(), request.app.state.settings.limits.max_batch)
    outcome = await service.run(batch, None if model_name == AUTO_MODEL else model_name)
    outputs = outcome.outputs
    response.headers.update(_decision_headers(service, outcome, time.perf_counter() - started))
    decision = outcome.decision
    return InferResponse(
        model_name=decision.model.name,
        model_version=decision.model.triton_version,
        outputs=[TensorOutput(name="logits", shape=list(outputs.shape), datatype="FP32",
                              data=outputs.reshape(-1).tolist())],
        parameters={"carbon_intensity": decision.carbon.intensity, "expected_error_rate": decision.model.error_rate,
                    "energy_joules": outcome.energy.joules, "energy_source": outcome.energy.source,
                    "co2_grams": outcome.co2_g, "selected_by": "client" if decision.pinned else service.policy.name},
    )


@router.get("/healthz", response_model=HealthResponse, summary="Liveness: the process answers")
async def healthz() -> HealthResponse:
    return HealthResponse(version=__version__)


async def _model_statuses(service: GatewayService) -> list[ModelStatus]:
    ready = await service.readiness()
    weights = await service.weights() if any(ready.values()) else {}
    return [ModelStatus(name=s.name, triton_name=s.backend_name, ready=ready[s.name],
                        weights=weights.get(s.name, "unknown"), energy_mj=s.energy_mj, error_rate=s.error_rate,
                        energy_source=s.energy_source) for s in service.pool.models]


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}},
            summary="Readiness: Triton reachable and every pool model ready")
async def readyz(response: Response, service: GatewayService = Depends(get_service)) -> ReadyResponse:
    models = await _model_statuses(service)
    reachable = await service.triton.server_ready()
    metrics.TRITON_UP.set(1 if reachable else 0)
    ready = reachable and all(m.ready for m in models)
    if not ready:
        response.status_code = 503
    return ReadyResponse(ready=ready, triton_url=service.triton.url, triton_reachable=reachable, models=models,
                         carbon=_carbon_out(service.carbon.state), policy=service.policy.name, energy_meter=service.meter_name)


@router.get("/v1/models", response_model=list[ModelStatus], summary="The pool: models, figures, readiness, weights")
async def list_models(service: GatewayService = Depends(get_service)) -> list[ModelStatus]:
    return await _model_statuses(service)


@router.get("/metrics", summary="Prometheus metrics", response_class=RawResponse,
            responses={200: {"content": {"text/plain": {}}}})
async def prometheus_metrics(service: GatewayService = Depends(get_service)) -> RawResponse:
    service.publish_state()
    metrics.TRITON_UP.set(1 if await service.triton.server_ready() else 0)
    body, content_type = metrics.render()
    return RawResponse(body, media_type=content_type)
