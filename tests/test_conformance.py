"""Conformance with stock clients nobody here wrote: tritonclient's HTTP and gRPC clients (sync and aio) talk to
the gateway as to a Triton, and cannot tell the difference apart from the parameters the gateway adds.

One gateway process (HTTP and gRPC front doors) in front of the session's real tritonserver.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from gateway.testing.tensors import binary_infer_request
from gateway.testing.processes import GatewayProcess, free_port

from tests.support.data import POOL_MODELS, PROJECT

pytestmark = pytest.mark.integration

BATCH = np.random.default_rng(7).standard_normal((2, 3, 224, 224)).astype(np.float32)
SIGNATURE = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
             "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}]}


@pytest.fixture(scope="module")
def gateway(triton, model_repository, tmp_path_factory):
    grpc_port = free_port()
    with GatewayProcess("--triton", triton.grpc_url, "--repository", str(model_repository), "--grpc-port",
                        str(grpc_port), "--carbon-intensity", "300", "--c-low", "100", "--c-high", "300",
                        "--log-level", "warning", cwd=tmp_path_factory.mktemp("protocol")) as process:
        yield process.url.removeprefix("http://"), f"127.0.0.1:{grpc_port}"


@pytest.fixture(scope="module")
def direct(triton):
    """resnet18's logits for BATCH, from Triton itself through the stock client."""
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    tensor = grpcclient.InferInput("input", list(BATCH.shape), "FP32")
    tensor.set_data_from_numpy(BATCH)
    return client.infer("resnet18", [tensor]).as_numpy("logits")


# --- HTTP ------------------------------------------------------------------------------------------------


def test_http_health_and_server_metadata(gateway):
    client = httpclient.InferenceServerClient(gateway[0])
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "carbon-gateway" and "binary_tensor_data" in metadata["extensions"]


def test_http_model_readiness_metadata_and_config_for_the_pool_and_auto(gateway):
    client = httpclient.InferenceServerClient(gateway[0])
    for model in ("auto", *POOL_MODELS):
        assert client.is_model_ready(model) and client.is_model_ready(model, "1")
        metadata = client.get_model_metadata(model)
        assert metadata["name"] == model and metadata["versions"] == ["1"]
        assert {k: metadata[k] for k in ("inputs", "outputs")} == SIGNATURE
    assert client.get_model_metadata("resnet50", "1")["name"] == "resnet50"
    assert not client.is_model_ready("vgg16") and not client.is_model_ready("auto", "2")
    config = client.get_model_config("resnet18")
    assert (config["name"], config["max_batch_size"], config["input"][0]["dims"]) == ("resnet18", 8, [3, 224, 224])
    auto = client.get_model_config("auto")
    assert auto["name"] == "auto" and auto["parameters"]["pool"]["string_value"] == ",".join(POOL_MODELS)


def test_http_repository_index_and_statistics(gateway):
    client = httpclient.InferenceServerClient(gateway[0])
    index = {entry["name"]: entry["state"] for entry in client.get_model_repository_index()}
    assert index == dict.fromkeys(("auto", *POOL_MODELS), "READY")
    stats = client.get_inference_statistics("resnet18")["model_stats"]
    assert [entry["name"] for entry in stats] == ["resnet18"] and "inference_stats" in stats[0]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("model", ["auto", "resnet18"])
def test_http_infer_gives_tritons_answer(gateway, direct, model, binary):
    client = httpclient.InferenceServerClient(gateway[0])
    tensor = httpclient.InferInput("input", list(BATCH.shape), "FP32")
    tensor.set_data_from_numpy(BATCH, binary_data=binary)
    result = client.infer(model, [tensor], outputs=[httpclient.InferRequestedOutput("logits", binary_data=binary)],
                          request_id="req-1")
    np.testing.assert_allclose(result.as_numpy("logits"), direct, rtol=1e-5)  # a dirty grid: auto picks resnet18
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == ("resnet18", "1", "req-1")
    assert response["parameters"]["carbon_intensity"] == 300.0 and response["parameters"]["energy_joules"] > 0


def _to_gateway_and_triton(gateway, triton, body: dict) -> tuple[httpx.Response, httpx.Response]:
    """The same JSON inference request, to the gateway and to Triton itself."""
    ours, tritons = (httpx.post(f"http://{host}/v2/models/resnet18/infer", json=body, timeout=60)
                     for host in (gateway[0], f"127.0.0.1:{triton.http_port}"))
    return ours, tritons


