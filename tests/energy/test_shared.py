"""One meter for several workers: spans over the Unix socket, and two real uvicorn workers on one GPU."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from prometheus_client import CollectorRegistry

from gateway.metrics.prometheus import PrometheusSink
from prometheus_client.parser import text_string_to_metric_families

from gateway.energy import EnergyAccountant, SpanListener, SpanReporter
from gateway.testing.processes import GatewayProcess
from gateway.testing.http import MetricsEndpoint, SyntheticGpuEnergy

from tests.support.clock import ManualClock
from tests.support.data import IMAGES
from tests.support.gateway import multiproc_dir_of, pids_that_served
from .synthetic import BIG, SMALL, ScriptedCounter


async def wait_until(predicate, timeout_s: float = 5.0) -> None:
    """Poll without blocking the event loop, which flushes the reporters' writes."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


class Wired(NamedTuple):
    clock: ManualClock
    counter: ScriptedCounter
    accountant: EnergyAccountant
    listener: SpanListener
    reporter: SpanReporter


@asynccontextmanager
async def wired(tmp_path: Path, listening: bool = True, **reporter_options) -> AsyncIterator[Wired]:
    """An accountant on a scripted counter, its listener, and one worker's reporter connected to it."""
    clock, counter = ManualClock(), ScriptedCounter()
    accountant = EnergyAccountant(counter, clock=clock)
    listener = SpanListener(accountant, str(tmp_path / "spans.sock"))
    if listening:
        listener.start()
    reporter = SpanReporter(listener.socket_path, accountant.name, clock=clock, sink=SINK, **reporter_options)
    await reporter.open()
    try:
        yield Wired(clock, counter, accountant, listener, reporter)
    finally:
        await reporter.aclose()
        listener.stop()


async def test_worker_spans_reach_the_sampler_over_its_socket(tmp_path):
    import socket

    async with wired(tmp_path) as (clock, counter, accountant, listener, reporter):
        accountant.sample()
        small, big = reporter.begin(SMALL, 1, 200.0), reporter.begin(BIG, 1, None)
        await wait_until(lambda: accountant.open_spans == 2)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as rogue:  # garbage is ignored, not fatal
            rogue.connect(listener.socket_path)
            rogue.sendall(b'{not json\n{"op": "begin"}\n\n' + b"x" * 70_000)
        clock.now, counter.joules = 1.0, 8.0
        reporter.end(small)
        reporter.end(big)
        await wait_until(lambda: accountant.open_spans == 0)
        split = accountant.sample()
        assert await reporter.receipt(big, timeout_s=2.0) is None  # big was begun without asking for one
        wanted = reporter.begin(SMALL, 1, 200.0, receipt=True)
        await wait_until(lambda: accountant.open_spans == 1)
        clock.now, counter.joules = 2.0, 9.5
        reporter.end(wanted)
        await wait_until(lambda: accountant.open_spans == 0)
        accountant.sample()
        assert await reporter.receipt(wanted, timeout_s=2.0) == pytest.approx(1.5)  # sent back by the sampler
    shares = {span.model: share for span, share in split.by_span}
    assert shares == {"small": pytest.approx(2.0), "big": pytest.approx(6.0)}  # weights 100 : 300
    assert {span.model: span.intensity for span, _ in split.by_span} == {"small": 200.0, "big": None}
    assert not (tmp_path / "spans.sock").exists()


async def test_bursts_of_spans_are_not_lost(tmp_path):
    """2,000 events at once, four times the queue of a Unix datagram socket, as often as the sampler keeps up."""
    dropped_before = dropped()
    async with wired(tmp_path) as (_, _, accountant, _, reporter):
        tokens: list[int] = []
        for _ in range(10):
            tokens += [reporter.begin(BIG, 1, 100.0) for _ in range(2_000)]
            sent = len(tokens)
            await wait_until(lambda sent=sent: accountant.open_spans == sent, timeout_s=30)
        for start in range(0, len(tokens), 2_000):
            for token in tokens[start:start + 2_000]:
                reporter.end(token)
            left = len(tokens) - start - 2_000
            await wait_until(lambda left=left: accountant.open_spans == left, timeout_s=30)
    assert dropped() == dropped_before


