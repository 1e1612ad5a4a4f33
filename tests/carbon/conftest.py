"""A real HTTP server on 127.0.0.1 that plays the carbon providers, scripted per test."""

from __future__ import annotations

import fnmatch
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from gateway.carbon import HttpSettings

#: Short enough that the whole suite stays fast, long enough for a loaded CI machine.
FAST_HTTP = HttpSettings(timeout_s=0.3, attempts=3, backoff_s=0.01, backoff_max_s=0.05, max_retry_after_s=1.5)


@dataclass
class Reply:
    status: int = 200
    body: Any = b""  # bytes/str sent as is; anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float


class ProviderServer:
    """Routes are glob patterns on the path; each holds replies served in turn, the last one repeating."""

    def __init__(self) -> None:
        self.routes: dict[str, deque[Reply]] = {}
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                reply = server._take(parts.path, Seen(parts.path, dict(parse_qsl(parts.query)),
                                                      {k.lower(): v for k, v in self.headers.items()},
                                                      time.monotonic()))
                if reply.delay:
                    time.sleep(reply.delay)
                body = reply.payload()
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="provider-server", daemon=True)

    def route(self, pattern: str, *replies: Reply) -> None:
        with self._lock:
            self.routes[pattern] = deque(replies)

    def json(self, pattern: str, body: Any) -> None:
        self.route(pattern, Reply(body=body))

    def hits(self, pattern: str) -> list[Seen]:
        with self._lock:
            return [seen for seen in self.requests if fnmatch.fnmatchcase(seen.path, pattern)]

    def reset(self) -> None:
        with self._lock:
            self.routes.clear()
            self.requests.clear()

    def _take(self, path: str, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            for pattern, replies in self.routes.items():
                if fnmatch.fnmatchcase(path, pattern):
                    return replies.popleft() if len(replies) > 1 else replies[0]
        return Reply(404, {"error": f"no route for {path}"})

    def __enter__(self) -> ProviderServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="session")
def provider_server() -> Iterator[ProviderServer]:
    with ProviderServer() as server:
        yield server


@pytest.fixture
def server(provider_server: ProviderServer) -> ProviderServer:
    provider_server.reset()
    return provider_server
