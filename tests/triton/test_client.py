"""The Triton client's hand-written ``ModelInferRequest``: what protobuf itself reads back, and what Triton answers."""

import dataclasses
import numpy as np
import pytest
from google.protobuf.internal.encoder import _VarintBytes
from tritonclient.grpc import service_pb2

from gateway.protocol.signature import RESNET
from gateway.triton.client import _varint, decode_infer_response, encode_infer_request

SIGNATURE = dataclasses.replace(RESNET, max_batch_size=8)


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


def test_a_shared_memory_request_names_its_region_and_carries_no_bytes():
    from multiprocessing.shared_memory import SharedMemory

    from gateway.triton.client import encode_shared_request
    from gateway.triton.shm import Region

    batch = np.random.default_rng(2).standard_normal((1, 3, 224, 224)).astype(np.float32)
    memory = SharedMemory(create=True, size=batch.nbytes + 100)
    try:
        wire = encode_shared_request("resnet50", "", SIGNATURE, batch, Region("slot-0", memory))
        request = service_pb2.ModelInferRequest.FromString(wire)
        written = np.frombuffer(memory.buf, "<f4", count=batch.size).reshape(batch.shape).copy()
    finally:
        memory.close()
        memory.unlink()
    parameters = request.inputs[0].parameters
    assert parameters["shared_memory_region"].string_param == "slot-0"
    assert parameters["shared_memory_byte_size"].int64_param == batch.nbytes
    assert not request.raw_input_contents and len(wire) < 200
    assert np.array_equal(written, batch)


def _our_regions() -> set[str]:
    import os

    return {name for name in os.listdir("/dev/shm") if name.startswith(f"carbon-gateway-inputs-{os.getpid()}-")}


@pytest.mark.integration
async def test_tensors_go_through_shared_memory_and_answer_as_over_grpc(triton):
    import tritonclient.grpc.aio as grpcaio

    from gateway.triton import TritonClient

    batch = np.random.default_rng(3).standard_normal((1, 3, 224, 224)).astype(np.float32)
    big = np.random.default_rng(4).standard_normal((2, 3, 224, 224)).astype(np.float32)  # larger than a region
    shared = TritonClient(triton.grpc_url, shared_memory_slots=2, shared_memory_bytes=batch.nbytes)
    plain, stock = TritonClient(triton.grpc_url), grpcaio.InferenceServerClient(triton.grpc_url)
    try:
        first = (await shared.infer("resnet18", batch)).outputs
        again = (await shared.infer("resnet18", batch)).outputs
        over_grpc = (await plain.infer("resnet18", batch)).outputs
        large = (await shared.infer("resnet18", big)).outputs
        assert shared.shared is not None and shared.shared.state == "registered" and shared.shared.sent == 2
        registered = set((await stock.get_system_shared_memory_status(as_json=True))["regions"])
        assert {region.name for region in shared.shared.regions} <= registered
        assert len(_our_regions()) == 2
    finally:
        await shared.close()
        await plain.close()
    status = await stock.get_system_shared_memory_status(as_json=True)
    await stock.close()
    assert np.array_equal(first, over_grpc) and np.array_equal(again, over_grpc) and large.shape == (2, 1000)
    assert not set(status.get("regions", {})) & {region.name for region in shared.shared.regions}
    assert not _our_regions()  # unlinked on close


@pytest.mark.integration
async def test_regions_triton_forgot_are_sent_as_bytes_then_registered_again(triton):
    import tritonclient.grpc.aio as grpcaio

    from gateway.triton import TritonClient

    batch = np.random.default_rng(5).standard_normal((1, 3, 224, 224)).astype(np.float32)
    client, stock = TritonClient(triton.grpc_url, shared_memory_slots=1), grpcaio.InferenceServerClient(triton.grpc_url)
    try:
        expected = (await client.infer("resnet18", batch)).outputs
        assert client.shared is not None and client.shared.sent == 1
        await stock.unregister_system_shared_memory(client.shared.regions[0].name)  # as a Triton restart does
        assert np.array_equal((await client.infer("resnet18", batch)).outputs, expected)  # sent as bytes
        assert client.shared.sent == 1 and client.shared.state == "unregistered"
        assert np.array_equal((await client.infer("resnet18", batch)).outputs, expected)
        assert client.shared.sent == 2 and client.shared.state == "registered"
    finally:
        await client.close()
        await stock.close()


