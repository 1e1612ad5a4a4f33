"""Energy attribution: conservation and proportional shares, on a synthetic meter with known readings."""

import asyncio
import random
import time
from pathlib import Path

import pytest

from prometheus_client import REGISTRY

from gateway.energy import (EnergyAccountant, MeterError, NvmlEnergyCounter, Span, SpanListener, SpanReporter,
                            TritonMetricsEnergyCounter, co2_grams, estimate, make_counter, split_window)
from gateway.pool import ModelSpec
from gateway.testing import GatewayProcess, MetricsEndpoint, SyntheticGpuEnergy

SMALL = ModelSpec(name="small", energy_mj=100.0, error_rate=10.0)
BIG = ModelSpec(name="big", energy_mj=300.0, error_rate=5.0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedCounter:
    """A cumulative energy counter whose readings the test dictates."""

    name = "synthetic"

    def __init__(self) -> None:
        self.joules = 0.0
        self.closed = False

    def read_joules(self) -> float:
        return self.joules

    def close(self) -> None:
        self.closed = True


def test_co2_is_energy_times_intensity_times_pue():
    assert co2_grams(3.6e6, 200.0) == pytest.approx(200.0)
    assert co2_grams(3.6e6, 200.0, pue=1.5) == pytest.approx(300.0)
    assert estimate(BIG, 4).joules == pytest.approx(1.2) and not estimate(BIG, 4).measured


def test_window_split_is_proportional_to_weighted_overlap():
    spans = [Span("small", 100.0, 50.0, start=0.0, end=1.0), Span("big", 300.0, 50.0, start=0.5, end=None)]
    split = split_window(0.0, 1.0, 10.0, spans)
    shares = {span.model: share for span, share in split.by_span}
    # weights: small 1.0 s x 100 = 100, big 0.5 s x 300 = 150
    assert shares == {"small": pytest.approx(4.0), "big": pytest.approx(6.0)}
    assert split.idle == 0.0


def test_idle_power_is_taken_first_and_empty_windows_are_idle():
    span = Span("small", 100.0, 50.0, start=0.0, end=2.0)
    split = split_window(0.0, 2.0, 10.0, [span], idle_power_w=3.0)
    assert split.idle == pytest.approx(6.0) and split.by_span[0][1] == pytest.approx(4.0)
    assert split_window(0.0, 2.0, 10.0, [], idle_power_w=3.0).idle == 10.0
    assert split_window(2.0, 3.0, 10.0, [span]).idle == 10.0  # the span ended before the window


def test_accountant_conserves_energy_over_many_overlapping_requests():
    clock, counter = Clock(), ScriptedCounter()
    accountant = EnergyAccountant(counter, idle_power_w=20.0, pue=1.0, clock=clock)
    accountant.sample()  # baseline reading
    rng = random.Random(7)
    open_tokens: list[tuple[int, ModelSpec]] = []
    attributed: dict[str, float] = {"small": 0.0, "big": 0.0}
    spans = []
    for step in range(400):
        clock.now += 0.01
        if rng.random() < 0.3:
            model = rng.choice([SMALL, BIG])
            open_tokens.append((accountant.begin(model, rng.randint(1, 4), 150.0), model))
        if open_tokens and rng.random() < 0.25:
            token, _ = open_tokens.pop(rng.randrange(len(open_tokens)))
            accountant.end(token)
        counter.joules += rng.uniform(0.5, 3.0)  # known energy for this step
        if step % 10 == 9:  # a sampling window every 10 steps
            split = accountant.sample()
            assert split.idle + sum(share for _, share in split.by_span) == pytest.approx(split.measured)
            for span, share in split.by_span:
                attributed[span.model] += share
                spans.append(span)
    for token, _ in open_tokens:
        accountant.end(token)
    clock.now += 0.01
    accountant.sample()
    totals = accountant.totals
    assert totals["measured"] == pytest.approx(counter.joules)
    assert totals["attributed"] + totals["idle"] == pytest.approx(counter.joules)
    assert totals["idle"] > 0 and totals["attributed"] > 0
    assert attributed["big"] > attributed["small"]  # 3x the weight per second of compute


def test_request_within_one_window_is_charged_after_it_ended():
    clock, counter = Clock(), ScriptedCounter()
    accountant = EnergyAccountant(counter, clock=clock)
    accountant.sample()
    token = accountant.begin(BIG, 1, 100.0)
    clock.now = 0.05
    accountant.end(token)
    clock.now = 0.1
    counter.joules = 2.0
    split = accountant.sample()
    assert [(span.model, share) for span, share in split.by_span] == [("big", pytest.approx(2.0))]
    assert split.by_span[0][0].joules == pytest.approx(2.0)


async def test_a_receipt_is_the_requests_measured_share_once_its_last_window_closes():
    clock, counter = Clock(), ScriptedCounter()
    accountant = EnergyAccountant(counter, clock=clock)
    accountant.sample()
    wanted, other = accountant.begin(BIG, 1, 100.0, receipt=True), accountant.begin(SMALL, 1, 100.0)
    clock.now, counter.joules = 1.0, 8.0
    accountant.sample()  # both still running: charged, not final
    clock.now = 1.5
    accountant.end(wanted)
    accountant.end(other)
    clock.now, counter.joules = 2.0, 12.0
    accountant.sample()
    assert await accountant.receipt(wanted, timeout_s=1.0) == pytest.approx(6.0 + 3.0)  # 3/4 of each window
    never = accountant.begin(BIG, 1, 100.0, receipt=True)
    accountant.end(never)  # no window closes after it
    assert await accountant.receipt(never, timeout_s=0.05) is None
    assert await accountant.receipt(other, timeout_s=0.05) is None  # none was asked for


class FlakyCounter(ScriptedCounter):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def read_joules(self) -> float:
        if self.down:
            raise OSError("GPU fell off the bus")
        return self.joules


async def test_spans_the_meter_missed_are_unmeasured_not_misattributed_nor_kept():
    clock, counter = Clock(), FlakyCounter()
    accountant = EnergyAccountant(counter, clock=clock)
    accountant.sample()
    across = accountant.begin(BIG, 1, 100.0, receipt=True)  # runs through the outage
    during = accountant.begin(SMALL, 1, 100.0, receipt=True)  # ends during it
    clock.now, counter.joules = 1.0, 4.0
    accountant.sample()
    counter.down = True
    clock.now = 2.0
    accountant.end(during)
    assert accountant.sample() is None and not accountant.healthy
    began = time.monotonic()
    assert await accountant.receipt(during, timeout_s=5.0) is None
    assert time.monotonic() - began < 1.0  # at once, not at the timeout: no window will measure it
    counter.down, clock.now, counter.joules = False, 3.0, 50.0
    assert accountant.sample() is None  # a new baseline: the outage's energy is not pinned on anyone
    clock.now, counter.joules = 4.0, 52.0
    accountant.end(across)
    split = accountant.sample()
    assert split.measured == pytest.approx(2.0) and accountant.healthy
    began = time.monotonic()
    assert await accountant.receipt(across, timeout_s=5.0) is None  # measured only in part: no receipt
    assert time.monotonic() - began < 1.0
    assert accountant.totals["measured"] == pytest.approx(4.0 + 2.0)
    assert accountant.totals["attributed"] + accountant.totals["idle"] == pytest.approx(6.0)


def test_counter_reset_never_yields_negative_energy():
    clock, counter = Clock(), ScriptedCounter()
    accountant = EnergyAccountant(counter, clock=clock)
    counter.joules = 100.0
    accountant.sample()
    counter.joules = 5.0
    clock.now = 1.0
    assert accountant.sample().measured == 0.0


def test_a_failing_meter_is_reported_not_raised():
    class Broken(ScriptedCounter):
        def read_joules(self) -> float:
            raise OSError("device lost")

    accountant = EnergyAccountant(Broken(), clock=Clock())
    assert accountant.sample() is None and not accountant.healthy


def test_sampler_thread_runs_and_stops():
    counter = ScriptedCounter()
    accountant = EnergyAccountant(counter, interval_s=0.01)
    accountant.start()
    counter.joules = 5.0
    time.sleep(0.1)
    accountant.stop()
    assert accountant.totals["measured"] == pytest.approx(5.0) and counter.closed


def test_a_span_whose_end_was_lost_is_closed_after_max_span_s():
    clock, counter = Clock(), ScriptedCounter()
    accountant = EnergyAccountant(counter, clock=clock, max_span_s=5.0)
    accountant.sample()
    accountant.begin(BIG, 1, 100.0)  # its worker dies: no end ever comes
    for second in range(1, 8):
        clock.now, counter.joules = float(second), 10.0 * second
        accountant.sample()
    assert accountant.open_spans == 0
    assert accountant.totals["attributed"] == pytest.approx(60.0)  # charged until it was closed, at 6 s
    assert accountant.totals["idle"] == pytest.approx(10.0)


async def wait_until(predicate, timeout_s: float = 5.0) -> None:
    """Poll without blocking the event loop, which flushes the reporters' writes."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_worker_spans_reach_the_sampler_over_its_socket(tmp_path):
    import socket

    clock, counter = Clock(), ScriptedCounter()
    accountant = EnergyAccountant(counter, clock=clock)
    listener = SpanListener(accountant, str(tmp_path / "spans.sock"))
    listener.start()
    reporter = SpanReporter(listener.socket_path, accountant.name, clock=clock)
    await reporter.open()
    try:
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
    finally:
        await reporter.aclose()
        listener.stop()
    shares = {span.model: share for span, share in split.by_span}
    assert shares == {"small": pytest.approx(2.0), "big": pytest.approx(6.0)}  # weights 100 : 300
    assert {span.model: span.intensity for span, _ in split.by_span} == {"small": 200.0, "big": None}
    assert not (tmp_path / "spans.sock").exists()


async def test_bursts_of_spans_are_not_lost(tmp_path):
    """2,000 events at once, four times the queue of a Unix datagram socket, as often as the sampler keeps up."""
    accountant = EnergyAccountant(ScriptedCounter())
    listener = SpanListener(accountant, str(tmp_path / "spans.sock"))
    listener.start()
    reporter = SpanReporter(listener.socket_path, accountant.name)
    await reporter.open()
    dropped_before = dropped()
    try:
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
    finally:
        await reporter.aclose()
        listener.stop()
    assert dropped() == dropped_before


async def test_a_sampler_that_falls_behind_costs_dropped_spans_not_memory(tmp_path):
    accountant = EnergyAccountant(ScriptedCounter())
    listener = SpanListener(accountant, str(tmp_path / "spans.sock"))  # not started: it never reads
    reporter = SpanReporter(listener.socket_path, accountant.name, max_buffer_bytes=10_000)
    await reporter.open()
    dropped_before = dropped()
    try:
        for _ in range(20):
            for _ in range(1_000):
                reporter.begin(BIG, 1, 100.0)
            await asyncio.sleep(0)
        assert dropped() > dropped_before
        assert reporter._transport.get_write_buffer_size() < 10_000 + 200
    finally:
        await reporter.aclose()
        listener.stop()


async def test_spans_of_a_worker_that_disconnects_end_with_it(tmp_path):
    clock, counter = Clock(), ScriptedCounter()
    accountant = EnergyAccountant(counter, clock=clock)
    listener = SpanListener(accountant, str(tmp_path / "spans.sock"))
    listener.start()
    reporter = SpanReporter(listener.socket_path, accountant.name, clock=clock)
    await reporter.open()
    try:
        reporter.begin(BIG, 1, 100.0)  # the worker dies in the middle of this request
        await wait_until(lambda: accountant.open_spans == 1)
        await reporter.aclose()
        await wait_until(lambda: accountant.open_spans == 0)
    finally:
        listener.stop()


def dropped() -> float:
    return REGISTRY.get_sample_value("carbon_gateway_dropped_spans_total")


async def test_a_reporter_without_a_listener_drops_and_counts_never_raises(tmp_path):
    reporter = SpanReporter(str(tmp_path / "nobody.sock"), "nvml")
    await reporter.open()  # logged: nothing listens there
    before = dropped()
    reporter.end(reporter.begin(SMALL, 1, 100.0))
    await reporter.aclose()
    assert dropped() == before + 2


def nvml_available() -> bool:
    try:
        NvmlEnergyCounter().close()
    except MeterError:
        return False
    return True


def test_auto_meter_uses_nvml_when_present_else_estimates():
    counter = make_counter("auto")
    if nvml_available():
        assert isinstance(counter, NvmlEnergyCounter) and counter.read_joules() > 0
        counter.close()
    else:  # CI: no NVIDIA driver, so pool estimates, and asking for NVML explicitly is an error
        assert counter is None
        with pytest.raises(MeterError, match="NVML"):
            make_counter("nvml")


TRITON_GPU_METRICS = """# HELP nv_energy_consumption GPU energy consumption in joules since the Triton Server started
# TYPE nv_energy_consumption counter
nv_energy_consumption{gpu_uuid="GPU-0"} 1234.5
nv_energy_consumption{gpu_uuid="GPU-1"} 100.25
# HELP nv_gpu_power_usage GPU power usage in watts
# TYPE nv_gpu_power_usage gauge
nv_gpu_power_usage{gpu_uuid="GPU-0"} 71.3
"""


@pytest.fixture
def metrics_server():
    endpoint = MetricsEndpoint(lambda: TRITON_GPU_METRICS)
    yield endpoint.url
    endpoint.close()


def test_triton_metrics_counter_sums_gpu_energy(metrics_server):
    counter = TritonMetricsEnergyCounter(metrics_server)
    try:
        assert counter.read_joules() == pytest.approx(1334.75)
    finally:
        counter.close()


def test_triton_metrics_counter_on_a_cpu_triton_says_there_is_no_energy(triton):
    counter = TritonMetricsEnergyCounter(triton.metrics_url)
    try:
        with pytest.raises(MeterError, match="no nv_energy_consumption"):
            counter.read_joules()
    finally:
        counter.close()


def multiproc_dir_of(pid: int) -> Path:
    import psutil

    workers = psutil.Process(pid).children()
    return Path(workers[0].environ()["PROMETHEUS_MULTIPROC_DIR"])


def test_workers_share_one_meter_and_its_energy_is_conserved(triton, model_repository, tmp_path):
    """Two uvicorn workers, one GPU: its energy is measured once, not once per worker, and split between
    the requests of both workers."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from .conftest import IMAGES, pids_that_served

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


async def test_one_worker_measures_in_process_and_responses_say_theirs_is_the_estimate(make_gateway):
    from .conftest import IMAGES

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    def snapshot() -> tuple[float, float, float, float]:
        return (value("carbon_gateway_measured_energy_joules_total", meter="triton-metrics"),
                value("carbon_gateway_energy_joules_total", model="resnet152", meter="triton-metrics"),
                value("carbon_gateway_idle_energy_joules_total", meter="triton-metrics"),
                value("carbon_gateway_request_energy_joules_count", model="resnet152"))

    gpu = SyntheticGpuEnergy(watts=100.0)
    with MetricsEndpoint(gpu.render) as endpoint:
        before = snapshot()
        async with make_gateway(carbon__intensity=120.0, carbon__c_low=100.0, carbon__c_high=300.0,
                                energy__meter="triton", energy__triton_metrics_url=endpoint.url,
                                energy__sample_interval_s=0.02) as client:
            ready = (await client.get("/readyz")).json()
            assert (ready["energy_meter"], ready["energy_meter_up"]) == ("triton-metrics", True)
            for image in IMAGES[:3]:
                response = await client.post("/v1/classify", content=image.read_bytes(),
                                             headers={"content-type": "image/jpeg"})
                assert response.status_code == 200, response.text
                assert response.json()["energy"]["source"] == "pool-estimate"  # the measured share comes later
                assert response.headers["x-energy-source"] == "pool-estimate"
            # Asked for, the measured share comes in the response: the request waits for its window to close.
            response = await client.post("/v1/classify?energy=measured", content=IMAGES[3].read_bytes(),
                                         headers={"content-type": "image/jpeg"})
            assert response.status_code == 200, response.text
            energy = response.json()["energy"]
            assert (energy["source"], energy["measured"]) == ("triton-metrics", True)
            assert energy["joules"] > 0 and response.headers["x-energy-source"] == "triton-metrics"
            assert energy["co2_grams"] == pytest.approx(energy["joules"] / 3.6e6 * 120.0)
            assert float(response.headers["x-energy-joules"]) == pytest.approx(energy["joules"], rel=1e-5)
        # Leaving the gateway stopped the sampler after a last reading.
        measured, attributed, idle, counted = (b - a for a, b in zip(before, snapshot(), strict=True))
    assert 0 < measured <= gpu.joules_between_first_and_last_read() * (1 + 1e-9)
    assert attributed > 0 and attributed + idle == pytest.approx(measured)
    assert energy["joules"] < attributed
    assert counted == 4


async def test_a_meter_that_is_down_is_reported_and_serving_goes_on(make_gateway):
    from .conftest import IMAGES, free_port

    nowhere = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens there
    async with make_gateway(energy__meter="triton", energy__triton_metrics_url=nowhere,
                            energy__sample_interval_s=0.02) as client:
        response = await client.post("/v1/classify", content=IMAGES[0].read_bytes(),
                                     headers={"content-type": "image/jpeg"})
        assert response.status_code == 200, response.text
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert (ready.json()["energy_meter"], ready.json()["energy_meter_up"]) == ("triton-metrics", False)
        assert REGISTRY.get_sample_value("carbon_gateway_energy_meter_up", {"meter": "triton-metrics"}) == 0
