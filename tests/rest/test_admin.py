"""The admin API: a bearer token in constant time, and a client that keeps guessing is shut out for a while."""

import pytest

from gateway.rest.routes import FailedAttempts
from gateway.errors import TooManyAttempts

from tests.support.clock import ManualClock

TOKEN = "a-long-enough-admin-token"


@pytest.mark.parametrize("authorization", ["", "bearer", "Bearer", "Bearer ", "Basic " + TOKEN, "Bearer wrong"])
async def test_anything_but_the_token_is_unauthorized(make_fake_gateway, authorization):
    async with make_fake_gateway(admin_token=TOKEN) as client:
        response = await client.post("/admin/reload-pool", headers={"Authorization": authorization})
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


async def test_repeated_failures_lock_the_client_out_even_with_the_right_token(make_fake_gateway):
    async with make_fake_gateway(admin_token=TOKEN) as client:
        failures = [await client.post("/admin/reload-pool", headers={"Authorization": f"Bearer guess-{i}"})
                    for i in range(8)]
        right = await client.post("/admin/reload-pool", headers={"Authorization": f"Bearer {TOKEN}"})
    assert [r.status_code for r in failures] == [401] * 5 + [429] * 3
    assert failures[-1].json()["error"] == "too_many_attempts" and failures[-1].headers["retry-after"] == "60"
    assert right.status_code == 429


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
