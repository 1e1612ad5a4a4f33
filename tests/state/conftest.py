"""A real redis-server per test that asks for one, and each store kind on a fresh place of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.state import PolicyStore, StateSettings, make_store


@pytest.fixture(params=["file", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store of each kind that shares state between processes."""
    if request.param == "file":
        return f"file://{tmp_path}/state/policy-state.json"
    return request.getfixturevalue("redis_server").url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[PolicyStore]:
    opened = make_store(StateSettings(url=store_url))
    yield opened
    await opened.close()
