"""End to end: real JPEGs through the gateway to the real tritonserver and back."""

import json

import numpy as np
import pytest

from gateway.imagenet.decode import image_to_tensor
from gateway.triton import TritonClient

from tests.support.data import IMAGES

BOUNDS = {"carbon__c_low": 100.0, "carbon__c_high": 300.0}


async def test_every_shared_image_is_classified(make_gateway):
    async with make_gateway(carbon__intensity=300.0, **BOUNDS) as client:
        for path in IMAGES:
            response = await client.post("/v1/classify", content=path.read_bytes(),
                                         headers={"content-type": "image/jpeg"})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model"]["name"] == "resnet18"
            assert len(body["predictions"]) == 5
            scores = [p["score"] for p in body["predictions"]]
            assert scores == sorted(scores, reverse=True) and 0 <= scores[-1] <= scores[0] <= 1


@pytest.mark.parametrize("intensity, model", [(100.0, "resnet152"), (200.0, "resnet101"), (300.0, "resnet18"),
                                              (270.0, "resnet34")])
async def test_the_model_follows_the_carbon_intensity(make_gateway, intensity, model):
    async with make_gateway(carbon__intensity=intensity, **BOUNDS) as client:
        response = await client.post("/v1/classify", content=IMAGES[0].read_bytes(),
                                     headers={"content-type": "image/jpeg"})
    assert response.status_code == 200, response.text
    assert response.json()["model"]["name"] == model
    assert response.headers["x-model"] == model
    assert float(response.headers["x-carbon-intensity"]) == intensity


async def test_without_a_meter_a_measured_receipt_is_honestly_the_estimate(make_gateway):
    async with make_gateway(carbon__intensity=150.0, energy__meter="estimate", **BOUNDS) as client:
        response = await client.post("/v1/classify?energy=measured", content=IMAGES[0].read_bytes(),
                                     headers={"content-type": "image/jpeg"})
        bogus = await client.post("/v1/classify?energy=exact", content=IMAGES[0].read_bytes(),
                                  headers={"content-type": "image/jpeg"})
    assert response.status_code == 200, response.text
    assert response.json()["energy"]["source"] == "pool-estimate" and response.json()["energy"]["measured"] is False
    assert bogus.status_code == 422 and "energy" in bogus.text


async def test_response_reports_decision_energy_and_co2(make_gateway, triton):
    async with make_gateway(carbon__intensity=150.0, pue=1.2, **BOUNDS) as client:
        response = await client.post("/v1/classify?top_k=3", content=IMAGES[3].read_bytes(),
                                     headers={"content-type": "image/jpeg", "x-request-id": "abc123"})
    body = response.json()
    model = body["model"]
    assert model["weights"] in ("random", "imagenet1k_v1") and model["selected_by"] == "interpolation"
    assert body["carbon"] | {"timestamp": None, "age_seconds": None} == {
        "intensity": 150.0, "unit": "gCO2eq/kWh", "source": "static", "timestamp": None, "age_seconds": None,
        "window_low": 100.0, "window_high": 300.0, "window_basis": "configured", "status": "live", "stale": False,
        "source_up": True, "last_error": None}
    joules = model["energy_mj_per_inference"] / 1000
    assert body["energy"]["joules"] == pytest.approx(joules)
    assert body["energy"]["co2_grams"] == pytest.approx(joules / 3.6e6 * 150.0 * 1.2)
    assert body["energy"]["source"] == "pool-estimate" and body["energy"]["measured"] is False
    assert len(body["predictions"]) == 3
    headers = response.headers
    assert headers["x-request-id"] == "abc123"
    assert float(headers["x-expected-error-rate"]) == model["expected_error_rate"]
    assert float(headers["x-co2-grams"]) == pytest.approx(body["energy"]["co2_grams"], rel=1e-5)
    assert headers["x-model-weights"] == model["weights"]
    assert "triton;dur=" in headers["server-timing"]


