"""Pure ASGI middleware: body-size limit, request IDs, request metrics."""

from __future__ import annotations

import json
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import PayloadTooLarge
from ..telemetry import MetricsSink


async def send_error(send: Send, status: int, code: str, detail: str,
                     headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """A whole JSON error response (``{error, detail}``, as the app's handlers write) sent from middleware."""
    body = json.dumps({"error": code, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


CLOSE = ((b"connection", b"close"),)  # the rest of a refused body is not read: the connection cannot be reused


class BodySizeLimitMiddleware:
    """Pure ASGI: checks Content-Length up front and counts streamed bytes for chunked bodies."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_error(send, 400, "invalid_request", "Content-Length is not a number", CLOSE)
                    return
                if declared > self.max_bytes:
                    await send_error(send, 413, "payload_too_large",
                                     f"body of {declared} bytes exceeds the limit of {self.max_bytes}", CLOSE)
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(f"body exceeds the limit of {self.max_bytes} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except PayloadTooLarge as exc:
            if not started:
                await send_error(send, exc.status, exc.code, str(exc), CLOSE)


class RequestIdMiddleware:
    """Echoes the client's X-Request-ID, or assigns one, on every response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = next((v for k, v in scope.get("headers", ()) if k == b"x-request-id"), None) \
            or uuid.uuid4().hex.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _route(path: str) -> str | None:
    if path == "/v1/classify":
        return "classify"
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "infer"
    return None


def _outcome(status: int) -> str:
    if status < 400:
        return "success"
    if status == 429:
        return "throttled"
    if status == 503:
        return "unavailable"
    return "rejected" if status < 500 else "error"


class MetricsMiddleware:
    """Counts inference requests by route, model and outcome, and times them; errors included."""

    def __init__(self, app: ASGIApp, sink: MetricsSink):
        self.app = app
        self.sink = sink

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _route(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, model = 500, "none"

        async def observing_send(message: Message) -> None:
            nonlocal status, model
            if message["type"] == "http.response.start":
                status = message["status"]
                model = next((v.decode() for k, v in message.get("headers", ()) if k == b"x-model"), "none")
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            self.sink.request(route, model, _outcome(status), time.perf_counter() - started)


class ConcurrencyLimitMiddleware:
    """Backpressure: past ``max_in_flight`` inference requests, answer 429 at once instead of queueing."""

    def __init__(self, app: ASGIApp, max_in_flight: int, retry_after_s: int = 1):
        self.app = app
        self.max_in_flight = max_in_flight
        self.retry_after = str(retry_after_s).encode()
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _route(scope["path"]) is None:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await send_error(send, 429, "overloaded", f"{self.in_flight} requests in flight, the limit is "
                             f"{self.max_in_flight}; retry later", ((b"retry-after", self.retry_after),))
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
