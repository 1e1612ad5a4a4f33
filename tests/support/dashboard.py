"""The Grafana dashboard as tests read it: its panels, its queries, and those queries as Grafana sends them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "carbon-gateway.json"
#: What Grafana puts for ``$__rate_interval`` with a short range and a 1 s scrape interval, at the least.
RATE_INTERVAL = "1m"


@dataclass(frozen=True)
class Target:
    panel: dict[str, Any]
    expr: str
    legend: str

    @property
    def is_table(self) -> bool:
        return self.panel["type"] == "table"


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    """The panels that draw something (rows are only headings)."""
    return [panel for panel in load()["panels"] if panel["type"] != "row"]


def targets() -> list[Target]:
    return [Target(panel, target["expr"], target.get("legendFormat", ""))
            for panel in panels() for target in panel["targets"]]


def variables() -> list[dict[str, Any]]:
    return [var for var in load()["templating"]["list"] if var["type"] == "query"]


def label_values(prometheus: str, definition: str) -> list[str]:
    """What Grafana's ``label_values(selector, label)`` variable query lists, from the real Prometheus."""
    match = re.fullmatch(r"label_values\((.+), *(\w+)\)", definition)
    assert match, definition
    selector, label = match[1], match[2]
    response = httpx.get(f"{prometheus}/api/v1/label/{label}/values", params={"match[]": selector}, timeout=10)
    assert response.status_code == 200, response.text
    return sorted(response.json()["data"])


def resolve_all(prometheus: str) -> dict[str, str]:
    """Each variable set to All, as Grafana sends it: its ``allValue``, else a regex of every value it lists
    (each resolved against the variables before it, as Grafana chains them)."""
    values: dict[str, str] = {}
    for var in variables():
        listed = label_values(prometheus, expand(var["query"]["query"], values))
        values[var["name"]] = var.get("allValue") or "(" + "|".join(map(regex_escape, listed)) + ")"
    return values


def regex_escape(value: str) -> str:
    """A value in a PromQL regex string, as Grafana escapes it (the backslash doubled for the string literal)."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value)


def expand(expr: str, values: dict[str, str]) -> str:
    """``expr`` with ``$__rate_interval`` and the variables in ``values`` substituted."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    for name in sorted(values, key=len, reverse=True):  # $triton_job before $job
        expr = expr.replace(f"${name}", values[name])
    return expr


def metric_names(expr: str) -> set[str]:
    """The metrics a query selects (a name followed by its ``{...}`` selector)."""
    return set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))


def legend_labels(legend: str) -> set[str]:
    return set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))


def by_labels(expr: str) -> set[str]:
    """Every label a ``by (...)`` clause of the query keeps."""
    return {label.strip() for clause in re.findall(r"\bby \(([^)]*)\)", expr) for label in clause.split(",")}
