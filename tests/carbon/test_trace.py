import itertools
from datetime import datetime, timedelta, UTC

import numpy as np
import pytest

from gateway.carbon import CarbonMonitor, CarbonSourceError, StaticSource, TraceReplaySource, load_trace

from tests.support.clock import ManualClock


@pytest.fixture(scope="module")
def gb(shared_data):
    return load_trace(shared_data / "carbon" / "gb_2020_entsoe.csv")


def test_gb_trace_loads_with_its_change_of_step(gb):
    steps = np.diff(gb.times)
    assert len(gb.times) == 21980 and gb.skipped_rows == 0
    assert set(np.unique(steps)) <= {900.0, 1800.0}
    # The last half-hour period is 2020-10-30 23:30; quarter-hours follow from midnight.
    last_half_hour = datetime.fromtimestamp(gb.times[np.argmax(steps == 900.0) - 1], UTC)
    assert last_half_hour.isoformat() == "2020-10-30T23:30:00+00:00"
    assert np.all(steps[: np.argmax(steps == 900.0) - 1] == 1800.0)
    assert 0 < gb.values.min() < gb.values.max() < 1000


def test_ciso_trace_with_configured_columns(shared_data):
    trace = load_trace(shared_data / "carbon" / "us_ciso_2022_hourly.csv", "timestamp", "avg_CI")
    # Three hours of 2022 have no data in the file: skipped, not read as zero.
    assert len(trace.times) == 8757 and trace.skipped_rows == 3
    assert set(np.unique(np.diff(trace.times))) == {3600.0, 7200.0}
    assert datetime.fromtimestamp(trace.start, UTC) == datetime(2022, 1, 1, tzinfo=UTC)


def test_missing_column_is_named(shared_data):
    with pytest.raises(CarbonSourceError, match="no column"):
        load_trace(shared_data / "carbon" / "us_ciso_2022_hourly.csv", "timestamp", "co2")


def test_bad_rows_are_skipped_and_counted(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("Time,Carbon Intensity\n2020-01-01 00:00:00,100\nnot a time,5\n"
                    "2020-01-01 00:30:00,nan\n2020-01-01 01:00:00,-4\n2020-01-01 01:30:00,150\n")
    trace = load_trace(path)
    assert list(trace.values) == [100.0, 150.0] and trace.skipped_rows == 3


async def test_replay_is_time_compressed_and_loops(gb):
    clock = ManualClock(1000.0)
    source = TraceReplaySource(gb, speedup=1800.0, clock=clock)  # one half-hour period per wall second
    first = await source.current()
    assert first.intensity == pytest.approx(gb.values[0]) and first.source == "trace"
    clock.now += 1.0
    assert (await source.current()).intensity == pytest.approx(gb.values[1])
    clock.now += gb.duration / 1800.0  # one full loop later: back to the same period
    assert (await source.current()).timestamp == datetime.fromtimestamp(gb.times[1], UTC)


async def test_replay_start_and_history(gb):
    start = datetime(2020, 6, 2, tzinfo=UTC)
    source = TraceReplaySource(gb, speedup=1.0, start=start, history_hours=24, clock=ManualClock(1000.0))
    current = await source.current()
    assert current.timestamp == start
    history = await source.history()
    assert len(history) == 49  # 24 h of half-hours, both ends included
    assert history[0].timestamp.isoformat().startswith("2020-06-01T00:00")


async def test_monitor_window_comes_from_observed_history(gb):
    source = TraceReplaySource(gb, speedup=1.0, start=datetime(2020, 6, 2, tzinfo=UTC),
                               clock=ManualClock(1000.0))
    monitor = CarbonMonitor(source, poll_interval=3600)
    async with monitor:
        day = gb.values[(gb.times >= datetime(2020, 6, 1, tzinfo=UTC).timestamp())
                        & (gb.times <= datetime(2020, 6, 2, tzinfo=UTC).timestamp())]
        state = monitor.state
        assert (state.window.low, state.window.high) == (pytest.approx(day.min()), pytest.approx(day.max()))
        assert not state.stale


async def test_monitor_bounds_can_be_overridden():
    monitor = CarbonMonitor(StaticSource(180.0), c_low=100.0, c_high=300.0)
    async with monitor:
        assert monitor.state.intensity == 180.0
        assert (monitor.state.window.low, monitor.state.window.high) == (100.0, 300.0)


async def test_monitor_falls_back_to_the_default_when_the_source_fails():
    class Broken:
        name = "broken"

        async def current(self):
            raise CarbonSourceError("down")

        async def history(self):
            return []

        async def aclose(self):
            return None

    monitor = CarbonMonitor(Broken(), default_intensity=222.0)
    async with monitor:
        assert monitor.state.intensity == 222.0 and monitor.state.stale
        assert monitor.state.reading.source == "default"


def test_json_trace_with_dotted_columns_matches_the_csv(gb, tmp_path):
    import json

    from .payloads import uk_national, uk_period

    moments = [datetime.fromtimestamp(t, UTC) for t in gb.times[:48]]
    path = tmp_path / "uk_response.json"  # a saved UK API response, replayed as a trace
    periods = (uk_period(m, v + 1, v) for m, v in zip(moments, gb.values[:48], strict=True))
    path.write_text(json.dumps(uk_national(*periods)))
    trace = load_trace(path, "from", "intensity.actual")
    assert list(trace.values) == pytest.approx(list(gb.values[:48])) and list(trace.times) == list(gb.times[:48])
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps([{"t": 1_600_000_000, "ci": 120}, {"t": 1_600_001_800, "ci": None},
                                 {"t": "2020-09-13T12:56:40Z", "ci": 90}]))
    trace = load_trace(plain, "t", "ci")
    assert list(trace.values) == [120.0, 90.0] and trace.skipped_rows == 1


