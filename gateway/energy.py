"""Energy per request, measured where a meter exists, and the CO2 it implies.

Two pieces:

- an **energy counter** reads cumulative joules: the GPU's NVML total-energy counter (Volta and
  newer; older GPUs fall back to integrating sampled power), or Triton's ``nv_energy_consumption``
  metric for a Triton on another host;
- the **accountant** samples the counter on a thread (never on the event loop) and splits each
  sampling window's energy between the requests that were computing during it, in proportion to
  their overlap with the window weighted by their model's profiled energy per inference. A window
  with no request, and the configured idle power's share of a busy one, is idle energy. So the
  energy attributed to requests plus idle energy equals what the counter measured.

Without a counter (no GPU, as in CI) the pool's profiled energy per inference is charged instead and
labelled ``pool-estimate``. A request's measured share is only known once the window after it closes,
so responses carry the estimate unless the client asks for a *receipt*: then the request waits for its
last window (about one sampling interval) and answers with its measured share.

One GPU has one counter, so several uvicorn workers must not each read it: the parent process runs the
only accountant, and each worker streams its requests' spans to it over a Unix socket connection
(``SpanReporter`` → ``SpanListener``). Spans are timed with ``time.monotonic``, one clock for every
process of the machine.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import orjson

from pydantic import BaseModel, ConfigDict

from . import metrics
from .pool import ModelSpec

logger = logging.getLogger(__name__)

JOULES_PER_KWH = 3.6e6


def co2_grams(joules: float, intensity_g_per_kwh: float, pue: float = 1.0) -> float:
    """CO2eq = energy x carbon intensity x PUE."""
    return joules / JOULES_PER_KWH * intensity_g_per_kwh * pue


class EnergyReading(BaseModel):
    model_config = ConfigDict(frozen=True)

    joules: float
    source: str
    measured: bool


def estimate(model: ModelSpec, items: int) -> EnergyReading:
    """The pool's profiled energy per inference x the number of inferences."""
    return EnergyReading(joules=model.energy_mj * 1e-3 * items, source="pool-estimate", measured=False)


class MeterError(RuntimeError):
    pass


@runtime_checkable
class EnergyCounter(Protocol):
    """Cumulative energy in joules; ``read_joules`` may block, so it is only called off the event loop."""

    name: str

    def read_joules(self) -> float: ...

    def close(self) -> None: ...


class SpanRecorder(Protocol):
    """What the request path tells about each inference: when it began and ended on the accelerator."""

    @property
    def name(self) -> str:
        """The meter that turns these spans into joules."""
        ...

    @property
    def healthy(self) -> bool:
        """Whether the spans reach a meter that answers."""
        ...

    def begin(self, model: ModelSpec, items: int, intensity: float | None, receipt: bool = False) -> int: ...

    def end(self, token: int) -> None: ...

    async def receipt(self, token: int, timeout_s: float) -> float | None:
        """The measured joules of a span begun with ``receipt=True``, once its last window has closed;
        None if that takes longer than ``timeout_s``."""
        ...

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...


class NvmlEnergyCounter:
    """NVML: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load) summed over the GPUs.

    On GPUs without that counter (pre-Volta) it integrates ``nvmlDeviceGetPowerUsage`` between reads,
    which is only as good as the sampling interval, and says so in its name.
    """

    def __init__(self, device_indices: list[int] | None = None):
        try:
            import pynvml
        except ImportError as exc:
            raise MeterError("nvidia-ml-py is not installed") from exc
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            indices = device_indices if device_indices is not None else list(range(count))
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
        except pynvml.NVMLError as exc:
            raise MeterError(f"NVML unavailable: {exc}") from exc
        if not self._handles:
            raise MeterError("NVML found no GPU")
        try:
            for handle in self._handles:
                pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            self.name = "nvml"
            self._power_mode = False
        except pynvml.NVMLError:
            self.name = "nvml-power-sampling"
            self._power_mode = True
            self._joules = 0.0
            self._last: float | None = None

    def read_joules(self) -> float:
        nvml = self._nvml
        if not self._power_mode:
            return sum(nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles) / 1000.0
        now = time.monotonic()
        watts = sum(nvml.nvmlDeviceGetPowerUsage(h) for h in self._handles) / 1000.0
        if self._last is not None:
            self._joules += watts * (now - self._last)
        self._last = now
        return self._joules

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass


class TritonMetricsEnergyCounter:
    """Triton's own ``nv_energy_consumption`` (joules, per GPU) from its Prometheus endpoint."""

    name = "triton-metrics"

    def __init__(self, url: str, timeout_s: float = 2.0):
        import httpx

        self.url = url
        self._client = httpx.Client(timeout=timeout_s)

    def read_joules(self) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        import httpx

        try:
            response = self._client.get(self.url)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise MeterError(f"Triton metrics at {self.url} unavailable: {exc}") from exc
        samples = [sample.value for family in text_string_to_metric_families(response.text)
                   if family.name == "nv_energy_consumption" for sample in family.samples]
        if not samples:
            raise MeterError(f"{self.url} has no nv_energy_consumption (Triton without a GPU?)")
        return float(sum(samples))

    def close(self) -> None:
        self._client.close()


