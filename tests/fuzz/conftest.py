"""A real gateway process (uvicorn, ``carbon-gateway serve``) on the session's Triton, for HTTP fuzzing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.testing.processes import GatewayProcess

from tests.support.data import PROJECT


@pytest.fixture(scope="session")
def gateway_url(triton, model_repository, tmp_path_factory) -> Iterator[str]:
    log_file = tmp_path_factory.mktemp("gateway") / "gateway.log"
    with GatewayProcess("--triton", triton.grpc_url, "--repository", str(model_repository), "--carbon-intensity",
                        "200", "--log-level", "warning", cwd=PROJECT, log_file=log_file,
                        ready_path="/healthz") as gateway:
        yield gateway.url
    # Anything the gateway logged as an unexpected error fails the session.
    text = gateway.output()
    assert "internal_error" not in text and "Traceback" not in text, text[-4000:]
