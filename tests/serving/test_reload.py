"""Swapping the pool while serving: admin API, file change, explicit model control, and what never breaks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.testing.processes import running_triton
from gateway.triton import TritonClient

from tests.support.data import IMAGES
from tests.support.gateway import gateway_client, settings_for

TOKEN = "s3cret-admin-token"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
JPEG = {"content-type": "image/jpeg"}
ENERGY = {"resnet18": 178.0, "resnet34": 359.9, "resnet50": 420.6, "resnet101": 803.1, "resnet152": 1238.1}


def write_pool(path: Path, *models: str, name: str = "pool") -> Path:
    path.write_text(yaml.safe_dump({"name": name, "models": [
        {"name": m, "energy_mj": ENERGY.get(m, 500.0), "error_rate": 10.0 - i} for i, m in enumerate(models)]}))
    return path


async def served_model(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await client.post("/v1/classify", content=IMAGES[0].read_bytes(), headers={**JPEG, **headers})


@pytest.fixture
def pool_file(tmp_path) -> Path:
    return write_pool(tmp_path / "pool.yaml", "resnet18", "resnet34", name="small")


def gateway(model_repository, triton_url: str, pool_file: Path, **overrides):
    settings = settings_for(model_repository, pool_file=str(pool_file), admin_token=TOKEN,
                            carbon__c_low=100.0, carbon__c_high=300.0, carbon__intensity=100.0, **overrides)
    return gateway_client(settings, triton_url)


async def test_admin_reload_swaps_the_pool(model_repository, triton, pool_file):
    async with gateway(model_repository, triton.grpc_url, pool_file, watch_pool=False) as client:
        assert (await served_model(client)).json()["model"]["name"] == "resnet34"
        write_pool(pool_file, "resnet50", "resnet101", name="big")
        response = await client.post("/admin/reload-pool", headers=ADMIN)
        assert response.status_code == 200, response.text
        assert response.json() | {"loaded": [], "unloaded": []} == {
            "pool": "big", "models": ["resnet50", "resnet101"], "added": ["resnet50", "resnet101"],
            "removed": ["resnet18", "resnet34"], "loaded": [], "unloaded": []}
        assert (await served_model(client)).json()["model"]["name"] == "resnet101"
        assert [m["name"] for m in (await client.get("/v1/models")).json()] == ["resnet50", "resnet101"]


@pytest.mark.parametrize("content, message", [
    ("models: []\n", "models"),
    ("models: [{name: resnet18, energy_mj: -1, error_rate: 3}]\n", "model 'resnet18' field energy_mj"),
    ("models: [{name: vgg16, energy_mj: 5, error_rate: 3}]\n", "Triton's repository has no model(s) ['vgg16']"),
    ("models: [\n", "not valid YAML"),
])
async def test_a_broken_pool_file_leaves_the_old_pool_serving(model_repository, triton, pool_file, content, message):
    async with gateway(model_repository, triton.grpc_url, pool_file, watch_pool=False) as client:
        pool_file.write_text(content)
        response = await client.post("/admin/reload-pool", headers=ADMIN)
        assert response.status_code == 422 and response.json()["error"] == "pool_rejected"
        assert message in response.json()["detail"]
        assert [m["name"] for m in (await client.get("/v1/models")).json()] == ["resnet18", "resnet34"]
        assert (await served_model(client)).status_code == 200


async def test_admin_api_needs_the_token(model_repository, triton, pool_file):
    async with gateway(model_repository, triton.grpc_url, pool_file, watch_pool=False) as client:
        missing = await client.post("/admin/reload-pool")
        wrong = await client.post("/admin/reload-pool", headers={"authorization": "Bearer nope"})
        basic = await client.post("/admin/reload-pool", headers={"authorization": f"Basic {TOKEN}"})
    assert [r.status_code for r in (missing, wrong, basic)] == [401, 401, 401]
    assert missing.headers["www-authenticate"] == "Bearer"
    settings = settings_for(model_repository, pool_file=str(pool_file), watch_pool=False)
    async with gateway_client(settings, triton.grpc_url) as client:
        disabled = await client.post("/admin/reload-pool", headers=ADMIN)
    assert disabled.status_code == 403 and disabled.json()["error"] == "admin_disabled"


async def test_file_change_reloads_the_pool(model_repository, triton, pool_file):
    async with gateway(model_repository, triton.grpc_url, pool_file) as client:
        await asyncio.sleep(0.3)  # let the watcher start
        write_pool(pool_file, "resnet152", name="one")
        for _ in range(100):
            if [m["name"] for m in (await client.get("/v1/models")).json()] == ["resnet152"]:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the pool file change was not picked up")
        assert (await served_model(client)).json()["model"]["name"] == "resnet152"


async def test_reload_under_concurrent_load_loses_no_request(model_repository, triton, pool_file):
    pools = [("resnet18", "resnet34"), ("resnet50", "resnet101"), ("resnet18", "resnet152")]
    async with gateway(model_repository, triton.grpc_url, pool_file, watch_pool=False) as client:
        stop = asyncio.Event()
        generation = 0  # bumped at each swap
        results: list[tuple[int, int, str | None]] = []  # (generation at start, status, model)

        async def load() -> None:
            while not stop.is_set():
                started_in = generation
                response = await served_model(client)
                model = response.json()["model"]["name"] if response.status_code == 200 else None
                results.append((started_in, response.status_code, model))

        async def served_in(current: int) -> None:  # a request started after the swap has finished
            while not any(g == current for g, _, _ in results):
                await asyncio.sleep(0.02)

        workers = [asyncio.create_task(load()) for _ in range(4)]
        await asyncio.wait_for(served_in(0), timeout=60)
        for models in pools * 2:
            write_pool(pool_file, *models)  # swapped while the workers' requests are in flight
            assert (await client.post("/admin/reload-pool", headers=ADMIN)).status_code == 200
            generation += 1
            await asyncio.wait_for(served_in(generation), timeout=60)
        stop.set()
        await asyncio.gather(*workers)
    assert {status for _, status, _ in results} == {200}, results
    # Requests started after a swap were served by that pool's choice at a clean grid (its biggest model).
    expected = {0: "resnet34", **{g: ("resnet34", "resnet101", "resnet152")[(g - 1) % 3] for g in range(1, 7)}}
    for started_in, _, model in results:
        assert model in (expected[started_in], expected.get(started_in + 1)), (started_in, model)


@pytest.fixture(scope="module")
async def explicit_triton(model_repository, tmp_path_factory):
    """A second real tritonserver, in explicit model-control mode, starting with resnet18 only."""
    async with running_triton(model_repository, ["resnet18"], tmp_path_factory.mktemp("tx") / "triton.log",
                              ["--model-control-mode=explicit", "--load-model=resnet18"]) as server:
        yield server


async def test_explicit_model_control_loads_before_and_unloads_after(model_repository, explicit_triton, tmp_path):
    pool_file = write_pool(tmp_path / "pool.yaml", "resnet18")
    direct = TritonClient(explicit_triton.grpc_url)
    try:
        async with gateway(model_repository, explicit_triton.grpc_url, pool_file, watch_pool=False,
                           triton__model_control="explicit") as client:
            assert not await direct.model_ready("resnet34")
            write_pool(pool_file, "resnet18", "resnet34")
            grown = await client.post("/admin/reload-pool", headers=ADMIN)
            assert grown.status_code == 200 and grown.json()["loaded"] == ["resnet34"]
            assert await direct.model_ready("resnet34")
            assert (await served_model(client)).json()["model"]["name"] == "resnet34"

            write_pool(pool_file, "resnet34")
            shrunk = await client.post("/admin/reload-pool", headers=ADMIN)
            assert shrunk.status_code == 200 and shrunk.json()["unloaded"] == ["resnet18"]
            assert not await direct.model_ready("resnet18")
            assert (await served_model(client)).status_code == 200
    finally:
        await direct.close()


async def test_a_model_that_is_not_ready_falls_back_to_the_nearest_ready_one(model_repository, explicit_triton,
                                                                              tmp_path):
    pool_file = write_pool(tmp_path / "pool.yaml", "resnet18", "resnet34", "resnet50")
    direct = TritonClient(explicit_triton.grpc_url)
    try:
        for name in ("resnet18", "resnet34", "resnet50"):
            await direct.load_model(name)
        async with gateway(model_repository, explicit_triton.grpc_url, pool_file, watch_pool=False) as client:
            assert (await served_model(client)).json()["model"]["name"] == "resnet50"
            await direct.unload_model("resnet50")  # taken away behind the gateway's back
            response = await served_model(client)
            assert response.status_code == 200
            body = response.json()["model"]
            assert (body["name"], body["fallback_from"], body["selected_by"]) == (
                "resnet34", "resnet50", "fallback:interpolation")
            assert response.headers["x-fallback-from"] == "resnet50"
            pinned = await client.post("/v2/models/resnet50/infer", json={"inputs": [
                {"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [0.0] * 150528}]})
            assert pinned.status_code == 503 and pinned.json()["code"] == "model_not_ready"
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert {m["name"]: m["ready"] for m in ready.json()["models"]}["resnet50"] is False
    finally:
        await direct.close()


async def test_a_reload_keeps_the_budget_spent_and_counts_requests_that_straddle_it(fake_repository, tmp_path):
    """online-budget on the in-process fake backend: the new pool's policy takes over what the old one spent,
    and a request that started before the swap and ends after it is charged to the new policy."""
    import numpy as np

    from gateway.serving.runtime import running
    from tests.support.backend import FakeBackend

    pool_file = write_pool(tmp_path / "pool.yaml", "resnet18", "resnet34", name="small")
    settings = settings_for(fake_repository, pool_file=str(pool_file), watch_pool=False, carbon__intensity=300.0,
                            policy__name="online-budget", policy__budget_g=1.0, policy__period_hours=24.0)
    backend = FakeBackend(("resnet18", "resnet34", "resnet50", "resnet101"), delay_s=0.3)
    batch = np.zeros((1, 3, 224, 224), dtype=np.float32)
    async with running(settings, backend) as runtime:
        service = runtime.service
        first = await service.run(batch)
        spent = service.policy.spent_g
        assert spent > 0
        straddling = asyncio.create_task(service.run(batch))
        await asyncio.sleep(0.05)  # the request is in Triton now
        write_pool(pool_file, "resnet50", "resnet101", name="big")
        old_policy = service.policy
        await runtime.reloader.reload("test")
        assert service.policy is not old_policy and service.pool.name == "big"
        assert service.policy.spent_g == spent  # taken over, not renewed
        second = await straddling
        assert second.decision.model.name == first.decision.model.name  # it chose from the old pool
        assert service.policy.spent_g == pytest.approx(2 * spent)  # and was charged to the new policy
        assert old_policy.spent_g == spent


async def test_a_large_pool_file_is_parsed_off_the_event_loop_and_an_absurd_one_refused(fake_repository, tmp_path,
                                                                                       monkeypatch):
    """A 10 MB pool file stalled every route for 20 s: now the file is capped, and it is parsed and its policy
    built on a worker thread. (Which thread, not how long the loop waited: a timing flaked on a busy machine.)"""
    import threading

    from gateway.errors import ReloadRejected
    from gateway.pool import MAX_POOL_FILE_BYTES
    from gateway.serving import reload
    from gateway.serving.runtime import running
    from tests.support.backend import FakeBackend

    threads = []
    for name in ("load_pool", "make_policy"):
        def spy(*args, _real=getattr(reload, name), **kwargs):
            threads.append(threading.current_thread() is threading.main_thread())
            return _real(*args, **kwargs)
        monkeypatch.setattr(reload, name, spy)
    pool_file = write_pool(tmp_path / "pool.yaml", "resnet18", "resnet34", name="small")
    settings = settings_for(fake_repository, pool_file=str(pool_file), watch_pool=False)
    async with running(settings, FakeBackend(("resnet18", "resnet34"))) as runtime:
        entries = "".join(f"  - {{name: m{i}, energy_mj: {i + 1}, error_rate: 5, energy_source: padding-padding}}\n"
                          for i in range(12_000))
        pool_file.write_text(("models:\n" + entries)[:MAX_POOL_FILE_BYTES - 100].rpartition("\n")[0] + "\n")
        # Valid YAML at the cap, of a pool this backend cannot serve: refused, parsed and built off the loop.
        await _rejected(runtime.reloader.reload("test"))
        assert threads == [False, False]
        pool_file.write_text("models:\n" + "  - {name: m, energy_mj: 1, error_rate: 5}\n" * 4_000)
        with pytest.raises(ReloadRejected, match=f"over {MAX_POOL_FILE_BYTES} bytes"):
            await runtime.reloader.reload("test")
        assert runtime.service.pool.name == "small"


async def _rejected(reload) -> None:
    from gateway.errors import ReloadRejected

    with pytest.raises(ReloadRejected) as rejected:
        await reload
    # One readable log line, however many models the file names.
    assert " more; it has" in str(rejected.value) and len(str(rejected.value)) < 1000