@dataclass
class Span:
    """One request's time on the accelerator, and what it has been charged so far."""

    model: str
    weight_per_second: float
    intensity: float | None  # gCO2/kWh at the request; None when the source gives no such figure
    start: float
    end: float | None = None
    joules: float = 0.0
    unmeasured: bool = False  # part of its time fell where the meter gave no reading
    on_final: Callable[[float | None], None] | None = None  # told its joules (None: unmeasured) when retired

    def overlap(self, t0: float, t1: float) -> float:
        end = t1 if self.end is None else self.end
        return max(0.0, min(end, t1) - max(self.start, t0))


@dataclass(frozen=True)
class WindowSplit:
    measured: float
    idle: float
    by_span: list[tuple[Span, float]] = field(default_factory=list)


def split_window(t0: float, t1: float, joules: float, spans: list[Span], idle_power_w: float = 0.0) -> WindowSplit:
    """Apportion a window's measured energy: idle power first, the rest by weighted overlap.

    Conservation: ``idle + sum(shares) == joules`` for every window.
    """
    weights = [(span, span.overlap(t0, t1) * span.weight_per_second) for span in spans]
    weights = [(span, w) for span, w in weights if w > 0]
    total = sum(w for _, w in weights)
    if total <= 0 or joules <= 0:
        return WindowSplit(measured=joules, idle=joules)
    idle = min(joules, max(0.0, idle_power_w) * (t1 - t0))
    active = joules - idle
    return WindowSplit(measured=joules, idle=idle, by_span=[(span, active * w / total) for span, w in weights])


class _Receipts:
    """Futures for the spans whose measured joules a request waits for; lives on the event loop."""

    def __init__(self) -> None:
        self._waiting: dict[int, asyncio.Future[float]] = {}

    def expect(self, token: int) -> Callable[[float | None], None]:
        """Register ``token``; returns a callback that resolves it from any thread."""
        loop = asyncio.get_running_loop()
        self._waiting[token] = loop.create_future()
        return lambda joules: loop.call_soon_threadsafe(self.resolve, token, joules)

    def resolve(self, token: int, joules: float | None) -> None:
        future = self._waiting.pop(token, None)
        if future is not None and not future.done():
            future.set_result(joules)

    async def wait(self, token: int, timeout_s: float) -> float | None:
        """Call it right after the span ends (no await between): a receipt that came first is not kept."""
        future = self._waiting.get(token)
        if future is None:
            return None
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(token, None)


