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


def _code(exc: Exception) -> str:
    """The stable error code of a domain error (each carries its HTTP ``status``)."""
    if isinstance(exc, ImageError):
        return {400: "empty_body", 413: "image_too_large", 415: "unsupported_image"}.get(exc.status, "invalid_image")
    if isinstance(exc, TritonError):
        return ("triton_unavailable" if isinstance(exc, TritonUnavailable)
                else "model_not_ready" if isinstance(exc, ModelNotReady)
                else "invalid_tensor" if exc.status == 400 else "triton_error")
    return {UnknownModel: "unknown_model", Unsatisfiable: "no_eligible_model",
            ReloadRejected: "pool_rejected", BodyTooLarge: "payload_too_large"}[type(exc)]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        _log(request, exc.status, exc.code, exc.detail)
        return error_response(exc.status, exc.code, exc.detail, exc.headers)

    async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
        status, code = getattr(exc, "status", 413), _code(exc)
        headers = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None
        if isinstance(exc, BodyTooLarge):
            headers = {"Connection": "close"}
        _log(request, status, code, str(exc))
        return error_response(status, code, str(exc), headers)

    for error in (BodyTooLarge, ImageError, UnknownModel, Unsatisfiable, ReloadRejected, TritonError):
        app.add_exception_handler(error, _domain_error)

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
