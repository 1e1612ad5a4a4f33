"""The API documentation works where the internet does not reach."""



async def test_the_docs_load_without_the_internet(make_fake_gateway):
    async with make_fake_gateway() as client:
        page = await client.get("/docs")
        assets = [await client.get(f"/docs/assets/{name}") for name in ("swagger-ui-bundle.js", "swagger-ui.css")]
    assert page.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower() and "http://" not in page.text and "https://" not in page.text
    assert all(asset.status_code == 200 and len(asset.content) > 10_000 for asset in assets)


def test_inference_routes_are_matched_first_in_their_routers():
    """Routes are tried in order, and every inference request pays for each one tried before its own."""
    from gateway.api import routes, v2

    assert [r.path for r in v2.router.routes[:2]] == ["/v2/models/{model_name}/infer",
                                                      "/v2/models/{model_name}/versions/{version}/infer"]
    assert routes.router.routes[0].path == "/v1/classify"