async def test_gateway_answer_matches_triton_called_directly(make_gateway, triton):
    image = IMAGES[5].read_bytes()
    async with make_gateway(carbon__intensity=300.0, **BOUNDS) as client:
        response = await client.post("/v1/classify", files={"file": ("x.jpg", image, "image/jpeg")})
    assert response.status_code == 200, response.text
    direct = TritonClient(triton.grpc_url)
    try:
        logits = (await direct.infer("resnet18", image_to_tensor(image, 40_000_000)[np.newaxis])).outputs
    finally:
        await direct.close()
    assert response.json()["predictions"][0]["index"] == int(np.argmax(logits[0]))


async def test_trace_replay_drives_the_choice(make_gateway, shared_data):
    from gateway.policy import CarbonWindow, InterpolationPolicy
    from gateway.pool import load_pool

    trace = shared_data / "carbon" / "us_ciso_2022_hourly.csv"
    seen = set()
    for start in ("2022-06-15T03:00:00+00:00", "2022-06-15T20:00:00+00:00"):  # night (dirty) vs noon PT (solar)
        async with make_gateway(carbon__source="trace", carbon__trace_path=str(trace), carbon__time_column="timestamp",
                                carbon__value_column="avg_CI", carbon__start=start) as client:
            response = await client.post("/v1/classify", content=IMAGES[1].read_bytes(),
                                         headers={"content-type": "image/jpeg"})
            pool = load_pool(client._transport.app.state.settings.resolved_pool_file)
        body = response.json()
        carbon = body["carbon"]
        assert carbon["source"] == "trace" and carbon["window_low"] < carbon["window_high"]
        expected = InterpolationPolicy(pool).select(carbon["intensity"],
                                                    CarbonWindow(carbon["window_low"], carbon["window_high"]))
        assert body["model"]["name"] == expected.name
        seen.add(body["model"]["name"])
    assert len(seen) == 2, "a solar noon and a night should not pick the same model"


async def test_tensor_route_lets_the_gateway_choose(make_gateway, triton):
    tensor = image_to_tensor(IMAGES[2].read_bytes(), 40_000_000)[np.newaxis]
    request = {"inputs": [{"name": "input", "shape": list(tensor.shape), "datatype": "FP32",
                           "data": tensor.reshape(-1).tolist()}]}
    async with make_gateway(carbon__intensity=100.0, **BOUNDS) as client:
        auto = await client.post("/v2/models/auto/infer", json=request)
        pinned = await client.post("/v2/models/resnet18/infer", json=request)
    assert auto.status_code == 200, auto.text
    assert auto.json()["model_name"] == "resnet152" and auto.json()["parameters"]["selected_by"] == "interpolation"
    assert pinned.json()["model_name"] == "resnet18" and pinned.headers["x-selected-by"] == "client"
    output = pinned.json()["outputs"][0]
    assert output["shape"] == [1, 1000]
    direct = TritonClient(triton.grpc_url)
    try:
        logits = (await direct.infer("resnet18", tensor)).outputs
    finally:
        await direct.close()
    np.testing.assert_allclose(np.array(output["data"]), logits.reshape(-1), rtol=1e-5)


async def test_health_readiness_models_and_docs(make_gateway):
    async with make_gateway(**BOUNDS) as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        models = await client.get("/v1/models")
        openapi = await client.get("/openapi.json")
        docs = await client.get("/docs")
    assert health.json()["status"] == "ok"
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert {m["name"]: m["ready"] for m in ready.json()["models"]} == dict.fromkeys(
        ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"], True)
    assert all(m["weights"] in ("random", "imagenet1k_v1") for m in models.json())
    paths = openapi.json()["paths"]
    assert {"/v1/classify", "/v2/models/{model_name}/infer", "/healthz", "/readyz", "/v1/models"} <= set(paths)
    assert set(paths["/v1/classify"]["post"]["requestBody"]["content"]) >= {"image/jpeg", "multipart/form-data"}
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_concurrent_requests_share_one_channel(make_gateway):
    import asyncio

    async with make_gateway(carbon__intensity=300.0, **BOUNDS) as client:
        responses = await asyncio.gather(*(
            client.post("/v1/classify", content=path.read_bytes(), headers={"content-type": "image/jpeg"})
            for path in IMAGES[:8]))
    assert [r.status_code for r in responses] == [200] * 8
    assert json.loads(responses[0].text)["model"]["name"] == "resnet18"
