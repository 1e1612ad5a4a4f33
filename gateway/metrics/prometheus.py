"""The Prometheus ``MetricsSink``: metric names per Prometheus conventions (base units, ``_total`` counters).

Works with several uvicorn workers: when ``PROMETHEUS_MULTIPROC_DIR`` is set, every worker writes
its samples there and ``/metrics`` aggregates all of them, so totals are correct whichever worker
answers the scrape. The shared files hold no ``process_*`` metrics, so a scrape then reads them from
/proc for the main process and each worker, labelled ``pid`` and ``role`` (``ServingProcesses``).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram,
                               ProcessCollector, generate_latest, multiprocess)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .sink import GatewaySnapshot

PREFIX = "carbon_gateway"
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ENERGY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0)
CARBON_STATUSES = ("live", "stale", "forecast", "default")
# Known up front, so each series exists at 0 before the first reload: an increase() sees that reload.
RELOAD_TRIGGERS = ("admin", "file", "sighup")
RELOAD_RESULTS = ("applied", "rejected")
PROC = Path("/proc")


class PrometheusSink:
    """The gateway's ``MetricsSink`` as Prometheus series in ``registry``.

    Gauges keep the most recent value across workers (``multiprocess_mode="mostrecent"``).
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, labels, registry=registry, multiprocess_mode="mostrecent")

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Histogram:
            return Histogram(f"{PREFIX}_{name}", doc, labels, registry=registry, buckets=buckets)

        self._requests = counter("requests_total", "Requests by route, model and outcome.",
                                 ("route", "model", "outcome"))
        self._latency = histogram("request_duration_seconds", "End-to-end request latency at the gateway.",
                                  ("route", "model"), LATENCY_BUCKETS)
        self._inferences = counter("inferences_total", "Images inferred, by model.", ("model",))
        self._energy = counter("energy_joules_total", "Energy charged to requests, by model and meter.",
                               ("model", "meter"))
        self._idle_energy = counter("idle_energy_joules_total", "Measured energy not attributable to any request.",
                                    ("meter",))
        self._measured_energy = counter("measured_energy_joules_total", "Energy the meter measured in all.",
                                        ("meter",))
        self._fallbacks = counter("fallbacks_total", "Requests served by a stand-in because the chosen model "
                                  "was not ready.", ("chosen", "served_by"))
        self._pool_reloads = counter("pool_reloads_total", "Pool reloads by trigger and result.",
                                     ("trigger", "result"))
        for trigger in RELOAD_TRIGGERS:
            for result in RELOAD_RESULTS:
                self._pool_reloads.labels(trigger, result)
        self._co2 = counter("co2_grams_total", "CO2eq charged to requests (energy x intensity x PUE), by model.",
                            ("model",))
        self._request_energy = histogram("request_energy_joules", "Energy per request: its measured share where a "
                                         "meter exists, else the pool estimate.", ("model",), ENERGY_BUCKETS)
        self._dropped_spans = counter("dropped_spans_total", "Request spans that a worker could not report to the "
                                      "shared energy sampler (their energy counts as idle).")
        self._carbon_intensity = gauge("carbon_intensity_grams_per_kwh", "Carbon intensity the selector uses now.")
        self._window_low = gauge("carbon_window_low_grams_per_kwh", "C_low of the selector's window.")
        self._window_high = gauge("carbon_window_high_grams_per_kwh", "C_high of the selector's window.")
        self._carbon_age = gauge("carbon_intensity_age_seconds", "Age of the carbon-intensity value in use.")
        self._carbon_source_up = gauge("carbon_source_up", "1 if the carbon source answered at the last poll.",
                                       ("source",))
        self._carbon_status = gauge("carbon_status", "1 for the state of the value in use: live, stale, forecast, "
                                    "default.", ("status",))
        self._selected_model = gauge("selected_model", "1 for the model the policy picks at the current intensity.",
                                     ("model",))
        self._expected_error = gauge("expected_error_ratio", "Expected error rate (0-1) of the model the policy "
                                     "picks now.")
        self._meter_info = gauge("energy_meter_info", "The energy meter in use (1).", ("meter", "measured"))
        self._profiled_energy = gauge("model_profiled_energy_joules", "The pool's profiled energy per inference, "
                                      "by model.", ("model",))
        self._meter_up = gauge("energy_meter_up", "1 if the energy meter answered its last reading.", ("meter",))
        self._triton_up = gauge("triton_up", "1 if Triton answered the last readiness check.")
        self._own_cpu = counter("own_cpu_seconds_total", "CPU seconds the gateway's serving processes spent.")
        self._state_store_up = gauge("policy_state_store_up", "1 if the policy's state store answered its last "
                                     "exchange; 0: this process serves on its own account.")
        self._history_hours = gauge("policy_history_hours", "Hours of observed intensity the policy plans with.")
        self._period_requests = gauge("policy_period_requests", "Requests the fleet served this period (the "
                                      "policy's account, as this process knows it).")
        self._period_error = gauge("policy_period_mean_error_ratio", "The fleet's mean error rate (0-1) this "
                                   "period, against the policy's target.")
        self._target_error = gauge("policy_target_error_ratio", "The mean error rate (0-1) the policy promises "
                                   "over each period.")
        self._own_energy = counter("own_energy_joules_total", "Estimated energy of the gateway's own CPU time "
                                   "(CPU seconds x energy.gateway_watts_per_core): an estimate, not a meter.")

    def request(self, route: str, model: str, outcome: str, seconds: float) -> None:
        self._requests.labels(route, model, outcome).inc()
        self._latency.labels(route, model).observe(seconds)

    def inferences(self, model: str, count: int) -> None:
        self._inferences.labels(model).inc(count)

    def energy(self, model: str, meter: str, joules: float, co2_g: float | None) -> None:
        self._energy.labels(model, meter).inc(joules)
        if co2_g is not None:
            self._co2.labels(model).inc(co2_g)

    def request_energy(self, model: str, joules: float) -> None:
        self._request_energy.labels(model).observe(joules)

    def measured(self, meter: str, joules: float, idle_joules: float) -> None:
        self._measured_energy.labels(meter).inc(joules)
        self._idle_energy.labels(meter).inc(idle_joules)

    def meter_up(self, meter: str, up: bool) -> None:
        self._meter_up.labels(meter).set(1 if up else 0)

    def dropped_span(self) -> None:
        self._dropped_spans.inc()

    def fallback(self, chosen: str, served_by: str) -> None:
        self._fallbacks.labels(chosen, served_by).inc()

    def pool_reload(self, trigger: str, result: str) -> None:
        self._pool_reloads.labels(trigger, result).inc()

    def triton_up(self, up: bool) -> None:
        self._triton_up.set(1 if up else 0)

    def gateway_cpu(self, seconds: float, joules: float) -> None:
        self._own_cpu.inc(seconds)
        self._own_energy.inc(joules)

    def policy_state(self, store_up: bool, history_hours: float, served: float, mean_error: float | None,
                     target_error: float) -> None:
        self._state_store_up.set(1 if store_up else 0)
        self._target_error.set(target_error / 100.0)
        self._history_hours.set(history_hours)
        self._period_requests.set(served)
        if mean_error is not None:
            self._period_error.set(mean_error / 100.0)

    def snapshot(self, state: GatewaySnapshot) -> None:
        self._carbon_intensity.set(state.intensity)
        self._window_low.set(state.window_low)
        self._window_high.set(state.window_high)
        self._carbon_age.set(state.carbon_age_s)
        self._carbon_source_up.labels(state.carbon_source).set(1 if state.carbon_source_up else 0)
        for status in CARBON_STATUSES:
            self._carbon_status.labels(status).set(1 if state.carbon_status == status else 0)
        for model, joules in state.profiled_joules.items():
            self._selected_model.labels(model).set(1 if model == state.selected_model else 0)
            self._profiled_energy.labels(model).set(joules)
        self._expected_error.set(state.expected_error_ratio)
        self._meter_info.labels(state.meter, "true" if state.measured else "false").set(1)
        if not state.measured:  # a meter's own sampler reports whether it answers
            self._meter_up.labels(state.meter).set(1)

    def render(self) -> tuple[bytes, str]:
        """The exposition text for a scrape, aggregated over workers in multiprocess mode."""
        if MULTIPROCESS:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(ServingProcesses(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])))
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class ServingProcesses(Collector):
    """``process_*`` metrics (CPU, memory, file descriptors, start time) of every process of a multi-worker
    gateway, labelled ``pid`` and ``role`` (``main``: the process that ran ``serve``; ``worker``).

    Whichever worker accepts a scrape answers it, so its own ``ProcessCollector`` would describe one worker
    at random; this reads /proc for all of them instead.
    """

    def __init__(self, directory: Path, proc: Path = PROC) -> None:
        self.directory = directory
        self.proc = proc

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for pid, role in serving_processes(self.directory, self.proc).items():
            for family in self._one(pid).collect():
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "pid": str(pid), "role": role}, sample.value)
        yield from families.values()

    def _one(self, pid: int) -> ProcessCollector:
        return ProcessCollector(pid=lambda: pid, proc=str(self.proc), registry=None)


