"""``PolicySync``: the ``error-target`` policy's account and history kept in a real store, across gateways.

The gateways are in-process ``GatewayServer``s on a ``FakeBackend``; the stores are real: a file, and a real
``redis-server`` that the tests freeze (SIGSTOP) and kill to take it away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.policy.error_target import period_bounds
from gateway.server import GatewayServer
from gateway.state import StateSettings, make_store
from tests.support.backend import FakeBackend
from tests.support.data import IMAGES, POOL_MODELS, SHARED_DATA
from tests.support.gateway import settings_for

FLUSH_S = 0.05
KEY = "test-fleet"


@asynccontextmanager
async def gateway(repository: Path, url: str, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway serving ``error-target`` whose account is kept at ``url``, exchanged every ``FLUSH_S``."""
    values: dict[str, Any] = {"policy__name": "error-target", "watch_pool": False, "state__url": url,
                              "state__key": KEY, "state__flush_interval_s": FLUSH_S, **overrides}
    if "carbon__source" not in overrides:
        values["carbon__intensity"] = 250.0  # the static source
    server = GatewayServer(settings_for(repository, **values), FakeBackend(POOL_MODELS))
    async with server, httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app), base_url="http://g",
                                         timeout=30) as client:
        yield client


async def classify(client: httpx.AsyncClient, count: int) -> list[int]:
    image = IMAGES[0].read_bytes()
    statuses = []
    for _ in range(count):
        response = await client.post("/v1/classify", files={"file": ("x.jpg", image, "image/jpeg")})
        statuses.append(response.status_code)
    return statuses


