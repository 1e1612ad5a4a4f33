"""Request lines and headers have a size and a time limit: huge or endless heads are refused, memory stays put."""

import socket
import time

import httpx
import psutil
import pytest

from gateway.testing.processes import GatewayProcess

from tests.support.data import IMAGES, PROJECT

pytestmark = pytest.mark.integration

HEADER_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def gateway(triton, model_repository, tmp_path_factory):
    env = {"CARBON_GATEWAY_LIMITS__HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S)}
    with GatewayProcess("--triton", triton.grpc_url, "--repository", str(model_repository), cwd=PROJECT, env=env,
                        log_file=tmp_path_factory.mktemp("heads") / "gateway.log") as process:
        yield process


def answer(sock: socket.socket) -> bytes:
    sock.settimeout(HEADER_TIMEOUT_S + 10)
    try:
        return sock.recv(4096)
    except ConnectionResetError:
        return b""


def test_unfinished_huge_headers_are_refused_before_they_fill_memory(gateway):
    rss_before = psutil.Process(gateway.process.pid).memory_info().rss
    answers = []
    for _ in range(4):
        with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Junk: ")
            try:
                for _ in range(64):  # up to 16 MiB of one header that never ends
                    sock.sendall(b"a" * 256 * 1024)
            except OSError:  # refused and closed under us
                pass
            answers.append(answer(sock))
    grown = psutil.Process(gateway.process.pid).memory_info().rss - rss_before
    assert all(a.startswith(b"HTTP/1.1 431") for a in answers), answers
    assert grown < 32 * 1024 * 1024, f"RSS grew {grown / 2**20:.0f} MiB"


def test_a_complete_megabyte_header_is_refused_and_a_normal_request_served(gateway):
    refused = httpx.get(f"{gateway.url}/healthz", headers={"X-Junk": "a" * 1024 * 1024}, timeout=10)
    assert refused.status_code == 431
    served = httpx.post(f"{gateway.url}/v1/classify", content=IMAGES[0].read_bytes(),
                        headers={"content-type": "image/jpeg", "X-Fine": "b" * 4096}, timeout=60)
    assert served.status_code == 200


def test_headers_that_never_finish_arriving_are_cut_off(gateway):
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n")
        try:
            for _ in range(40):
                sock.sendall(b"X-Slow: 1\r\n")
                time.sleep(0.2)
        except OSError:
            pass
        got = answer(sock)
    assert got.startswith(b"HTTP/1.1 408") and time.monotonic() - started < HEADER_TIMEOUT_S + 3, got
