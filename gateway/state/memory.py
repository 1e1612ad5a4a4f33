"""``MemoryStore``: the file store's document held in memory, for one process.

It keeps nothing across a restart, so it is no ``state.url`` of a gateway: it is what a replay uses to
simulate a fleet sharing a store (``gateway.offline.replay``), with the same rules as the file store (each
delta applied once per writer, accounts by period, history by bucket), at the replay's own clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .file import StateDocument
from .models import StateDelta, StateSnapshot


class MemoryStore:
    """A ``PolicyStore`` in memory; ``exchange_now`` and ``load_now`` are its synchronous twins."""

    name = "memory"

    def __init__(self, clock: Callable[[], float] = time.time):
        self._document = StateDocument()
        self._clock = clock

    def exchange_now(self, delta: StateDelta) -> StateSnapshot:
        return self._document.apply(delta, self._clock())

    def load_now(self, key: str, period_start: float, since: float) -> StateSnapshot:
        return self._document.load(key, period_start, since)

    async def exchange(self, delta: StateDelta) -> StateSnapshot:
        return self.exchange_now(delta)

    async def load(self, key: str, period_start: float, since: float) -> StateSnapshot:
        return self.load_now(key, period_start, since)

    async def close(self) -> None:
        return None
