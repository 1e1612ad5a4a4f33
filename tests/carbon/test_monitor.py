"""The monitor's outage policy, window choice and background polling, against the local provider server."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, UTC

import pytest

from gateway.carbon import CarbonMonitor, UkCarbonIntensityConfig, UkCarbonIntensitySource, WattTimeSource
from gateway.carbon import make_monitor
from gateway.settings import ConfigError, load_settings

from tests.support.clock import ManualClock
from tests.support.providers import FAST_HTTP, Reply
from .payloads import half_hour, uk_national, uk_period, uk_periods


def uk_source(server) -> UkCarbonIntensitySource:
    return UkCarbonIntensitySource(UkCarbonIntensityConfig(base_url=server.url), http=FAST_HTTP)


@pytest.fixture
def now() -> datetime:
    return half_hour(datetime.now(UTC))


async def test_outage_goes_stale_then_forecast_then_default_and_recovers(server, now):
    clock = ManualClock(1000.0)
    server.json("/intensity", uk_national(uk_period(now, 205, 200)))
    server.json("/intensity/*/pt24h", uk_national(*uk_periods(now - timedelta(hours=2), [150, 250, 200])))
    server.json("/intensity/*/fw24h", uk_national(*uk_periods(now, [170, 160], actual=False)))
    monitor = CarbonMonitor(uk_source(server), poll_interval=60, max_age=300, forecast_interval=10_000,
                            default_intensity=333, clock=clock)
    async with monitor:
        state = monitor.state
        assert (state.status, state.intensity, state.source_up, state.consecutive_failures) == ("live", 200, True, 0)

        server.route("/intensity", Reply(500, "down"))
        clock.now += 60
        state = await monitor.refresh()
        assert (state.status, state.intensity, state.stale, state.source_up) == ("stale", 200, True, False)
        assert state.consecutive_failures == 1 and "HTTP 500" in state.last_error
        assert state.age_seconds() == pytest.approx(60)

        clock.now += 300  # the last good value is now older than max_age
        state = await monitor.refresh()
        assert (state.status, state.intensity, state.reading.forecast) == ("forecast", 174, True)
        assert state.consecutive_failures == 2

        monitor._forecast = ()  # as if no forecast had ever been fetched
        state = await monitor.refresh()
        assert (state.status, state.intensity, state.reading.source) == ("default", 333, "default")

        server.json("/intensity", uk_national(uk_period(now, 190, 180)))
        state = await monitor.refresh()
        assert (state.status, state.intensity, state.consecutive_failures, state.last_error) == ("live", 180, 0, None)


@pytest.mark.parametrize("garbage", [Reply(200, b"{not json"), Reply(200, b""),
                                     Reply(body={"data": [{"from": "x", "intensity": {}}]}),
                                     Reply(body={"data": [uk_period(datetime(2024, 1, 1, tzinfo=UTC),
                                                                    -1, -1)]})])
async def test_garbage_never_replaces_a_good_value(server, now, garbage):
    server.json("/intensity", uk_national(uk_period(now, 205, 200)))
    monitor = CarbonMonitor(uk_source(server), poll_interval=60)
    async with monitor:
        server.route("/intensity", garbage)
        state = await monitor.refresh()
        assert (state.status, state.intensity, state.reading.timestamp) == ("stale", 200, now)
        assert state.last_error


async def test_window_from_history_or_from_the_forecast(server, now):
    server.json("/intensity", uk_national(uk_period(now, 205, 200)))
    server.json("/intensity/*/pt24h", uk_national(*uk_periods(now - timedelta(hours=3), [100, 300, 250])))
    server.json("/intensity/*/fw24h", uk_national(*uk_periods(now, [206, 60, 120], actual=False)))
    observed = CarbonMonitor(uk_source(server), window_basis="history")
    ahead = CarbonMonitor(uk_source(server), window_basis="forecast")
    await observed.start()
    await ahead.start()
    try:
        assert (observed.state.window.low, observed.state.window.high) == (100, 300)
        assert observed.state.window_basis == "history"
        # The forecast's coming day (64..210) and the value now (200) set the bounds.
        assert (ahead.state.window.low, ahead.state.window.high) == (64, 210)
        assert ahead.state.window_basis == "forecast"
    finally:
        await observed.aclose()
        await ahead.aclose()


async def test_forecast_window_falls_back_to_history_without_a_forecast(server, now):
    server.json("/intensity", uk_national(uk_period(now, 205, 200)))
    server.json("/intensity/*/pt24h", uk_national(*uk_periods(now - timedelta(hours=1), [100, 200])))
    server.route("/intensity/*/fw24h", Reply(500, ""))
    monitor = CarbonMonitor(uk_source(server), window_basis="forecast")
    async with monitor:
        assert monitor.state.window_basis == "history"
        assert (monitor.state.window.low, monitor.state.window.high) == (100, 200)


async def test_polling_runs_in_the_background(server, now):
    server.json("/intensity", uk_national(uk_period(now, 205, 200)))
    monitor = CarbonMonitor(uk_source(server), poll_interval=0.05)
    async with monitor:
        server.json("/intensity", uk_national(uk_period(now + timedelta(minutes=30), 125, 120)))
        for _ in range(100):
            if monitor.state.intensity == 120:
                break
            await asyncio.sleep(0.02)
        assert monitor.state.intensity == 120 and monitor.state.status == "live"


async def test_startup_does_not_wait_out_a_hanging_provider(server):
    server.route("/intensity*", Reply(body=uk_national(), delay=1.0))
    monitor = CarbonMonitor(uk_source(server), startup_timeout=0.4, default_intensity=277)
    started = asyncio.get_running_loop().time()
    async with monitor:
        assert asyncio.get_running_loop().time() - started < 0.9
        assert (monitor.state.status, monitor.state.intensity) == ("default", 277)


async def test_a_long_retry_after_postpones_the_next_poll(server, now):
    server.json("/intensity", uk_national(uk_period(now, 205, 200)))
    monitor = CarbonMonitor(uk_source(server), poll_interval=60)
    async with monitor:
        server.route("/intensity", Reply(429, "", {"Retry-After": "600"}))
        state = await monitor.refresh()
        assert state.status == "stale" and monitor.next_poll_in == 600


def test_providers_are_chosen_by_config(server):
    uk = load_settings(None, {"carbon": {"source": "uk", "uk": {"base_url": server.url, "region_id": 11},
                                         "http": {"timeout_s": 1, "attempts": 2}, "max_age_s": 900,
                                         "window_basis": "forecast"}})
    monitor = make_monitor(uk.carbon)
    assert isinstance(monitor.source, UkCarbonIntensitySource) and monitor.source.config.region_id == 11
    assert (monitor.max_age, monitor.window_basis) == (900, "forecast")
    wt = load_settings(None, {"carbon": {"source": "watttime", "watttime": {
        "base_url": server.url, "username": "u", "password": "p", "region": "CAISO_NORTH"}}})
    monitor = make_monitor(wt.carbon)
    assert isinstance(monitor.source, WattTimeSource) and (monitor.c_low, monitor.c_high) == (0, 100)
    with pytest.raises(ConfigError, match=r"carbon\.electricitymaps\.auth_token: Field required \(carbon\.source="
                                          r"electricitymaps\)"):
        load_settings(None, {"carbon": {"source": "electricitymaps", "electricitymaps": {"zone": "GB"}}})
    with pytest.raises(ConfigError, match="region_id"):
        load_settings(None, {"carbon": {"source": "uk", "uk": {"region_id": 40}}})


async def test_a_timestamp_without_a_timezone_is_utc_and_does_not_stop_the_monitor(server, now):
    naive = uk_period(now, 205, 200)
    naive["from"], naive["to"] = (naive["from"].removesuffix("Z"), naive["to"].removesuffix("Z"))
    server.json("/intensity", uk_national(uk_period(now - timedelta(minutes=30), 305, 300)))
    monitor = CarbonMonitor(uk_source(server), poll_interval=0.05)
    async with monitor:
        server.json("/intensity", uk_national(naive))
        for _ in range(100):
            if monitor.state.intensity == 200:
                break
            await asyncio.sleep(0.02)
        assert monitor.state.intensity == 200 and monitor.state.status == "live"
        assert monitor.state.reading.timestamp == now  # read as UTC
        server.json("/intensity", uk_national(uk_period(now + timedelta(minutes=30), 125, 120)))
        for _ in range(100):
            if monitor.state.intensity == 120:
                break
            await asyncio.sleep(0.02)
        assert monitor.state.intensity == 120, "the poll loop stopped"


async def test_whatever_breaks_a_poll_the_loop_goes_on(server, now, monkeypatch):
    server.json("/intensity", uk_national(uk_period(now, 205, 200)))
    monitor = CarbonMonitor(uk_source(server), poll_interval=0.05)
    async with monitor:
        calls = []

        def broken(reading):
            calls.append(reading)
            raise TypeError("a bug in the monitor itself")

        original = monitor._succeeded
        monkeypatch.setattr(monitor, "_succeeded", broken)
        for _ in range(50):
            if len(calls) >= 2:
                break
            await asyncio.sleep(0.02)
        monkeypatch.setattr(monitor, "_succeeded", original)
        server.json("/intensity", uk_national(uk_period(now + timedelta(minutes=30), 125, 120)))
        for _ in range(100):
            if monitor.state.intensity == 120:
                break
            await asyncio.sleep(0.02)
        assert len(calls) >= 2 and monitor.state.intensity == 120


async def test_the_status_follows_the_values_age_whatever_stopped_the_polls(server, now):
    clock = ManualClock(1000.0)
    server.json("/intensity", uk_national(uk_period(now, 205, 200)))
    monitor = CarbonMonitor(uk_source(server), poll_interval=10.0, max_age=30.0, clock=clock)
    async with monitor:
        assert monitor.state.status == "live"
        clock.now += 31.0  # no poll ran since (as if the loop had died)
        state = monitor.state
        assert (state.status, state.source_up, state.stale) == ("stale", False, True)
        assert "no successful poll" in state.last_error