class EnergyAccountant:
    """Samples an ``EnergyCounter`` every ``interval_s`` on a thread and attributes each window.

    A span still open after ``max_span_s`` (its end was lost with a crashed worker) is closed then.
    """

    def __init__(self, counter: EnergyCounter, interval_s: float = 0.1, idle_power_w: float = 0.0,
                 pue: float = 1.0, clock: Callable[[], float] = time.monotonic, max_span_s: float = 600.0):
        self.counter = counter
        self.pue = pue
        self.interval_s = interval_s
        self.idle_power_w = idle_power_w
        self.max_span_s = max_span_s
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = itertools.count()
        self._active: dict[Hashable, Span] = {}
        self._finished: list[Span] = []
        self._last_time: float | None = None
        self._last_joules: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.totals = {"measured": 0.0, "idle": 0.0, "attributed": 0.0}
        self.healthy = True
        self._receipts = _Receipts()

    @property
    def name(self) -> str:
        return self.counter.name

    def begin(self, model: ModelSpec, items: int, intensity: float | None, receipt: bool = False) -> int:
        token = next(self._tokens)
        on_final = self._receipts.expect(token) if receipt else None
        self.open_span(token, Span(model.name, model.energy_mj * items, intensity, self._clock(), on_final=on_final))
        return token

    def end(self, token: int) -> None:
        self.close_span(token, self._clock())

    async def receipt(self, token: int, timeout_s: float) -> float | None:
        return await self._receipts.wait(token, timeout_s)

    @property
    def open_spans(self) -> int:
        with self._lock:
            return len(self._active)

    def open_span(self, key: Hashable, span: Span) -> None:
        with self._lock:
            self._active[key] = span

    def close_span(self, key: Hashable, end: float) -> None:
        with self._lock:
            span = self._active.pop(key, None)
            if span is not None:
                span.end = end
                self._finished.append(span)

    def sample(self) -> WindowSplit | None:
        """Read the counter and attribute the window since the last read (the sampler thread's step)."""
        try:
            joules = self.counter.read_joules()
        except Exception as exc:  # noqa: BLE001 - a failing meter must not stop the sampler
            if self.healthy:
                logger.warning("energy meter %s failed: %s", self.counter.name, exc)
            self._set_health(False)
            with self._lock:  # the window cannot be measured: start afresh at the next good reading
                self._last_time = None
                for span in self._active.values():
                    span.unmeasured = True
                retired, self._finished = self._finished, []
            self._retire(retired, unmeasured=True)
            return None
        self._set_health(True)
        now = self._clock()
        split: WindowSplit | None = None
        with self._lock:
            retired, self._finished = self._finished, []
            if self._last_time is not None:
                self._expire(now)
                retired += self._finished
                self._finished = []
                delta = max(0.0, joules - self._last_joules)  # a counter reset never yields negative energy
                split = split_window(self._last_time, now, delta, [*self._active.values(), *retired],
                                     self.idle_power_w)
                for span, share in split.by_span:
                    span.joules += share
            self._last_time, self._last_joules = now, joules
        if split is None:  # the first reading, or the first since the meter failed: a baseline
            self._retire(retired, unmeasured=True)
            return None
        self._publish(split, retired)
        return split

    def _expire(self, now: float) -> None:
        stale = [key for key, span in self._active.items() if now - span.start > self.max_span_s]
        for key in stale:
            span = self._active.pop(key)
            span.end = now
            self._finished.append(span)
        if stale:
            logger.warning("closed %d request span(s) open for over %.0f s (their end was lost)",
                           len(stale), self.max_span_s)

    def _set_health(self, up: bool) -> None:
        self.healthy = up
        metrics.METER_UP.labels(self.counter.name).set(1 if up else 0)

    def _publish(self, split: WindowSplit, retired: list[Span]) -> None:
        meter = self.counter.name
        self.totals["measured"] += split.measured
        self.totals["idle"] += split.idle
        metrics.MEASURED_ENERGY.labels(meter).inc(split.measured)
        metrics.IDLE_ENERGY.labels(meter).inc(split.idle)
        for span, share in split.by_span:
            self.totals["attributed"] += share
            metrics.ENERGY.labels(span.model, meter).inc(share)
            if span.intensity is not None:
                metrics.CO2.labels(span.model).inc(co2_grams(share, span.intensity, self.pue))
        self._retire(retired)

    @staticmethod
    def _retire(spans: list[Span], unmeasured: bool = False) -> None:
        """Spans charged for the last time: their energy is final, or unknown if the meter missed part of it."""
        for span in spans:
            span.unmeasured = span.unmeasured or unmeasured
            if not span.unmeasured:
                metrics.REQUEST_ENERGY.labels(span.model).observe(span.joules)
            if span.on_final is not None:
                try:
                    span.on_final(None if span.unmeasured else span.joules)
                except Exception as exc:  # noqa: BLE001 - a receipt that cannot be delivered must not stop the sampler
                    logger.debug("energy receipt not delivered: %s", exc)

    def start(self) -> None:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="energy-sampler", daemon=True)
        self._thread.start()

    async def open(self) -> None:
        self.start()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.stop)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sample()
        self.counter.close()


