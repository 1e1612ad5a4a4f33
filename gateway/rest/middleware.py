"""The gateway's one pure ASGI middleware: request IDs, request metrics, backpressure, body-size limit.

One layer rather than four: each wrapping layer costs every request a call and a closure, and at GPU
speed the gateway's own CPU per request is what limits it (docs/performance.md). The in-flight limit and
the request metrics are the data plane's (``gateway.serving.dataplane``), shared with the gRPC door.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import (ClientClosedRequest, GatewayError, Overloaded, PayloadTooLarge, RequestTimeout, ShuttingDown,
                      shorten)
from ..serving.dataplane import DataPlane
from .errors import error_body

logger = logging.getLogger("gateway.rest")

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


class GatewayMiddleware:
    """Every response carries ``X-Request-ID`` (the client's, or a new one); inference requests are counted
    and timed by route, model and outcome, errors included; bodies over ``max_bytes`` get 413, whether the
    ``Content-Length`` says so up front or a chunked body grows past it.

    An inference request's body is read here, within ``body_timeout_s`` (408 after), before the request
    takes one of the data plane's slots (429 when none is free): a client trickling its body holds a
    connection, never a slot. The app then receives the body as one message.

    ``plane``: the process's data plane, once the server has started it.
    """

    def __init__(self, app: ASGIApp, plane: Callable[[], DataPlane], max_bytes: int, body_timeout_s: float = 10.0):
        self.app = app
        self.plane = plane
        self.max_bytes = max_bytes
        self.body_timeout_s = body_timeout_s

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
        if route is None:
            await self._other(scope, receive, send, request_id, declared)
            return
        plane = self.plane()
        with plane.track(route) as record:
            responded = False

            async def send_with_id(message: Message) -> None:
                nonlocal responded
                if message["type"] == "http.response.start":
                    responded, record.status = True, message["status"]
                    headers = message.get("headers", ())
                    record.model = next((v.decode() for k, v in headers if k == b"x-model"), "none")
                    message["headers"] = [*headers, (b"x-request-id", request_id)]
                await send(message)

            try:
                if await self._refused(path, declared, send_with_id):
                    return
                body, receive = await self._read_body(receive)
                with plane.admit():
                    scope[BODY] = body
                    await self.app(scope, _replaying(body, receive), send_with_id)
            except ClientClosedRequest as exc:
                record.status = exc.status  # nobody to answer
                logger.info("%s %s -> %d %s: %s", scope["method"], shorten(path, 200), exc.status, exc.code, exc)
            except asyncio.CancelledError:
                # uvicorn cancels what is still running once the shutdown deadline has passed: the request is
                # over. It gets a 503 if it can still be told, and one line in the log rather than a traceback.
                record.status = ShuttingDown.status
                await self._answer(scope, send_with_id, ShuttingDown("cancelled, the gateway is shutting down"),
                                   responded)
            except (PayloadTooLarge, RequestTimeout, Overloaded) as exc:
                record.status = exc.status
                await self._answer(scope, send_with_id, exc, responded)

    async def _other(self, scope: Scope, receive: Receive, send: Send, request_id: bytes,
                     declared: bytes | None) -> None:
        """Any route but inference: a request ID, the body limits, nothing counted or admitted."""
        responded = False

        async def send_with_id(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        try:
            if await self._refused(scope["path"], declared, send_with_id):
                return
            await self._stream(scope, receive, send_with_id, declared is None)
        except asyncio.CancelledError:
            await self._answer(scope, send_with_id, ShuttingDown("cancelled, the gateway is shutting down"), responded)
        except PayloadTooLarge as exc:
            await self._answer(scope, send_with_id, exc, responded)

    @staticmethod
    async def _answer(scope: Scope, send: Send, exc: GatewayError, responded: bool) -> None:
        """A refusal from here, shaped and logged as the app's handler does it (unless the app answered)."""
        if responded:
            return
        logger.info("%s %s -> %d %s: %s", scope["method"], shorten(scope["path"], 200), exc.status, exc.code,
                    exc.detail)
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
