"""The admin API: a bearer token in constant time; a client that keeps guessing gets 429 for a while, but the
valid token is never refused, and the client is who the peer is unless a configured proxy says otherwise."""

import httpx
import pytest

from gateway.rest.routes import FailedAttempts
from gateway.errors import TooManyAttempts

from gateway.testing.processes import GatewayProcess
from tests.support.clock import ManualClock

TOKEN = "a-long-enough-admin-token"


@pytest.mark.parametrize("authorization", ["", "bearer", "Bearer", "Bearer ", "Basic " + TOKEN, "Bearer wrong"])
async def test_anything_but_the_token_is_unauthorized(make_fake_gateway, authorization):
    async with make_fake_gateway(admin_token=TOKEN) as client:
        response = await client.post("/admin/reload-pool", headers={"Authorization": authorization})
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


async def test_repeated_failures_are_limited_but_never_lock_out_the_valid_token(make_fake_gateway):
    """A shared NAT or proxy must not let one guessing client lock the real admin out."""
    async with make_fake_gateway(admin_token=TOKEN) as client:
        failures = [await client.post("/admin/reload-pool", headers={"Authorization": f"Bearer guess-{i}"})
                    for i in range(8)]
        right = await client.post("/admin/reload-pool", headers={"Authorization": f"Bearer {TOKEN}"})
    assert [r.status_code for r in failures] == [401] * 5 + [429] * 3
    assert failures[-1].json()["error"] == "too_many_attempts" and failures[-1].headers["retry-after"] == "60"
    assert right.status_code == 200


def test_the_lockout_ends_when_the_failures_leave_the_window():
    clock = ManualClock(0.0)
    attempts = FailedAttempts(limit=2, window_s=60.0, clock=clock)
    attempts.fail("10.0.0.1")
    attempts.fail("10.0.0.1")
    with pytest.raises(TooManyAttempts):
        attempts.check("10.0.0.1")
    attempts.check("10.0.0.2")  # another client is not affected
    clock.now = 61.0
    attempts.check("10.0.0.1")
    assert not attempts._failures  # nothing kept for clients with no recent failure


@pytest.mark.integration
def test_a_forged_forwarded_for_neither_evades_nor_aims_the_limit(model_repository, triton):
    """uvicorn believes X-Forwarded-For from 127.0.0.1 by default: rotating it gave unlimited guesses and let a
    client lock out any address it named. Unless ``forwarded_allow_ips`` names a proxy, the peer is the client."""
    with GatewayProcess("--triton", triton.grpc_url, "--repository", str(model_repository),
                        env={"CARBON_GATEWAY_ADMIN_TOKEN": TOKEN}) as gateway:
        statuses = [httpx.post(f"{gateway.url}/admin/reload-pool", headers={
            "Authorization": f"Bearer guess-{i}", "X-Forwarded-For": f"10.0.0.{i}"}).status_code for i in range(7)]
        right = httpx.post(f"{gateway.url}/admin/reload-pool", headers={"Authorization": f"Bearer {TOKEN}"})
    assert statuses == [401] * 5 + [429] * 2  # counted against the real peer, whatever address it claimed
    assert right.status_code == 200
