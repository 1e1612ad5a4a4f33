"""The gateway's one pure ASGI middleware: request IDs, request metrics, backpressure, body-size limit.

One layer rather than four: each wrapping layer costs every request a call and a closure, and at GPU
speed the gateway's own CPU per request is what limits it (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ClientClosedRequest, GatewayError, Overloaded, PayloadTooLarge, RequestTimeout, ShuttingDown
from ..telemetry import MetricsSink
from .errors import error_body

logger = logging.getLogger("gateway.api")

CLOSE = ((b"connection", b"close"),)  # the rest of a refused body is not read: the connection cannot be reused


async def send_error(send: Send, path: str, status: int, code: str, detail: str,
                     headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """A whole JSON error response, shaped as the app's handler shapes it for ``path``, sent from middleware."""
    body = orjson.dumps(error_body(path, code, detail))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def _route(path: str) -> str | None:
    """The inference route a path belongs to (counted, timed and limited), or None."""
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
    if status == 499:
        return "disconnected"
    if status == 503:
        return "unavailable"
    return "rejected" if status < 500 else "error"


class GatewayMiddleware:
    """Every response carries ``X-Request-ID`` (the client's, or a new one); inference requests are counted
    and timed by route, model and outcome, errors included; bodies over ``max_bytes`` get 413, whether the
    ``Content-Length`` says so up front or a chunked body grows past it.

    An inference request's body is read here, within ``body_timeout_s`` (408 after), before the request
    takes one of the ``max_in_flight`` slots (429 when none is free): a client trickling its body holds a
    connection, never a slot. The app then receives the body as one message.
    """

    def __init__(self, app: ASGIApp, sink: MetricsSink, max_bytes: int, max_in_flight: int,
                 body_timeout_s: float = 10.0):
        self.app = app
        self.sink = sink
        self.max_bytes = max_bytes
        self.max_in_flight = max_in_flight
        self.body_timeout_s = body_timeout_s
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id: bytes | None = None
        declared: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value
            elif name == b"content-length":
                declared = value
        request_id = request_id or uuid.uuid4().hex.encode()
        path, route = scope["path"], _route(scope["path"])
        started = time.perf_counter()
        status, model, responded = 500, "none", False

        async def send_with_id(message: Message) -> None:
            nonlocal status, model, responded
            if message["type"] == "http.response.start":
                responded, status = True, message["status"]
                headers = message.get("headers", ())
                if route is not None:
                    model = next((v.decode() for k, v in headers if k == b"x-model"), "none")
                message["headers"] = [*headers, (b"x-request-id", request_id)]
            await send(message)

        try:
            if await self._refused(path, declared, send_with_id):
                return
            if route is None:
                await self._stream(scope, receive, send_with_id, declared is None)
                return
            body, receive = await self._read_body(receive)
            if self.in_flight >= self.max_in_flight:
                raise Overloaded(f"{self.in_flight} requests in flight, the limit is {self.max_in_flight}; retry later")
            self.in_flight += 1
            scope[BODY] = body
            try:
                await self.app(scope, _replaying(body, receive), send_with_id)
            finally:
                self.in_flight -= 1
        except ClientClosedRequest as exc:
            status = exc.status  # nobody to answer
            logger.info("%s %s -> %d %s: %s", scope["method"], path, exc.status, exc.code, exc)
        except asyncio.CancelledError:
            # uvicorn cancels what is still running once the shutdown deadline has passed: the request is over.
            # It gets a 503 if it can still be told, and one line in the log rather than a traceback.
            status = ShuttingDown.status
            await self._answer(scope, send_with_id, ShuttingDown("cancelled, the gateway is shutting down"), responded)
        except (PayloadTooLarge, RequestTimeout, Overloaded) as exc:
            await self._answer(scope, send_with_id, exc, responded)
        finally:
            if route is not None:
                self.sink.request(route, model, _outcome(status), time.perf_counter() - started)

    @staticmethod
    async def _answer(scope: Scope, send: Send, exc: GatewayError, responded: bool) -> None:
        """A refusal from here, shaped and logged as the app's handler does it (unless the app answered)."""
        if responded:
            return
        logger.info("%s %s -> %d %s: %s", scope["method"], scope["path"], exc.status, exc.code, exc.detail)
        headers = tuple((name.lower().encode(), value.encode()) for name, value in exc.headers)
        await send_error(send, scope["path"], exc.status, exc.code, exc.detail, headers)

    async def _refused(self, path: str, declared: bytes | None, send: Send) -> bool:
        """Answer at once (True) a body whose declared length is not a number or too large."""
        if declared is None:
            return False
        try:
            length = int(declared)
        except ValueError:
            await send_error(send, path, 400, "invalid_request", "Content-Length is not a number", CLOSE)
            return True
        if length > self.max_bytes:
            await send_error(send, path, 413, "payload_too_large",
                             f"body of {length} bytes exceeds the limit of {self.max_bytes}", CLOSE)
            return True
        return False

    async def _read_body(self, receive: Receive) -> tuple[bytes, Receive]:
        """The whole body, within ``max_bytes`` and ``body_timeout_s``."""
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientClosedRequest("the client closed the connection before its request body arrived")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise PayloadTooLarge(f"body exceeds the limit of {self.max_bytes} bytes")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks), receive
        except TimeoutError:
            raise RequestTimeout(f"the request body did not arrive within {self.body_timeout_s:g} s "
                                 f"({size} bytes came)") from None

    async def _stream(self, scope: Scope, receive: Receive, send: Send, chunked: bool) -> None:
        """Any other route: the app reads the body as it comes; a chunked one is counted against ``max_bytes``."""
        if not chunked:  # the server reads no more than Content-Length, checked above
            await self.app(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(f"body exceeds the limit of {self.max_bytes} bytes")
            return message

        await self.app(scope, counting_receive, send)


#: Where the scope holds an inference request's body, read before the request took its slot.
BODY = "carbon_gateway.body"


async def body_of(request: Request) -> bytes:
    """The request's body: as the middleware read it for an inference route, else read now."""
    body = request.scope.get(BODY)
    return body if isinstance(body, bytes) else await request.body()


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then listens for the disconnect."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
