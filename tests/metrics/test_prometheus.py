"""Metrics as operators get them: a real Prometheus scrapes a two-worker gateway and the real Triton.
(The dashboard against two replicas: tests/test_dashboard.py.)"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import dashboard
from gateway.testing.processes import GatewayProcess
from tests.support.prometheus import ALERTS, alert_names, query, running_prometheus, wait_for

from tests.support.data import IMAGES
from tests.support.gateway import pids_that_served

CLASSIFY_REQUESTS = 12


class Gateway(NamedTuple):
    url: str
    multiproc_dir: Path
    pid: int


def samples(text: str, name: str) -> list[tuple[dict, float]]:
    return [(s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name]


@pytest.fixture(scope="module")
def gateway(triton, model_repository, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gateway")
    env_dir = workdir / "prometheus-multiproc"
    env_dir.mkdir()
    with GatewayProcess("--triton", triton.grpc_url, "--repository", str(model_repository), "--workers", "2",
                        "--carbon-intensity", "120", "--c-low", "100", "--c-high", "300", "--log-level", "warning",
                        cwd=workdir, env={"PROMETHEUS_MULTIPROC_DIR": str(env_dir)}) as process:
        yield Gateway(process.url, env_dir, process.process.pid)


@pytest.fixture(scope="module")
def prometheus(gateway, triton, tmp_path_factory):
    triton_target = triton.metrics_url.removeprefix("http://").removesuffix("/metrics")
    with running_prometheus(tmp_path_factory.mktemp("prometheus"),
                            {"carbon-gateway": [gateway.url.removeprefix("http://")], "triton": [triton_target]},
                            rule_files=[ALERTS]) as url:
        yield url


def send_traffic(url: str, count: int) -> None:
    """``count`` classifications and one bad image, four at a time on fresh connections (so both workers
    get some)."""
    from concurrent.futures import ThreadPoolExecutor

    def classify(i: int) -> int:
        with httpx.Client(base_url=url, timeout=60) as client:  # one connection per request
            return client.post("/v1/classify", content=IMAGES[i % len(IMAGES)].read_bytes(),
                               headers={"content-type": "image/jpeg"}).status_code

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(classify, range(count))) == [200] * count
    assert httpx.post(f"{url}/v1/classify", content=b"junk", headers={"content-type": "image/jpeg"}).status_code == 415


def test_metrics_are_exact_across_workers_and_reach_prometheus(gateway, prometheus):
    gateway_url = gateway.url
    sent, bursts = 0, 0
    # Bursts until both workers have served some (the kernel decides who accepts), two at least, with
    # scrapes between them so that rates are not zero.
    while bursts < 2 or len(pids_that_served(gateway.multiproc_dir)) < 2:
        assert bursts < 6, "one worker took every connection"
        if bursts:
            time.sleep(2.5)
        send_traffic(gateway_url, CLASSIFY_REQUESTS // 2)
        sent, bursts = sent + CLASSIFY_REQUESTS // 2, bursts + 1

    # Whichever worker answers the scrape reports the sum over both.
    for _ in range(4):
        text = httpx.get(f"{gateway_url}/metrics", timeout=10).text
        success = sum(v for labels, v in samples(text, "carbon_gateway_requests_total")
                      if labels["outcome"] == "success")
        rejected = sum(v for labels, v in samples(text, "carbon_gateway_requests_total")
                       if labels["outcome"] == "rejected")
        assert (success, rejected) == (sent, bursts)
        energy = {labels["model"]: v for labels, v in samples(text, "carbon_gateway_energy_joules_total")}
        assert set(energy) == {"resnet152"}  # 120 g/kWh in a 100..300 window: the big model
        co2 = sum(v for _, v in samples(text, "carbon_gateway_co2_grams_total"))
        assert co2 == pytest.approx(energy["resnet152"] / 3.6e6 * 120.0)
        assert samples(text, "carbon_gateway_carbon_intensity_grams_per_kwh")[0][1] == 120.0

    wait_for(prometheus, 'sum(carbon_gateway_requests_total{outcome="success"})', sent)
    wait_for(prometheus, 'sum(carbon_gateway_selected_model{model="resnet152"})', 1)
    time.sleep(2.5)


def test_the_gateways_own_cpu_and_its_energy_estimate_are_exported(gateway):
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    (cpu,) = [v for _, v in samples(text, "carbon_gateway_own_cpu_seconds_total")]
    (joules,) = [v for _, v in samples(text, "carbon_gateway_own_energy_joules_total")]
    assert cpu > 0 and joules == pytest.approx(10.0 * cpu)  # energy.gateway_watts_per_core defaults to 10 W


def test_the_alerts_are_loaded_and_quiet_on_a_healthy_gateway(prometheus, gateway):
    response = httpx.get(f"{prometheus}/api/v1/rules", timeout=10)
    rules = [rule for group in response.json()["data"]["groups"] for rule in group["rules"]]
    assert [rule["name"] for rule in rules] == alert_names(), rules
    assert all(rule["health"] == "ok" for rule in rules), rules
    firing = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert not [a for a in firing if a["state"] == "firing"], firing


def test_metric_names_follow_prometheus_conventions(gateway):
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(text) if f.name.startswith("carbon_gateway_")}
    assert len(families) >= 15
    for name, family in families.items():
        if family.type == "counter":
            assert any(s.name == f"{name}_total" for s in family.samples), f"counter {name} lacks _total"
        # Base units in the name: joules, seconds, grams.
        if "energy" in name and not name.endswith(("_info", "_up")):  # unitless
            assert name.endswith("_joules"), name
        if "duration" in name or "age" in name:
            assert name.endswith("_seconds"), name
        if "co2" in name:
            assert name.endswith("_grams"), name


def test_measured_over_profiled_energy_is_one_when_requests_are_charged_the_profile(prometheus, gateway):
    (target,) = [t for t in dashboard.targets() if t.panel["title"].startswith("Measured / profiled energy")]
    result = query(prometheus, dashboard.expand(target.expr, dashboard.resolve_all(prometheus)))
    assert {r["metric"]["model"]: float(r["value"][1]) for r in result} == {"resnet152": pytest.approx(1.0)}



def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])


def test_process_metrics_cover_the_main_process_and_each_worker(gateway, prometheus):
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                 "process_start_time_seconds"):
        roles = {int(labels["pid"]): labels["role"] for labels, _ in samples(text, name)}
        workers = {pid for pid, role in roles.items() if role == "worker"}
        assert roles[gateway.pid] == "main" and len(workers) == 2, (name, roles)
        assert {parent_pid(pid) for pid in workers} == {gateway.pid}
        assert {int(pid) for pid in pids_that_served(gateway.multiproc_dir)} <= workers
    resident = [v for _, v in samples(text, "process_resident_memory_bytes")]
    assert all(v > 10e6 for v in resident)  # a Python process with the gateway imported
    wait_for(prometheus, 'count(process_cpu_seconds_total{job="carbon-gateway"})', 3)


def test_serving_processes_are_the_main_process_and_its_children_that_write_metrics(tmp_path):
    from gateway.metrics.prometheus import serving_processes

    def sleeper() -> subprocess.Popen:
        return subprocess.Popen(["sleep", "60"])

    worker, triton, gone = sleeper(), sleeper(), sleeper()
    gone.kill()
    gone.wait()
    try:
        for pid in (os.getpid(), worker.pid, gone.pid):  # a local Triton writes no metric files
            (tmp_path / f"counter_{pid}.db").touch()
        (tmp_path / f"histogram_{worker.pid}.db").touch()
        assert serving_processes(tmp_path) == {os.getpid(): "main", worker.pid: "worker"}
    finally:
        for process in (worker, triton):
            process.kill()
            process.wait()
            process.wait()