@pytest.mark.integration
async def test_a_triton_that_cannot_open_the_regions_gets_bytes(triton, monkeypatch):
    from gateway.triton import TritonClient
    from gateway.triton.shm import Region

    # The key Triton is told to open does not exist: as for a Triton on another host.
    monkeypatch.setattr(Region, "key", property(lambda region: "/no-such-region-" + region.name))
    batch = np.random.default_rng(6).standard_normal((1, 3, 224, 224)).astype(np.float32)
    client = TritonClient(triton.grpc_url, shared_memory_slots=1)
    try:
        outputs = (await client.infer("resnet18", batch)).outputs
        assert client.shared is not None and client.shared.state == "refused" and client.shared.sent == 0
        assert outputs.shape == (1, 1000)
    finally:
        await client.close()
    assert not _our_regions()


_REGISTER_AND_WAIT = """
import asyncio, sys
from multiprocessing import resource_tracker
import numpy as np
from gateway.triton import TritonClient

async def main():
    client = TritonClient(sys.argv[1], shared_memory_slots=2)
    await client.infer("resnet18", np.zeros((1, 3, 224, 224), dtype=np.float32))
    assert client.shared is not None and client.shared.state == "registered"
    if sys.argv[2] == "file-left-behind":  # as when the resource tracker is killed too
        for region in client.shared.regions:
            resource_tracker.unregister(region.memory._name, "shared_memory")
    print(" ".join(region.name for region in client.shared.regions), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.integration
@pytest.mark.parametrize("files", ["removed-by-the-resource-tracker", "file-left-behind"])
async def test_regions_of_a_killed_process_are_swept_by_the_next_one_to_register(triton, files):
    import os
    import subprocess
    import sys

    import tritonclient.grpc.aio as grpcaio

    from gateway.triton import TritonClient

    async def registered() -> set[str]:
        return set((await stock.get_system_shared_memory_status(as_json=True)).get("regions", {}))

    batch = np.zeros((1, 3, 224, 224), dtype=np.float32)
    stock = grpcaio.InferenceServerClient(triton.grpc_url)
    alive, newcomer = TritonClient(triton.grpc_url, shared_memory_slots=1), None
    child = subprocess.Popen([sys.executable, "-c", _REGISTER_AND_WAIT, triton.grpc_url, files],
                             stdout=subprocess.PIPE, text=True)
    try:
        await alive.infer("resnet18", batch)
        assert alive.shared is not None
        living = {region.name for region in alive.shared.regions}
        assert child.stdout is not None
        dead = set(child.stdout.readline().split())
        child.kill()  # SIGKILL: no chance to unregister
        child.wait(timeout=10)
        assert len(dead) == 2 and dead | living <= await registered()
        if files == "file-left-behind":
            assert all(os.path.exists(f"/dev/shm/{name}") for name in dead)  # unlocked now

        newcomer = TritonClient(triton.grpc_url, shared_memory_slots=1)
        await newcomer.infer("resnet18", batch)  # registers, then sweeps
        now = await registered()
        assert not dead & now and not any(os.path.exists(f"/dev/shm/{name}") for name in dead)
        assert living <= now  # a live process's regions stay
        assert np.array_equal((await alive.infer("resnet18", batch)).outputs,
                              (await newcomer.infer("resnet18", batch)).outputs)
        assert alive.shared.sent == 2  # its region still works
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        await alive.close()
        if newcomer is not None:
            await newcomer.close()
        await stock.close()
