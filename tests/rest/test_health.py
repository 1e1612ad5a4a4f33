"""/healthz is the liveness probe: it fails only when the gateway cannot recover by itself."""

import httpx

from gateway.server import GatewayServer, WorkerBrief, _brief_file, worker_server
from tests.support.backend import FakeBackend

from tests.support.data import POOL_MODELS
from tests.support.gateway import settings_for


async def test_healthz_fails_when_the_gateway_cannot_recover(fake_repository):
    alive = {"now": True}
    server = GatewayServer(settings_for(fake_repository), FakeBackend(POOL_MODELS), alive=lambda: alive["now"])
    async with server, httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app), base_url="http://g") as client:
        assert (await client.get("/healthz")).status_code == 200
        alive["now"] = False
        response = await client.get("/healthz")
    assert response.status_code == 503 and response.json()["status"].startswith("unrecoverable")


async def test_a_worker_sees_the_parents_supervisor_give_up(fake_repository, tmp_path):
    gave_up = tmp_path / "triton-gave-up"
    settings = settings_for(fake_repository)
    brief = WorkerBrief(settings=settings.model_dump(), triton_url="127.0.0.1:1", triton_gave_up_file=str(gave_up))
    with _brief_file(brief) as path:
        server = worker_server(path)
    async with server, httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app), base_url="http://g") as client:
        assert (await client.get("/healthz")).status_code == 200
        gave_up.write_text("tritonserver exited 5 times\n")
        assert (await client.get("/healthz")).status_code == 503
