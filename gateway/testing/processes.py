"""Real processes for tests and benchmarks: a local ``tritonserver`` and ``carbon-gateway serve``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from ..triton import LocalTritonServer


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
    """``python -m gateway.cli serve --port <port, default a free one> <args>``, its output in a log file.

    Use as a context manager: started and waited for (``ready_path`` answering 200) on entry,
    stopped with SIGTERM on exit; ``output()`` is what it printed.
    """

    def __init__(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                 log_file: Path | None = None, ready_path: str = "/readyz", timeout_s: float = 300.0,
                 port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1",
                        "--port", str(self.port), *args]
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        if log_file is None:
            descriptor, name = tempfile.mkstemp(prefix="carbon-gateway-", suffix=".log")
            os.close(descriptor)
            log_file = Path(name)
        self.log_file = log_file
        self.ready_path = ready_path
        self.timeout_s = timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("the gateway process was not started")
        return self._process

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
            self._process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdout=log,
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
