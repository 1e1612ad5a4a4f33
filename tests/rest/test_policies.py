"""Per-request constraints, backpressure and the policies, through the HTTP layer on the in-process fake backend."""

import asyncio

import pytest

from tests.support.data import IMAGES
from datetime import UTC

JPEG = {"content-type": "image/jpeg"}
DIRTY = {"carbon__intensity": 300.0, "carbon__c_low": 100.0, "carbon__c_high": 300.0}


async def classify(client, **headers):
    return await client.post("/v1/classify", content=IMAGES[0].read_bytes(), headers={**JPEG, **headers})


async def test_minimum_accuracy_header_overrides_a_smaller_choice(make_fake_gateway):
    async with make_fake_gateway(**DIRTY) as client:
        free = await classify(client)
        strict = await classify(client, **{"x-min-accuracy": "94"})
        impossible = await classify(client, **{"x-min-accuracy": "99.5"})
        invalid = await classify(client, **{"x-min-accuracy": "120"})
    assert free.json()["model"]["name"] == "resnet18"
    assert strict.status_code == 200 and strict.json()["model"]["name"] == "resnet152"  # the only one >= 94 %
    assert impossible.status_code == 422 and impossible.json()["error"] == "no_eligible_model"
    assert "94.046" in impossible.json()["detail"]
    assert invalid.status_code == 422 and invalid.json()["error"] == "invalid_request"


async def test_backpressure_answers_429_with_retry_after(make_fake_gateway):
    async with make_fake_gateway(limits__max_in_flight=1, **DIRTY) as client:
        responses = await asyncio.gather(*(classify(client) for _ in range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 429 in statuses and set(statuses) <= {200, 429}
    throttled = next(r for r in responses if r.status_code == 429)
    assert throttled.json()["error"] == "overloaded" and throttled.headers["retry-after"] == "1"
    assert throttled.headers["x-request-id"]


async def test_online_budget_serves_the_smallest_model_once_spent(make_fake_gateway):
    # A budget of a nanogram: the first request spends it, the rest get the least-energy model.
    async with make_fake_gateway(policy__name="online-budget", policy__budget_g=1e-9, **DIRTY) as client:
        first = await classify(client)
        second = await classify(client)
        third = await classify(client)
    assert first.json()["model"]["selected_by"] == "online-budget"
    assert first.json()["model"]["name"] == "resnet152"  # unplanned: price 0, least error
    assert [r.json()["model"]["name"] for r in (second, third)] == ["resnet18", "resnet18"]


@pytest.mark.parametrize("price, expected", [(0.0, "resnet152"), (1e9, "resnet18")])
async def test_carbon_price_policy_from_config(make_fake_gateway, price, expected):
    async with make_fake_gateway(policy__name="carbon-price", policy__price=price, **DIRTY) as client:
        assert (await classify(client)).json()["model"]["name"] == expected


async def test_a_percentile_signal_selects_but_claims_no_grams(make_fake_gateway):
    from datetime import datetime

    from gateway.carbon import CarbonMonitor, CarbonReading

    class MarginalIndex:  # WattTime-like: a 0-100 percentile of marginal emissions, not gCO2/kWh
        name = "watttime"

        async def current(self):
            return CarbonReading(intensity=95.0, timestamp=datetime.now(UTC), source=self.name,
                                 unit="percentile", marginal=True)

        async def history(self):
            return []

        async def aclose(self):
            return None

    async with make_fake_gateway() as client:
        service = client._transport.app.state.runtime.service
        configured = service.carbon
        async with CarbonMonitor(MarginalIndex(), c_low=0.0, c_high=100.0) as marginal:
            service.carbon = marginal
            try:
                response = await classify(client)
            finally:
                service.carbon = configured  # the lifespan closes the monitor it started
    body = response.json()
    assert body["carbon"]["unit"] == "percentile" and body["model"]["name"] == "resnet18"
    assert body["energy"]["joules"] > 0 and body["energy"]["co2_grams"] is None
    assert "x-co2-grams" not in response.headers


async def test_error_target_plans_at_start_and_serves_its_own_choice(make_fake_gateway, fake_repository):
    import time

    import numpy as np

    from gateway.policy import CarbonWindow, ErrorTargetPolicy
    from gateway.pool import load_pool

    async with make_fake_gateway(policy__name="error-target", carbon__intensity=250.0) as client:
        chosen = (await classify(client)).json()["model"]
    # What the policy itself serves after one plan at that intensity, with nothing served yet: not the
    # most accurate model, which is what an unplanned policy (price 0) would serve.
    policy = ErrorTargetPolicy(load_pool(fake_repository / "pool.yaml"))
    policy.plan(time.time(), 250.0, np.empty(0), np.empty(0))
    expected = policy.select(250.0, CarbonWindow(0.0, 0.0)).name
    assert expected != "resnet152"
    assert (chosen["selected_by"], chosen["name"]) == ("error-target", expected)
