"""What production does to a gateway, against a real gateway process, the session's real tritonserver and a
local carbon provider speaking the UK API's format: guessed admin tokens, odd forms, and a provider whose
answers are naive, huge or both. Each of these broke the gateway before it was fixed."""

import json
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest

from gateway.testing.http import HttpReply, LocalHttpServer
from gateway.testing.processes import GatewayProcess

from tests.support.data import IMAGES, PROJECT

pytestmark = pytest.mark.integration

TOKEN = "production-admin-token-0123456789"


class Provider:
    """The UK API's /intensity, with a value and a shape the test sets."""

    def __init__(self) -> None:
        self.value, self.naive, self.padding = 200.0, False, 1
        self.lock = threading.Lock()
        self.server = LocalHttpServer(self.respond, name="uk-provider")

    def respond(self, path: str, headers: dict[str, str]) -> HttpReply:
        with self.lock:
            value, naive, padding = self.value, self.naive, self.padding
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        stamp = "%Y-%m-%dT%H:%M" if naive else "%Y-%m-%dT%H:%MZ"
        period = {"from": now.strftime(stamp), "to": now.strftime(stamp),
                  "intensity": {"forecast": value, "actual": value, "index": "moderate"}}
        return HttpReply(200, json.dumps({"data": [period] * padding}).encode(), {"Content-Type": "application/json"})

    def set(self, **values: object) -> None:
        with self.lock:
            for name, value in values.items():
                setattr(self, name, value)


@pytest.fixture(scope="module")
def provider():
    provider = Provider()
    yield provider
    provider.server.close()


@pytest.fixture(scope="module")
def gateway(triton, model_repository, provider, tmp_path_factory):
    env = {"CARBON_GATEWAY_ADMIN_TOKEN": TOKEN, "CARBON_GATEWAY_CARBON__SOURCE": "uk",
           "CARBON_GATEWAY_CARBON__UK__BASE_URL": provider.server.url,
           "CARBON_GATEWAY_CARBON__POLL_INTERVAL_S": "0.3", "CARBON_GATEWAY_CARBON__HTTP__ATTEMPTS": "1",
           "CARBON_GATEWAY_CARBON__HTTP__MAX_BODY_BYTES": str(256 * 1024)}
    with GatewayProcess("--triton", triton.grpc_url, "--repository", str(model_repository), cwd=PROJECT, env=env,
                        log_file=tmp_path_factory.mktemp("production") / "gateway.log") as process:
        yield process


def carbon(gateway) -> dict:
    return httpx.get(f"{gateway.url}/readyz", timeout=10).json()["carbon"]


def wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_guessing_the_admin_token_locks_the_guesser_out(gateway):
    tries = ["bearer", "Bearer", "Basic abc", *(f"Bearer guess-{i}" for i in range(5))]
    statuses = [httpx.post(f"{gateway.url}/admin/reload-pool", headers={"Authorization": authorization},
                           timeout=10).status_code for authorization in tries]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}


def test_only_the_file_field_is_read_and_overfull_forms_get_their_own_error(gateway):
    wrong_field = httpx.post(f"{gateway.url}/v1/classify", files={"image": ("x.jpg", IMAGES[0].read_bytes())})
    too_many = httpx.post(f"{gateway.url}/v1/classify", files=[("file", ("a.jpg", b"a")), ("file", ("b.jpg", b"b"))])
    right = httpx.post(f"{gateway.url}/v1/classify", files={"file": ("x.jpg", IMAGES[0].read_bytes())}, timeout=60)
    assert (wrong_field.status_code, wrong_field.json()["error"]) == (400, "missing_file")
    assert (too_many.status_code, too_many.json()["error"]) == (400, "invalid_multipart")
    assert right.status_code == 200


def test_a_provider_with_naive_timestamps_and_huge_answers_does_not_stop_the_monitor(gateway, provider):
    assert wait_for(lambda: carbon(gateway)["status"] == "live")
    provider.set(naive=True, value=150.0)  # killed the poll loop before: can't compare naive and aware
    assert wait_for(lambda: carbon(gateway)["intensity"] == 150.0), carbon(gateway)
    provider.set(padding=5000)  # ~750 kB, over the 256 kB cap: refused while it streams
    assert wait_for(lambda: carbon(gateway)["status"] == "stale"), carbon(gateway)
    assert "limit" in (carbon(gateway)["last_error"] or "")
    started = time.monotonic()
    assert httpx.get(f"{gateway.url}/healthz", timeout=10).status_code == 200
    assert time.monotonic() - started < 1.0
    provider.set(padding=1, naive=False, value=120.0)
    assert wait_for(lambda: (carbon(gateway)["status"], carbon(gateway)["intensity"]) == ("live", 120.0))
