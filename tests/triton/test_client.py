"""The Triton client's hand-written ``ModelInferRequest``: what protobuf itself reads back, and what Triton answers."""

import numpy as np
import pytest
from google.protobuf.internal.encoder import _VarintBytes
from tritonclient.grpc import service_pb2

from gateway.serving.backend import TensorSignature
from gateway.triton.client import _varint, decode_infer_response, encode_infer_request

SIGNATURE = TensorSignature("input", "FP32", (3, 224, 224), "logits", 8, {})


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 602_112, 4_816_896, 2**35 + 7])
def test_varints_are_protobufs(value):
    assert _varint(value) == _VarintBytes(value)


@pytest.mark.parametrize("items", [1, 3, 8])
def test_the_request_is_what_protobuf_would_write(items):
    batch = np.random.default_rng(items).standard_normal((items, 3, 224, 224)).astype(np.float32)
    request = service_pb2.ModelInferRequest.FromString(encode_infer_request("resnet50", "2", SIGNATURE, batch))
    assert (request.model_name, request.model_version) == ("resnet50", "2")
    assert [(i.name, i.datatype, list(i.shape)) for i in request.inputs] == [("input", "FP32", [items, 3, 224, 224])]
    assert [o.name for o in request.outputs] == ["logits"]
    assert np.array_equal(np.frombuffer(request.raw_input_contents[0], "<f4").reshape(batch.shape), batch)


def test_a_non_contiguous_batch_is_sent_in_order():
    batch = np.arange(2 * 3 * 224 * 224, dtype=np.float32).reshape(2, 3, 224, 224)[::-1]
    request = service_pb2.ModelInferRequest.FromString(encode_infer_request("m", "", SIGNATURE, batch))
    assert np.array_equal(np.frombuffer(request.raw_input_contents[0], "<f4").reshape(batch.shape), batch)


def test_the_response_is_read_without_a_copy():
    logits = np.random.default_rng(0).standard_normal((2, 1000)).astype(np.float32)
    response = service_pb2.ModelInferResponse(raw_output_contents=[logits.tobytes()])
    response.outputs.add(name="logits", datatype="FP32", shape=[2, 1000])
    response.model_version = "3"
    inference = decode_infer_response(response)
    decoded = inference.outputs
    assert inference.model_version == "3"
    assert decoded.dtype == np.float32 and np.array_equal(decoded, logits) and not decoded.flags["OWNDATA"]


@pytest.mark.integration
async def test_triton_answers_the_hand_written_request_as_tritonclients(triton):
    import tritonclient.grpc.aio as grpcaio
    from tritonclient.grpc import InferInput, InferRequestedOutput

    from gateway.triton import TritonClient

    batch = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    client, stock = TritonClient(triton.grpc_url), grpcaio.InferenceServerClient(triton.grpc_url)
    try:
        inference = await client.infer("resnet18", batch)
        ours = inference.outputs
        tensor = InferInput("input", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        theirs = (await stock.infer("resnet18", [tensor], outputs=[InferRequestedOutput("logits")])).as_numpy("logits")
    finally:
        await client.close()
        await stock.close()
    assert ours.shape == (2, 1000) and np.array_equal(ours, theirs) and inference.model_version == "1"