async def policy(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/v1/policy")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> None:
    """Until ``check()`` holds; the exchanges run every ``FLUSH_S``, so this is a few of them on a quiet
    machine and more on a busy one."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s")
        await asyncio.sleep(FLUSH_S)


async def stored_served(url: str) -> float:
    """The served requests of this month's account, as the store itself holds it."""
    store = make_store(StateSettings(url=url, key=KEY))
    try:
        snapshot = await store.load(KEY, period_bounds(time.time(), "month")[0], since=time.time())
    finally:
        await store.close()
    return snapshot.served


async def test_two_gateways_keep_one_account_through_redis(fake_repository, redis_server):
    """What either serves counts towards both: each sees the fleet's requests and mean error, and the store
    holds the sum."""
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(gateway(fake_repository, redis_server.url))
        second = await stack.enter_async_context(gateway(fake_repository, redis_server.url))
        assert await classify(first, 3) == [200] * 3
        assert await classify(second, 2) == [200] * 2

        async def both_see_five() -> bool:
            views = [await policy(client) for client in (first, second)]
            return all(view["served_requests"] == 5 for view in views)

        await eventually(both_see_five)
        one, two = await policy(first), await policy(second)
        assert one["mean_error"] == pytest.approx(two["mean_error"])
        assert one["store"]["status"] == "up" and one["store"]["url"] == redis_server.url
    assert await stored_served(redis_server.url) == 5


async def test_a_restarted_gateway_resumes_the_fleets_account_and_history(fake_repository, tmp_path):
    """The default kind of store, a file: a gateway stopped and started again (a deploy) starts from the account
    and history the first one left, before it plans or serves."""
    url = f"file://{tmp_path}/state/policy-state.json"
    async with gateway(fake_repository, url, carbon__poll_interval_s=0.05) as first:
        assert await classify(first, 4) == [200] * 4

        async def some_history() -> bool:
            return (await policy(first))["history_hours"] > 0

        await eventually(some_history)
    async with gateway(fake_repository, url) as second:
        view = await policy(second)
        assert view["served_requests"] == 4 and view["history_hours"] > 0
        ready = (await second.get("/readyz")).json()
        assert ready["policy_state_store"] == "up" and ready["policy_history_hours"] > 0
        assert await classify(second, 1) == [200]
    assert await stored_served(url) == 5


async def test_the_store_going_away_stops_nothing_and_the_fleet_reconciles_when_it_returns(fake_repository,
                                                                                          redis_server, caplog):
    """Redis frozen (a hung node): requests are served, readiness stays 200 and says the store is down, once in
    the log; thawed, what was served meanwhile reaches the store, none of it counted twice."""
    async with gateway(fake_repository, redis_server.url) as client:
        assert await classify(client, 2) == [200] * 2
        await eventually(lambda: _stored_is(redis_server.url, 2))
        redis_server.freeze()
        try:
            assert await classify(client, 3) == [200] * 3

            async def store_down() -> bool:
                return (await client.get("/readyz")).json()["policy_state_store"] == "down"

            await eventually(store_down)
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            metrics = (await client.get("/metrics")).text
            assert "carbon_gateway_policy_state_store_up 0.0" in metrics
            assert await classify(client, 1) == [200]
            assert (await policy(client))["served_requests"] == 6  # its own account meanwhile
        finally:
            redis_server.thaw()
        await eventually(lambda: _stored_is(redis_server.url, 6))
        view = await policy(client)
        assert view["store"]["status"] == "up" and view["served_requests"] == 6
    downs = [r for r in caplog.records if "state store is down" in r.getMessage()]
    assert len(downs) == 1, [r.getMessage() for r in downs]
    assert any("state store is back" in r.getMessage() for r in caplog.records)


async def _stored_is(url: str, served: float) -> bool:
    return await stored_served(url) == served


async def test_a_lost_store_restarts_empty_and_the_account_is_refilled_by_the_next_exchange(fake_repository,
                                                                                          redis_server):
    """Redis killed and started empty (no persistence): the gateway's next exchanges write what it knows since
    then; it never fails a request meanwhile."""
    async with gateway(fake_repository, redis_server.url) as client:
        assert await classify(client, 2) == [200] * 2
        await eventually(lambda: _stored_is(redis_server.url, 2))
        redis_server.kill()
        assert await classify(client, 2) == [200] * 2
        redis_server.start()
        assert await classify(client, 1) == [200]
        # The store lost the first two; the gateway hands over what it served since its last exchange.
        await eventually(lambda: _stored_is(redis_server.url, 3))
        assert (await policy(client))["store"]["status"] == "up"


async def test_an_empty_store_is_filled_from_the_providers_past_once(fake_repository, tmp_path):
    """A first gateway finds no history in the store and learns the provider's past (a trace, here); the next
    one finds it in the store and learns nothing."""
    trace = SHARED_DATA / "carbon" / "gb_2020_entsoe.csv"
    if not trace.exists():
        pytest.skip(f"{trace} is missing")
    url = f"file://{tmp_path}/state/policy-state.json"
    source = {"carbon__source": "trace", "carbon__trace_path": str(trace), "carbon__c_low": 100.0,
              "carbon__c_high": 300.0}
    async with gateway(fake_repository, url, **source) as first:
        view = await policy(first)
        assert view["store"]["learned_hours"] >= 24 * 15 and view["history_hours"] >= 24 * 15
    async with gateway(fake_repository, url, **source) as second:
        view = await policy(second)
        assert view["store"]["learned_hours"] == 0 and view["history_hours"] >= 24 * 15


def test_two_workers_keep_one_account_in_the_default_file_a_sigkill_keeps_it_and_ends_them(triton, model_repository,
                                                                                tmp_path):
    """``serve --workers 2`` with the default store (a file under the working directory): what both workers
    serve is one account; the gateway killed with SIGKILL, its workers stop too, and the next gateway starts
    from that account."""
    import signal

    import httpx as sync_http
    import psutil

    from gateway.testing.processes import GatewayProcess
    from tests.support.gateway import multiproc_dir_of, pids_that_served

    env = {"CARBON_GATEWAY_POLICY__NAME": "error-target", "CARBON_GATEWAY_STATE__FLUSH_INTERVAL_S": str(FLUSH_S)}
    env["CARBON_GATEWAY_STATE__URL"] = "file://var/state/policy-state.json"  # the default, which the tests unset
    args = ("--triton", triton.grpc_url, "--repository", str(model_repository), "--carbon-intensity", "120",
            "--log-level", "warning")
    stored = tmp_path / "var" / "state" / "policy-state.json"
    sent = 0
    with GatewayProcess(*args, "--workers", "2", cwd=tmp_path, env=env) as first:
        multiproc_dir = multiproc_dir_of(first.process.pid)
        while len(pids_that_served(multiproc_dir)) < 2:  # until both workers have served
            assert sent < 60, "one worker took every connection"
            with sync_http.Client(base_url=first.url, timeout=60) as client:  # a connection per request
                response = client.post("/v1/classify", content=IMAGES[0].read_bytes(),
                                       headers={"content-type": "image/jpeg"})
            assert response.status_code == 200, response.text
            sent += 1
        deadline = time.monotonic() + 30
        while _served_in(stored) != sent:  # both workers' exchanges reached the file
            assert time.monotonic() < deadline, (_served_in(stored), sent)
            time.sleep(FLUSH_S)
        workers = psutil.Process(first.process.pid).children()
        first.process.send_signal(signal.SIGKILL)  # no shutdown: only what the exchanges wrote survives
        first.process.wait(30)
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, "workers outlived their parent"  # orphans would go on serving and counting
    with GatewayProcess(*args, cwd=tmp_path, env=env) as second:
        view = sync_http.get(f"{second.url}/v1/policy", timeout=10).json()
    assert view["served_requests"] == sent and view["store"]["status"] == "up"


def _served_in(path: Path) -> float:
    import json

    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0.0
    accounts = document.get("deployments", {}).get("carbon-gateway", {}).get("accounts", {})
    return sum(account["served"] for account in accounts.values())
