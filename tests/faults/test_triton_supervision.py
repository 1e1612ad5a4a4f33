"""The gateway's own local Triton is supervised: killed, it is reaped with its stubs and restarted, and the
gateway serves again on its own; a Triton that keeps dying makes /healthz fail."""

import subprocess
import time

import httpx
import pytest
import yaml

from gateway.triton.server import TritonSupervisor
from gateway.testing.processes import GatewayProcess, free_port

from tests.support.data import IMAGES

pytestmark = pytest.mark.integration


def server_pid(grpc_port: int) -> int:
    found = subprocess.run(["pgrep", "-f", f"tritonserver.*grpc-port={grpc_port}"], capture_output=True, text=True)
    pids = [int(p) for p in found.stdout.split()]
    assert len(pids) == 1, found.stdout
    return pids[0]


def test_a_killed_local_triton_is_restarted_and_the_gateway_serves_again(model_repository, tmp_path):
    pool = yaml.safe_load((model_repository / "pool.yaml").read_text())
    pool["models"] = [m for m in pool["models"] if m["name"] == "resnet18"]
    (tmp_path / "pool.yaml").write_text(yaml.safe_dump(pool))
    grpc = free_port()
    env = {"CARBON_GATEWAY_TRITON__GRPC_PORT": str(grpc), "CARBON_GATEWAY_TRITON__HTTP_PORT": str(free_port()),
           "CARBON_GATEWAY_TRITON__METRICS_PORT": str(free_port()), "CARBON_GATEWAY_TRITON__MODEL_CONTROL": "explicit"}
    with GatewayProcess("--repository", str(model_repository), "--pool", str(tmp_path / "pool.yaml"), cwd=tmp_path,
                        env=env, log_file=tmp_path / "gateway.log") as gateway:
        first = server_pid(grpc)
        subprocess.run(["kill", "-9", str(first)], check=True)
        killed = time.monotonic()
        statuses = []
        while time.monotonic() - killed < 60:
            response = httpx.post(f"{gateway.url}/v1/classify", content=IMAGES[0].read_bytes(),
                                  headers={"content-type": "image/jpeg"}, timeout=30)
            statuses.append(response.status_code)
            if response.status_code == 200:
                break
            assert response.status_code == 503 and httpx.get(f"{gateway.url}/healthz").status_code == 200
            time.sleep(0.5)
        back_after = time.monotonic() - killed
        assert statuses[-1] == 200 and back_after < 30, (back_after, statuses[-5:])
        assert server_pid(grpc) != first
        # The dead server and its process group (the python backend's stubs) are gone, not zombies or orphans.
        assert subprocess.run(["pgrep", "-g", str(first)], capture_output=True).returncode == 1
        assert subprocess.run(["ps", "-o", "stat=", "-p", str(first)], capture_output=True).returncode == 1
    assert "restarting it" in gateway.output() and "tritonserver is back" in gateway.output()


class Dies:
    """A server that never stays up."""

    grpc_url = "127.0.0.1:1"

    def __init__(self) -> None:
        self.starts = 0

    def running(self) -> bool:
        return False

    def reap(self) -> int:
        return -9

    def start(self) -> None:
        self.starts += 1

    async def wait_ready(self, models, timeout_s) -> None:
        return None


async def test_a_triton_that_keeps_dying_makes_the_gateway_unhealthy(tmp_path):
    server = Dies()
    supervisor = TritonSupervisor(server, ["resnet18"], max_restarts=3, window_s=60, backoff_s=0.01,
                                  gave_up_file=tmp_path / "gave-up")
    await supervisor.run(interval_s=0.01)
    assert not supervisor.is_healthy() and server.starts == 3
    assert (tmp_path / "gave-up").exists()  # for uvicorn's workers, which cannot ask the supervisor
