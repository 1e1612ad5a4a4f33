"""HTTP routes: image classification, the KServe v2 tensor route, health and model info."""

from __future__ import annotations

import dataclasses
import hmac
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import Response as RawResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..carbon import CarbonState
from ..errors import AdminDisabled, InvalidMultipart, MissingFile, TooManyAttempts, Unauthorized, UnsupportedMediaType
from ..metrics.prometheus import PrometheusSink
from ..serving import health
from ..serving.policystate import StatefulPolicy
from ..serving.service import GatewayService, Outcome
from . import options
from .context import outcome_headers, plane_of, runtime_of
from .middleware import body_of
from .schemas import (CarbonOut, ClassifyResponse, EnergyOut, ErrorResponse, HealthResponse, ModelChoice, ModelStatus,
                      PolicyOut, StateStoreOut,
                      PredictionOut, ReadyResponse, ReloadOut)

router = APIRouter()
#: ``/v1/classify`` alone, matched before anything else (see ``v2.inference``).
inference = APIRouter()
logger = logging.getLogger(__name__)

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
# dict is invariant: FastAPI's ``responses`` takes exactly dict[int | str, dict[str, Any]].
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 404, 413, 415, 422, 503)}


async def get_service(request: Request) -> GatewayService:
    return runtime_of(request).service


async def get_sink(request: Request) -> PrometheusSink:
    sink: PrometheusSink = request.app.state.sink
    return sink


def _carbon_out(state: CarbonState) -> CarbonOut:
    return CarbonOut(intensity=state.intensity, unit=state.reading.unit, source=state.reading.source,
                     timestamp=state.reading.timestamp, age_seconds=round(state.age_seconds(), 3),
                     window_low=state.window.low, window_high=state.window.high, window_basis=state.window_basis,
                     status=state.status,
                     stale=state.stale, source_up=state.source_up, last_error=state.last_error)


def _model_choice(outcome: Outcome, error_metric: str) -> ModelChoice:
    spec = outcome.decision.model
    return ModelChoice(name=spec.name, triton_name=spec.backend_name, weights=outcome.weights,
                       expected_error_rate=spec.error_rate, error_metric=error_metric,
                       energy_mj_per_inference=spec.energy_mj, selected_by=outcome.selected_by,
                       fallback_from=outcome.decision.fallback_from)


async def _image_bytes(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            async with request.form(max_files=1, max_fields=4) as form:  # closes the parts' spooled files
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise MissingFile("multipart body has no file part named `file`; send the image as field "
                                      "`file`")
                return await upload.read()
        except StarletteHTTPException as exc:  # starlette's refusal of a malformed or overfull form
            raise InvalidMultipart(f"multipart body refused: {exc.detail}; send one part, the image as field "
                                   "`file`") from None
    if content_type and not (content_type.startswith("image/") or content_type == "application/octet-stream"):
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r} is not an image; send image/jpeg, image/png, image/webp, "
            "application/octet-stream or multipart/form-data")
    return await body_of(request)


@inference.post(
    "/v1/classify",
    response_model=ClassifyResponse,
    responses=_ERRORS,
    summary="Classify an image with the model the grid's carbon intensity calls for",
    openapi_extra={"requestBody": {"required": True, "content": {
        **{t: {"schema": {"type": "string", "format": "binary"}} for t in (*IMAGE_TYPES, "application/octet-stream")},
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"}}}},
    }}, "parameters": [*options.openapi_parameters(options.ClassifyQuery, "query"),
                       *options.openapi_parameters(options.HeaderOptions, "header")]},
)
async def classify(request: Request) -> RawResponse:
    started = time.perf_counter()
    query = options.read(options.ClassifyQuery, request.query_params, "query")
    constraints = options.read(options.HeaderOptions, request.headers, "header").constraints
    plane = plane_of(request)
    outcome, predictions = await plane.classify(await _image_bytes(request), query.top_k, constraints,
                                                query.receipt)
    elapsed = time.perf_counter() - started
    body = ClassifyResponse(
        model=_model_choice(outcome, plane.service.pool.error_metric),
        predictions=[PredictionOut(index=p.index, label=p.label, score=p.score) for p in predictions],
        carbon=_carbon_out(outcome.decision.carbon),
        energy=EnergyOut(joules=outcome.energy.joules, source=outcome.energy.source,
                         measured=outcome.energy.measured, co2_grams=outcome.co2_g),
        latency_ms=round(elapsed * 1e3, 3),
    )
    return RawResponse(body.model_dump_json(), media_type="application/json",
                       headers=outcome_headers(outcome, elapsed))


@router.get("/healthz", response_model=HealthResponse, summary="Liveness: the process answers")
async def healthz(request: Request, response: Response) -> HealthResponse:
    if not request.app.state.alive():
        response.status_code = 503
        return HealthResponse(status="unrecoverable: the local Triton keeps dying; restart the gateway",
                              version=__version__)
    return HealthResponse(version=__version__)


