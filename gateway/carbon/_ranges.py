"""Past ranges for the providers: splitting one into the spans an API serves per call, and keeping the
readings that fall inside it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, UTC

from .base import CarbonReading


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is taken as UTC, as ``CarbonReading`` takes it."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def spans(start: datetime, end: datetime, longest: timedelta) -> list[tuple[datetime, datetime]]:
    """Consecutive ``[from, to)`` spans of at most ``longest`` that cover ``[start, end)``; none when it is empty."""
    if longest <= timedelta(0):
        raise ValueError("a span must be longer than zero")
    found, moment = [], start
    while moment < end:
        found.append((moment, min(moment + longest, end)))
        moment += longest
    return found


def within(readings: Iterable[CarbonReading], start: datetime, end: datetime) -> list[CarbonReading]:
    """The readings whose period begins in ``[start, end)``, oldest first, one per timestamp (the first seen):
    consecutive calls may both return the period on their boundary."""
    kept: dict[datetime, CarbonReading] = {}
    for reading in readings:
        if start <= reading.timestamp < end:
            kept.setdefault(reading.timestamp, reading)
    return [kept[moment] for moment in sorted(kept)]
