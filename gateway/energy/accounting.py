"""Sampling windows, split between the requests that computed in them; receipts of a request's share."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from ..pool import ModelSpec
from ..metrics.sink import MetricsSink, NullSink
from .base import EnergyCounter, co2_grams

logger = logging.getLogger(__name__)


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
    """Apportion a window's measured energy between idle and the spans computing in it.

    Power is taken as even across the window: the share of the window when no span was computing is
    idle, then ``idle_power_w`` of the time some span was; the rest goes to the spans in proportion to
    their overlap x their weight (profiled energy per second). Conservation: ``idle + sum(shares) ==
    joules`` for every window.
    """
    weights = [(span, span.overlap(t0, t1) * span.weight_per_second) for span in spans]
    weights = [(span, w) for span, w in weights if w > 0]
    total = sum(w for _, w in weights)
    if total <= 0 or joules <= 0:
        return WindowSplit(measured=joules, idle=joules)
    busy = _covered(t0, t1, [span for span, _ in weights])
    busy_fraction = busy / (t1 - t0) if t1 > t0 else 1.0
    idle = min(joules, joules * (1.0 - busy_fraction) + max(0.0, idle_power_w) * busy)
    active = joules - idle
    return WindowSplit(measured=joules, idle=idle, by_span=[(span, active * w / total) for span, w in weights])


def _covered(t0: float, t1: float, spans: list[Span]) -> float:
    """Seconds of [t0, t1] during which at least one of ``spans`` was computing."""
    intervals = sorted((max(s.start, t0), t1 if s.end is None else min(s.end, t1)) for s in spans)
    covered, reach = 0.0, t0
    for start, end in intervals:
        start = max(start, reach)
        if end > start:
            covered += end - start
            reach = end
    return covered


class Receipts:
    """Futures for the spans whose measured joules a request waits for; lives on the event loop."""

    def __init__(self) -> None:
        self._waiting: dict[int, asyncio.Future[float | None]] = {}

    def expect(self, token: int) -> Callable[[float | None], None]:
        """Register ``token``; returns a callback that resolves it from any thread."""
        loop = asyncio.get_running_loop()
        self._waiting[token] = loop.create_future()

        def resolve(joules: float | None) -> None:
            loop.call_soon_threadsafe(self.resolve, token, joules)

        return resolve

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

    A span still open after ``max_span_s`` (its end never came) is closed then: a backstop, since a
    worker that exits has its spans closed by the listener.
    """

    def __init__(self, counter: EnergyCounter, interval_s: float = 0.1, idle_power_w: float = 0.0,
                 pue: float = 1.0, clock: Callable[[], float] = time.monotonic, max_span_s: float = 600.0,
                 sink: MetricsSink | None = None):
        self.counter = counter
        self.sink: MetricsSink = sink or NullSink()
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
        self._last_joules = 0.0  # the counter at ``_last_time``; read only while that is set
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.totals = {"measured": 0.0, "idle": 0.0, "attributed": 0.0}
        self.healthy = True
        self._receipts = Receipts()

    @property
    def name(self) -> str:
        return self.counter.name

    def begin(self, model: ModelSpec, items: int, intensity: float | None, receipt: bool = False) -> int:
        token = next(self._tokens)
        on_final = self._receipts.expect(token) if receipt else None
        self.open_span(token, Span(model.name, model.energy_mj * items, intensity, self._clock(), on_final=on_final))
        return token

    def end(self, token: int) -> None:
        self.close_span(token)

    async def receipt(self, token: int, timeout_s: float) -> float | None:
        return await self._receipts.wait(token, timeout_s)

    @property
    def open_spans(self) -> int:
        with self._lock:
            return len(self._active)

    def open_span(self, key: Hashable, span: Span) -> None:
        with self._lock:
            self._active[key] = span

    def close_span(self, key: Hashable, end: float | None = None) -> None:
        """End the span ``key`` at ``end`` (on this accountant's clock; default: now)."""
        with self._lock:
            span = self._active.pop(key, None)
            if span is not None:
                span.end = self._clock() if end is None else end
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
        self.sink.meter_up(self.counter.name, up)

    def _publish(self, split: WindowSplit, retired: list[Span]) -> None:
        meter = self.counter.name
        self.totals["measured"] += split.measured
        self.totals["idle"] += split.idle
        self.sink.measured(meter, split.measured, split.idle)
        for span, share in split.by_span:
            self.totals["attributed"] += share
            co2 = co2_grams(share, span.intensity, self.pue) if span.intensity is not None else None
            self.sink.energy(span.model, meter, share, co2)
        self._retire(retired)

    def _retire(self, spans: list[Span], unmeasured: bool = False) -> None:
        """Spans charged for the last time: their energy is final, or unknown if the meter missed part of it."""
        for span in spans:
            span.unmeasured = span.unmeasured or unmeasured
            if not span.unmeasured:
                self.sink.request_energy(span.model, span.joules)
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