async def test_a_sampler_that_falls_behind_costs_dropped_spans_not_memory(tmp_path):
    dropped_before = dropped()
    async with wired(tmp_path, listening=False, max_buffer_bytes=10_000) as (_, _, _, _, reporter):
        for _ in range(20):
            for _ in range(1_000):
                reporter.begin(BIG, 1, 100.0)
            await asyncio.sleep(0)
        assert dropped() > dropped_before
        assert reporter._transport.get_write_buffer_size() < 10_000 + 200
        began = time.monotonic()
        assert await reporter.receipt(reporter.begin(BIG, 1, 100.0, receipt=True), timeout_s=5.0) is None
        assert time.monotonic() - began < 1.0  # its begin was dropped: no waiting for a receipt that cannot come


async def test_spans_of_a_worker_that_disconnects_end_with_it(tmp_path):
    async with wired(tmp_path) as (_, _, accountant, _, reporter):
        reporter.begin(BIG, 1, 100.0)  # the worker dies in the middle of this request
        await wait_until(lambda: accountant.open_spans == 1)
        await reporter.aclose()
        await wait_until(lambda: accountant.open_spans == 0)


SINK = PrometheusSink(CollectorRegistry())  # the reporters' metrics, apart from the process's


def dropped() -> float:
    value = SINK.registry.get_sample_value("carbon_gateway_dropped_spans_total")
    assert value is not None
    return value


async def test_a_reporter_without_a_listener_drops_and_counts_never_raises(tmp_path):
    reporter = SpanReporter(str(tmp_path / "nobody.sock"), "nvml", sink=SINK)
    await reporter.open()  # logged: nothing listens there
    before = dropped()
    reporter.end(reporter.begin(SMALL, 1, 100.0))
    await reporter.aclose()
    assert dropped() == before + 2


def test_workers_share_one_meter_and_its_energy_is_conserved(triton, model_repository, tmp_path):
    """Two uvicorn workers, one GPU: its energy is measured once, not once per worker, and split between
    the requests of both workers."""
    gpu = SyntheticGpuEnergy(watts=250.0)
    endpoint = MetricsEndpoint(gpu.render)
    env = {"CARBON_GATEWAY_ENERGY__METER": "triton",
           "CARBON_GATEWAY_ENERGY__TRITON_METRICS_URL": endpoint.url,
           "CARBON_GATEWAY_ENERGY__SAMPLE_INTERVAL_S": "0.05"}
    sent, receipts = 0, 0.0
    try:
        with GatewayProcess("--triton", triton.grpc_url, "--repository", str(model_repository), "--workers", "2",
                            "--carbon-intensity", "120", "--c-low", "100", "--c-high", "300",
                            "--log-level", "warning", cwd=tmp_path, env=env) as gateway:
            multiproc = multiproc_dir_of(gateway.process.pid)  # serve made one: none was given
            while len(pids_that_served(multiproc)) < 2:  # until both workers have served
                assert sent < 60, "one worker took every connection"
                for image in IMAGES[:4]:
                    with httpx.Client(base_url=gateway.url, timeout=60) as client:  # a connection per request
                        response = client.post("/v1/classify", params={"energy": "measured"},
                                               content=image.read_bytes(), headers={"content-type": "image/jpeg"})
                    assert response.status_code == 200, response.text
                    energy = response.json()["energy"]
                    assert (energy["source"], energy["measured"]) == ("triton-metrics", True), energy
                    receipts += energy["joules"]
                    sent += 1
            time.sleep(0.5)  # the windows holding the last requests close
            text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
            measured_by_now = gpu.joules_between_first_and_last_read()
    finally:
        endpoint.close()

    def total(name: str, **labels: str) -> float:
        return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    measured = total("carbon_gateway_measured_energy_joules_total", meter="triton-metrics")
    attributed = total("carbon_gateway_energy_joules_total", meter="triton-metrics")
    idle = total("carbon_gateway_idle_energy_joules_total", meter="triton-metrics")
    # One reader: what it measured is at most what the GPU drew between its first and last read.
    assert 0 < measured <= measured_by_now * (1 + 1e-9)
    assert attributed + idle == pytest.approx(measured, rel=1e-9)
    assert total("carbon_gateway_energy_joules_total", model="resnet152") == pytest.approx(attributed)
    assert attributed > 0
    assert total("carbon_gateway_co2_grams_total") == pytest.approx(attributed / 3.6e6 * 120.0)
    # The energy-per-request histogram holds each request's measured share.
    assert total("carbon_gateway_request_energy_joules_count") == sent
    assert total("carbon_gateway_request_energy_joules_sum") == pytest.approx(attributed, rel=1e-6)
    assert receipts == pytest.approx(attributed, rel=1e-6)  # every request was told its share: the same figures
    assert total("carbon_gateway_energy_meter_up", meter="triton-metrics") == 1


