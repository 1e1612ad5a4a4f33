"""Triton's ``image`` model (``triton.image_model``): uploads decoded inside Triton answer as the gateway's own
decoding does, bad ones get the gateway's errors, and a batch of them reaches each model it names."""

import dataclasses
import asyncio

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from gateway.errors import EmptyImage, ImageError, ImageModelNotReady, ImageTooLarge, ModelNotReady, UnsupportedImage
from gateway.imagenet.decode import image_to_tensor
from gateway.protocol.signature import RESNET
from gateway.serving.backend import EncodedImage
from gateway.triton import TritonClient
from gateway.triton.client import encode_image_request

from tests.support.images import BAD_IMAGES
from tests.support.data import IMAGES, LABELS_FILE

LIMIT = 40_000_000


def test_the_request_carries_the_upload_as_one_bytes_element_and_names_the_model():
    signature = dataclasses.replace(RESNET, max_batch_size=8)
    upload = IMAGES[0].read_bytes()
    request = service_pb2.ModelInferRequest.FromString(
        encode_image_request("image", "logits", "resnet50", "2", signature, EncodedImage(upload, 1234)))
    assert request.model_name == "image"
    assert [(i.name, i.datatype, list(i.shape)) for i in request.inputs] == [("IMAGE", "BYTES", [1, 1])]
    raw = request.raw_input_contents[0]
    assert int.from_bytes(raw[:4], "little") == len(upload) and raw[4:] == upload
    parameters = {key: value.WhichOneof("parameter_choice") and getattr(value, value.WhichOneof("parameter_choice"))
                  for key, value in request.parameters.items()}
    assert parameters == {"model": "resnet50", "version": "2", "input": "input", "output": "logits",
                          "max_pixels": 1234}


async def test_every_shared_jpeg_answers_as_the_gateways_own_decoding(triton):
    """Sent at once to two models, so Triton batches them and the image model splits each batch by model."""
    client = TritonClient(triton.grpc_url, image_model="image")
    try:
        models = ["resnet18" if i % 2 else "resnet34" for i in range(len(IMAGES))]
        uploads = [path.read_bytes() for path in IMAGES]
        decoded = await asyncio.gather(*(client.infer_image(model, EncodedImage(data, LIMIT))
                                         for model, data in zip(models, uploads, strict=True)))
        for model, data, answer in zip(models, uploads, decoded, strict=True):
            direct = await client.infer(model, image_to_tensor(data, LIMIT)[np.newaxis])
            assert answer.outputs.shape == (1, 1000)
            np.testing.assert_array_equal(answer.outputs, direct.outputs)
        statistics = (await client.model_statistics("image"))["model_stats"][0]
        assert statistics["execution_count"] < statistics["inference_count"]  # some of them did arrive together
    finally:
        await client.close()


@pytest.mark.parametrize("upload, max_pixels, error", [
    (b"", LIMIT, EmptyImage),
    (b"hello", LIMIT, UnsupportedImage),
    (IMAGES[0].read_bytes()[:5000], LIMIT, ImageError),
    (IMAGES[0].read_bytes(), 1000, ImageTooLarge),
])
async def test_a_bad_upload_raises_the_gateways_own_error(triton, upload, max_pixels, error):
    client = TritonClient(triton.grpc_url, image_model="image")
    try:
        with pytest.raises(error) as raised:
            await client.infer_image("resnet18", EncodedImage(upload, max_pixels))
        assert type(raised.value) is error and str(raised.value)
        good = await client.infer_image("resnet18", EncodedImage(IMAGES[1].read_bytes(), LIMIT))
        assert good.outputs.shape == (1, 1000)
    finally:
        await client.close()


@pytest.mark.parametrize("parameters", [{}, {"model": "resnet18", "version": "latest"}, {"model": "resnet18",
                                                                                      "max_pixels": "many"}])
