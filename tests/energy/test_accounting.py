"""Energy attribution: conservation and proportional shares, on a synthetic meter with known readings."""

import random
import time

import pytest

from gateway.energy import EnergyAccountant, Span, co2_grams, estimate, split_window
from gateway.pool import ModelSpec

from tests.support.clock import ManualClock
from .synthetic import BIG, SMALL, FlakyCounter, ScriptedCounter


def test_co2_is_energy_times_intensity_times_pue():
    assert co2_grams(3.6e6, 200.0) == pytest.approx(200.0)
    assert co2_grams(3.6e6, 200.0, pue=1.5) == pytest.approx(300.0)
    assert estimate(BIG, 4).joules == pytest.approx(1.2) and not estimate(BIG, 4).measured


def test_window_split_is_proportional_to_weighted_overlap():
    spans = [Span("small", 100.0, 50.0, start=0.0, end=1.0), Span("big", 300.0, 50.0, start=0.5, end=None)]
    split = split_window(0.0, 1.0, 10.0, spans)
    shares = {span.model: share for span, share in split.by_span}
    # weights: small 1.0 s x 100 = 100, big 0.5 s x 300 = 150
    assert shares == {"small": pytest.approx(4.0), "big": pytest.approx(6.0)}
    assert split.idle == 0.0


def test_the_time_no_request_computed_is_idle():
    spans = [Span("small", 100.0, 50.0, start=0.1, end=0.4), Span("big", 300.0, 50.0, start=0.3, end=0.5)]
    split = split_window(0.0, 1.0, 10.0, spans)
    # Busy 0.1..0.5: 4 J for the requests, 6 J idle; weights small 0.3 s x 100 = 30, big 0.2 s x 300 = 60.
    assert split.idle == pytest.approx(6.0)
    assert {span.model: share for span, share in split.by_span} == {"small": pytest.approx(4 / 3),
                                                                   "big": pytest.approx(8 / 3)}
    busy_then_idle_power = split_window(0.0, 1.0, 10.0, spans, idle_power_w=2.0)
    assert busy_then_idle_power.idle == pytest.approx(6.0 + 2.0 * 0.4)


def test_idle_power_is_taken_first_and_empty_windows_are_idle():
    span = Span("small", 100.0, 50.0, start=0.0, end=2.0)
    split = split_window(0.0, 2.0, 10.0, [span], idle_power_w=3.0)
    assert split.idle == pytest.approx(6.0) and split.by_span[0][1] == pytest.approx(4.0)
    assert split_window(0.0, 2.0, 10.0, [], idle_power_w=3.0).idle == 10.0
    assert split_window(2.0, 3.0, 10.0, [span]).idle == 10.0  # the span ended before the window


def test_accountant_conserves_energy_over_many_overlapping_requests():
    clock, counter = ManualClock(), ScriptedCounter()
    accountant = EnergyAccountant(counter, idle_power_w=20.0, pue=1.0, clock=clock)
    accountant.sample()  # baseline reading
    rng = random.Random(7)
    open_tokens: list[tuple[int, ModelSpec]] = []
    attributed: dict[str, float] = {"small": 0.0, "big": 0.0}
    spans = []
    for step in range(400):
        clock.now += 0.01
        if rng.random() < 0.3:
            model = rng.choice([SMALL, BIG])
            open_tokens.append((accountant.begin(model, rng.randint(1, 4), 150.0), model))
        if open_tokens and rng.random() < 0.25:
            token, _ = open_tokens.pop(rng.randrange(len(open_tokens)))
            accountant.end(token)
        counter.joules += rng.uniform(0.5, 3.0)  # known energy for this step
        if step % 10 == 9:  # a sampling window every 10 steps
            split = accountant.sample()
            assert split.idle + sum(share for _, share in split.by_span) == pytest.approx(split.measured)
            for span, share in split.by_span:
                attributed[span.model] += share
                spans.append(span)
    for token, _ in open_tokens:
        accountant.end(token)
    clock.now += 0.01
    accountant.sample()
    totals = accountant.totals
    assert totals["measured"] == pytest.approx(counter.joules)
    assert totals["attributed"] + totals["idle"] == pytest.approx(counter.joules)
    assert totals["idle"] > 0 and totals["attributed"] > 0
    assert attributed["big"] > attributed["small"]  # 3x the weight per second of compute


