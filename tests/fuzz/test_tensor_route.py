"""The KServe v2 tensor route under hostile input, and its binary tensor extension.

The parser is fuzzed directly (pure and fast): only a 400 ``RequestError`` or a finite FP32 [N, 3, 224, 224]
array comes out. Then real requests through the app on the session's Triton, including ones encoded and
decoded by ``tritonclient.http`` to show the binary extension is the one Triton's own clients speak.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gateway.protocol.codec import decode_request
from gateway.errors import RequestError
from gateway.testing.tensors import binary_infer_request

SHAPE = [1, 3, 224, 224]
COUNT = 3 * 224 * 224
FUZZ = settings(max_examples=300, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def parse(body: bytes, header_length: str | None = None):
    try:
        return decode_request(body, 8, header_length)
    except RequestError as exc:
        assert exc.status == 400 and exc.code in ("invalid_json", "invalid_tensor_request") and exc.detail
        return None


def check(body: bytes, header_length: str | None = None) -> None:
    parsed = parse(body, header_length)
    if parsed is not None:
        array, binary_output, request_id = parsed.batch, parsed.binary_output, parsed.id
        assert array.dtype == np.float32 and array.shape[1:] == (3, 224, 224) and 1 <= array.shape[0] <= 8
        assert np.isfinite(array).all() and isinstance(binary_output, bool)
        assert request_id is None or isinstance(request_id, str)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
SHAPES = st.one_of(st.just(SHAPE), st.lists(st.one_of(st.integers(-2, 10), st.sampled_from([3, 224]), st.booleans()),
                                            max_size=5))


@FUZZ
@given(body=st.binary(max_size=512), header_length=st.one_of(st.none(), st.integers(-5, 600).map(str),
                                                              st.text(max_size=6)))
def test_arbitrary_bodies(body, header_length):
    check(body, header_length)


@FUZZ
@given(name=st.one_of(st.just("input"), JSON_VALUES), shape=SHAPES,
       datatype=st.one_of(st.just("FP32"), st.sampled_from(["INT8", "FP16", "BYTES", ""]), JSON_VALUES),
       data=st.one_of(JSON_VALUES, st.lists(st.floats(width=32), max_size=8)),
       parameters=st.one_of(st.none(), JSON_VALUES, st.fixed_dictionaries({"binary_data_size": JSON_VALUES})),
       top=st.dictionaries(st.sampled_from(["id", "parameters", "outputs"]), JSON_VALUES, max_size=3))
def test_structured_json(name, shape, datatype, data, parameters, top):
    entry = {"name": name, "shape": shape, "datatype": datatype, "data": data}
    if parameters is not None:
        entry["parameters"] = parameters
    check(json.dumps({"inputs": [entry], **top}).encode())


@FUZZ
@given(size=st.one_of(st.just(COUNT * 4), st.integers(-1, COUNT * 8), st.floats(), st.text(max_size=4)),
       cut=st.integers(0, 64), extra=st.binary(max_size=16), header_delta=st.integers(-3, 3),
       batch=st.integers(0, 9))
def test_binary_framing(size, cut, extra, header_delta, batch):
    array = np.zeros((max(batch, 1), 3, 224, 224), dtype=np.float32)
    body, headers = binary_infer_request(array, size=size)
    header_length = int(headers["Inference-Header-Content-Length"]) + header_delta
    check(body[:len(body) - cut] + extra, str(header_length))


# --- examples: malformed requests the fuzzers and review found ---------------------------------------------


@pytest.mark.parametrize("body, header_length, message", [
    (b'{"inputs": [7]}', None, "must be an object"),
    (b'{"inputs": [{"name": "input", "shape": [true, 3, 224, 224], "datatype": "FP32", "data": []}]}', None,
     "list of integers"),
    (b'{"inputs": [{"name": 1, "shape": [1, 3, 224, 224], "datatype": "FP32", "data": []}]}', None, "name"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [[1], [1, 2]]}]}', None,
     "data has 3 values"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [[1], ["a"]]}]}', None,
     "numbers"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": ["1.5"]}]}', None,
     "numbers"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": {"a": 1}}]}', None,
     "must be a list"),
    (b'{"inputs": [{"name": "input", "shape": [9, 3, 224, 224], "datatype": "FP32", "data": [0]}]}', None,
     "1 <= N <= 8"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [0]}]}', "abc",
     "not an integer"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [0]}]}', "9999",
     "does not fit"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [0]}]}xyz', "91",
     "no binary_data_size"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", '
     b'"parameters": {"binary_data_size": 602112}}]}', None, "needs the Inference-Header-Content-Length"),
    (json.dumps({"inputs": [{"name": "input", "shape": SHAPE, "datatype": "FP32",
                             "data": [0.0] * (COUNT - 1) + [1e39]}]}).encode(), None, "NaN or infinite"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [NaN]}]}', None,
     "not valid JSON"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", '
     b'"data": [100000000000000000000000000000]}]}', None, ""),
    ("{\"inputs\": \"\u00e9\"}".encode("latin-1"), None, "not valid JSON"),
], ids=lambda value: value[:60].decode("latin-1") if isinstance(value, bytes) else None)
def test_malformed_examples(body, header_length, message):
    with pytest.raises(RequestError) as caught:
        decode_request(body, 8, header_length)
    assert caught.value.status == 400 and message in caught.value.detail


def test_binary_size_mismatch_and_nan():
    array = np.zeros((1, 3, 224, 224), dtype=np.float32)
    body, headers = binary_infer_request(array, size=COUNT * 4 - 4)
    with pytest.raises(RequestError, match="does not match"):
        decode_request(body, 8, headers["Inference-Header-Content-Length"])
    array[0, 0, 0, 0] = np.nan
    body, headers = binary_infer_request(array)
    with pytest.raises(RequestError, match="NaN"):
        decode_request(body, 8, headers["Inference-Header-Content-Length"])


def test_binary_input_is_read_in_place():
    array = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    body, headers = binary_infer_request(array)
    request = decode_request(body, 8, headers["Inference-Header-Content-Length"])
    parsed, binary_output = request.batch, request.binary_output
    assert np.array_equal(parsed, array) and not binary_output
    assert not parsed.flags["OWNDATA"]  # a view on the request body: no copy


# --- through the app, on the session's real Triton ---------------------------------------------------------


@pytest.mark.integration
async def test_binary_and_json_give_the_same_logits(make_gateway):
    array = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    body, headers = binary_infer_request(array, binary_output=True, extra={"id": "req-7"})
    async with make_gateway() as client:
        binary = await client.post("/v2/models/resnet18/infer", content=body, headers=headers)
        as_json = await client.post("/v2/models/resnet18/infer", json={"inputs": [
            {"name": "input", "shape": SHAPE, "datatype": "FP32", "data": array.reshape(-1).tolist()}]})
    assert binary.status_code == 200 and as_json.status_code == 200, (binary.text[:200], as_json.text[:200])
    assert binary.headers["content-type"] == "application/octet-stream"
    length = int(binary.headers["inference-header-content-length"])
    header = json.loads(binary.content[:length])
    assert header["model_name"] == "resnet18" and header["id"] == "req-7"
    assert header["outputs"][0]["parameters"]["binary_data_size"] == 4000 == len(binary.content) - length
    logits = np.frombuffer(binary.content, dtype="<f4", offset=length).reshape(header["outputs"][0]["shape"])
    expected = np.asarray(as_json.json()["outputs"][0]["data"], dtype=np.float32).reshape(1, 1000)
    assert np.array_equal(logits, expected)
    assert binary.headers["x-model"] == "resnet18" and "total;dur=" in binary.headers["server-timing"]


@pytest.mark.integration
async def test_tritonclient_http_speaks_to_the_gateway(make_gateway):
    """Triton's own HTTP client encodes the request and decodes the response: the extension is KServe's."""
    import tritonclient.http as httpclient

    array = np.random.default_rng(2).standard_normal((2, 3, 224, 224)).astype(np.float32)
    tensor = httpclient.InferInput("input", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array, binary_data=True)
    output = httpclient.InferRequestedOutput("logits", binary_data=True)
    body, json_size = httpclient.InferenceServerClient.generate_request_body([tensor], outputs=[output])
    async with make_gateway() as client:
        response = await client.post("/v2/models/resnet18/infer", content=body,
                                     headers={"Inference-Header-Content-Length": str(json_size)})
    assert response.status_code == 200, response.text[:300]
    result = httpclient.InferenceServerClient.parse_response_body(
        response.content, header_length=int(response.headers["inference-header-content-length"]))
    assert result.as_numpy("logits").shape == (2, 1000)
    assert result.get_response()["model_name"] == "resnet18"


@pytest.mark.integration
async def test_hostile_tensor_requests_get_json_400s(make_gateway):
    array = np.zeros((1, 3, 224, 224), dtype=np.float32)
    body, headers = binary_infer_request(array)
    cases = [
        (body[:-100], headers),                                              # truncated binary data
        (body, {**headers, "Inference-Header-Content-Length": "-1"}),
        (body, {**headers, "Inference-Header-Content-Length": str(len(body) + 1)}),
        (body, {"Content-Type": "application/json"}),                        # binary body, no header
        (b"", {"Content-Type": "application/json"}),                         # zero bytes
        (b"\xff\xfe\x00", {"Content-Type": "application/json"}),
        (b"[]" * 1000, {"Content-Type": "text/plain"}),
    ]
    async with make_gateway() as client:
        for content, request_headers in cases:
            response = await client.post("/v2/models/auto/infer", content=content, headers=request_headers)
            assert response.status_code == 400, (request_headers, response.text[:200])
            assert set(response.json()) == {"error", "code"}  # the protocol's {"error": message}, and the code
        good, headers = binary_infer_request(array, binary_output=True)
        assert (await client.post("/v2/models/auto/infer", content=good, headers=headers)).status_code == 200


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_a_json_tensor_arrives_exactly(nested):
    array = np.random.default_rng(3).standard_normal((2, 3, 224, 224)).astype(np.float32)
    data = array.tolist() if nested else array.ravel().tolist()
    parsed = decode_request(json.dumps({"inputs": [{"name": "input", "shape": [2, 3, 224, 224], "datatype": "FP32",
                                                    "data": data}], "id": "r"}).encode(), 8)
    assert parsed.batch.dtype == np.float32 and parsed.id == "r"
    np.testing.assert_array_equal(parsed.batch, array)


def test_a_repeated_key_means_the_last_of_them_as_in_any_json_reader_here():
    zeros = json.dumps([0.0] * COUNT).encode()
    body = (b'{"id": "first", "inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", '
            b'"data": [1], "data": ' + zeros + b'}], "id": "last"}')
    parsed = decode_request(body, 8)
    assert parsed.id == "last" and not parsed.batch.any()