async def _model_statuses(service: GatewayService) -> tuple[bool, list[ModelStatus]]:
    """Whether Triton answers, and the pool's models with their readiness and weights."""
    reachable, ready = await health.readiness(service.backend, service.pool)
    weights = await health.weights(service.backend, service.pool) if any(ready.values()) else {}
    return reachable, [ModelStatus(name=s.name, triton_name=s.backend_name, ready=ready[s.name],
                                   weights=weights.get(s.name, "unknown"), energy_mj=s.energy_mj,
                                   error_rate=s.error_rate, energy_source=s.energy_source)
                       for s in service.pool.models if s.name in ready]


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}},
            summary="Readiness: Triton reachable and every pool model ready")
async def readyz(request: Request, response: Response,
                 service: GatewayService = Depends(get_service)) -> ReadyResponse:
    reachable, models = await _model_statuses(service)
    service.sink.triton_up(reachable)
    ready = reachable and all(m.ready for m in models)
    if not ready:
        response.status_code = 503
    sync = runtime_of(request).sync
    stateful = service.policy if isinstance(service.policy, StatefulPolicy) else None
    return ReadyResponse(ready=ready, triton_url=service.backend.url, triton_reachable=reachable, models=models,
                         carbon=_carbon_out(service.carbon.state), policy=service.policy.name,
                         energy_meter=service.meter_name, energy_meter_up=service.meter_up,
                         policy_history_hours=stateful.history_hours if stateful else None,
                         policy_state_store=sync.status() if sync else "none")


@router.get("/v1/policy", response_model=PolicyOut, summary="The policy's promise and the fleet's account this period")
async def policy_status(request: Request) -> PolicyOut:
    runtime = runtime_of(request)
    policy, sync = runtime.service.policy, runtime.sync
    out = PolicyOut(name=policy.name, target_error=getattr(policy, "target_error", None))
    if isinstance(policy, StatefulPolicy):
        out.period_start, out.period_end = _utc(policy.period_start), _utc(policy.period_end)
        out.served_requests, out.mean_error = policy.served, policy.mean_error
        out.history_hours = policy.history_hours
    if sync is not None:
        out.store = StateStoreOut(url=sync.store.url, status=sync.status(), last_exchange=_utc(sync.last_exchange),
                                  last_error=sync.last_error, learned_hours=sync.learned_hours)
    return out


def _utc(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None and math.isfinite(epoch) else None


@router.get("/v1/models", response_model=list[ModelStatus], summary="The pool: models, figures, readiness, weights")
async def list_models(service: GatewayService = Depends(get_service)) -> list[ModelStatus]:
    return (await _model_statuses(service))[1]


@router.get("/metrics", summary="Prometheus metrics", response_class=RawResponse,
            responses={200: {"content": {"text/plain": {}}}})
async def prometheus_metrics(service: GatewayService = Depends(get_service),
                             sink: PrometheusSink = Depends(get_sink)) -> RawResponse:
    service.publish_state()
    service.sink.triton_up(await service.backend.server_live())
    body, content_type = sink.render()
    return RawResponse(body, media_type=content_type)


class FailedAttempts:
    """Failed admin attempts per client over the last ``window_s``: past ``limit`` of them, the client's failures
    are answered 429 until the oldest leaves the window. Only failures are limited: the valid token is never
    refused, so a client that guesses (or many behind one NAT) cannot lock the real admin out."""

    def __init__(self, limit: int = 5, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        now, failures = self._clock(), self._failures.setdefault(client, deque())
        while failures and now - failures[0] > self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[client]  # bounded by the clients failing now, not by every client ever seen
        return failures

    def check(self, client: str) -> None:
        if len(self._recent(client)) >= self.limit:
            raise TooManyAttempts(f"{self.limit} failed admin attempts within {self.window_s:.0f} s; retry later")

    def fail(self, client: str) -> None:
        self._failures.setdefault(client, deque()).append(self._clock())


async def require_admin(request: Request, authorization: str | None = Header(None)) -> None:
    """Bearer-token check for the admin API, in constant time; failures are rate-limited per client (the peer's
    address, or the one a configured proxy forwards: ``forwarded_allow_ips``); disabled without a token."""
    token = request.app.state.settings.admin_token
    if token is None:
        raise AdminDisabled("the admin API is disabled: set admin_token to enable it")
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and presented and hmac.compare_digest(presented.encode(),
                                                                         token.get_secret_value().encode()):
        return
    attempts: FailedAttempts = request.app.state.admin_attempts
    client = request.client.host if request.client else "unknown"
    attempts.check(client)
    attempts.fail(client)
    logger.warning("failed admin attempt from %s", client)
    raise Unauthorized("a valid `Authorization: Bearer <admin token>` header is required")


@router.post("/admin/reload-pool", response_model=ReloadOut, dependencies=[Depends(require_admin)],
             responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
             summary="Reload the pool file now (admin); a bad file is refused and the running pool stays")
async def reload_pool(request: Request) -> ReloadOut:
    result = await runtime_of(request).reloader.reload("admin")
    return ReloadOut(**dataclasses.asdict(result))
