"""Keeps the current carbon intensity fresh in the background; requests never wait on it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..selection import CarbonWindow
from .base import CarbonReading, CarbonSource, CarbonSourceError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CarbonState:
    """What the selector needs, read without awaiting anything."""

    reading: CarbonReading
    window: CarbonWindow
    fetched_at: float  # monotonic clock
    stale: bool = False

    @property
    def intensity(self) -> float:
        return self.reading.intensity

    def age_seconds(self) -> float:
        return time.monotonic() - self.fetched_at


class CarbonMonitor:
    """Polls a ``CarbonSource`` and derives the selector's window from observed history.

    ``c_low``/``c_high`` override the observed bounds (needed for a static source, whose
    history is a single value).
    """

    def __init__(self, source: CarbonSource, *, poll_interval: float = 60.0, window_hours: float = 24.0,
                 c_low: float | None = None, c_high: float | None = None, default_intensity: float = 250.0):
        self.source = source
        self.poll_interval = poll_interval
        self.window_span = timedelta(hours=window_hours)
        self.c_low = c_low
        self.c_high = c_high
        self.default_intensity = default_intensity
        self._history: deque[CarbonReading] = deque()
        self._state: CarbonState | None = None
        self._task: asyncio.Task | None = None

    @property
    def state(self) -> CarbonState:
        if self._state is None:
            raise RuntimeError("CarbonMonitor.start() has not run")
        return self._state

    async def start(self) -> None:
        try:
            for reading in await self.source.history():
                self._remember(reading)
        except CarbonSourceError as exc:
            logger.warning("carbon source %s: no history: %s", self.source.name, exc)
        await self.refresh()
        self._task = asyncio.create_task(self._poll_forever(), name="carbon-monitor")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.source.aclose()

    async def refresh(self) -> None:
        try:
            reading = await self.source.current()
        except CarbonSourceError as exc:
            logger.warning("carbon source %s failed: %s", self.source.name, exc)
            if self._state is None:
                fallback = CarbonReading(intensity=self.default_intensity, timestamp=datetime.now().astimezone(),
                                         source="default")
                self._state = CarbonState(fallback, self._window(fallback), time.monotonic(), stale=True)
            return
        self._remember(reading)
        self._state = CarbonState(reading, self._window(reading), time.monotonic())

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            await self.refresh()

    def _remember(self, reading: CarbonReading) -> None:
        if self._history and reading.timestamp < self._history[-1].timestamp:
            self._history.clear()  # a replayed trace looped: start a fresh window
        if not self._history or reading.timestamp != self._history[-1].timestamp:
            self._history.append(reading)
        horizon = reading.timestamp - self.window_span
        while self._history and self._history[0].timestamp < horizon:
            self._history.popleft()

    def _window(self, current: CarbonReading) -> CarbonWindow:
        observed = [r.intensity for r in self._history] or [current.intensity]
        low = self.c_low if self.c_low is not None else min(observed)
        high = self.c_high if self.c_high is not None else max(observed)
        return CarbonWindow(low=low, high=high)
