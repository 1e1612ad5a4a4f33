"""Energy as a client and an operator see it through the API: receipts, /readyz, a meter that is down."""

import pytest
from prometheus_client import REGISTRY

from gateway.testing.http import MetricsEndpoint, SyntheticGpuEnergy

from gateway.testing.processes import free_port
from tests.support.data import IMAGES


async def test_one_worker_measures_in_process_and_responses_say_theirs_is_the_estimate(make_gateway):
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    def snapshot() -> tuple[float, float, float, float]:
        return (value("carbon_gateway_measured_energy_joules_total", meter="triton-metrics"),
                value("carbon_gateway_energy_joules_total", model="resnet152", meter="triton-metrics"),
                value("carbon_gateway_idle_energy_joules_total", meter="triton-metrics"),
                value("carbon_gateway_request_energy_joules_count", model="resnet152"))

    gpu = SyntheticGpuEnergy(watts=100.0)
    with MetricsEndpoint(gpu.render) as endpoint:
        before = snapshot()
        async with make_gateway(carbon__intensity=120.0, carbon__c_low=100.0, carbon__c_high=300.0,
                                energy__meter="triton", energy__triton_metrics_url=endpoint.url,
                                energy__sample_interval_s=0.02) as client:
            ready = (await client.get("/readyz")).json()
            assert (ready["energy_meter"], ready["energy_meter_up"]) == ("triton-metrics", True)
            for image in IMAGES[:3]:
                response = await client.post("/v1/classify", content=image.read_bytes(),
                                             headers={"content-type": "image/jpeg"})
                assert response.status_code == 200, response.text
                assert response.json()["energy"]["source"] == "pool-estimate"  # the measured share comes later
                assert response.headers["x-energy-source"] == "pool-estimate"
            # Asked for, the measured share comes in the response: the request waits for its window to close.
            response = await client.post("/v1/classify?energy=measured", content=IMAGES[3].read_bytes(),
                                         headers={"content-type": "image/jpeg"})
            assert response.status_code == 200, response.text
            energy = response.json()["energy"]
            assert (energy["source"], energy["measured"]) == ("triton-metrics", True)
            assert energy["joules"] > 0 and response.headers["x-energy-source"] == "triton-metrics"
            assert energy["co2_grams"] == pytest.approx(energy["joules"] / 3.6e6 * 120.0)
            assert float(response.headers["x-energy-joules"]) == pytest.approx(energy["joules"], rel=1e-5)
        # Leaving the gateway stopped the sampler after a last reading.
        measured, attributed, idle, counted = (b - a for a, b in zip(before, snapshot(), strict=True))
    assert 0 < measured <= gpu.joules_between_first_and_last_read() * (1 + 1e-9)
    assert attributed > 0 and attributed + idle == pytest.approx(measured)
    assert energy["joules"] < attributed
    assert counted == 4


async def test_a_meter_that_is_down_is_reported_and_serving_goes_on(make_gateway):
    nowhere = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens there
    async with make_gateway(energy__meter="triton", energy__triton_metrics_url=nowhere,
                            energy__sample_interval_s=0.02) as client:
        response = await client.post("/v1/classify", content=IMAGES[0].read_bytes(),
                                     headers={"content-type": "image/jpeg"})
        assert response.status_code == 200, response.text
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert (ready.json()["energy_meter"], ready.json()["energy_meter_up"]) == ("triton-metrics", False)
        assert REGISTRY.get_sample_value("carbon_gateway_energy_meter_up", {"meter": "triton-metrics"}) == 0
