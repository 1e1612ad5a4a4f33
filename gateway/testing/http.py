"""Local HTTP servers on 127.0.0.1 that play remote APIs (carbon providers, Triton's /metrics), and a
stand-in for a GPU's energy counter where there is no GPU."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class HttpReply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class LocalHttpServer:
    """A threaded HTTP server on 127.0.0.1 that answers every GET with ``respond(path, headers)``.

    ``path`` keeps its query string; header names come lower-cased. Serves from construction until
    ``close()`` (or the end of a ``with`` block).
    """

    def __init__(self, respond: Callable[[str, dict[str, str]], HttpReply], name: str = "local-http"):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                reply = respond(self.path, {k.lower(): v for k, v in self.headers.items()})
                try:
                    self.send_response(reply.status)
                    for header, value in reply.headers.items():
                        self.send_header(header, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name=name, daemon=True).start()

    def __enter__(self) -> LocalHttpServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class MetricsEndpoint(LocalHttpServer):
    """Answers every GET with ``render()`` as Prometheus text, as Triton's /metrics does; ``url`` ends in it."""

    def __init__(self, render: Callable[[], str]):
        super().__init__(lambda path, headers: HttpReply(body=render().encode(), headers={
            "Content-Type": "text/plain; version=0.0.4"}), name="metrics-endpoint")
        self.url += "/metrics"


class SyntheticGpuEnergy:
    """Triton's ``nv_energy_consumption`` for one GPU drawing a constant ``watts``, remembering each read.

    For exercising the measured-energy path (``energy.meter: triton``) where there is no GPU: what the
    gateway measured can be checked against what this "GPU" drew between its first and last read.
    """

    HEADER = ("# HELP nv_energy_consumption GPU energy consumption in joules since the Triton Server started\n"
              "# TYPE nv_energy_consumption counter\n")

    def __init__(self, watts: float):
        self.watts = watts
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self.reads: list[float] = []

    def render(self) -> str:
        with self._lock:
            now = time.monotonic()
            self.reads.append(now)
        joules = self.watts * (now - self._start)
        return f'{self.HEADER}nv_energy_consumption{{gpu_uuid="GPU-synthetic"}} {joules:.9f}\n'

    def joules_between_first_and_last_read(self) -> float:
        with self._lock:
            return self.watts * (self.reads[-1] - self.reads[0]) if self.reads else 0.0
