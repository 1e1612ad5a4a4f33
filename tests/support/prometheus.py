"""A real ``prometheus`` for tests: it scrapes the given targets every second and answers instant queries."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway.testing.processes import free_port
from tests.support.data import PROJECT

ALERTS = PROJECT / "deploy" / "prometheus" / "alerts.yml"


def alert_names(rules: Path = ALERTS) -> list[str]:
    """The alerts a rules file defines, in its order."""
    import yaml

    return [rule["alert"] for group in yaml.safe_load(rules.read_text())["groups"] for rule in group["rules"]]


@contextmanager
def running_prometheus(workdir: Path, jobs: Mapping[str, Sequence[str]],
                       rule_files: Sequence[Path] = ()) -> Iterator[str]:
    """Prometheus scraping ``jobs`` (job name: ``host:port`` targets), ``rule_files`` loaded; yields its URL once
    it has scraped every target."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the `prometheus` binary is missing: `make test` installs Debian's prometheus package")
    for rules in rule_files:
        shutil.copy(rules, workdir / rules.name)
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [rules.name for rules in rule_files],
              "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}
                                 for job, targets in jobs.items()]}
    (workdir / "prometheus.yml").write_text(json.dumps(config))  # YAML reads JSON
    port = free_port()
    process = subprocess.Popen([binary, f"--config.file={workdir / 'prometheus.yml'}",
                                f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("prometheus did not start")
        # Targets reach the scrape loop some seconds after /-/ready (discovery updates are batched): a counter
        # first scraped after the traffic has no rate.
        for job, targets in jobs.items():
            wait_for(url, f'sum(up{{job="{job}"}})', len(targets))
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def query(prometheus: str, expr: str) -> list[dict]:
    """The instant vector ``expr`` evaluates to now (fails the test on a query Prometheus refuses)."""
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    assert response.status_code == 200, f"{expr}: {response.text}"
    return response.json()["data"]["result"]


def wait_for(prometheus: str, expr: str, expected: float, timeout: float = 30) -> float:
    """Wait until the first series of ``expr`` has the value ``expected``."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        result = query(prometheus, expr)
        if result:
            value = float(result[0]["value"][1])
            if value == expected:
                return value
        time.sleep(0.5)
    pytest.fail(f"{expr} = {value}, expected {expected}")
