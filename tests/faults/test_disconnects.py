"""A client that hangs up mid-upload is a client disconnect (499 in the log and the metrics), not a server error."""

import socket
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.testing.processes import GatewayProcess

from tests.support.data import IMAGES, PROJECT

pytestmark = pytest.mark.integration


def requests_by_outcome(url: str) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {(s.labels["route"], s.labels["outcome"]): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "carbon_gateway_requests_total"}


def hang_up_mid_upload(port: int, path: str, content_type: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: {content_type}\r\n"
                     "Content-Length: 500000\r\n\r\n".encode() + b"\xff" * 1000)
        time.sleep(0.05)  # the gateway is reading the body when the client goes


def test_hanging_up_mid_upload_is_counted_and_logged_as_the_clients(triton, model_repository, tmp_path):
    with GatewayProcess("--triton", triton.grpc_url, "--repository", str(model_repository), "--log-level", "info",
                        cwd=PROJECT, log_file=tmp_path / "gateway.log") as gateway:
        for _ in range(5):
            hang_up_mid_upload(gateway.port, "/v1/classify", "image/jpeg")
            hang_up_mid_upload(gateway.port, "/v2/models/auto/infer", "application/json")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            counts = requests_by_outcome(gateway.url)
            if counts.get(("classify", "disconnected")) == 5 and counts.get(("infer", "disconnected")) == 5:
                break
            time.sleep(0.2)
        assert counts.get(("classify", "disconnected")) == 5 and counts.get(("infer", "disconnected")) == 5, counts
        assert not any(outcome == "error" for _, outcome in counts)
        served = httpx.post(f"{gateway.url}/v1/classify", content=IMAGES[0].read_bytes(),
                            headers={"content-type": "image/jpeg"}, timeout=60)
        assert served.status_code == 200
    log = gateway.output()
    assert "Traceback" not in log and "500 internal_error" not in log
    assert log.count("499 client_closed_request") == 10
