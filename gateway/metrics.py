"""Prometheus metrics, named per Prometheus conventions (base units, ``_total`` counters).

Works with several uvicorn workers: when ``PROMETHEUS_MULTIPROC_DIR`` is set, every worker writes
its samples there and ``/metrics`` aggregates all of them, so totals are correct whichever worker
answers the scrape.
"""

from __future__ import annotations

import os

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, REGISTRY,
                               generate_latest, multiprocess)

PREFIX = "carbon_gateway"
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ENERGY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0)

REQUESTS = Counter(f"{PREFIX}_requests_total", "Requests by route, model and outcome.",
                   ["route", "model", "outcome"])
LATENCY = Histogram(f"{PREFIX}_request_duration_seconds", "End-to-end request latency at the gateway.",
                    ["route", "model"], buckets=LATENCY_BUCKETS)
INFERENCES = Counter(f"{PREFIX}_inferences_total", "Images inferred, by model.", ["model"])
ENERGY = Counter(f"{PREFIX}_energy_joules_total", "Energy charged to requests, by model and meter.",
                 ["model", "meter"])
IDLE_ENERGY = Counter(f"{PREFIX}_idle_energy_joules_total", "Measured energy not attributable to any request.",
                      ["meter"])
MEASURED_ENERGY = Counter(f"{PREFIX}_measured_energy_joules_total", "Energy the meter measured in all.", ["meter"])
FALLBACKS = Counter(f"{PREFIX}_fallbacks_total", "Requests served by a stand-in because the chosen model "
                    "was not ready.", ["chosen", "served_by"])
POOL_RELOADS = Counter(f"{PREFIX}_pool_reloads_total", "Pool reloads by trigger and result.", ["trigger", "result"])
CO2 = Counter(f"{PREFIX}_co2_grams_total", "CO2eq charged to requests (energy x intensity x PUE), by model.",
              ["model"])
REQUEST_ENERGY = Histogram(f"{PREFIX}_request_energy_joules", "Energy per request: its measured share where a meter "
                           "exists, else the pool estimate.", ["model"],
                           buckets=ENERGY_BUCKETS)

_gauge_mode = {"multiprocess_mode": "mostrecent"}
CARBON_INTENSITY = Gauge(f"{PREFIX}_carbon_intensity_grams_per_kwh", "Carbon intensity the selector uses now.",
                         **_gauge_mode)
CARBON_WINDOW_LOW = Gauge(f"{PREFIX}_carbon_window_low_grams_per_kwh", "C_low of the selector's window.",
                          **_gauge_mode)
CARBON_WINDOW_HIGH = Gauge(f"{PREFIX}_carbon_window_high_grams_per_kwh", "C_high of the selector's window.",
                           **_gauge_mode)
CARBON_AGE = Gauge(f"{PREFIX}_carbon_intensity_age_seconds", "Age of the carbon-intensity value in use.",
                   **_gauge_mode)
CARBON_SOURCE_UP = Gauge(f"{PREFIX}_carbon_source_up", "1 if the carbon source answered at the last poll.",
                         ["source"], **_gauge_mode)
CARBON_STATUS = Gauge(f"{PREFIX}_carbon_status", "1 for the state of the value in use: live, stale, forecast, "
                      "default.", ["status"], **_gauge_mode)
SELECTED_MODEL = Gauge(f"{PREFIX}_selected_model", "1 for the model the policy picks at the current intensity.",
                       ["model"], **_gauge_mode)
EXPECTED_ERROR = Gauge(f"{PREFIX}_expected_error_ratio",
                       "Expected error rate (0-1) of the model the policy picks now.", **_gauge_mode)
METER_INFO = Gauge(f"{PREFIX}_energy_meter_info", "The energy meter in use (1).", ["meter", "measured"],
                   **_gauge_mode)
PROFILED_ENERGY = Gauge(f"{PREFIX}_model_profiled_energy_joules", "The pool's profiled energy per inference, by model.",
                        ["model"], **_gauge_mode)
METER_UP = Gauge(f"{PREFIX}_energy_meter_up", "1 if the energy meter answered its last reading.", ["meter"],
                 **_gauge_mode)
DROPPED_SPANS = Counter(f"{PREFIX}_dropped_spans_total", "Request spans that a worker could not report to the "
                        "shared energy sampler (their energy counts as idle).")
TRITON_UP = Gauge(f"{PREFIX}_triton_up", "1 if Triton answered the last readiness check.", **_gauge_mode)


def render() -> tuple[bytes, str]:
    """The exposition text for a scrape, aggregated over workers in multiprocess mode."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