def serving_processes(directory: Path, proc: Path = PROC) -> dict[int, str]:
    """The live processes of this gateway, ``{pid: role}``: its main process and the main process's workers.

    Each of them writes metric files named after its pid in ``directory``; pids of earlier runs left there, and
    the main process's other children (a local Triton), are not the main process's workers.
    """
    written = {int(match[1]) for path in directory.glob("*.db") if (match := re.search(r"_(\d+)\.db$", path.name))}
    main = os.getppid() if os.getppid() in written else os.getpid()  # answered by a worker, or by the only process
    roles = {main: "main"}
    roles.update({pid: "worker" for pid in sorted(written - {main}) if _parent_pid(pid, proc) == main})
    return roles


def _parent_pid(pid: int, proc: Path) -> int | None:
    """The parent of ``pid`` from /proc/<pid>/stat, or None when it is gone."""
    try:
        stat = (proc / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    return int(stat.rsplit(b")", 1)[1].split()[1])  # after "pid (comm)": state, then ppid


@functools.cache
def process_sink() -> PrometheusSink:
    """This process's sink on the default registry (made once: a registry refuses a metric twice)."""
    return PrometheusSink()


def require_multiprocess() -> None:
    """Raise unless ``PROMETHEUS_MULTIPROC_DIR`` was set before prometheus_client was imported (as
    ``serve --workers N`` does), so that this process's samples join the workers'."""
    from prometheus_client import values

    if not MULTIPROCESS or values.ValueClass is values.MutexValue:
        raise RuntimeError("a shared meter needs PROMETHEUS_MULTIPROC_DIR set before prometheus_client is imported")
