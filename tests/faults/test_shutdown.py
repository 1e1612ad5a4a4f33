"""Shutdown has a deadline, and a second signal does not wait at all, whoever is still connected."""

import signal
import socket
import time

import pytest

from gateway.testing.processes import GatewayProcess

from tests.support.data import PROJECT

pytestmark = pytest.mark.integration


def hold_a_request(port: int) -> socket.socket:
    """A request whose body never finishes arriving (the body timeout is longer than the test)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: gateway\r\nContent-Type: image/jpeg\r\n"
                 b"Content-Length: 100000\r\n\r\n\xff")
    return sock


def exit_after(gateway: GatewayProcess, *signals: int, gap_s: float = 0.5) -> float:
    started = time.monotonic()
    for sig in signals:
        gateway.send_signal(sig)
        time.sleep(gap_s)
    gateway.process.wait(timeout=60)
    return time.monotonic() - started


@pytest.mark.parametrize("second_signal", [False, True], ids=["deadline", "second-signal"])
def test_a_held_request_cannot_keep_the_gateway_up(triton, model_repository, tmp_path, second_signal):
    env = {"CARBON_GATEWAY_LIMITS__BODY_TIMEOUT_S": "120",
           "CARBON_GATEWAY_SHUTDOWN_TIMEOUT_S": "30" if second_signal else "2"}
    gateway = GatewayProcess("--triton", triton.grpc_url, "--repository", str(model_repository), cwd=PROJECT,
                             env=env, log_file=tmp_path / "gateway.log")
    with gateway:
        held = [hold_a_request(gateway.port) for _ in range(3)]
        time.sleep(0.5)
        took = exit_after(gateway, *((signal.SIGTERM, signal.SIGINT) if second_signal else (signal.SIGTERM,)))
        for sock in held:
            sock.close()
    assert took < 6, f"took {took:.1f} s to exit:\n{gateway.output()[-2000:]}"
    if second_signal:  # forced: uvicorn skips the rest of the drain
        assert "second signal: exiting now" in gateway.output()
    else:  # the held requests are told, in one log line each
        assert "Traceback" not in gateway.output()
        assert gateway.output().count("-> 503 shutting_down: cancelled, the gateway is shutting down") == 3
