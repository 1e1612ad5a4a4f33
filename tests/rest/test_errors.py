"""Bad input gets a specific 4xx, Triton trouble a 503, and the gateway keeps serving (the HTTP layer on the
in-process fake backend; an unreachable Triton through the real gRPC client)."""

import pytest

from gateway.testing.processes import free_port
from tests.support.data import IMAGES
from tests.support.images import BAD_IMAGES, JPEG
from tests.support.gateway import gateway_client, settings_for

@pytest.mark.parametrize("image_model", [None, "image"], ids=["gateway-decodes", "backend-decodes"])
@pytest.mark.parametrize("kwargs, status, code", BAD_IMAGES)
async def test_bad_images(make_fake_gateway, fake_backend, kwargs, status, code, image_model):
    async with make_fake_gateway(triton__image_model=image_model) as client:
        response = await client.post("/v1/classify", **kwargs)
        assert (response.status_code, response.json()["error"]) == (status, code)
        assert response.json()["detail"]
        # ... and the next good request is served.
        good = await client.post("/v1/classify", content=IMAGES[0].read_bytes(), headers=JPEG)
        assert good.status_code == 200
    assert (fake_backend.images > 0) == (image_model is not None)  # who decoded: the gateway, or the backend


async def test_oversized_upload_is_refused(make_fake_gateway):
    async with make_fake_gateway(limits__max_upload_bytes=50_000) as client:
        declared = await client.post("/v1/classify", content=b"x" * 60_000, headers=JPEG)

        async def chunks():  # no Content-Length: counted as it streams
            for _ in range(10):
                yield b"x" * 10_000

        streamed = await client.post("/v1/classify", content=chunks(), headers=JPEG)
    assert declared.status_code == 413 and declared.json()["error"] == "payload_too_large"
    assert declared.headers["x-request-id"]
    assert streamed.status_code == 413 and streamed.json()["error"] == "payload_too_large"


async def test_top_k_out_of_range(make_fake_gateway):
    async with make_fake_gateway() as client:
        response = await client.post("/v1/classify?top_k=0", content=IMAGES[0].read_bytes(), headers=JPEG)
    assert response.status_code == 422 and response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not valid JSON"),
    (b'{"inputs": []}', "exactly one entry"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32"}]}', "inputs[0]"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 2, 2], "datatype": "FP32", "data": [0, 0]}]}', "shape"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "INT8", "data": [0]}]}', "FP32"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [1, 2]}]}', "needs"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": ["a"]}]}', "numbers"),
])
async def test_malformed_tensor_requests(make_fake_gateway, body, message):
    async with make_fake_gateway() as client:
        response = await client.post("/v2/models/auto/infer", content=body,
                                     headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert message in response.json()["error"] and response.json()["code"] in ("invalid_json", "invalid_tensor_request")


async def test_unknown_model_on_the_tensor_route(make_fake_gateway):
    body = {"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [0.0] * 150528}]}
    async with make_fake_gateway() as client:
        response = await client.post("/v2/models/vgg16/infer", json=body)
    assert response.status_code == 404 and response.json()["code"] == "unknown_model"  # the protocol's shape
    assert "resnet50" in response.json()["error"]


async def test_unknown_route_is_json(make_fake_gateway):
    async with make_fake_gateway() as client:
        response = await client.get("/v1/nothing")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


async def test_triton_unreachable_gives_503_and_not_ready(model_repository):
    settings = settings_for(model_repository, carbon__c_low=100.0, carbon__c_high=300.0)
    async with gateway_client(settings, f"127.0.0.1:{free_port()}") as client:
        response = await client.post("/v1/classify", content=IMAGES[0].read_bytes(), headers=JPEG)
        ready = await client.get("/readyz")
        health = await client.get("/healthz")
    assert response.status_code == 503 and response.json()["error"] == "triton_unavailable"
    assert response.headers["retry-after"]
    assert ready.status_code == 503
    assert ready.json()["triton_reachable"] is False and not any(m["ready"] for m in ready.json()["models"])
    assert health.status_code == 200


async def test_a_backend_that_goes_away_gets_503_and_serving_resumes_when_it_is_back(make_fake_gateway, fake_backend):
    async with make_fake_gateway(carbon__intensity=300.0, carbon__c_low=100.0, carbon__c_high=300.0) as client:
        fake_backend.live = False
        down = await client.post("/v1/classify", content=IMAGES[0].read_bytes(), headers=JPEG)
        not_ready = await client.get("/readyz")
        fake_backend.live = True
        back = await client.post("/v1/classify", content=IMAGES[0].read_bytes(), headers=JPEG)
    assert (down.status_code, down.json()["error"], down.headers["retry-after"]) == (503, "triton_unavailable", "5")
    assert not_ready.status_code == 503 and not_ready.json()["triton_reachable"] is False
    assert back.status_code == 200 and back.json()["model"]["name"] == "resnet18"


async def test_a_model_that_is_not_ready_is_stood_in_for_and_the_response_says_so(make_fake_gateway, fake_backend):
    fake_backend.not_ready = {"resnet18"}
    async with make_fake_gateway(carbon__intensity=300.0, carbon__c_low=100.0, carbon__c_high=300.0) as client:
        chosen = await client.post("/v1/classify", content=IMAGES[0].read_bytes(), headers=JPEG)
        pinned = await client.post("/v2/models/resnet18/infer", json={"inputs": [{
            "name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [0.0] * 150528}]})
    assert chosen.status_code == 200 and chosen.headers["x-fallback-from"] == "resnet18"
    assert {"name": "resnet34", "selected_by": "fallback:interpolation"}.items() <= chosen.json()["model"].items()
    assert pinned.status_code == 503 and pinned.json()["code"] == "model_not_ready"



@pytest.mark.parametrize("files, status, code", [
    ({"image": ("x.jpg", IMAGES[0].read_bytes(), "image/jpeg")}, 400, "missing_file"),  # only `file` is read
    ([("file", ("a.jpg", b"a", "image/jpeg")), ("file", ("b.jpg", b"b", "image/jpeg"))], 400, "invalid_multipart"),
    ({f"field{i}": (None, "x") for i in range(6)}, 400, "invalid_multipart"),
])
async def test_multipart_forms_the_gateway_does_not_read(make_fake_gateway, files, status, code):
    async with make_fake_gateway() as client:
        response = await client.post("/v1/classify", files=files)
    assert (response.status_code, response.json()["error"]) == (status, code), response.text


async def test_not_ready_is_a_4xx_with_the_protocols_error_fields(make_fake_gateway, fake_backend):
    fake_backend.not_ready = {"resnet18"}
    async with make_fake_gateway() as client:
        model = await client.get("/v2/models/resnet18/ready")
        server = await client.get("/v2/health/ready")
        auto = await client.get("/v2/models/auto/ready")
    assert model.status_code == 400 and model.json() | {"error": None} == {
        "name": "resnet18", "ready": False, "error": None, "code": "not_ready"}
    assert server.status_code == 400 and server.json()["ready"] is False
    assert auto.status_code == 200 and auto.json()["ready"] is True  # another pool model can serve