@pytest.mark.parametrize("nesting", ["per-row", "ragged", "mixed"])
def test_json_data_is_read_in_row_major_order_whatever_its_nesting_as_triton_reads_it(gateway, triton, nesting):
    values = BATCH[:1].ravel().tolist()
    data = {"per-row": BATCH[:1].reshape(-1, 224).tolist(),
            "ragged": [values[:1000], values[1000:1001], values[1001:]],
            "mixed": [values[:5], *values[5:]]}[nesting]
    body = {"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": data}]}
    answers = _to_gateway_and_triton(gateway, triton, body)
    assert [answer.status_code for answer in answers] == [200, 200]
    ours, tritons = (np.array(answer.json()["outputs"][0]["data"]) for answer in answers)
    np.testing.assert_allclose(ours, tritons, rtol=1e-5)


def test_json_data_whose_count_does_not_match_the_shape_is_refused_like_triton_does(gateway, triton):
    body = {"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [[0.5], [0.5, 1.0]]}]}
    ours, tritons = _to_gateway_and_triton(gateway, triton, body)
    assert tritons.status_code >= 400 and "shape" in tritons.json()["error"].lower()
    assert ours.status_code == 400 and "data has 3 values" in ours.json()["error"]


def test_http_infer_without_an_id_sends_none_and_a_version_can_be_named(gateway):
    client = httpclient.InferenceServerClient(gateway[0])
    tensor = httpclient.InferInput("input", [1, 3, 224, 224], "FP32")
    tensor.set_data_from_numpy(BATCH[:1])
    assert "id" not in client.infer("resnet34", [tensor], model_version="1").get_response()
    with pytest.raises(InferenceServerException, match="version 7 is not found") as caught:
        client.infer("resnet34", [tensor], model_version="7")
    assert caught.value.status() == "404"


def test_http_errors_are_the_protocols_with_the_gateways_code(gateway):
    client = httpclient.InferenceServerClient(gateway[0])
    bogus = httpclient.InferInput("bogus_input", [1, 3, 224, 224], "FP32")
    bogus.set_data_from_numpy(BATCH[:1])
    with pytest.raises(InferenceServerException, match="no input 'bogus_input'") as caught:
        client.infer("auto", [bogus])
    assert caught.value.status() == "400"
    good = httpclient.InferInput("input", [1, 3, 224, 224], "FP32")
    good.set_data_from_numpy(BATCH[:1])
    with pytest.raises(InferenceServerException, match="no output"):
        client.infer("auto", [good], outputs=[httpclient.InferRequestedOutput("bogus_output")])
    with pytest.raises(InferenceServerException, match="not in the pool"):
        client.get_model_metadata("vgg16")
    wrong_shape = httpclient.InferInput("input", [1, 3, 32, 32], "FP32")
    wrong_shape.set_data_from_numpy(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(InferenceServerException, match=r"not \[N, 3, 224, 224\]"):
        client.infer("resnet18", [wrong_shape])


# --- gRPC --------------------------------------------------------------------------------------------------


def test_grpc_health_metadata_and_config(gateway):
    client = grpcclient.InferenceServerClient(gateway[1])
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata().name == "carbon-gateway"
    for model in ("auto", "resnet152"):
        assert client.is_model_ready(model)
        metadata = client.get_model_metadata(model, as_json=True)
        assert metadata["name"] == model and metadata["inputs"][0]["shape"] == ["-1", "3", "224", "224"]
    assert client.get_model_config("resnet18").config.max_batch_size == 8
    assert {m.name for m in client.get_model_repository_index().models} == {"auto", *POOL_MODELS}
    assert client.get_inference_statistics("resnet18").model_stats[0].name == "resnet18"
    assert not client.is_model_ready("vgg16")


@pytest.mark.parametrize("model", ["auto", "resnet18"])
def test_grpc_infer_gives_tritons_answer_and_the_gateways_parameters(gateway, direct, model):
    client = grpcclient.InferenceServerClient(gateway[1])
    tensor = grpcclient.InferInput("input", list(BATCH.shape), "FP32")
    tensor.set_data_from_numpy(BATCH)
    result = client.infer(model, [tensor], outputs=[grpcclient.InferRequestedOutput("logits")], request_id="g-1")
    np.testing.assert_allclose(result.as_numpy("logits"), direct, rtol=1e-5)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("resnet18", "1", "g-1")
    assert response.parameters["carbon_intensity"].double_param == 300.0
    assert response.parameters["selected_by"].string_param == ("interpolation" if model == "auto" else "client")
    assert response.parameters["energy_joules"].double_param > 0


def test_grpc_errors_have_the_right_status(gateway):
    client = grpcclient.InferenceServerClient(gateway[1])
    bogus = grpcclient.InferInput("bogus_input", [1, 3, 224, 224], "FP32")
    bogus.set_data_from_numpy(BATCH[:1])
    with pytest.raises(InferenceServerException, match="no input 'bogus_input'") as caught:
        client.infer("auto", [bogus])
    assert "INVALID_ARGUMENT" in caught.value.status()
    good = grpcclient.InferInput("input", [1, 3, 224, 224], "FP32")
    good.set_data_from_numpy(BATCH[:1])
    with pytest.raises(InferenceServerException, match="not in the pool") as caught:
        client.infer("vgg16", [good])
    assert "NOT_FOUND" in caught.value.status()
    with pytest.raises(InferenceServerException, match="min_accuracy") as caught:
        client.infer("auto", [good], parameters={"min_accuracy": "lots"})
    assert "INVALID_ARGUMENT" in caught.value.status()


@pytest.mark.parametrize("version", ["1junk", "1" * 20, "-1", "1.0", "1" + "x" * 100_000])
def test_a_version_that_is_not_a_plain_number_is_refused_by_both_doors(gateway, version):
    """Triton reads ``"1<anything>"`` as version 1, so every distinct string used to be a new cache entry."""
    good = grpcclient.InferInput("input", [1, 3, 224, 224], "FP32")
    good.set_data_from_numpy(BATCH[:1])
    with pytest.raises(InferenceServerException, match="is not a plain decimal number") as caught:
        grpcclient.InferenceServerClient(gateway[1]).infer("resnet34", [good], model_version=version)
    assert "INVALID_ARGUMENT" in caught.value.status() and len(caught.value.message()) < 300
    if len(version) < 1000:  # a path that long is a 431 of its own (tests/faults/test_request_heads.py)
        body, headers = binary_infer_request(BATCH[:1])
        answer = httpx.post(f"http://{gateway[0]}/v2/models/resnet34/versions/{version}/infer", content=body,
                            headers=headers)
        assert (answer.status_code, answer.json()["code"]) == (400, "invalid_version")


def test_a_huge_model_name_costs_one_short_error(gateway):
    good = grpcclient.InferInput("input", [1, 3, 224, 224], "FP32")
    good.set_data_from_numpy(BATCH[:1])
    with pytest.raises(InferenceServerException, match="more characters") as caught:
        grpcclient.InferenceServerClient(gateway[1]).infer("m" * 2_000_000, [good])
    assert "NOT_FOUND" in caught.value.status() and len(caught.value.message()) < 300


async def test_grpc_aio_client_and_constraints(gateway):
    client = grpcaio.InferenceServerClient(gateway[1])
    try:
        assert await client.is_server_ready()
        tensor = grpcclient.InferInput("input", [1, 3, 224, 224], "FP32")
        tensor.set_data_from_numpy(BATCH[:1])
        # A dirty grid picks resnet18; a minimum accuracy the request asks for overrides it.
        result = await client.infer("auto", [tensor], parameters={"min_accuracy": 94.0})
        assert result.get_response().model_name == "resnet152"
        assert result.as_numpy("logits").shape == (1, 1000)
    finally:
        await client.close()


# --- the KServe SDK ----------------------------------------------------------------------------------------
# Its protos and tritonclient's define the same messages in protobuf's one descriptor pool, so they cannot be
# imported in one process: the SDK runs in a process of its own (tests/support/kserve_sdk_client.py).


def test_kserve_sdk_rest_and_grpc_clients(gateway, direct, tmp_path):
    import importlib.util
    import json
    import subprocess
    import sys

    if importlib.util.find_spec("kserve") is None:  # not imported here: see above
        pytest.fail("the KServe SDK is missing: it is in the test extra")
    np.save(tmp_path / "batch.npy", BATCH)
    done = subprocess.run([sys.executable, "-m", "tests.support.kserve_sdk_client", gateway[0], gateway[1],
                           str(tmp_path)], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    for way in ("rest-binary", "rest-json", "grpc"):
        answer = report[way]
        assert answer["live"] and answer["ready"] and answer["model_ready"], (way, answer)
        assert (answer["id"], answer["model_name"]) == (f"kserve-{way}", "resnet18"), (way, answer)
        np.testing.assert_allclose(np.load(tmp_path / f"{way}.npy"), direct, rtol=1e-5)
    assert report["rest-json"]["carbon_intensity"] == 300.0
