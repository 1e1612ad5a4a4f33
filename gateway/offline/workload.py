"""The replayed workload: a carbon trace's periods and the requests each one receives.

A request trace (``load_request_trace``) is a CSV or a whitespace-separated table with a header row,
its times unix seconds or ISO 8601: either counts per time (e.g. the hourly Wikipedia trace) or an
arrival log, one row per request. Both are summed into UTC hours. In a count trace an hour without a
row is missing data; in an arrival log an hour without a request, inside the logged span, is zero.

``weekly_profile`` folds the observed hours into the mean requests per hour of each (UTC weekday,
UTC hour) slot. A trace shorter than a week fills the slots it lacks with its hour-of-day means, one
shorter than a day fills the hours it lacks with its mean rate; its notes say so.

``build_workload`` gives each carbon period the profile's requests over its time and scales all
periods together so the replayed range holds ``total_requests``. A carbon value lasts until the next
one, but at most ``max_hold_periods`` typical steps: time beyond that, in a gap of the trace, is left
out of the replay (no requests). The workload reports the gaps held and left out in ``gaps`` and
``notes``. ``lead`` holds the periods just before the range, with requests on the same scale, for a
causal policy to warm up on.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, UTC
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..arrays import FloatArray
from ..carbon.trace import Trace, parse_time

HOUR = 3600.0
WEEK_SLOTS = 7 * 24
_MONDAY_BEFORE_EPOCH_H = 3 * 24  # 1970-01-01 was a Thursday
# A span this long means the times are not unix seconds (milliseconds, say); it would not fit in memory.
_MAX_SPAN_HOURS = 50 * 366 * 24
_LISTED_GAPS = 3


# --- request traces ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestTrace:
    """A request trace summed into UTC hours: every hour from its first to its last, in order."""

    times: FloatArray  # hour starts, epoch seconds
    counts: FloatArray  # requests in each hour; 0 where not observed
    observed: npt.NDArray[np.bool_]  # False: a count trace without a row for that hour (missing, not zero)
    skipped_rows: int = 0  # unreadable time or count, a negative count, or too few fields
    description: str = ""  # what was read, for reports


def load_request_trace(path: Path, time_column: str = "timestamp",
                       count_column: str | None = "sum_req") -> RequestTrace:
    """Load a CSV (a comma in the header line) or a whitespace-separated table, rows in any order.

    ``count_column=None``: an arrival log, each row one request. Unusable rows are skipped and counted.
    """
    path = Path(path)
    header, rows = _read_table(path)
    wanted = [time_column] if count_column is None else [time_column, count_column]
    missing = [name for name in wanted if name not in header]
    if missing:
        raise ValueError(f"request trace {path} has no column(s) {missing}; it has {header}")
    columns, short_rows = _columns(rows, [header.index(name) for name in wanted])
    times = _parse_times(columns[0])
    counts = np.ones(len(times)) if count_column is None else _parse_floats(columns[1])
    usable = np.isfinite(times) & np.isfinite(counts) & (counts >= 0)
    skipped = short_rows + int(np.count_nonzero(~usable))
    if not usable.any():
        raise ValueError(f"request trace {path} has no usable rows ({skipped:,} skipped: too few fields, an "
                         f"unreadable {time_column!r}{'' if count_column is None else f' or {count_column!r}'}, "
                         "or a negative count)")
    return _hourly(path, times[usable], counts[usable], count_column is None, skipped)


def _read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and non-blank rows, split on commas if the header line has one, else on whitespace."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise ValueError(f"request trace {path} is empty")
    body = lines[first + 1:]
    if "," in lines[first]:
        header = [name.strip() for name in next(csv.reader([lines[first]]))]
        return header, [row for row in csv.reader(body) if row]
    return lines[first].split(), [row for row in map(str.split, body) if row]


def _columns(rows: list[list[str]], indexes: Sequence[int]) -> tuple[list[list[str]], int]:
    """The given columns of the rows long enough to hold them, and how many rows were too short."""
    need = max(indexes) + 1
    kept = [row for row in rows if len(row) >= need]
    return [[row[i] for row in kept] for i in indexes], len(rows) - len(kept)


def _parse_floats(texts: list[str]) -> FloatArray:
    """Numbers; NaN where a text is not one."""
    try:
        return np.array(texts, dtype=np.float64)
    except ValueError:
        return np.fromiter((_float_or_nan(text) for text in texts), np.float64, len(texts))


def _parse_times(texts: list[str]) -> FloatArray:
    """Epoch seconds; NaN where a text is neither unix seconds nor an ISO 8601 date-time."""
    try:
        return np.array(texts, dtype=np.float64)  # all unix seconds: no parsing row by row
    except ValueError:
        return np.fromiter((_time_or_nan(text) for text in texts), np.float64, len(texts))


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _time_or_nan(text: str) -> float:
    try:
        return parse_time(text)
    except (ValueError, OverflowError):
        return math.nan


def _hourly(path: Path, times: FloatArray, counts: FloatArray, arrival_log: bool, skipped: int) -> RequestTrace:
    hours = np.floor(times / HOUR)
    first, last = float(hours.min()), float(hours.max())
    if last - first >= _MAX_SPAN_HOURS:
        raise ValueError(f"request trace {path} spans {_utc(first * HOUR)} to {_utc(last * HOUR)}: "
                         "are its times unix seconds?")
    index = (hours - first).astype(np.intp)
    span = int(last - first) + 1
    sums = np.bincount(index, weights=counts, minlength=span).astype(np.float64, copy=False)
    observed = np.ones(span, dtype=bool) if arrival_log else np.bincount(index, minlength=span) > 0
    starts = (first + np.arange(span, dtype=np.float64)) * HOUR
    return RequestTrace(starts, sums, observed, skipped, _describe(starts, sums, observed, arrival_log, skipped))


def _describe(starts: FloatArray, sums: FloatArray, observed: npt.NDArray[np.bool_], arrival_log: bool,
              skipped: int) -> str:
    total, span, seen = float(sums.sum()), len(starts), int(np.count_nonzero(observed))
    since = f"from {_utc(float(starts[0]))}"
    if arrival_log:
        text = f"request trace (arrival log): {total:,.0f} requests over {span:,} h {since}"
    else:
        text = f"request trace (counts): {total:,.0f} requests in {seen:,} of {span:,} h {since}"
        if seen < span:
            text += f"; {_plural(span - seen, 'hour')} without a row: missing data, not zero"
    return text + (f"; {skipped:,} rows skipped" if skipped else "")


# --- the weekly profile --------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestProfile:
    """Mean requests per hour in each (UTC weekday, UTC hour) slot, Monday 00:00 first (``week_slot``)."""

    rates: FloatArray  # shape (168,)
    notes: tuple[str, ...] = ()  # what was assumed to fill slots the trace does not cover


def week_slot(times: np.ndarray) -> np.ndarray:
    """(UTC weekday, UTC hour) slot 0..167 of epoch seconds; Monday 00:00 is slot 0."""
    hours = np.floor(np.asarray(times, dtype=np.float64) / HOUR).astype(np.int64)
    return ((hours // 24 + 3) % 7) * 24 + hours % 24  # 1970-01-01 was a Thursday (weekday 3)


def weekly_profile(requests: RequestTrace) -> RequestProfile:
    """The mean of the observed hours in each slot; slots the trace never covers are filled, with a note."""
    counts = requests.counts[requests.observed]
    if not counts.any():
        raise ValueError("the request trace holds no requests: every observed hour is zero")
    slots = week_slot(requests.times[requests.observed])
    seen = np.bincount(slots, minlength=WEEK_SLOTS)
    sums = np.bincount(slots, weights=counts, minlength=WEEK_SLOTS)
    week = np.divide(sums, seen, out=np.zeros(WEEK_SLOTS), where=seen > 0).reshape(7, 24)
    present = (seen > 0).reshape(7, 24)
    by_hour, hour_note = _hour_of_day_means(week, present)
    notes = [] if hour_note is None else [hour_note]
    if not present.all():
        covered = int(np.count_nonzero(present))
        notes.append(f"the request trace covers {covered} of the week's 168 (weekday, hour) slots "
                     f"({covered / 24:.3g} days): the other slots repeat its hour-of-day means")
    rates = np.where(present, week, by_hour).reshape(WEEK_SLOTS)
    return RequestProfile(rates, tuple(notes))


def _hour_of_day_means(week: FloatArray, present: npt.NDArray[np.bool_]) -> tuple[FloatArray, str | None]:
    """Each hour of the day's mean over the weekdays that have it; hours no day has take the mean of the rest."""
    days = present.sum(axis=0)
    by_hour = np.divide(week.sum(axis=0), days, out=np.zeros(24), where=days > 0)
    if days.all():
        return by_hour, None
    hours = int(np.count_nonzero(days))
    fill = float(by_hour[days > 0].mean())
    note = (f"the request trace covers {hours} of the 24 hours of the day: the other {24 - hours} take the mean "
            f"rate of those {hours} ({fill:,.4g} requests/h)")
    return np.where(days > 0, by_hour, fill), note


