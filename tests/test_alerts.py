"""The alerts: valid rules, and each fires on a failing series and stays silent on a healthy one (promtool)."""

import shutil
import subprocess

import pytest

from tests.support.data import PROJECT
from tests.support.prometheus import ALERTS, alert_names

ALERT_NAMES = alert_names()


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: `make test` installs Debian's prometheus package, which has it")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=PROJECT)


def test_the_rules_and_the_config_that_loads_them_are_valid(promtool):
    rules = run(promtool, "check", "rules", str(ALERTS))
    assert rules.returncode == 0 and f"{len(ALERT_NAMES)} rules found" in rules.stdout, rules.stdout + rules.stderr
    config = run(promtool, "check", "config", str(PROJECT / "deploy" / "prometheus" / "prometheus.yml"))
    assert config.returncode == 0 and f"{len(ALERT_NAMES)} rules found" in config.stdout, config.stdout + config.stderr


def test_each_alert_fires_on_failure_and_not_on_health(promtool):
    tested = run(promtool, "test", "rules", str(PROJECT / "tests" / "alerts" / "alerts_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_tested_and_has_a_runbook_entry():
    import yaml

    alerts = ALERT_NAMES
    assert len(alerts) == 13, alerts  # the count promtool must find
    tests = yaml.safe_load((PROJECT / "tests" / "alerts" / "alerts_test.yml").read_text())["tests"]
    for case in tests:
        assert {t["alertname"] for t in case["alert_rule_test"]} == set(alerts), case["name"]
    runbook = (PROJECT / "docs" / "operations.md").read_text()
    missing = [alert for alert in alerts if f"### {alert}" not in runbook]
    assert not missing, f"no runbook entry in docs/operations.md for {missing}"
