"""One handler for every ``GatewayError``: its status, a JSON body and one log line.

The body is ``{"error": code, "detail": message}``, except under ``/v2``, where the Open Inference
Protocol's clients read ``{"error": message}``: there the gateway's code goes beside it as ``code``.
The few failures that are not the gateway's own (FastAPI's request validation, Starlette's 404/405,
and anything unexpected) get the same shapes.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..errors import ClientClosedRequest, GatewayError, shorten

logger = logging.getLogger("gateway.rest")


def error_body(path: str, code: str, detail: str) -> dict[str, str]:
    """The JSON of an error: the protocol's shape under ``/v2``, the gateway's elsewhere."""
    if path == "/v2" or path.startswith("/v2/"):
        return {"error": detail, "code": code}
    return {"error": code, "detail": detail}


def error_response(request: Request, status: int, code: str, detail: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    _log(request, status, code, detail)
    return JSONResponse(error_body(request.url.path, code, detail), status_code=status, headers=headers)


def _log(request: Request, status: int, code: str, detail: str) -> None:
    level = logging.WARNING if status >= 500 else logging.INFO
    logger.log(level, "%s %s -> %d %s: %s", request.method, shorten(request.url.path, 200), status, code, detail)


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return error_response(request, exc.status, exc.code, exc.detail, dict(exc.headers) or None)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return error_response(request, 422, "invalid_request", detail)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(request, exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("%s %s -> 500 internal_error", request.method, request.url.path)
    detail = "internal error; the gateway logged the details"
    return JSONResponse(error_body(request.url.path, "internal_error", detail), status_code=500)


async def _client_disconnect(request: Request, exc: Exception) -> JSONResponse:
    return await _gateway_error(request, ClientClosedRequest("the client closed the connection before its "
                                                             "request body arrived"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
