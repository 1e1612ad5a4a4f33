"""The Open Inference Protocol (KServe v2) over HTTP, as Triton speaks it, so that stock clients work.

Health, server and model metadata, model readiness and configuration, the repository index, statistics,
and inference, each also in its ``/versions/{version}`` form. ``auto`` is a model too: the one the
gateway chooses per request, described by the signature its pool shares. Errors are the protocol's
``{"error": message}``, with the gateway's code beside it (``gateway.rest.errors``).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastapi.responses import Response as RawResponse

from ..protocol.codec import decode_request, encode_response
from ..serving.dataplane import response_parameters
from . import options
from .context import outcome_headers, plane_of
from .middleware import body_of
from .schemas import InferResponse, TensorInput

router = APIRouter(prefix="/v2", tags=["KServe v2"])
#: The inference routes alone: the app matches them before anything else (routes are tried in order, and
#: every inference request pays for each route tried before its own).
inference = APIRouter(prefix="/v2", tags=["KServe v2"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": "`{\"error\": message, \"code\": the gateway's error code}`"}
    for status in (400, 404, 413, 415, 422, 429, 503)}


def _state(key: str, value: bool, what: str, **extra: str) -> JSONResponse:
    """A health answer: the status says it, 200 or 400 as the protocol has it (Triton's clients read that), and
    the body too (the KServe SDK's do); a negative one carries the protocol's error fields."""
    if value:
        return JSONResponse({**extra, key: True})
    return JSONResponse({**extra, key: False, "error": f"{what} is not {key}", "code": f"not_{key}"}, status_code=400)


async def infer(request: Request) -> RawResponse:
    """The path's model and version come from ``request.path_params``, declared for OpenAPI by ``_infer_openapi``:
    as FastAPI parameters they cost 22 µs a request in validation, a tenth of the app's own time."""
    started = time.perf_counter()
    model_name: str = request.path_params["model_name"]
    version: str | None = request.path_params.get("version")
    receipt = options.read(options.InferQuery, request.query_params, "query").receipt
    constraints = options.read(options.HeaderOptions, request.headers, "header").constraints
    plane = plane_of(request)
    target = plane.target(model_name, version)
    expected = await plane.signature()
    body = await body_of(request)
    header_length = request.headers.get("inference-header-content-length")
    if header_length is None and len(body) > 65536:  # parsing a large JSON tensor takes ms: not on the event loop
        tensor = await plane.service.cpu.run(decode_request, body, plane.max_batch, None, expected)
    else:
        tensor = decode_request(body, plane.max_batch, header_length, expected)
    outcome = await plane.infer(target, tensor.batch, constraints, receipt)
    header: dict[str, Any] = {
        "model_name": outcome.decision.model.name,
        "model_version": outcome.model_version,
        **({"id": tensor.id} if tensor.id is not None else {}),
        "parameters": response_parameters(outcome),
    }
    headers = outcome_headers(outcome, time.perf_counter() - started)
    content, extra = encode_response(header, outcome.outputs, tensor.binary_output, expected.output_name)
    media_type = "application/octet-stream" if tensor.binary_output else "application/json"
    return RawResponse(content, media_type=media_type, headers={**headers, **extra})


def _infer_openapi(*path_parameters: str) -> dict[str, Any]:
    """The request body, path, query and header parameters of an inference route, for OpenAPI."""
    path = [{"name": name, "in": "path", "required": True,
             "schema": {"type": "string", "title": name.replace("_", " ").title()}} for name in path_parameters]
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "properties": {
            "inputs": {"type": "array", "items": TensorInput.model_json_schema()}}}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    }}, "parameters": [*path, *options.openapi_parameters(options.InferQuery, "query"),
                       *options.openapi_parameters(options.HeaderOptions, "header")]}


for path, summary, parameters in (
        ("/models/{model_name}/infer", "KServe v2 inference on a tensor; model `auto` lets the gateway choose",
         ("model_name",)),
        ("/models/{model_name}/versions/{version}/infer", "KServe v2 inference on one version",
         ("model_name", "version"))):
    inference.add_api_route(
        path, infer, methods=["POST"], summary=summary, response_model=InferResponse, responses=_ERRORS,
        openapi_extra=_infer_openapi(*parameters),
        description="JSON `data`, or the binary tensor extension: send `Inference-Header-Content-Length: <n>`, "
                    "n bytes of JSON header whose input has `parameters.binary_data_size`, then the raw "
                    "little-endian FP32 bytes. `\"parameters\": {\"binary_data_output\": true}` returns the "
                    "logits the same way. Model `auto` lets the gateway choose by the grid's carbon intensity.")


@router.get("", summary="Server metadata")
async def server_metadata(request: Request) -> JSONResponse:
    return JSONResponse(plane_of(request).server_metadata())


@router.get("/health/live", summary="Server liveness: the gateway answers", responses={200: {"description": "live"}})
async def live() -> JSONResponse:
    return _state("live", True, "the server")


@router.get("/health/ready", summary="Server readiness: the backend answers and every pool model is ready",
            responses={200: {"description": "ready"}, 400: {"description": "not ready"}})
async def ready(request: Request) -> JSONResponse:
    return _state("ready", await plane_of(request).server_ready(), "the server")


async def _metadata(request: Request, model_name: str, version: str | None = None) -> JSONResponse:
    return JSONResponse(await plane_of(request).model_metadata(model_name, version))


async def _ready(request: Request, model_name: str, version: str | None = None) -> JSONResponse:
    return _state("ready", await plane_of(request).model_ready(model_name, version),
                  f"model {model_name!r}" + (f" version {version}" if version else ""), name=model_name)


async def _config(request: Request, model_name: str, version: str | None = None) -> JSONResponse:
    return JSONResponse(await plane_of(request).model_config(model_name, version))


async def _statistics(request: Request, model_name: str, version: str | None = None) -> JSONResponse:
    return JSONResponse(await plane_of(request).model_statistics(model_name, version))


@router.get("/models/stats", summary="Statistics of every pool model (Triton's statistics extension)")
async def all_statistics(request: Request) -> JSONResponse:
    return JSONResponse(await plane_of(request).model_statistics())


@router.post("/repository/index", summary="The pool's models and `auto`, with their state (Triton's extension)")
async def repository_index(request: Request) -> JSONResponse:
    return JSONResponse(await plane_of(request).repository_index())


for suffix, handler, summary in (("", _metadata, "Model metadata"), ("/ready", _ready, "Model readiness"),
                                 ("/config", _config, "Model configuration (Triton's extension)"),
                                 ("/stats", _statistics, "Model statistics (Triton's statistics extension)")):
    router.add_api_route(f"/models/{{model_name}}{suffix}", handler, methods=["GET"], summary=summary,
                         responses=_ERRORS)
    router.add_api_route(f"/models/{{model_name}}/versions/{{version}}{suffix}", handler, methods=["GET"],
                         summary=f"{summary}, of one version", responses=_ERRORS)