class SpanReporter:
    """A worker's ``SpanRecorder``: streams each span's begin and end to the ``SpanListener`` of the process
    that owns the meter, one JSON line per event over a Unix stream connection.

    Writes go through an asyncio transport, so they never block the event loop and are never lost while
    the listener keeps up; only when it is gone, or ``max_buffer_bytes`` are waiting for it, is an event
    dropped and counted (its request's energy then counts as idle).
    """

    def __init__(self, socket_path: str, meter: str, clock: Callable[[], float] = time.monotonic,
                 max_buffer_bytes: int = 1 << 20):
        self.socket_path = socket_path
        self.max_buffer_bytes = max_buffer_bytes
        self._meter = meter
        self._clock = clock
        self._tokens = itertools.count()
        self._transport: asyncio.WriteTransport | None = None
        self._receipts = _Receipts()

    @property
    def name(self) -> str:
        return self._meter

    @property
    def healthy(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def open(self) -> None:
        try:
            self._transport, _ = await asyncio.get_running_loop().create_unix_connection(
                lambda: _ReceiptProtocol(self._receipts), self.socket_path)
        except OSError as exc:
            logger.error("energy sampler unreachable at %s (%s): this worker's requests count as idle energy",
                         self.socket_path, exc)

    def begin(self, model: ModelSpec, items: int, intensity: float | None, receipt: bool = False) -> int:
        token = next(self._tokens)
        event = {"op": "begin", "token": token, "model": model.name, "weight": model.energy_mj * items,
                 "intensity": intensity, "at": self._clock()}
        if receipt and self.healthy:
            self._receipts.expect(token)
            event["receipt"] = True
        self._send(event)
        return token

    async def receipt(self, token: int, timeout_s: float) -> float | None:
        return await self._receipts.wait(token, timeout_s)

    def end(self, token: int) -> None:
        self._send({"op": "end", "token": token, "at": self._clock()})

    def _send(self, event: dict) -> None:
        transport = self._transport
        if transport is None or transport.is_closing() or transport.get_write_buffer_size() > self.max_buffer_bytes:
            metrics.DROPPED_SPANS.inc()
            return
        transport.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))

    async def aclose(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _ReceiptProtocol(asyncio.Protocol):
    """A reporter's side of the connection: the sampler sends back ``{"token", "joules"}`` receipts."""

    def __init__(self, receipts: _Receipts):
        self._receipts = receipts
        self._pending = b""

    def data_received(self, data: bytes) -> None:
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            try:
                message = orjson.loads(line)
                token, joules = int(message["token"]), message["joules"]
                joules = None if joules is None else float(joules)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a receipt lost: that request answers with the estimate
            self._receipts.resolve(token, joules)


@dataclass
class _Worker:
    """One reporter's connection: its unparsed bytes, and its spans still open."""

    number: int
    connection: socket.socket
    pending: bytes = b""
    open_tokens: set[int] = field(default_factory=set)

    def send_receipt(self, token: int, joules: float | None) -> None:
        """From the sampler thread; a full or closed connection loses the receipt (the request times out)."""
        try:
            self.connection.send(orjson.dumps({"token": token, "joules": joules}, option=orjson.OPT_APPEND_NEWLINE))
        except OSError:
            pass


class SpanListener:
    """Accepts ``SpanReporter`` connections on a Unix socket and opens and closes their spans in ``accountant``.

    One thread serves every connection. A connection that closes (its worker exited or crashed) has its
    open spans closed then, so that no span outlives its worker.
    """

    MAX_LINE = 1 << 16

    def __init__(self, accountant: EnergyAccountant, socket_path: str):
        self.accountant = accountant
        self.socket_path = socket_path
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(socket_path)
        self._server.listen(64)
        self._server.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._server, selectors.EVENT_READ)
        self._numbers = itertools.count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="energy-span-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                if key.data is None:
                    self._accept()
                else:
                    self._read(key.fileobj, key.data)

    def _accept(self) -> None:
        try:
            connection, _ = self._server.accept()
        except BlockingIOError:
            return
        connection.setblocking(False)
        self._selector.register(connection, selectors.EVENT_READ, _Worker(next(self._numbers), connection))

    def _read(self, connection: socket.socket, worker: _Worker) -> None:
        try:
            chunk = connection.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._hang_up(connection, worker)
            return
        *lines, worker.pending = (worker.pending + chunk).split(b"\n")
        for line in lines:
            self.handle(worker, line)
        if len(worker.pending) > self.MAX_LINE:
            logger.warning("span stream from worker %d sent %d bytes without a newline: dropped",
                           worker.number, len(worker.pending))
            worker.pending = b""

    def handle(self, worker: _Worker, line: bytes) -> None:
        try:
            event = orjson.loads(line)
            token = int(event["token"])
            if event["op"] == "begin":
                intensity = None if event["intensity"] is None else float(event["intensity"])
                on_final = functools.partial(worker.send_receipt, token) if event.get("receipt") else None
                span = Span(str(event["model"]), float(event["weight"]), intensity, float(event["at"]),
                            on_final=on_final)
                self.accountant.open_span((worker.number, token), span)
                worker.open_tokens.add(token)
            else:
                self.accountant.close_span((worker.number, token), float(event["at"]))
                worker.open_tokens.discard(token)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            logger.warning("malformed span event from worker %d ignored: %s", worker.number, exc)

    def _hang_up(self, connection: socket.socket, worker: _Worker) -> None:
        self._selector.unregister(connection)
        connection.close()
        if worker.open_tokens:
            logger.warning("worker %d disconnected with %d request(s) in flight: their spans end now",
                           worker.number, len(worker.open_tokens))
            now = time.monotonic()
            for token in worker.open_tokens:
                self.accountant.close_span((worker.number, token), now)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        self._selector.close()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass


def make_counter(kind: str, triton_metrics_url: str | None = None) -> EnergyCounter | None:
    """The configured counter; ``auto`` tries NVML and settles for none (pool estimates) without a GPU."""
    if kind == "estimate":
        return None
    if kind == "triton":
        if not triton_metrics_url:
            raise MeterError("energy.meter=triton needs energy.triton_metrics_url")
        return TritonMetricsEnergyCounter(triton_metrics_url)
    try:
        return NvmlEnergyCounter()
    except MeterError as exc:
        if kind == "nvml":
            raise
        logger.info("no NVML energy counter (%s): charging pool estimates", exc)
        return None
