"""/healthz is the liveness probe: it fails only when the gateway cannot recover by itself."""

import httpx

from gateway.api import create_app
from tests.support.backend import FakeBackend

from ..conftest import POOL_MODELS, settings_for


async def test_healthz_fails_when_the_gateway_cannot_recover(fake_repository):
    alive = {"now": True}
    app = create_app(settings_for(fake_repository), FakeBackend(POOL_MODELS), alive=lambda: alive["now"])
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://g") as client:
        assert (await client.get("/healthz")).status_code == 200
        alive["now"] = False
        response = await client.get("/healthz")
    assert response.status_code == 503 and response.json()["status"].startswith("unrecoverable")


async def test_a_worker_sees_the_parents_supervisor_give_up(fake_repository, tmp_path, monkeypatch):
    import json

    from gateway.api.app import SETTINGS_ENV, app_from_environment
    from gateway.api.server import _reveal

    gave_up = tmp_path / "triton-gave-up"
    settings = settings_for(fake_repository)
    monkeypatch.setenv(SETTINGS_ENV, json.dumps({"settings": settings.model_dump(), "triton_url": "127.0.0.1:1",
                                                 "meter": None, "triton_gave_up_file": str(gave_up)},
                                                default=_reveal))
    app = app_from_environment()
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://g") as client:
        assert (await client.get("/healthz")).status_code == 200
        gave_up.write_text("tritonserver exited 5 times\n")
        assert (await client.get("/healthz")).status_code == 503
