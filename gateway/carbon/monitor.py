"""Keeps the current carbon intensity fresh in the background; requests never wait on it.

The monitor polls its ``CarbonSource`` every ``poll_interval`` seconds (and refetches the
provider's forecast every ``forecast_interval`` seconds). Requests read ``monitor.state``, a
snapshot that is replaced, never awaited.

Outage policy. When a poll fails (network, HTTP error, garbage payload) the last good value is
kept, with status ``stale``, for up to ``max_age`` seconds after it was fetched. After that the
monitor falls back to the provider's forecast for the current period if it fetched one
(``forecast``), else to ``default_intensity`` (``default``). The first good poll returns it to
``live``. A rejected response never replaces a good value.

The selector's window (C_low, C_high) comes from ``window_basis``:

* ``history`` (default): min and max of the values observed over the last ``window_hours``.
  The selector then ranks *now* against the recent past: a day that is dirtier than yesterday
  all day long pushes every request to the smallest models.
* ``forecast``: min and max of the provider's forecast for the next ``window_hours`` (and the
  current value). The selector ranks now against what is still to come, so the large models
  are served in the cleanest hours of the coming day, even when the whole day is unusually
  clean or dirty. Without a forecast (provider does not offer one, or it failed) the observed
  history is used, and ``CarbonState.window_basis`` says so.

``c_low``/``c_high`` override either bound (``window_basis`` then reads ``configured`` when both do).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, UTC
from typing import Literal

from ..policy.window import CarbonWindow
from .base import GRAMS_PER_KWH, CarbonReading, CarbonSource, CarbonSourceError

logger = logging.getLogger(__name__)

Status = Literal["live", "stale", "forecast", "default"]
WindowBasis = Literal["history", "forecast"]


@dataclass(frozen=True)
class CarbonState:
    """What the selector needs, read without awaiting anything, and how trustworthy it is.

    ``status``: ``live`` (the last poll succeeded), ``stale`` (polls fail; last good value kept),
    ``forecast`` (too old; the forecast for this period) or ``default`` (nothing better).
    """

    reading: CarbonReading
    window: CarbonWindow
    fetched_at: float  # monotonic clock, when ``reading`` was obtained
    status: Status = "live"
    source_up: bool = True
    consecutive_failures: int = 0
    last_error: str | None = None
    window_basis: str = "history"
    clock: Callable[[], float] = time.monotonic

    @property
    def intensity(self) -> float:
        return self.reading.intensity

    @property
    def grams_per_kwh(self) -> float | None:
        """The intensity as gCO2eq/kWh, or None when the source speaks another unit (WattTime's percentile)."""
        return self.reading.intensity if self.reading.unit == GRAMS_PER_KWH else None

    @property
    def stale(self) -> bool:
        """True whenever the value is not a fresh live reading."""
        return self.status != "live"

    def age_seconds(self) -> float:
        return max(self.clock() - self.fetched_at, 0.0)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CarbonMonitor:
    """Polls a ``CarbonSource`` and derives the selector's window from history or forecast."""

    def __init__(self, source: CarbonSource, *, poll_interval: float = 60.0, window_hours: float = 24.0,
                 c_low: float | None = None, c_high: float | None = None, default_intensity: float = 250.0,
                 max_age: float | None = None, window_basis: WindowBasis = "history",
                 forecast_interval: float = 1800.0, startup_timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] = _utcnow):
        if window_basis not in ("history", "forecast"):
            raise ValueError(f"window_basis must be 'history' or 'forecast', not {window_basis!r}")
        self.source = source
        self.poll_interval = poll_interval
        self.window_span = timedelta(hours=window_hours)
        self.c_low = c_low
        self.c_high = c_high
        self.default_intensity = default_intensity
        #: How long after its fetch the last good value may still be served; default: three polls.
        self.max_age = 3 * poll_interval if max_age is None else max_age
        self.window_basis = window_basis
        self.forecast_interval = forecast_interval
        self.startup_timeout = startup_timeout
        self._clock = clock
        self._now = now
        self._history: deque[CarbonReading] = deque()
        self._forecast: tuple[CarbonReading, ...] = ()
        self._forecast_at: float | None = None
        self._last_good: tuple[CarbonReading, float] | None = None
        self._failures = 0
        self._next_poll_in = poll_interval
        self._state: CarbonState | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def state(self) -> CarbonState:
        """The value in use; a live value older than ``max_age`` reads as stale, however the polls stopped."""
        state = self._state
        if state is None:
            raise RuntimeError("CarbonMonitor.start() has not run")
        if state.status == "live" and state.age_seconds() > self.max_age:
            return dataclasses.replace(state, status="stale", source_up=False,
                                       last_error=f"no successful poll for {state.age_seconds():.0f} s")
        return state

    @property
    def next_poll_in(self) -> float:
        """Seconds between the last poll and the next: ``poll_interval``, or longer when rate-limited."""
        return self._next_poll_in

    @property
    def forecast(self) -> tuple[CarbonReading, ...]:
        """The last forecast fetched, oldest first (empty when none)."""
        return self._forecast

    async def __aenter__(self) -> CarbonMonitor:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """First values (bounded by ``startup_timeout``), then polling in the background."""
        try:
            await asyncio.wait_for(self._prime(), self.startup_timeout)
        except TimeoutError:
            logger.warning("carbon source %s: no answer within %g s at startup; polling on",
                           self.source.name, self.startup_timeout)
            if self._state is None:
                self._failed(CarbonSourceError(f"no answer within {self.startup_timeout:g} s"))
        self._task = asyncio.create_task(self._poll_forever(), name="carbon-monitor")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.source.aclose()

    async def refresh(self) -> CarbonState:
        """Poll once now (forecast too, when due) and return the new state."""
        async with self._lock:
            await self._refresh_forecast_if_due()
            try:
                reading = await self.source.current()
            except CarbonSourceError as exc:
                self._failed(exc)
            except Exception as exc:  # a bug in a source must not stop the monitor
                logger.exception("carbon source %s raised unexpectedly", self.source.name)
                self._failed(exc)
            else:
                self._succeeded(reading)
            return self.state

    async def _prime(self) -> None:
        try:
            for reading in await self.source.history():
                self._remember(reading)
        except CarbonSourceError as exc:
            logger.warning("carbon source %s: no history: %s", self.source.name, exc)
        await self.refresh()

    async def _poll_forever(self) -> None:
        """Poll until cancelled: no exception, whatever raised it, ends the loop."""
        while True:
            await asyncio.sleep(self._next_poll_in)
            try:
                await self.refresh()
            except Exception as exc:
                logger.exception("carbon monitor: a poll failed unexpectedly; polling on")
                self._failed(exc)

    async def _refresh_forecast_if_due(self) -> None:
        fetch = getattr(self.source, "forecast", None)
        if fetch is None:
            return
        if self._forecast_at is not None and self._clock() - self._forecast_at < self.forecast_interval:
            return
        self._forecast_at = self._clock()
        try:
            self._forecast = tuple(await fetch())
        except CarbonSourceError as exc:
            logger.warning("carbon source %s: no forecast: %s", self.source.name, exc)
        except Exception:
            logger.exception("carbon source %s: forecast raised unexpectedly", self.source.name)

    def _succeeded(self, reading: CarbonReading) -> None:
        if self._state is not None and self._state.status != "live":
            logger.info("carbon source %s is back after %d failed poll(s)", self.source.name, self._failures)
        now = self._clock()
        self._failures = 0
        self._next_poll_in = self.poll_interval
        self._last_good = (reading, now)
        self._remember(reading)
        window, basis = self._window(reading)
        self._state = CarbonState(reading, window, now, "live", True, 0, None, basis, self._clock)

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        error = str(exc) or type(exc).__name__
        retry_after = getattr(exc, "retry_after", None)
        self._next_poll_in = max(self.poll_interval, retry_after or 0.0)
        reading, fetched_at, status = self._fallback()
        previous = self._state.status if self._state is not None else None
        window, basis = self._window(reading)
        self._state = CarbonState(reading, window, fetched_at, status, False, self._failures, error, basis,
                                  self._clock)
        if status != previous:
            logger.warning("carbon source %s failed (%d in a row): %s; serving %s intensity %.1f",
                           self.source.name, self._failures, error, status, reading.intensity)
        else:
            logger.info("carbon source %s failed (%d in a row): %s", self.source.name, self._failures, error)

    def _fallback(self) -> tuple[CarbonReading, float, Status]:
        now = self._clock()
        if self._last_good is not None:
            reading, fetched_at = self._last_good
            if now - fetched_at <= self.max_age:
                return reading, fetched_at, "stale"
        planned = self._forecast_for(self._now())
        if planned is not None and self._forecast_at is not None:
            return planned, self._forecast_at, "forecast"
        default = CarbonReading(intensity=self.default_intensity, timestamp=self._now(), source="default")
        return default, now, "default"

    def _forecast_for(self, moment: datetime) -> CarbonReading | None:
        """The forecast period holding ``moment``, if the forecast covers it."""
        points = self._forecast
        for index, point in enumerate(points):
            if index + 1 < len(points):
                end = points[index + 1].timestamp
            else:  # the last period lasts as long as the one before it
                step = point.timestamp - points[index - 1].timestamp if index else timedelta(hours=1)
                end = point.timestamp + step
            if point.timestamp <= moment < end:
                return point
        return None

    def _remember(self, reading: CarbonReading) -> None:
        if self._history and reading.timestamp < self._history[-1].timestamp:
            if self._history[-1].timestamp - reading.timestamp > self.window_span:
                self._history.clear()  # a replayed trace looped: start a fresh window
            else:
                return  # an older period than one already held: nothing new
        if not self._history or reading.timestamp != self._history[-1].timestamp:
            self._history.append(reading)
        horizon = reading.timestamp - self.window_span
        while self._history and self._history[0].timestamp < horizon:
            self._history.popleft()

    def _window(self, current: CarbonReading) -> tuple[CarbonWindow, str]:
        basis = "history"
        observed = [r.intensity for r in self._history]
        if self.window_basis == "forecast":
            ahead = [p.intensity for p in self._forecast
                     if current.timestamp <= p.timestamp < current.timestamp + self.window_span]
            if ahead:
                observed, basis = ahead, "forecast"
        observed = [*observed, current.intensity]
        low = self.c_low if self.c_low is not None else min(observed)
        high = self.c_high if self.c_high is not None else max(observed)
        if self.c_low is not None and self.c_high is not None:
            basis = "configured"
        return CarbonWindow(low=low, high=high), basis
