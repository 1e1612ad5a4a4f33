"""A real gateway process (uvicorn, ``carbon-gateway serve``) on the session's Triton, for HTTP fuzzing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..conftest import PROJECT, free_port


def start_gateway(triton_url: str, repository: Path, log_file: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "gateway.cli", "serve", "--triton", triton_url, "--repository", str(repository),
               "--host", "127.0.0.1", "--port", str(port), "--carbon-intensity", "200", "--log-level", "warning",
               *extra]
    log = open(log_file, "ab")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(command, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited with {process.returncode}; see {log_file}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"gateway not up after 60 s; see {log_file}")


@pytest.fixture(scope="session")
def gateway_url(triton, model_repository, tmp_path_factory) -> Iterator[str]:
    log_file = tmp_path_factory.mktemp("gateway") / "gateway.log"
    process, url = start_gateway(triton.grpc_url, model_repository, log_file)
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # Anything the gateway logged as an unexpected error fails the session.
        text = log_file.read_text(errors="replace")
        assert "internal_error" not in text and "Traceback" not in text, text[-4000:]
