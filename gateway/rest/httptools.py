"""uvicorn's httptools protocol with the two limits it lacks: the size of a request's head, and its time.

httptools buffers a request line and headers for as long as they keep coming, so four connections each
sending an unfinished 64 MiB header grew the gateway by a quarter of a gigabyte, and a client could take
as long as it liked. Here the bytes before the end of the headers are counted (431 past
``max_header_bytes``) and timed (408 past ``header_timeout_s``, from the request's first byte); either way
the connection is closed. ``configure`` sets the limits for the process (each worker calls it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: How uvicorn's ``http`` setting names this protocol (a worker process imports it by name).
IMPORT_PATH = "gateway.rest.httptools:LimitedHttpToolsProtocol"


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes = 64 * 1024
    header_timeout_s = 10.0
    body_buffer_bytes = 1 << 20

    @classmethod
    def configure(cls, max_header_bytes: int, header_timeout_s: float) -> None:
        cls.max_header_bytes, cls.header_timeout_s = max_header_bytes, header_timeout_s

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True  # before the end of a request's headers (the first, or the next on keep-alive)
        self._head_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)
        super().data_received(data)  # a read may hold the end of the head and the start of the body
        if self._in_head and self._head_bytes > self.max_header_bytes and self.transport is not None:
            self._refuse(431, "Request Header Fields Too Large",
                         f"request line and headers over {self.max_header_bytes} bytes")

    def on_body(self, body: bytes) -> None:
        # uvicorn's, but pausing the reads past ``body_buffer_bytes`` rather than past 64 KiB: a 600 KB tensor
        # then arrives without a pause, where it took about ten rounds of pause, wake the app, resume (a fifth
        # of the HTTP cost of such a request at concurrency 1, docs/performance.md). An inference route reads
        # the whole body before it starts anyway (``GatewayMiddleware``), so this bounds nothing that mattered.
        cycle = self.cycle
        if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return
        cycle.body += body
        if len(cycle.body) > self.body_buffer_bytes:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_headers_complete(self) -> None:
        self._end_of_head()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0  # a keep-alive connection's next request starts here

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_of_head()
        super().connection_lost(exc)

    def _end_of_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head:
            self._refuse(408, "Request Timeout", f"request headers not complete within {self.header_timeout_s:g} s")

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        self.logger.info("refused a request from %s: %s", self.client, detail)
        self._end_of_head()
        body = detail.encode()
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n%s" % (status, reason.encode(), len(body), body))
        self.transport.close()
