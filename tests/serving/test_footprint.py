"""The gateway's own footprint: CPU seconds since the last report, and their estimated energy."""

import asyncio

import pytest

from gateway.serving.footprint import Footprint

from tests.support.clock import ManualClock


class Sink:
    def __init__(self) -> None:
        self.reports: list[tuple[float, float]] = []

    def gateway_cpu(self, seconds: float, joules: float) -> None:
        self.reports.append((seconds, joules))


def test_each_report_is_the_cpu_since_the_last_times_the_watts():
    clock, sink = ManualClock(10.0), Sink()
    footprint = Footprint(sink, watts_per_core=12.0, clock=clock)
    clock.now = 10.5
    assert footprint.report() == 0.5
    clock.now = 10.75
    footprint.report()
    assert sink.reports == [(0.5, 6.0), (0.25, 3.0)]


async def test_the_reporter_runs_until_cancelled_and_reports_the_last_stretch():
    clock, sink = ManualClock(0.0), Sink()
    task = asyncio.create_task(Footprint(sink, 10.0, clock=clock).run_forever(interval_s=0.01))
    await asyncio.sleep(0.05)
    clock.now = 2.0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(sink.reports) >= 2 and sink.reports[-1] == (2.0, 20.0)
    assert sum(seconds for seconds, _ in sink.reports) == 2.0
