"""Assemble a ``GatewayService`` from settings and run it: the one place that turns configuration into parts.

What is chosen by name (policy, carbon provider, energy meter) comes from each package's registry;
the inference backend and the metrics sink are handed in, so the same assembly serves a real Triton
and the tests' in-process fake.
"""

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

from ..carbon import CarbonMonitor, make_monitor
from ..energy import EnergyAccountant, SpanListener, SpanRecorder, SpanReporter
from ..errors import ReloadRejected
from ..imagenet.labels import load_labels
from ..policy import SelectionPolicy, make_policy
from ..pool import ModelPool, load_pool
from ..settings import GatewaySettings
from ..state.settings import make_store
from ..metrics.sink import MetricsSink, NullSink
from .backend import InferenceBackend
from .cpu import CpuPool
from .dataplane import DataPlane
from .footprint import Footprint
from .planner import Planner
from .policystate import PolicySync, StatefulPolicy
from .reload import PoolReloader
from .service import GatewayService

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parts:
    """The configured pieces that need no running event loop or network."""

    pool: ModelPool
    policy: SelectionPolicy
    labels: tuple[str, ...]
    monitor: CarbonMonitor


def load_parts(settings: GatewaySettings) -> Parts:
    """Read and validate the pool, policy, labels and carbon source; raises a ``GatewayError`` that says why."""
    pool = load_pool(settings.resolved_pool_file)
    return Parts(pool=pool, policy=make_policy(pool, settings.policy, pue=settings.pue),
                 labels=load_labels(settings.resolved_labels_file), monitor=make_monitor(settings.carbon))


def check_meter(settings: GatewaySettings) -> None:
    """Raise ``MeterError`` now, before anything starts, if the configured meter cannot be had."""
    counter = settings.energy.counter()
    if counter is not None:
        counter.close()


def make_accountant(settings: GatewaySettings, sink: MetricsSink) -> EnergyAccountant | None:
    counter = settings.energy.counter()
    if counter is None:
        return None
    return EnergyAccountant(counter, interval_s=settings.energy.sample_interval_s,
                            idle_power_w=settings.energy.idle_power_w, pue=settings.pue, sink=sink)


class SharedMeter(BaseModel):
    """Where the workers of a multi-worker gateway report their requests' spans: the parent's sampler."""

    socket: str
    meter: str


@contextmanager
def shared_meter(settings: GatewaySettings, sink: MetricsSink) -> Iterator[SharedMeter | None]:
    """Run the configured meter's sampler in this process, listening for the workers' spans.

    None when there is no meter (pool estimates need no sampler).
    """
    accountant = make_accountant(settings, sink)
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


def make_recorder(settings: GatewaySettings, shared: SharedMeter | None, sink: MetricsSink) -> SpanRecorder | None:
    if shared is not None:
        return SpanReporter(shared.socket, shared.meter, sink=sink)
    return make_accountant(settings, sink)


def build_service(settings: GatewaySettings, backend: InferenceBackend, shared: SharedMeter | None = None,
                  sink: MetricsSink | None = None) -> GatewayService:
    sink = sink or NullSink()
    parts = load_parts(settings)
    return GatewayService(
        pool=parts.pool,
        policy=parts.policy,
        carbon=parts.monitor,
        backend=backend,
        recorder=make_recorder(settings, shared, sink),
        sink=sink,
        labels=parts.labels,
        pue=settings.pue,
        max_image_pixels=settings.limits.max_image_pixels,
        receipt_timeout_s=settings.energy.receipt_timeout_s,
        cpu=CpuPool(settings.limits.cpu_threads),
        backend_decodes=settings.triton.image_model is not None,
    )


@dataclass
class Runtime:
    """The running service, the data plane in front of it, and what keeps it current: pool reloads, plans,
    and the policy's account in the fleet's store (``sync``: None for a policy that keeps none)."""

    service: GatewayService
    plane: DataPlane
    reloader: PoolReloader
    sync: PolicySync | None = None


def _on_sighup(reloader: PoolReloader, tasks: set[asyncio.Task[None]]) -> None:
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


@asynccontextmanager
async def running(settings: GatewaySettings, backend: InferenceBackend, shared: SharedMeter | None = None,
                  sink: MetricsSink | None = None) -> AsyncIterator[Runtime]:
    """Start the service and its background work; stop all of it, and close ``backend``, on exit.

    ``shared``: a worker of several, which reports to the parent's meter instead of reading its own.
    """
    service = build_service(settings, backend, shared, sink)
    reloader = PoolReloader(service, settings.resolved_pool_file, settings.policy, pue=settings.pue,
                            explicit_model_control=settings.triton.model_control == "explicit",
                            ready_timeout_s=settings.triton.startup_timeout_s)
    await service.carbon.start()
    if service.recorder is not None:
        await service.recorder.open()
    tasks: set[asyncio.Task[None]] = set()
    sync = None
    if isinstance(service.policy, StatefulPolicy):  # its account and history are the fleet's, in the store
        sync = PolicySync(lambda: service.policy, make_store(settings.state), settings.state, service.carbon,
                          service.sink)
        await sync.start()  # before the first plan
        tasks.add(asyncio.create_task(sync.run_forever(), name="policy-state"))
    if settings.watch_pool:
        tasks.add(asyncio.create_task(reloader.watch(), name="pool-watch"))
    footprint = Footprint(service.sink, settings.energy.gateway_watts_per_core)
    tasks.add(asyncio.create_task(footprint.run_forever(), name="footprint"))
    if service.policy.needs_planning:  # reloads keep the policy settings, so the policy's kind
        planner = Planner(service)
        planner.plan(0.0)  # here, not in the task: a fresh policy must not serve a request unplanned
        tasks.add(asyncio.create_task(planner.run_forever(settings.carbon.poll_interval_s), name="plan"))
    _on_sighup(reloader, tasks)
    try:
        yield Runtime(service, DataPlane(service, max_in_flight=settings.limits.max_in_flight,
                                         max_batch=settings.limits.max_batch), reloader, sync)
    finally:
        try:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if sync is not None:
            await sync.close()  # what was served since the last exchange goes to the store too
        if service.recorder is not None:
            await service.recorder.aclose()
        await service.carbon.aclose()
        await backend.close()
        service.cpu.close()
