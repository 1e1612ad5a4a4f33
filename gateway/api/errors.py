"""Every failure the gateway knows becomes a specific status, a JSON body and one log line."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..imaging import ImageError
from .middleware import BodyTooLarge
from ..reload import ReloadRejected
from ..service import Unsatisfiable, UnknownModel
from ..triton import TritonError, TritonUnavailable, ModelNotReady

logger = logging.getLogger("gateway.api")

RETRY_AFTER_SECONDS = "5"


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _log(request: Request, status: int, code: str, detail: str) -> None:
    level = logging.WARNING if status >= 500 else logging.INFO
    logger.log(level, "%s %s -> %d %s: %s", request.method, request.url.path, status, code, detail)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        _log(request, exc.status, exc.code, exc.detail)
        return error_response(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        _log(request, 413, "payload_too_large", str(exc))
        return error_response(413, "payload_too_large", str(exc), {"Connection": "close"})

    @app.exception_handler(ImageError)
    async def _image_error(request: Request, exc: ImageError) -> JSONResponse:
        code = {400: "empty_body", 413: "image_too_large", 415: "unsupported_image"}.get(exc.status, "invalid_image")
        _log(request, exc.status, code, str(exc))
        return error_response(exc.status, code, str(exc))

    @app.exception_handler(UnknownModel)
    async def _unknown_model(request: Request, exc: UnknownModel) -> JSONResponse:
        _log(request, 404, "unknown_model", str(exc))
        return error_response(404, "unknown_model", str(exc))

    @app.exception_handler(Unsatisfiable)
    async def _unsatisfiable(request: Request, exc: Unsatisfiable) -> JSONResponse:
        _log(request, 422, "no_eligible_model", str(exc))
        return error_response(422, "no_eligible_model", str(exc))

    @app.exception_handler(ReloadRejected)
    async def _reload_rejected(request: Request, exc: ReloadRejected) -> JSONResponse:
        _log(request, 422, "pool_rejected", str(exc))
        return error_response(422, "pool_rejected", str(exc))

    @app.exception_handler(TritonError)
    async def _triton_error(request: Request, exc: TritonError) -> JSONResponse:
        code = ("triton_unavailable" if isinstance(exc, TritonUnavailable)
                else "model_not_ready" if isinstance(exc, ModelNotReady)
                else "invalid_tensor" if exc.status == 400 else "triton_error")
        headers = {"Retry-After": RETRY_AFTER_SECONDS} if exc.status == 503 else None
        _log(request, exc.status, code, str(exc))
        return error_response(exc.status, code, str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        _log(request, 422, "invalid_request", detail)
        return error_response(422, "invalid_request", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        _log(request, exc.status_code, code, str(exc.detail))
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("%s %s -> 500 internal_error", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; the gateway logged the details")
