"""What a hostile gRPC client can make the gateway hold: a real gateway process, calls written frame by frame.

The bound stated in docs/performance.md: a request is refused once its length says it is larger than the
pool's largest valid request (``message_limit``), before it is read; at most ``max_in_flight`` + 16 calls
are held at once, each with at most one such message; and a connection is closed ``grpc_connection_age_s``
after it opened, so a stalled call lets go of its slot and memory.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient

from gateway.grpc.servicer import CONTROL_RPCS, message_limit
from gateway.protocol.signature import RESNET
from gateway.testing.h2calls import partial_call
from gateway.testing.processes import GatewayProcess, free_port

pytestmark = pytest.mark.integration

MAX_IN_FLIGHT, MAX_BATCH = 64, 8
LIMIT = message_limit(RESNET, MAX_BATCH)  # about 4.9 MB
RESOURCE_EXHAUSTED = 8
MB = 1 << 20


@pytest.fixture(scope="module")
def gateway(triton, model_repository):
    port = free_port()
    env = {"CARBON_GATEWAY_LIMITS__MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
           "CARBON_GATEWAY_LIMITS__MAX_BATCH": str(MAX_BATCH), "CARBON_GATEWAY_LIMITS__GRPC_CONNECTION_AGE_S": "3"}
    with GatewayProcess("--triton", triton.grpc_url, "--repository", str(model_repository), "--grpc-port", str(port),
                        "--carbon-intensity", "100", env=env) as process:
        yield process, port


def _rss(process: GatewayProcess) -> int:
    return psutil.Process(process.process.pid).memory_info().rss


def _good_request(port: int) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    tensor = grpcclient.InferInput("input", [1, 3, 224, 224], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3, 224, 224), np.float32))
    try:
        assert client.infer("auto", [tensor]).as_numpy("logits").shape == (1, 1000)
    finally:
        client.close()


async def test_messages_over_the_largest_valid_request_are_refused_before_they_are_read(gateway):
    process, port = gateway
    before = _rss(process)
    calls = await asyncio.gather(*(partial_call("127.0.0.1", port, 40 * MB, 40 * MB, stall_timeout_s=5)
                                   for _ in range(64)))
    try:
        assert all(call.grpc_status == RESOURCE_EXHAUSTED or call.reset for call in calls)
        # Refused as its length arrived: at most a flow-control window (gRPC grows it to 8 MB) was let in.
        assert max(call.sent for call in calls) <= 8 * MB + 16 * 1024
        assert _rss(process) - before < 200 * MB
    finally:
        await asyncio.gather(*(call.close() for call in calls))
    _good_request(port)


async def test_stalled_calls_are_bounded_in_number_memory_and_time(gateway):
    process, port = gateway
    before = _rss(process)
    slots = MAX_IN_FLIGHT + CONTROL_RPCS
    stalled = await asyncio.gather(*(partial_call("127.0.0.1", port, LIMIT - 1024, LIMIT - 2048, stall_timeout_s=2)
                                     for _ in range(slots - 4)))
    try:
        assert not any(call.ended for call in stalled)  # each holds a slot and nearly a whole message
        held = _rss(process) - before
        assert held < slots * LIMIT * 1.5, f"{held / MB:.0f} MB held by {len(stalled)} stalled calls"
        more = await asyncio.gather(*(partial_call("127.0.0.1", port, 1024, 16, stall_timeout_s=2) for _ in range(8)))
        assert sum(call.grpc_status == RESOURCE_EXHAUSTED for call in more) >= 4  # over the limit: refused at once
        await asyncio.gather(*(call.close() for call in more))
        started = time.monotonic()
        await asyncio.gather(*(call.settle(timeout_s=15) for call in stalled))  # the connections' age ends them
        assert all(call.ended for call in stalled) and time.monotonic() - started < 15
    finally:
        await asyncio.gather(*(call.close() for call in stalled))
    await asyncio.to_thread(_good_request, port)


def test_unserved_and_undecodable_calls_cost_one_log_line_not_a_traceback_each(gateway):
    import grpc

    process, port = gateway
    before = process.output()
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")  # bytes in, bytes out
    try:
        for _ in range(200):
            with pytest.raises(Exception, match=r"UNIMPLEMENTED|shared memory"):
                client.get_system_shared_memory_status()
            with pytest.raises(grpc.RpcError) as caught:
                infer(b"\xff\x00 not a protobuf message \xff")
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        client.close()
        channel.close()
    logged = process.output()[len(before):]
    assert "Traceback" not in logged
    assert logged.count("SystemSharedMemoryStatus") <= 2 and len(logged.splitlines()) <= 10, logged[-2000:]
