"""Clients that trickle their bodies hold connections, not the gateway's request slots, and are cut off."""

import socket
import threading
import time

import httpx
import pytest

from gateway.testing.processes import GatewayProcess

from tests.support.data import IMAGES, PROJECT

pytestmark = pytest.mark.integration

SLOTS, TRICKLERS, BODY_TIMEOUT_S = 4, 12, 3


def trickle(port: int, seconds: float, answers: list[bytes]) -> None:
    """A body declared at 100 kB, sent a byte every 0.2 s for ``seconds``; what came back, if anything."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds + 10) as sock:
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: gateway\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: 100000\r\n\r\n")
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                sock.sendall(b"\xff")
                time.sleep(0.2)
        except OSError:  # the gateway closed the connection: the 408 is in the socket
            pass
        answers.append(sock.recv(4096))


def test_trickling_bodies_neither_lock_others_out_nor_last(triton, model_repository, tmp_path):
    env = {"CARBON_GATEWAY_LIMITS__MAX_IN_FLIGHT": str(SLOTS),
           "CARBON_GATEWAY_LIMITS__BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)}
    with GatewayProcess("--triton", triton.grpc_url, "--repository", str(model_repository), cwd=PROJECT, env=env,
                        log_file=tmp_path / "gateway.log") as gateway:
        answers: list[bytes] = []
        threads = [threading.Thread(target=trickle, args=(gateway.port, BODY_TIMEOUT_S + 3, answers))
                   for _ in range(TRICKLERS)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # every trickler is connected and sending
        started = time.monotonic()
        served = [httpx.post(f"{gateway.url}/v1/classify", content=IMAGES[0].read_bytes(),
                             headers={"content-type": "image/jpeg"}, timeout=30).status_code for _ in range(4)]
        normal_took = time.monotonic() - started
        for thread in threads:
            thread.join(timeout=30)
    assert served == [200] * 4 and normal_took < BODY_TIMEOUT_S  # more tricklers than slots, no 429
    assert len(answers) == TRICKLERS
    assert all(answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer for answer in answers), answers[:2]
