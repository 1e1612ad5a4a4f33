"""Write deploy/prometheus/alerts.yml as the Prometheus Operator's PrometheusRule, for Kubernetes.

alerts.yml is the one source of the alerts: Prometheus loads it as is (compose), and this script
wraps its groups in deploy/k8s/components/monitoring/prometheusrule.yaml. Rerun it after editing
alerts.yml; tests/test_deploy_hardening.py fails while the two differ.

    python deploy/prometheus/prometheusrule.py            # write
    python deploy/prometheus/prometheusrule.py --check    # exit 1 if the committed file is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ALERTS = Path(__file__).resolve().parent / "alerts.yml"
RULE = Path(__file__).resolve().parents[1] / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"

HEADER = """\
# Generated from deploy/prometheus/alerts.yml by deploy/prometheus/prometheusrule.py: edit alerts.yml
# and rerun the script, never this file. `release` is the label kube-prometheus-stack's ruleSelector
# picks by default (its Helm release name); docs/operations.md "Deploying" says how to change it.
"""


def render(alerts: Path = ALERTS) -> str:
    groups = yaml.safe_load(alerts.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "carbon-gateway",
            "labels": {
                "app.kubernetes.io/name": "carbon-gateway",
                "app.kubernetes.io/part-of": "carbon-gateway",
                "release": "kube-prometheus-stack",
            },
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=1000, allow_unicode=True)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if RULE.exists() and RULE.read_text() == text:
            return 0
        print(f"{RULE} is stale: run python deploy/prometheus/prometheusrule.py", file=sys.stderr)
        return 1
    RULE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
