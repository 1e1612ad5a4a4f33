"""A local server that plays the carbon providers' real APIs (UK, Electricity Maps, WattTime), and HTTP
settings that fail fast."""

from __future__ import annotations

import fnmatch
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gateway.carbon import HttpSettings
from gateway.testing.http import HttpReply, LocalHttpServer

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
        self._http: LocalHttpServer | None = None

    @property
    def url(self) -> str:
        assert self._http is not None, "use the server in a `with` block"
        return self._http.url

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

    def _respond(self, target: str, headers: dict[str, str]) -> HttpReply:
        parts = urlsplit(target)
        reply = self._take(parts.path, Seen(parts.path, dict(parse_qsl(parts.query)), headers, time.monotonic()))
        if reply.delay:
            time.sleep(reply.delay)
        return HttpReply(reply.status, reply.payload(), {**reply.headers, "Content-Type": "application/json"})

    def _take(self, path: str, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            for pattern, replies in self.routes.items():
                if fnmatch.fnmatchcase(path, pattern):
                    return replies.popleft() if len(replies) > 1 else replies[0]
        return Reply(404, {"error": f"no route for {path}"})

    def __enter__(self) -> ProviderServer:
        self._http = LocalHttpServer(self._respond, name="provider-server")
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()
