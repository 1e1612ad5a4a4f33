"""Replay a recorded carbon-intensity trace as if it were live, optionally time-compressed."""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .base import CarbonReading, CarbonSourceError


@dataclass(frozen=True)
class Trace:
    """A carbon-intensity time series: ``times`` in UTC epoch seconds (sorted), ``values`` in gCO2/kWh."""

    times: np.ndarray
    values: np.ndarray
    skipped_rows: int = 0

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def duration(self) -> float:
        """Span covered, counting the last step as lasting as long as the one before it."""
        if len(self.times) < 2:
            return 0.0
        return float(self.times[-1] - self.times[0] + (self.times[-1] - self.times[-2]))

    def value_at(self, epoch: float) -> tuple[float, float]:
        """(period start, intensity) of the period holding ``epoch``: the trace is a step function."""
        index = max(int(np.searchsorted(self.times, epoch, side="right")) - 1, 0)
        return float(self.times[index]), float(self.values[index])


def _parse_time(text: str) -> float:
    text = text.strip()
    try:
        return float(text)  # unix seconds
    except ValueError:
        pass
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:  # the shared traces are naive UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def load_trace(path: Path, time_column: str = "Time", value_column: str = "Carbon Intensity") -> Trace:
    """Load a CSV trace; rows with an unreadable time or value are skipped and counted."""
    path = Path(path)
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise CarbonSourceError(f"cannot read trace {path}: {exc.strerror}") from exc
    times: list[float] = []
    values: list[float] = []
    skipped = 0
    with handle:
        reader = csv.DictReader(handle)
        missing = {time_column, value_column} - set(reader.fieldnames or ())
        if missing:
            raise CarbonSourceError(
                f"trace {path} has no column(s) {sorted(missing)}; it has {reader.fieldnames}"
            )
        for row in reader:
            try:
                moment = _parse_time(row[time_column])
                value = float(row[value_column])
            except (TypeError, ValueError):
                skipped += 1
                continue
            if not math.isfinite(value) or value < 0:
                skipped += 1
                continue
            times.append(moment)
            values.append(value)
    if not times:
        raise CarbonSourceError(f"trace {path} holds no usable rows")
    order = np.argsort(np.asarray(times), kind="stable")
    return Trace(np.asarray(times)[order], np.asarray(values)[order], skipped)


class TraceReplaySource:
    """Serves a trace as live data: trace time advances ``speedup`` times faster than wall time.

    Replay starts at ``start`` (default: the trace's first period) and loops at the end, so a day
    of half-hours replays in 24 minutes at ``speedup=60``.
    """

    name = "trace"

    def __init__(self, trace: Trace, speedup: float = 1.0, start: datetime | None = None,
                 history_hours: float = 24.0, clock=time.monotonic):
        if speedup <= 0:
            raise ValueError("speedup must be > 0")
        self.trace = trace
        self.speedup = speedup
        self.history_hours = history_hours
        self._clock = clock
        self._origin_wall = clock()
        self._origin_trace = start.timestamp() if start is not None else trace.start

    def trace_time(self) -> float:
        elapsed = (self._clock() - self._origin_wall) * self.speedup
        offset = self._origin_trace - self.trace.start + elapsed
        duration = self.trace.duration
        return self.trace.start + (offset % duration if duration > 0 else 0.0)

    def _reading(self, period_start: float, value: float) -> CarbonReading:
        return CarbonReading(intensity=value, timestamp=datetime.fromtimestamp(period_start, timezone.utc),
                             source=self.name)

    async def current(self) -> CarbonReading:
        return self._reading(*self.trace.value_at(self.trace_time()))

    async def history(self) -> list[CarbonReading]:
        now = self.trace_time()
        times, values = self.trace.times, self.trace.values
        mask = (times >= now - self.history_hours * 3600) & (times <= now)
        return [self._reading(float(t), float(v)) for t, v in zip(times[mask], values[mask])]

    async def aclose(self) -> None:
        return None