def test_a_stock_client_with_bad_parameters_is_refused_alone(triton, parameters):
    """tritonclient, sending what the gateway would not: that request is refused, a good one beside it is served."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(triton.grpc_url)
    upload = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    upload.set_data_from_numpy(np.array([[IMAGES[0].read_bytes()]], dtype=object))
    results = []

    def done(result, error):
        results.append(error or result)

    client.start_stream(callback=done)  # both requests in flight at once, so they may share a batch
    client.async_stream_infer("image", [upload], parameters=parameters)
    client.async_stream_infer("image", [upload], parameters={"model": "resnet18", "max_pixels": LIMIT})
    client.stop_stream()
    refused = [r for r in results if isinstance(r, InferenceServerException)]
    served = [r for r in results if not isinstance(r, InferenceServerException)]
    assert len(refused) == 1 and "must name its model" in refused[0].message()
    assert len(served) == 1 and served[0].as_numpy("logits").shape == (1, 1000)


async def test_a_model_triton_lacks_is_not_ready(triton):
    client = TritonClient(triton.grpc_url, image_model="image")
    try:
        with pytest.raises(ModelNotReady):
            await client.infer_image("resnet9", EncodedImage(IMAGES[0].read_bytes(), LIMIT))
    finally:
        await client.close()


async def test_a_missing_image_model_is_said_so_whether_or_not_it_was_seen_before(triton):
    client = TritonClient(triton.grpc_url, image_model="ghost")
    upload = EncodedImage(IMAGES[0].read_bytes(), LIMIT)
    try:
        with pytest.raises(ImageModelNotReady, match="build-models --image-model"):
            await client.infer_image("resnet18", upload)
        # As if it had been there when the client first asked, and was unloaded since: Triton's NOT_FOUND.
        client._signatures[("ghost", "")] = await client.signature("image")
        with pytest.raises(ImageModelNotReady):
            await client.infer_image("resnet18", upload)
        assert ("ghost", "") not in client._signatures
    finally:
        await client.close()
    unconfigured = TritonClient(triton.grpc_url)
    try:
        with pytest.raises(ImageModelNotReady, match="given none"):
            await unconfigured.infer_image("resnet18", upload)
    finally:
        await unconfigured.close()


async def test_without_its_image_model_the_gateway_answers_503_and_does_not_fall_back(make_gateway, caplog):
    async with make_gateway(triton__image_model="ghost") as client:
        response = await client.post("/v1/classify", content=IMAGES[0].read_bytes(),
                                     headers={"content-type": "image/jpeg"})
    assert response.status_code == 503 and response.json()["error"] == "image_model_not_ready"
    assert response.headers["retry-after"]
    assert "serves instead" not in caplog.text and "image model 'ghost'" in caplog.text


@pytest.mark.parametrize("kwargs, status, code", BAD_IMAGES)
async def test_the_gateway_answers_bad_uploads_as_when_it_decodes_them(make_gateway, kwargs, status, code):
    async with make_gateway(triton__image_model="image") as client:
        response = await client.post("/v1/classify", **kwargs)
        assert (response.status_code, response.json()["error"]) == (status, code)
        good = await client.post("/v1/classify", content=IMAGES[0].read_bytes(), headers={"content-type": "image/jpeg"})
    assert good.status_code == 200 and len(good.json()["predictions"]) == 5


async def _decoded_by_triton(url: str) -> int:
    client = TritonClient(url)
    try:
        return int((await client.model_statistics("image"))["model_stats"][0]["inference_count"])
    finally:
        await client.close()


async def test_the_gateway_gives_the_same_top5_either_way(triton, make_gateway):
    labels = LABELS_FILE.read_text().splitlines()
    before = await _decoded_by_triton(triton.grpc_url)
    async with make_gateway(carbon__intensity=100.0) as own, make_gateway(carbon__intensity=100.0,
                                                                         triton__image_model="image") as handed:
        for path in IMAGES[:4]:
            answers = [(await client.post("/v1/classify", content=path.read_bytes(),
                                          headers={"content-type": "image/jpeg"})).json() for client in (own, handed)]
            assert answers[0]["model"]["name"] == answers[1]["model"]["name"]
            assert [p["label"] for p in answers[0]["predictions"]] == [p["label"] for p in answers[1]["predictions"]]
            assert all(p["label"] in labels for p in answers[1]["predictions"])
    assert await _decoded_by_triton(triton.grpc_url) - before == 4  # the second gateway's, and only those