def test_request_within_one_window_is_charged_after_it_ended():
    clock, counter = ManualClock(), ScriptedCounter()
    accountant = EnergyAccountant(counter, clock=clock)
    accountant.sample()
    token = accountant.begin(BIG, 1, 100.0)
    clock.now = 0.05
    accountant.end(token)
    clock.now = 0.1
    counter.joules = 2.0
    split = accountant.sample()
    # It computed for half of the window: half of the window's energy is its, the rest idle.
    assert [(span.model, share) for span, share in split.by_span] == [("big", pytest.approx(1.0))]
    assert split.by_span[0][0].joules == pytest.approx(1.0) and split.idle == pytest.approx(1.0)


async def test_a_receipt_is_the_requests_measured_share_once_its_last_window_closes():
    clock, counter = ManualClock(), ScriptedCounter()
    accountant = EnergyAccountant(counter, clock=clock)
    accountant.sample()
    wanted, other = accountant.begin(BIG, 1, 100.0, receipt=True), accountant.begin(SMALL, 1, 100.0)
    clock.now, counter.joules = 1.0, 8.0
    accountant.sample()  # both still running: charged, not final
    clock.now = 1.5
    accountant.end(wanted)
    accountant.end(other)
    clock.now, counter.joules = 2.0, 12.0
    accountant.sample()
    # 3/4 of the first window's 8 J; of the second's 4 J, half is idle (both ended half-way), 3/4 of the rest.
    assert await accountant.receipt(wanted, timeout_s=1.0) == pytest.approx(6.0 + 1.5)
    never = accountant.begin(BIG, 1, 100.0, receipt=True)
    accountant.end(never)  # no window closes after it
    assert await accountant.receipt(never, timeout_s=0.05) is None
    assert await accountant.receipt(other, timeout_s=0.05) is None  # none was asked for


async def test_spans_the_meter_missed_are_unmeasured_not_misattributed_nor_kept():
    clock, counter = ManualClock(), FlakyCounter()
    accountant = EnergyAccountant(counter, clock=clock)
    accountant.sample()
    across = accountant.begin(BIG, 1, 100.0, receipt=True)  # runs through the outage
    during = accountant.begin(SMALL, 1, 100.0, receipt=True)  # ends during it
    clock.now, counter.joules = 1.0, 4.0
    accountant.sample()
    counter.down = True
    clock.now = 2.0
    accountant.end(during)
    assert accountant.sample() is None and not accountant.healthy
    began = time.monotonic()
    assert await accountant.receipt(during, timeout_s=5.0) is None
    assert time.monotonic() - began < 1.0  # at once, not at the timeout: no window will measure it
    counter.down, clock.now, counter.joules = False, 3.0, 50.0
    assert accountant.sample() is None  # a new baseline: the outage's energy is not pinned on anyone
    clock.now, counter.joules = 4.0, 52.0
    accountant.end(across)
    split = accountant.sample()
    assert split.measured == pytest.approx(2.0) and accountant.healthy
    began = time.monotonic()
    assert await accountant.receipt(across, timeout_s=5.0) is None  # measured only in part: no receipt
    assert time.monotonic() - began < 1.0
    assert accountant.totals["measured"] == pytest.approx(4.0 + 2.0)
    assert accountant.totals["attributed"] + accountant.totals["idle"] == pytest.approx(6.0)


def test_counter_reset_never_yields_negative_energy():
    clock, counter = ManualClock(), ScriptedCounter()
    accountant = EnergyAccountant(counter, clock=clock)
    counter.joules = 100.0
    accountant.sample()
    counter.joules = 5.0
    clock.now = 1.0
    assert accountant.sample().measured == 0.0


def test_a_failing_meter_is_reported_not_raised():
    class Broken(ScriptedCounter):
        def read_joules(self) -> float:
            raise OSError("device lost")

    accountant = EnergyAccountant(Broken(), clock=ManualClock())
    assert accountant.sample() is None and not accountant.healthy


def test_sampler_thread_runs_and_stops():
    counter = ScriptedCounter()
    accountant = EnergyAccountant(counter, interval_s=0.01)
    accountant.start()
    counter.joules = 5.0
    time.sleep(0.1)
    accountant.stop()
    assert accountant.totals["measured"] == pytest.approx(5.0) and counter.closed


def test_a_span_whose_end_was_lost_is_closed_after_max_span_s():
    clock, counter = ManualClock(), ScriptedCounter()
    accountant = EnergyAccountant(counter, clock=clock, max_span_s=5.0)
    accountant.sample()
    accountant.begin(BIG, 1, 100.0)  # its worker dies: no end ever comes
    for second in range(1, 8):
        clock.now, counter.joules = float(second), 10.0 * second
        accountant.sample()
    assert accountant.open_spans == 0
    assert accountant.totals["attributed"] == pytest.approx(60.0)  # charged until it was closed, at 6 s
    assert accountant.totals["idle"] == pytest.approx(10.0)
