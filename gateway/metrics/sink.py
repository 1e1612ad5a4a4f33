"""The one way metrics leave the core: a ``MetricsSink`` that the service, the energy accountant and the
reloader are given (as client_python's collectors are given a ``registry=``).

The core calls the sink with what happened, in its own terms; ``gateway.metrics.prometheus.PrometheusSink``
turns that into Prometheus series, and ``NullSink`` (the default) drops it. Nothing in the core imports
prometheus_client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class GatewaySnapshot:
    """What the gateway would decide now, and on what basis: the gauges of a scrape."""

    intensity: float
    window_low: float
    window_high: float
    carbon_age_s: float
    carbon_source: str
    carbon_source_up: bool
    carbon_status: str  # live, stale, forecast or default
    selected_model: str
    expected_error_ratio: float
    profiled_joules: Mapping[str, float]  # per pool model, per inference
    meter: str
    measured: bool  # whether a meter measures (else the pool's estimates are charged)


class MetricsSink(Protocol):
    def request(self, route: str, model: str, outcome: str, seconds: float) -> None:
        """An inference request was answered (any status)."""

    def inferences(self, model: str, count: int) -> None:
        """``model`` inferred ``count`` images."""

    def energy(self, model: str, meter: str, joules: float, co2_g: float | None) -> None:
        """Energy (and its CO2, when known) charged to requests on ``model``."""

    def request_energy(self, model: str, joules: float) -> None:
        """One request's whole energy, once known."""

    def measured(self, meter: str, joules: float, idle_joules: float) -> None:
        """A sampling window: what the meter measured, and the part no request was charged."""

    def meter_up(self, meter: str, up: bool) -> None: ...

    def dropped_span(self) -> None:
        """A worker could not report a request's span to the shared meter."""

    def fallback(self, chosen: str, served_by: str) -> None: ...

    def pool_reload(self, trigger: str, result: str) -> None: ...

    def triton_up(self, up: bool) -> None: ...

    def gateway_cpu(self, seconds: float, joules: float) -> None:
        """CPU seconds the gateway's own process spent, and their estimated energy."""

    def snapshot(self, state: GatewaySnapshot) -> None: ...

    def policy_state(self, store_up: bool, history_hours: float, served: float, mean_error: float | None,
                     target_error: float) -> None:
        """After an exchange with the policy's state store: whether it answered, the hours of history the policy
        plans with, the fleet's requests and mean error (%) this period, as this process knows them, and the
        policy's target (%)."""


class NullSink:
    """Drops everything: for tools and tests that do not look at metrics."""

    def request(self, route: str, model: str, outcome: str, seconds: float) -> None:
        return None

    def inferences(self, model: str, count: int) -> None:
        return None

    def energy(self, model: str, meter: str, joules: float, co2_g: float | None) -> None:
        return None

    def request_energy(self, model: str, joules: float) -> None:
        return None

    def measured(self, meter: str, joules: float, idle_joules: float) -> None:
        return None

    def meter_up(self, meter: str, up: bool) -> None:
        return None

    def dropped_span(self) -> None:
        return None

    def fallback(self, chosen: str, served_by: str) -> None:
        return None

    def pool_reload(self, trigger: str, result: str) -> None:
        return None

    def triton_up(self, up: bool) -> None:
        return None

    def gateway_cpu(self, seconds: float, joules: float) -> None:
        return None

    def snapshot(self, state: GatewaySnapshot) -> None:
        return None

    def policy_state(self, store_up: bool, history_hours: float, served: float, mean_error: float | None,
                     target_error: float) -> None:
        return None
