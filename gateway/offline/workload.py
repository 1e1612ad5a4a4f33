"""The replayed workload: a carbon trace's periods and the requests each one receives.

Requests per period come from a request trace (unix-second timestamps and counts, e.g. the hourly
Wikipedia trace) folded into a weekly profile: the mean count of each (UTC weekday, UTC hour) slot.
Each carbon period gets its slot's rate times its length, and all periods are scaled together so
the replayed range holds ``total_requests``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..carbon.trace import Trace

HOUR = 3600.0
WEEK_SLOTS = 7 * 24


@dataclass(frozen=True)
class RequestTrace:
    times: np.ndarray  # unix seconds, sorted
    counts: np.ndarray


def load_request_trace(path: Path, time_column: str = "timestamp", count_column: str = "sum_req") -> RequestTrace:
    """A whitespace-separated table with a header row (the Wikipedia trace); rows in any order."""
    # Structured (a float64 field per column), whatever numpy's stubs say for dtype=np.float64.
    table: npt.NDArray[Any] = np.genfromtxt(path, names=True, dtype=np.float64)
    missing = {time_column, count_column} - set(table.dtype.names or ())
    if missing:
        raise ValueError(f"request trace {path} has no column(s) {sorted(missing)}")
    keep = np.isfinite(table[time_column]) & np.isfinite(table[count_column]) & (table[count_column] >= 0)
    order = np.argsort(table[time_column][keep], kind="stable")
    return RequestTrace(table[time_column][keep][order], table[count_column][keep][order])


def week_slot(times: np.ndarray) -> np.ndarray:
    """(UTC weekday, UTC hour) slot 0..167 of epoch seconds; Monday 00:00 is slot 0."""
    hours = np.floor(np.asarray(times, dtype=np.float64) / HOUR).astype(np.int64)
    return ((hours // 24 + 3) % 7) * 24 + hours % 24  # 1970-01-01 was a Thursday (weekday 3)


def weekly_profile(requests: RequestTrace) -> np.ndarray:
    """Mean requests per hour in each of the 168 (weekday, hour) slots; an empty slot takes its
    hour-of-day mean over the other days."""
    slots = week_slot(requests.times)
    sums = np.bincount(slots, weights=requests.counts, minlength=WEEK_SLOTS)
    seen = np.bincount(slots, minlength=WEEK_SLOTS)
    profile = np.divide(sums, seen, out=np.full(WEEK_SLOTS, np.nan), where=seen > 0)
    by_hour = np.nanmean(profile.reshape(7, 24), axis=0)
    profile = np.where(np.isnan(profile), np.tile(by_hour, 7), profile)
    if np.isnan(profile).any():
        raise ValueError("the request trace does not cover every hour of the day")
    return profile


@dataclass(frozen=True)
class Workload:
    """The replayed periods: start times, lengths (s), intensities (g/kWh) and request counts."""

    times: np.ndarray
    durations: np.ndarray
    intensities: np.ndarray
    counts: np.ndarray
    trace: Trace  # the whole carbon trace, for windows and forecasts that look before the range

    @property
    def total_requests(self) -> float:
        return float(self.counts.sum())


def build_workload(trace: Trace, profile: np.ndarray, total_requests: float,
                   start: datetime | None = None, end: datetime | None = None) -> Workload:
    times = trace.times
    durations = np.diff(times, append=times[-1] + (times[-1] - times[-2] if len(times) > 1 else HOUR))
    lo = _epoch(start) if start is not None else -math.inf
    hi = _epoch(end) if end is not None else math.inf
    keep = (times >= lo) & (times < hi)
    if not keep.any():
        raise ValueError(f"the carbon trace has no periods in [{start}, {end})")
    rate = profile[week_slot(times[keep])] * durations[keep] / HOUR
    counts = rate * (total_requests / rate.sum())
    return Workload(times[keep], durations[keep], trace.values[keep], counts, trace)


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
