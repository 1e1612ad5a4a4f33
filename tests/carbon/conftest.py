"""A real HTTP server on 127.0.0.1 that plays the carbon providers, scripted per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.providers import ProviderServer


@pytest.fixture(scope="session")
def provider_server() -> Iterator[ProviderServer]:
    with ProviderServer() as server:
        yield server


@pytest.fixture
def server(provider_server: ProviderServer) -> ProviderServer:
    provider_server.reset()
    return provider_server
