"""Replay a recorded carbon-intensity trace as if it were live, optionally time-compressed.

Traces are CSV (a header row naming the columns) or JSON: a list of records, or an object whose
``data`` holds that list. In JSON, a column may be a dotted path, so a saved UK Carbon Intensity
API response replays with ``time_column: from`` and ``value_column: intensity.actual``.

The replay ties wall time to trace time: now is ``trace_time()``, and every wall second before or after
it is ``speedup`` trace seconds, the trace looping at its end. ``current``, ``history`` and ``forecast``
speak trace time (their timestamps are the trace's); ``past`` takes a wall-clock range and stamps what
it returns in wall time, so a policy can file it with what it observes live.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, UTC
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ..arrays import FloatArray
from ._ranges import utc
from .base import CarbonReading, CarbonSourceError
from .options import CarbonSourceOptions

#: The most readings ``past`` returns: past that (a time-compressed replay over a long range), it samples.
MAX_PAST_READINGS = 10_000


@dataclass(frozen=True)
class Trace:
    """A carbon-intensity time series: ``times`` in UTC epoch seconds (sorted), ``values`` in gCO2/kWh."""

    times: FloatArray
    values: FloatArray
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

    @property
    def typical_step(self) -> float:
        """The median time between periods, seconds (the GB trace mixes 30- and 15-minute steps)."""
        return float(np.median(np.diff(self.times))) if len(self.times) > 1 else 0.0

    def period_lengths(self) -> FloatArray:
        """Seconds from each value to the next; the last lasts one typical step (an hour if it is alone)."""
        last = self.typical_step or 3600.0
        return np.diff(self.times, append=self.times[-1] + last)

    def value_at(self, epoch: float) -> tuple[float, float]:
        """(period start, intensity) of the period holding ``epoch``: the trace is a step function."""
        index = max(int(np.searchsorted(self.times, epoch, side="right")) - 1, 0)
        return float(self.times[index]), float(self.values[index])


def parse_time(text: str) -> float:
    """Epoch seconds of unix seconds or an ISO 8601 date-time (naive: UTC; ``Z`` and offsets accepted)."""
    text = text.strip()
    try:
        return float(text)  # unix seconds
    except ValueError:
        pass
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:  # the shared traces are naive UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def load_trace(path: Path, time_column: str = "Time", value_column: str = "Carbon Intensity") -> Trace:
    """Load a CSV or JSON (by suffix ``.json``) trace; unreadable times or values are skipped and counted."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CarbonSourceError(f"cannot read trace {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    rows: Iterable[tuple[Any, Any]]
    if path.suffix.lower() == ".json":
        rows = _json_rows(path, text, time_column, value_column)
    else:
        rows = _csv_rows(path, text, time_column, value_column)
    return _build_trace(path, rows)


def _csv_rows(path: Path, text: str, time_column: str, value_column: str) -> Iterator[tuple[Any, Any]]:
    reader = csv.DictReader(text.splitlines())
    missing = {time_column, value_column} - set(reader.fieldnames or ())
    if missing:
        raise CarbonSourceError(f"trace {path} has no column(s) {sorted(missing)}; it has {reader.fieldnames}")
    return ((row[time_column], row[value_column]) for row in reader)


_MISSING = object()


def _lookup(record: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(record, dict) or key not in record:
            return _MISSING
        record = record[key]
    return record


def _json_rows(path: Path, text: str, time_column: str, value_column: str) -> list[tuple[Any, Any]]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise CarbonSourceError(f"trace {path} is not valid JSON: {exc}") from exc
    records = document.get("data") if isinstance(document, dict) else document
    if not isinstance(records, list):
        raise CarbonSourceError(f"trace {path} must hold a list of records, or an object with one under `data`")
    rows = [(_lookup(record, time_column), _lookup(record, value_column)) for record in records]
    if records and all(t is _MISSING or v is _MISSING for t, v in rows):
        raise CarbonSourceError(f"trace {path} has no record with both {time_column!r} and {value_column!r}")
    return rows


def _build_trace(path: Path, rows: Iterable[tuple[Any, Any]]) -> Trace:
    times: list[float] = []
    values: list[float] = []
    skipped = 0
    for raw_time, raw_value in rows:
        try:
            moment = parse_time(str(raw_time)) if isinstance(raw_time, str) else float(raw_time)
            value = float(raw_value)
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
                 history_hours: float = 24.0, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        if speedup <= 0:
            raise ValueError("speedup must be > 0")
        self.trace = trace
        self.speedup = speedup
        self.history_hours = history_hours
        self._clock = clock
        self._wall = wall
        self._origin_wall = clock()
        self._origin_trace = start.timestamp() if start is not None else trace.start

    @property
    def change_interval_s(self) -> float:
        """Wall seconds between the trace's values: how often it is worth polling."""
        return self.trace.typical_step / self.speedup

    def trace_time(self) -> float:
        elapsed = (self._clock() - self._origin_wall) * self.speedup
        offset = self._origin_trace - self.trace.start + elapsed
        duration = self.trace.duration
        return self.trace.start + (offset % duration if duration > 0 else 0.0)

    def _reading(self, period_start: float, value: float, forecast: bool = False) -> CarbonReading:
        return CarbonReading(intensity=value, timestamp=datetime.fromtimestamp(period_start, UTC),
                             source=self.name, forecast=forecast)

    async def current(self) -> CarbonReading:
        return self._reading(*self.trace.value_at(self.trace_time()))

    async def history(self) -> list[CarbonReading]:
        now = self.trace_time()
        times, values = self.trace.times, self.trace.values
        mask = (times >= now - self.history_hours * 3600) & (times <= now)
        return [self._reading(float(t), float(v)) for t, v in zip(times[mask], values[mask], strict=True)]

    async def forecast(self) -> list[CarbonReading]:
        """The trace's own next ``history_hours``: a perfect forecast, for trying the forecast window.

        It does not wrap past the end of the trace.
        """
        period_start, _ = self.trace.value_at(self.trace_time())
        times, values = self.trace.times, self.trace.values
        mask = (times >= period_start) & (times < period_start + self.history_hours * 3600)
        return [self._reading(float(t), float(v), forecast=True)
                for t, v in zip(times[mask], values[mask], strict=True)]

    async def past(self, start: datetime, end: datetime) -> list[CarbonReading]:
        """What the replay served, or would have served, over the wall-clock range ``[start, end)``: each trace
        period that begins in it, stamped with the wall time it begins at (trace time runs ``speedup`` times
        faster and loops, so before the replay started it shows the trace's earlier or, looping back, later
        values).

        A range that holds more than ``MAX_PAST_READINGS`` periods (a fast replay over days) is sampled
        instead: that many readings evenly spread over the range, each the value current() gives at its time.
        """
        start_wall, end_wall = utc(start).timestamp(), utc(end).timestamp()
        if end_wall <= start_wall:
            return []
        now_wall, now_trace = self._wall(), self._unwrapped_trace_time()
        low, high = (now_trace + (moment - now_wall) * self.speedup for moment in (start_wall, end_wall))
        loop = self.trace.duration or 3600.0  # a lone value repeats (hourly, as its period lasts)
        if (high - low) / loop * len(self.trace.times) > MAX_PAST_READINGS:
            moments = np.linspace(start_wall, end_wall, MAX_PAST_READINGS, endpoint=False)
            positions = self.trace.start + np.mod(now_trace + (moments - now_wall) * self.speedup - self.trace.start,
                                                  loop)
            indices = np.maximum(np.searchsorted(self.trace.times, positions, side="right") - 1, 0)
            return self._walled(moments, self.trace.values[indices])
        starts, values = [], []
        first, last = (math.floor((bound - self.trace.start) / loop) for bound in (low, high))
        for lap in range(first, last + 1):
            shifted = self.trace.times + lap * loop
            inside = (shifted >= low) & (shifted < high)
            starts.append(shifted[inside])
            values.append(self.trace.values[inside])
        return self._walled(now_wall + (np.concatenate(starts) - now_trace) / self.speedup, np.concatenate(values))

    async def aclose(self) -> None:
        return None

    def _unwrapped_trace_time(self) -> float:
        """Trace time now, counted on without looping."""
        return self._origin_trace + (self._clock() - self._origin_wall) * self.speedup

    def _walled(self, moments: FloatArray, values: FloatArray) -> list[CarbonReading]:
        return [CarbonReading(intensity=float(value), timestamp=datetime.fromtimestamp(float(moment), UTC),
                              source=self.name) for moment, value in zip(moments, values, strict=True)]


class TraceOptions(CarbonSourceOptions):
    """``carbon.source: trace``: a recorded trace replayed as live, optionally faster than real time."""

    source: Literal["trace"] = "trace"
    trace_path: Path = Field(description="A .csv or .json file.")
    time_column: str = "Time"
    value_column: str = "Carbon Intensity"
    speedup: float = Field(default=1.0, gt=0, description="Trace seconds per wall second.")
    start: datetime | None = Field(default=None, description="Where in the trace to begin.")

    def build(self) -> TraceReplaySource:
        trace = load_trace(self.trace_path, self.time_column, self.value_column)
        return TraceReplaySource(trace, speedup=self.speedup, start=self.start, history_hours=self.window_hours)
