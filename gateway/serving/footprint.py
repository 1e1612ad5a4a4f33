"""The gateway's own footprint: the CPU its process spends, and an estimate of that CPU's energy.

The gateway exists to save energy, so it reports what it costs: every ``interval_s`` the process's CPU
seconds since the last report, and those seconds x ``watts_per_core`` as estimated joules, go to the
metrics sink. Operators compare it per request with what the selector saves (the dashboard's "Does
the gateway pay for itself?"). It is an estimate: CPU time, not a power meter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..metrics.sink import MetricsSink


class Footprint:
    def __init__(self, sink: MetricsSink, watts_per_core: float,
                 clock: Callable[[], float] = time.process_time) -> None:
        self.sink = sink
        self.watts_per_core = watts_per_core
        self._clock = clock
        self._last = clock()

    def report(self) -> float:
        """Report the CPU seconds spent since the last report; returns them."""
        now = self._clock()
        seconds, self._last = max(now - self._last, 0.0), now
        self.sink.gateway_cpu(seconds, seconds * self.watts_per_core)
        return seconds

    async def run_forever(self, interval_s: float = 1.0) -> None:
        try:
            while True:
                await asyncio.sleep(interval_s)
                self.report()
        finally:  # the last stretch counts too
            self.report()