# --- the workload --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gaps:
    """Intervals of the carbon trace longer than its typical step."""

    held: int = 0  # gaps in which the last value was held past its typical step
    held_hours: float = 0.0  # hours filled by holding, up to the hold limit
    left_out: tuple[tuple[float, float], ...] = ()  # (start epoch, hours) beyond the hold limit, longest first

    @property
    def left_out_hours(self) -> float:
        return sum(hours for _, hours in self.left_out)


@dataclass(frozen=True)
class Workload:
    """The replayed periods: start times, lengths (s), intensities (g/kWh) and request counts."""

    times: FloatArray
    durations: FloatArray  # to the next value, at most max_hold_periods typical steps
    intensities: FloatArray
    counts: FloatArray
    trace: Trace  # the whole carbon trace, for windows and forecasts that look before the range
    gaps: Gaps = Gaps()
    notes: tuple[str, ...] = ()  # what was assumed: gaps held or left out, the request profile's fills
    lead: Workload | None = None  # periods before the range (same requests per profile-hour), to warm up on

    @property
    def total_requests(self) -> float:
        return float(self.counts.sum())


def build_workload(trace: Trace, profile: RequestProfile | FloatArray, total_requests: float,
                   start: datetime | None = None, end: datetime | None = None, *,
                   max_hold_periods: int = 4, lead_hours: float = 0.0) -> Workload:
    """The periods in [start, end) with ``total_requests`` spread over them as the profile's rates say,
    and, for ``lead_hours > 0``, a ``lead`` of the periods in [start - lead_hours, start)."""
    if max_hold_periods < 1:
        raise ValueError(f"max_hold_periods must be at least 1 (a value's own period), not {max_hold_periods}")
    if lead_hours < 0:
        raise ValueError(f"lead_hours must not be negative, not {lead_hours}")
    rates = profile.rates if isinstance(profile, RequestProfile) else np.asarray(profile, dtype=np.float64)
    if rates.shape != (WEEK_SLOTS,):
        raise ValueError(f"a weekly profile has {WEEK_SLOTS} rates, not {rates.shape}")
    step = trace.typical_step or HOUR
    lengths = trace.period_lengths()
    durations = np.minimum(lengths, max_hold_periods * step)
    requests = _profile_requests(rates, trace.times, durations)
    lo = _epoch(start) if start is not None else -math.inf
    hi = _epoch(end) if end is not None else math.inf
    main = (trace.times >= lo) & (trace.times < hi)
    if not main.any():
        raise ValueError(f"the carbon trace has no periods in [{start}, {end})")
    if not requests[main].sum() > 0:
        raise ValueError(f"the request profile has no requests in [{start}, {end})")
    requests *= total_requests / requests[main].sum()
    periods = _Periods(trace, lengths, durations, requests, step, max_hold_periods)
    lead: Workload | None = None
    lead_notes: tuple[str, ...] = ()
    if lead_hours > 0:
        lead_notes = tuple(_lead_note(trace, lo, lead_hours))
        before = (trace.times >= lo - lead_hours * HOUR) & (trace.times < lo)
        if before.any():
            lead = periods.select(before, "carbon trace, lead-in")
            lead_notes += lead.notes
    workload = periods.select(main, "carbon trace")
    profile_notes = profile.notes if isinstance(profile, RequestProfile) else ()
    skipped = (f"carbon trace: {_plural(trace.skipped_rows, 'row')} skipped (blank or unreadable time or value, "
               "or a negative value)",) if trace.skipped_rows else ()
    return replace(workload, notes=(*skipped, *workload.notes, *lead_notes, *profile_notes), lead=lead)


