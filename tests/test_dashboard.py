"""The Grafana dashboard against two gateway replicas: two real ``carbon-gateway serve`` processes (two workers
each), scraped by a real Prometheus as two targets of one job, in front of one real Triton.

Each query is evaluated as Grafana sends it (every variable on All, resolved from that Prometheus) and must draw
one line per legend, not one per replica; the status table alone is per replica, and says so in its ``by``.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import httpx
import pytest
import yaml

from gateway.triton import TritonClient
from tests.support import dashboard
from gateway.testing.processes import GatewayProcess, running_triton
from tests.support.prometheus import query, running_prometheus, wait_for

from tests.support.data import IMAGES

MODELS = ("resnet18", "resnet34")  # at 120 g/kWh in a 100..300 window the policy picks resnet34
TOKEN = "dashboard-test-admin-token"
JPEG = {"content-type": "image/jpeg"}
GATEWAY_SELECTOR = 'job=~"$job", namespace=~"$namespace", instance=~"$instance"'
TRITON_SELECTOR = 'job=~"$triton_job", namespace=~"$namespace"'
# Series only a GPU host has: the CPU Triton of the tests exports none of them.
GPU_ONLY = {"nv_gpu_utilization", "nv_gpu_power_usage", "nv_energy_consumption"}
# Labels that name one replica, or one process of it.
REPLICA_LABELS = {"instance", "pod", "kubernetes_pod_name", "pid"}


class Replicas(NamedTuple):
    urls: list[str]
    triton_grpc_url: str


@pytest.fixture(scope="module")
async def small_triton(model_repository, tmp_path_factory):
    """A real tritonserver of its own, in explicit model control, so that a model can be taken away."""
    async with running_triton(model_repository, list(MODELS), tmp_path_factory.mktemp("triton") / "triton.log",
                              ["--model-control-mode=explicit", *(f"--load-model={m}" for m in MODELS)]) as server:
        yield server


@pytest.fixture(scope="module")
def replicas(small_triton, model_repository, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("replicas")
    pool = yaml.safe_load((model_repository / "pool.yaml").read_text())
    pool["models"] = [m for m in pool["models"] if m["name"] in MODELS]
    (workdir / "pool.yaml").write_text(yaml.safe_dump(pool))
    (workdir / "gateway.yaml").write_text(yaml.safe_dump({"admin_token": TOKEN, "limits": {"max_in_flight": 2}}))
    args = ("--config", str(workdir / "gateway.yaml"), "--triton", small_triton.grpc_url,
            "--repository", str(model_repository), "--pool", str(workdir / "pool.yaml"), "--workers", "2",
            "--carbon-intensity", "120", "--c-low", "100", "--c-high", "300", "--log-level", "warning")
    (workdir / "first").mkdir()
    (workdir / "second").mkdir()
    with GatewayProcess(*args, cwd=workdir / "first") as first, GatewayProcess(*args, cwd=workdir / "second") as second:
        yield Replicas([first.url, second.url], small_triton.grpc_url)


@pytest.fixture(scope="module")
async def prometheus(replicas, small_triton, tmp_path_factory):
    triton_target = small_triton.metrics_url.removeprefix("http://").removesuffix("/metrics")
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), {
            "carbon-gateway": [url.removeprefix("http://") for url in replicas.urls],
            "triton": [triton_target]}) as url:
        await exercise(replicas, url)
        yield url


def classify(url: str) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=60) as client:  # a fresh connection: either worker may take it
        return client.post("/v1/classify", content=IMAGES[0].read_bytes(), headers=JPEG)


async def exercise(replicas: Replicas, prometheus: str) -> None:
    """Everything the dashboard draws, on both replicas: traffic on both models, a refused image, a fallback,
    a throttled burst and a pool reload, with scrapes between them so that rates are not zero."""
    first, second = replicas.urls
    triton = TritonClient(replicas.triton_grpc_url)
    try:
        await triton.unload_model("resnet34")  # behind the gateways' back: resnet18 stands in
        fallback = classify(first)
        assert (fallback.status_code, fallback.headers.get("x-fallback-from")) == (200, "resnet34"), fallback.text
        await triton.load_model("resnet34")
    finally:
        await triton.close()
    for _ in range(3):
        for url in replicas.urls:
            assert [classify(url).status_code for _ in range(3)] == [200] * 3
            assert httpx.post(f"{url}/v1/classify", content=b"junk", headers=JPEG).status_code == 415
        time.sleep(1.5)
    for _ in range(5):  # two in flight per worker: a burst of twelve has some refused
        with ThreadPoolExecutor(12) as pool:
            if 429 in {r.status_code for r in pool.map(classify, [second] * 12)}:
                break
    else:
        pytest.fail("no request was throttled")
    reload = httpx.post(f"{first}/admin/reload-pool", headers={"authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert reload.status_code == 200, reload.text
    wait_for(prometheus, 'sum(carbon_gateway_pool_reloads_total{trigger="admin"})', 1)
    wait_for(prometheus, 'count(sum by (instance) (carbon_gateway_requests_total{outcome="throttled"}))', 1)
    time.sleep(2)


def test_every_query_selects_the_chosen_jobs_namespaces_and_instances():
    for target in dashboard.targets():
        for name in dashboard.metric_names(target.expr):
            selector = TRITON_SELECTOR if name.startswith("nv_") else GATEWAY_SELECTOR
            assert f"{name}{{{selector}" in target.expr, (target.panel["title"], name)
        assert not re.search(r"\b(carbon_gateway_\w+|process_\w+|up|nv_\w+)\b(?![{\w])", target.expr), target.expr


def test_the_variables_list_every_replica_and_work_without_a_namespace_label(prometheus, replicas):
    by_name = {var["name"]: var for var in dashboard.variables()}
    assert set(by_name) == {"job", "namespace", "instance", "triton_job"}
    assert all(var["multi"] and var["includeAll"] for var in by_name.values())
    assert by_name["namespace"]["allValue"] == ".*"  # matches the missing label too

    values = dashboard.resolve_all(prometheus)
    instances = dashboard.label_values(prometheus, dashboard.expand(by_name["instance"]["query"]["query"], values))
    assert instances == sorted(url.removeprefix("http://") for url in replicas.urls)
    assert dashboard.label_values(prometheus, by_name["namespace"]["query"]["query"].replace("$job", ".*")) == []
    assert values["job"] == "(carbon-gateway)"  # All is the gateways' jobs: `up` exists in every job


def test_every_query_returns_data_but_the_gpu_only_ones(prometheus):
    used = set().union(*(dashboard.metric_names(t.expr) for t in dashboard.targets()))
    assert {name for name in used if name.startswith(("nv_gpu_", "nv_energy"))} == GPU_ONLY
    values = dashboard.resolve_all(prometheus)
    empty = []
    for target in dashboard.targets():
        result = query(prometheus, dashboard.expand(target.expr, values))  # a GPU-only query must still parse
        if not result and not dashboard.metric_names(target.expr) & GPU_ONLY:
            empty.append(target.expr)
    assert not empty, f"dashboard queries without data: {empty}"


def test_no_panel_draws_a_line_per_replica(prometheus, replicas):
    values = dashboard.resolve_all(prometheus)
    for target in dashboard.targets():
        result = query(prometheus, dashboard.expand(target.expr, values))
        labels = set().union(*(series["metric"] for series in result)) - {"__name__"}
        if target.is_table:  # per replica on purpose: the by clause names the instance
            assert labels <= dashboard.by_labels(target.expr), (target.expr, labels)
            if "instance" in labels:
                assert len({series["metric"]["instance"] for series in result}) == len(replicas.urls), result
        else:  # each series is told apart by its legend, so no two replicas share one
            assert labels <= dashboard.legend_labels(target.legend), (target.panel["title"], target.expr, labels)
            assert not labels & REPLICA_LABELS, (target.panel["title"], labels)


def test_per_model_panels_have_one_series_per_model(prometheus):
    values = dashboard.resolve_all(prometheus)
    per_model = [t for t in dashboard.targets() if dashboard.legend_labels(t.legend) == {"model"}]
    assert len(per_model) >= 8
    for target in per_model:
        models = [series["metric"]["model"] for series in query(prometheus, dashboard.expand(target.expr, values))]
        assert sorted(models) == sorted(set(models)) and set(models) <= set(MODELS), (target.expr, models)


def test_the_status_table_is_instant():
    tables = [panel for panel in dashboard.panels() if panel["type"] == "table"]
    assert tables
    for target in (target for panel in tables for target in panel["targets"]):
        assert (target["instant"], target["range"], target["format"]) == (True, False, "table"), target


def test_every_panel_has_a_unit_and_no_panel_mixes_flags_with_measures():
    def is_flag(name: str) -> bool:  # a 0/1 series
        return name == "up" or name.endswith(("_up", "_status", "_info", "selected_model"))

    for panel in dashboard.panels():
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
        if panel["type"] == "table":
            continue
        kinds = {is_flag(name) for target in panel["targets"] for name in dashboard.metric_names(target["expr"])}
        assert len(kinds) == 1, panel["title"]


def test_the_gateway_still_says_whether_it_pays_for_itself(prometheus):
    (panel,) = [p for p in dashboard.panels() if p["title"].startswith("Does the gateway pay for itself?")]
    values = dashboard.resolve_all(prometheus)
    saved, own = (query(prometheus, dashboard.expand(t["expr"], values)) for t in panel["targets"])
    assert len(saved) == len(own) == 1
    assert float(own[0]["value"][1]) > 0