@pytest.mark.parametrize("text, message", [("{", "not valid JSON"), ('{"rows": []}', "list of records"),
                                           ('[{"Time": 1}]', "no record with both")])
def test_bad_json_traces_are_named(tmp_path, text, message):
    path = tmp_path / "t.json"
    path.write_text(text)
    with pytest.raises(CarbonSourceError, match=message):
        load_trace(path)


async def test_replay_forecast_crosses_the_change_of_step(gb):
    source = TraceReplaySource(gb, start=datetime(2020, 10, 30, 23, 0, tzinfo=UTC), history_hours=1.5,
                               clock=ManualClock(1000.0))
    forecast = await source.forecast()
    assert [r.timestamp.strftime("%H:%M") for r in forecast] == ["23:00", "23:30", "00:00", "00:15"]  # end excluded
    assert all(r.forecast for r in forecast)


async def test_monitor_window_from_the_trace_forecast(gb):
    start = datetime(2020, 6, 2, tzinfo=UTC)
    source = TraceReplaySource(gb, start=start, clock=ManualClock(1000.0))
    monitor = CarbonMonitor(source, window_basis="forecast")
    async with monitor:
        ahead = gb.values[(gb.times >= start.timestamp()) & (gb.times < start.timestamp() + 24 * 3600)]
        state = monitor.state
        assert state.window_basis == "forecast"
        assert (state.window.low, state.window.high) == (pytest.approx(ahead.min()), pytest.approx(ahead.max()))


def test_a_sped_up_replay_is_polled_as_often_as_it_changes(shared_data):
    from gateway.carbon import make_monitor
    from gateway.carbon import TraceOptions

    fast = make_monitor(TraceOptions(trace_path=shared_data / "carbon" / "gb_2020_entsoe.csv",
                                       speedup=360.0))
    assert fast.poll_interval == pytest.approx(1800.0 / 360.0)  # half-hour steps: 5 s of wall time
    slow = make_monitor(TraceOptions(trace_path=shared_data / "carbon" / "gb_2020_entsoe.csv"))
    assert slow.poll_interval == 60.0  # real time: the configured poll interval


# --- past: the replay's wall-clock past ------------------------------------------------------------------------

WALL = datetime(2025, 3, 1, 12, 0, tzinfo=UTC).timestamp()


async def test_past_in_real_time_is_the_trace_before_the_start_stamped_in_wall_time(gb):
    start = datetime(2020, 6, 2, tzinfo=UTC)
    source = TraceReplaySource(gb, start=start, clock=ManualClock(1000.0), wall=ManualClock(WALL))
    now = datetime.fromtimestamp(WALL, UTC)
    past = await source.past(now - timedelta(days=1), now)
    day = (gb.times >= start.timestamp() - 86400) & (gb.times < start.timestamp())
    assert [r.intensity for r in past] == pytest.approx(list(gb.values[day]))
    assert len(past) == 48 and past[0].timestamp == now - timedelta(days=1)  # wall time, end excluded
    assert [r.timestamp - past[0].timestamp for r in past[:2]] == [timedelta(0), timedelta(minutes=30)]
    # Up to now: the last value is the one current() serves now.
    latest = await source.past(now - timedelta(minutes=1), now + timedelta(seconds=1))
    assert [r.intensity for r in latest] == [(await source.current()).intensity]


async def test_past_of_a_fast_replay_loops_back_to_the_traces_end(gb):
    clock = ManualClock(1000.0)
    source = TraceReplaySource(gb, speedup=1800.0, clock=clock, wall=ManualClock(WALL))  # a half-hour per second
    now = datetime.fromtimestamp(WALL, UTC)
    # Started at the trace's first period: the ten seconds before were its last ten half-hours, and quarters.
    past = await source.past(now - timedelta(seconds=10), now)
    tail = gb.times >= gb.start + gb.duration - 10 * 1800
    assert [r.intensity for r in past] == pytest.approx(list(gb.values[tail]))
    assert all(now - timedelta(seconds=10) <= r.timestamp < now for r in past)
    assert [r.timestamp for r in past] == sorted(r.timestamp for r in past)


async def test_past_over_a_long_range_of_a_fast_replay_is_sampled(gb):
    from gateway.carbon.trace import MAX_PAST_READINGS

    source = TraceReplaySource(gb, speedup=360.0, clock=ManualClock(1000.0), wall=ManualClock(WALL))
    now = datetime.fromtimestamp(WALL, UTC)
    past = await source.past(now - timedelta(days=30), now)  # ~30 loops of the year: far too many periods
    assert len(past) == MAX_PAST_READINGS
    steps = {r.timestamp - p.timestamp for p, r in itertools.pairwise(past)}
    assert max(steps) - min(steps) < timedelta(milliseconds=1)  # evenly spread over the range
    assert set(np.round([r.intensity for r in past], 6)) <= set(np.round(gb.values, 6))
    assert await source.past(now, now - timedelta(days=1)) == []
