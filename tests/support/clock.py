"""A clock for code that takes ``clock=``."""

from __future__ import annotations


class ManualClock:
    """A clock that only moves when a test sets ``now``: pass it wherever the code takes ``clock=``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
