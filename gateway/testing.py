"""Real processes for tests and benchmarks: a local ``tritonserver``, ``carbon-gateway serve``, local HTTP
servers that play remote APIs, and a stand-in for a GPU Triton's metrics endpoint where there is no GPU."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from .tritonserver import LocalTritonServer


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def running_triton(repository: Path, models: Sequence[str], log_file: Path | None = None,
                         extra_args: Sequence[str] = (),
                         model_config_name: str = "cpu") -> AsyncIterator[LocalTritonServer]:
    """A local tritonserver (CPU configs by default) on free ports, ready with ``models``; stopped on exit."""
    server = LocalTritonServer(repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                               model_config_name=model_config_name, log_file=log_file, extra_args=extra_args)
    server.start()
    try:
        await server.wait_ready(models, timeout_s=300)
        yield server
    finally:
        server.stop()


class GatewayProcess:
    """``python -m gateway.cli serve --port <free> <args>``, its output in a log file.

    Use as a context manager: started and waited for (``ready_path`` answering 200) on entry,
    stopped with SIGTERM on exit; ``output()`` is what it printed.
    """

    def __init__(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                 log_file: Path | None = None, ready_path: str = "/readyz", timeout_s: float = 300.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1",
                        "--port", str(self.port), *args]
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.log_file = log_file or Path(tempfile.mkstemp(prefix="carbon-gateway-", suffix=".log")[1])
        self.ready_path = ready_path
        self.timeout_s = timeout_s
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> GatewayProcess:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT)

    def wait_ready(self) -> httpx.Response:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.output()[-4000:]}")
            try:
                response = httpx.get(f"{self.url}{self.ready_path}", timeout=2)
                if response.status_code == 200:
                    return response
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gateway not ready after {self.timeout_s:.0f} s:\n{self.output()[-4000:]}")

    def send_signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then wait; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def output(self) -> str:
        return Path(self.log_file).read_text(errors="replace")


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


def binary_infer_request(array: np.ndarray, *, binary_output: bool = False, extra: dict | None = None,
                         size: int | None = None) -> tuple[bytes, dict[str, str]]:
    """A KServe v2 binary-extension request: its JSON header, then the raw little-endian FP32 bytes.

    ``binary_output`` asks for the logits the same way; ``extra`` adds top-level header fields; ``size``
    overrides the declared ``binary_data_size`` (to send a lying one).
    """
    raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
    header = {"inputs": [{"name": "input", "shape": list(array.shape), "datatype": "FP32",
                          "parameters": {"binary_data_size": len(raw) if size is None else size}}], **(extra or {})}
    if binary_output:
        header["parameters"] = {"binary_data_output": True}
    encoded = json.dumps(header).encode()
    return encoded + raw, {"Inference-Header-Content-Length": str(len(encoded)),
                           "Content-Type": "application/octet-stream"}