@dataclass(frozen=True)
class _Periods:
    """Every period of a trace, with its requests: ``select`` cuts a workload out of them."""

    trace: Trace
    lengths: FloatArray  # to the next value
    durations: FloatArray  # replayed: at most the hold limit
    requests: FloatArray
    step: float
    max_hold_periods: int

    def select(self, mask: npt.NDArray[np.bool_], label: str) -> Workload:
        gaps = _gaps(self.trace.times[mask], self.lengths[mask], self.step, self.max_hold_periods * self.step)
        return Workload(self.trace.times[mask], self.durations[mask], self.trace.values[mask], self.requests[mask],
                        self.trace, gaps, _gap_notes(label, gaps, self.step, self.max_hold_periods))


def _profile_requests(rates: FloatArray, starts: FloatArray, seconds: FloatArray) -> FloatArray:
    """Requests at the profile's hourly rates over [start, start + seconds): a held period spans slots."""
    weeks_from, within_from = _week_position(rates, starts)
    weeks_to, within_to = _week_position(rates, starts + seconds)
    return (weeks_to - weeks_from) * float(rates.sum()) + within_to - within_from


def _week_position(rates: FloatArray, epochs: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(Mondays since the one before the epoch, requests at ``rates`` from that week's Monday 00:00)."""
    hours = epochs / HOUR + _MONDAY_BEFORE_EPOCH_H
    weeks = np.floor(hours / WEEK_SLOTS)
    within = hours - weeks * WEEK_SLOTS
    slot = np.minimum(within.astype(np.intp), WEEK_SLOTS - 1)
    before = np.concatenate([[0.0], np.cumsum(rates)])
    return weeks, before[slot] + (within - slot) * rates[slot]


def _gaps(times: FloatArray, lengths: FloatArray, step: float, limit: float) -> Gaps:
    held = np.minimum(lengths, limit) - step
    beyond = lengths > limit
    left_out = sorted(((float(t) + limit, (float(length) - limit) / HOUR)
                       for t, length in zip(times[beyond], lengths[beyond], strict=True)),
                      key=lambda gap: -gap[1])
    return Gaps(int(np.count_nonzero(held > 0)), float(held[held > 0].sum()) / HOUR, tuple(left_out))


def _gap_notes(label: str, gaps: Gaps, step: float, max_hold_periods: int) -> tuple[str, ...]:
    limit = f"{_span(max_hold_periods * step)} ({max_hold_periods} x {_span(step)})"
    parts = []
    if gaps.held:
        parts.append(f"{_plural(gaps.held, 'gap')} held for up to {limit}: {gaps.held_hours:.1f} h filled")
    if gaps.left_out:
        listed = ", ".join(f"{hours:.1f} h from {_utc(since)}" for since, hours in gaps.left_out[:_LISTED_GAPS])
        more = len(gaps.left_out) - _LISTED_GAPS
        parts.append(f"{_plural(len(gaps.left_out), 'gap')} longer than {limit} left out of the replay "
                     f"({gaps.left_out_hours:.1f} h): {listed}{f' and {more} more' if more > 0 else ''}")
    return (f"{label}: {'; '.join(parts)}",) if parts else ()


def _lead_note(trace: Trace, lo: float, lead_hours: float) -> Iterable[str]:
    available = (lo - trace.start) / HOUR if math.isfinite(lo) else 0.0
    if available < lead_hours:
        yield (f"lead-in: {max(available, 0.0):.1f} h of the {lead_hours:g} h asked before the range "
               f"(the carbon trace starts {_utc(trace.start)})")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _span(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds < HOUR else f"{seconds / HOUR:g} h"


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
