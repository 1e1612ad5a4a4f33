"""Assemble a ``GatewayService`` from settings: the one place that turns configuration into parts."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from . import metrics
from .carbon import (CarbonMonitor, CarbonSource, CarbonSourceError, ElectricityMapsSource, StaticSource,
                     TraceReplaySource, UkCarbonIntensitySource, WattTimeSource, load_trace)
from .energy import EnergyAccountant, MeterError, SpanListener, SpanRecorder, SpanReporter, make_counter
from .labels import LabelsError, load_labels
from .pool import ModelPool, PoolError, load_pool
from .selection import SelectionPolicy, make_policy
from .reload import PoolReloader, ReloadRejected
from .service import GatewayService
from .settings import CarbonSettings, GatewaySettings
from .triton import TritonClient


def make_carbon_source(settings: CarbonSettings) -> CarbonSource:
    if settings.source == "trace":
        assert settings.trace_path is not None  # enforced by CarbonSettings
        trace = load_trace(settings.trace_path, settings.time_column, settings.value_column)
        return TraceReplaySource(trace, speedup=settings.speedup, start=settings.start,
                                 history_hours=settings.window_hours)
    if settings.source == "uk":
        return UkCarbonIntensitySource(settings.uk, http=settings.http)
    if settings.source == "electricitymaps":
        return ElectricityMapsSource(settings.electricitymaps, http=settings.http)
    if settings.source == "watttime":
        return WattTimeSource(settings.watttime, http=settings.http)
    return StaticSource(settings.intensity)


def make_monitor(settings: CarbonSettings) -> CarbonMonitor:
    c_low, c_high = settings.c_low, settings.c_high
    if settings.source == "watttime":  # a 0-100 percentile, whatever the observed range
        c_low, c_high = (0.0 if c_low is None else c_low), (100.0 if c_high is None else c_high)
    source = make_carbon_source(settings)
    poll_interval = settings.poll_interval_s
    if isinstance(source, TraceReplaySource):
        # A replayed trace changes every (step / speedup) wall seconds: poll at least that often.
        poll_interval = min(poll_interval, max(0.5, source.trace.typical_step / source.speedup))
    return CarbonMonitor(source, poll_interval=poll_interval,
                         window_hours=settings.window_hours, c_low=c_low, c_high=c_high,
                         default_intensity=settings.default_intensity, max_age=settings.max_age_s,
                         window_basis=settings.window_basis, forecast_interval=settings.forecast_interval_s,
                         startup_timeout=settings.startup_timeout_s)


logger = logging.getLogger(__name__)

#: What configuration problems raise; each message names the file or setting at fault.
CONFIG_ERRORS = (PoolError, LabelsError, CarbonSourceError, MeterError, ValueError)


@dataclass(frozen=True)
class Parts:
    """The configured pieces that need no running event loop or network."""

    pool: ModelPool
    policy: SelectionPolicy
    labels: tuple[str, ...]
    monitor: CarbonMonitor


def load_parts(settings: GatewaySettings) -> Parts:
    """Read and validate the pool, policy, labels and carbon source; raises one of ``CONFIG_ERRORS``."""
    pool = load_pool(settings.resolved_pool_file)
    return Parts(pool=pool, policy=make_policy(pool, settings.policy, pue=settings.pue),
                 labels=load_labels(settings.resolved_labels_file), monitor=make_monitor(settings.carbon))


def check_meter(settings: GatewaySettings) -> None:
    """Raise ``MeterError`` now, before anything starts, if the configured meter cannot be had."""
    counter = make_counter(settings.energy.meter, settings.energy.triton_metrics_url)
    if counter is not None:
        counter.close()


def make_accountant(settings: GatewaySettings) -> EnergyAccountant | None:
    counter = make_counter(settings.energy.meter, settings.energy.triton_metrics_url)
    if counter is None:
        return None
    return EnergyAccountant(counter, interval_s=settings.energy.sample_interval_s,
                            idle_power_w=settings.energy.idle_power_w, pue=settings.pue)


class SharedMeter(BaseModel):
    """Where the workers of a multi-worker gateway report their requests' spans: the parent's sampler."""

    socket: str
    meter: str


@contextmanager
def shared_meter(settings: GatewaySettings) -> Iterator[SharedMeter | None]:
    """Run the configured meter's sampler in this process, listening for the workers' spans.

    None when there is no meter (pool estimates need no sampler). ``PROMETHEUS_MULTIPROC_DIR`` must have
    been set before ``prometheus_client`` was imported, so that this process's metrics join the workers'.
    """
    from prometheus_client import values

    if not metrics.MULTIPROCESS or values.ValueClass is values.MutexValue:
        raise RuntimeError("a shared meter needs PROMETHEUS_MULTIPROC_DIR set before prometheus_client is imported")
    accountant = make_accountant(settings)
    if accountant is None:
        yield None
        return
    directory = tempfile.mkdtemp(prefix="carbon-gateway-energy-")  # short: a socket path has ~100 bytes
    listener = SpanListener(accountant, str(Path(directory) / "spans.sock"))
    listener.start()
    accountant.start()
    try:
        yield SharedMeter(socket=listener.socket_path, meter=accountant.name)
    finally:
        accountant.stop()
        listener.stop()
        shutil.rmtree(directory, ignore_errors=True)


def make_recorder(settings: GatewaySettings, shared: SharedMeter | None) -> SpanRecorder | None:
    if shared is not None:
        return SpanReporter(shared.socket, shared.meter)
    return make_accountant(settings)


def build_service(settings: GatewaySettings, triton_url: str, shared: SharedMeter | None = None) -> GatewayService:
    parts = load_parts(settings)
    return GatewayService(
        pool=parts.pool,
        policy=parts.policy,
        carbon=parts.monitor,
        triton=TritonClient(triton_url, settings.triton.request_timeout_s),
        recorder=make_recorder(settings, shared),
        labels=parts.labels,
        pue=settings.pue,
        max_image_pixels=settings.limits.max_image_pixels,
        receipt_timeout_s=settings.energy.receipt_timeout_s,
    )


@dataclass
class Runtime:
    """The running service and what keeps it current: pool reloads, budget planning."""

    service: GatewayService
    reloader: PoolReloader


def _on_sighup(reloader: PoolReloader, tasks: set[asyncio.Task]) -> None:
    loop = asyncio.get_running_loop()

    async def reload() -> None:
        try:
            await reloader.reload("sighup")
        except ReloadRejected:
            pass  # logged and counted by the reloader

    def handler() -> None:
        task = loop.create_task(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, handler)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests), or no signals
        logger.debug("SIGHUP reload unavailable here")


async def _plan_forever(service: GatewayService, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        price = service.plan_budget(interval_s)
        if price is not None:
            logger.debug("online budget re-planned: price %.4g", price)


@asynccontextmanager
async def running(settings: GatewaySettings, triton_url: str,
                  shared: SharedMeter | None = None) -> AsyncIterator[Runtime]:
    """Start the service and its background work; stop all of it on exit.

    ``shared``: a worker of several, which reports to the parent's meter instead of reading its own.
    """
    service = build_service(settings, triton_url, shared)
    reloader = PoolReloader(service, settings.resolved_pool_file, settings.policy, pue=settings.pue,
                            explicit_model_control=settings.triton.model_control == "explicit",
                            ready_timeout_s=settings.triton.startup_timeout_s)
    await service.carbon.start()
    if service.recorder is not None:
        await service.recorder.open()
    tasks: set[asyncio.Task] = set()
    if settings.watch_pool:
        tasks.add(asyncio.create_task(reloader.watch(), name="pool-watch"))
    if settings.policy.name == "online-budget":  # reloads keep the policy settings: no other policy needs it
        tasks.add(asyncio.create_task(_plan_forever(service, settings.carbon.poll_interval_s), name="budget-plan"))
    _on_sighup(reloader, tasks)
    try:
        yield Runtime(service, reloader)
    finally:
        try:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if service.recorder is not None:
            await service.recorder.aclose()
        await service.carbon.aclose()
        await service.triton.close()
