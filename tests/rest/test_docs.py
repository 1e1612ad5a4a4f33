"""The API documentation works where the internet does not reach, and says what the routes take."""

from pathlib import Path

from gateway.server import GatewayServer
from tests.support.backend import FakeBackend

from tests.support.data import POOL_MODELS
from tests.support.gateway import settings_for


async def test_the_docs_load_without_the_internet(make_fake_gateway):
    async with make_fake_gateway() as client:
        page = await client.get("/docs")
        assets = [await client.get(f"/docs/assets/{name}") for name in ("swagger-ui-bundle.js", "swagger-ui.css")]
    assert page.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower() and "http://" not in page.text and "https://" not in page.text
    assert all(asset.status_code == 200 and len(asset.content) > 10_000 for asset in assets)


async def test_inference_routes_are_matched_first(fake_repository: Path):
    """Routes are tried in order, and every inference request pays for each one tried before its own."""
    from gateway.rest import routes, v2

    assert [r.path for r in routes.inference.routes] == ["/v1/classify"]
    assert [r.path for r in v2.inference.routes] == ["/v2/models/{model_name}/infer",
                                                     "/v2/models/{model_name}/versions/{version}/infer"]
    async with GatewayServer(settings_for(fake_repository), FakeBackend(POOL_MODELS)) as server:
        app = server.app
    # The app's own /openapi.json, then the inference routes, then the rest.
    included = [getattr(r, "original_router", None) for r in app.router.routes]
    assert included[1:5] == [routes.inference, v2.inference, v2.router, routes.router]


async def test_the_inference_routes_declare_their_path_parameters_and_no_other(fake_repository: Path):
    """The handler reads the path itself (it is cheaper than FastAPI's parameters), so OpenAPI is told by hand."""
    async with GatewayServer(settings_for(fake_repository), FakeBackend(POOL_MODELS)) as server:
        spec = server.app.openapi()
    for path, names in (("/v2/models/{model_name}/infer", ["model_name"]),
                        ("/v2/models/{model_name}/versions/{version}/infer", ["model_name", "version"])):
        parameters = spec["paths"][path]["post"]["parameters"]
        assert [p["name"] for p in parameters if p["in"] == "path"] == names
        assert all(p["required"] and p["schema"]["type"] == "string" for p in parameters if p["in"] == "path")
        assert "version" not in [p["name"] for p in parameters if p["in"] == "query"]
