"""Each provider against a real local server speaking its response format, faults included."""

from __future__ import annotations

import base64
import logging
import re
import time
from datetime import datetime, timedelta, UTC

import pytest
from pydantic import SecretStr

from gateway.carbon import (CarbonSourceError, ElectricityMapsConfig, ElectricityMapsSource, UkCarbonIntensityConfig,
                            UkCarbonIntensitySource, WattTimeConfig, WattTimeSource)
from gateway.carbon._http import HttpSettings, backoff_delay, parse_retry_after

from tests.support.providers import FAST_HTTP, Reply
from .payloads import em_past_range, em_point, uk_national, uk_period, uk_periods, uk_region, watttime_index

NOON = datetime(2018, 1, 20, 12, 0, tzinfo=UTC)
TOKEN = "em-secret-token-123"
PASSWORD = "wt-secret-password-456"


@pytest.fixture
async def uk(server):
    source = UkCarbonIntensitySource(UkCarbonIntensityConfig(base_url=server.url), http=FAST_HTTP)
    yield source
    await source.aclose()


@pytest.fixture
async def em(server):
    source = ElectricityMapsSource(ElectricityMapsConfig(base_url=server.url, zone="GB", auth_token=SecretStr(TOKEN)),
                                   http=FAST_HTTP)
    yield source
    await source.aclose()


@pytest.fixture
async def wt(server):
    config = WattTimeConfig(base_url=server.url, username="alice", password=SecretStr(PASSWORD), region="CAISO_NORTH")
    source = WattTimeSource(config, http=FAST_HTTP)
    yield source
    await source.aclose()


# --- UK Carbon Intensity ---------------------------------------------------------------------------------------

async def test_uk_national_prefers_actual_and_falls_back_to_its_forecast(server, uk):
    server.json("/intensity", uk_national(uk_period(NOON, 266, 263)))
    reading = await uk.current()
    assert (reading.intensity, reading.timestamp, reading.source, reading.forecast) == (263, NOON, "uk", False)
    server.json("/intensity", uk_national(uk_period(NOON, 266, None)))
    reading = await uk.current()
    assert (reading.intensity, reading.forecast) == (266, True)


async def test_uk_national_history_and_forecast_ranges(server, uk):
    server.json("/intensity/*/pt24h", uk_national(*reversed(uk_periods(NOON, [200, 210, 220]))))
    server.json("/intensity/*/fw24h", uk_national(*uk_periods(NOON, [150, 140], actual=False)))
    history = await uk.history()
    assert [r.intensity for r in history] == [200, 210, 220]  # sorted oldest first
    forecast = await uk.forecast()
    assert [r.intensity for r in forecast] == [154, 144] and all(r.forecast for r in forecast)
    asked = server.hits("/intensity/*/pt24h")[0].path
    assert re.fullmatch(r"/intensity/\d{4}-\d\d-\d\dT\d\d:\d\dZ/pt24h", asked)


async def test_uk_regional_current_and_time_ranges(server):
    source = UkCarbonIntensitySource(UkCarbonIntensityConfig(base_url=server.url, region_id=11), http=FAST_HTTP)
    try:
        server.json("/regional/regionid/11", {"data": [uk_region([uk_period(NOON, 180)])]})
        # The time-range endpoints return ``data`` as the region object, not a list.
        server.json("/regional/intensity/*/fw24h/regionid/11", {"data": uk_region(uk_periods(NOON, [90, 80]))})
        reading = await source.current()
        assert (reading.intensity, reading.timestamp, reading.forecast) == (180, NOON, True)
        assert [r.intensity for r in await source.forecast()] == [94, 84]
        # A list where the object belongs is garbage, not an empty forecast.
        server.json("/regional/intensity/*/fw24h/regionid/11", {"data": [uk_region(uk_periods(NOON, [90]))]})
        with pytest.raises(CarbonSourceError, match="unexpected"):
            await source.forecast()
    finally:
        await source.aclose()


@pytest.mark.parametrize("body, message", [
    ({"data": []}, "no current period"),
    ({"data": [uk_period(NOON, None, None)]}, "neither"),
    ({"data": [uk_period(NOON, -5, None)]}, "greater than or equal"),
    ({"data": [{"from": "2018-01-20T12:00Z", "intensity": {"forecast": 200}}]}, "to"),
    ({"error": {"code": "400 Bad Request"}}, "data"),
    ([1, 2, 3], "unexpected"),
])
async def test_uk_garbage_and_partial_payloads_are_rejected(server, uk, body, message):
    server.json("/intensity", body)
    with pytest.raises(CarbonSourceError, match=message):
        await uk.current()


# --- Electricity Maps ------------------------------------------------------------------------------------------

async def test_electricitymaps_latest_history_forecast_with_auth_header(server, em):
    hour = NOON
    server.json("/v3/carbon-intensity/latest", em_point(hour, 302))
    server.json("/v3/carbon-intensity/history", {"zone": "GB", "history": [
        em_point(hour - timedelta(hours=2), 250), em_point(hour - timedelta(hours=1), None), em_point(hour, 302)]})
    server.json("/v3/carbon-intensity/forecast", {"zone": "GB", "updatedAt": "2018-01-20T12:00:00.000Z", "forecast": [
        {"carbonIntensity": 290, "datetime": "2018-01-20T13:00:00.000Z"},
        {"carbonIntensity": 280, "datetime": "2018-01-20T14:00:00.000Z"}]})
    reading = await em.current()
    assert (reading.intensity, reading.timestamp, reading.source) == (302, hour, "electricitymaps")
    assert [r.intensity for r in await em.history()] == [250, 302]  # the null hour is skipped
    forecast = await em.forecast()
    assert [r.intensity for r in forecast] == [290, 280] and all(r.forecast for r in forecast)
    seen = server.hits("/v3/carbon-intensity/latest")[0]
    assert seen.headers["auth-token"] == TOKEN and seen.query == {"zone": "GB"}


async def test_electricitymaps_rejects_other_zone_and_null_latest(server, em):
    server.json("/v3/carbon-intensity/latest", em_point(NOON, 302, zone="FR"))
    with pytest.raises(CarbonSourceError, match="got FR"):
        await em.current()
    server.json("/v3/carbon-intensity/latest", em_point(NOON, None))
    with pytest.raises(CarbonSourceError, match="carbonIntensity"):
        await em.current()


async def test_client_errors_are_not_retried(server, em):
    server.route("/v3/carbon-intensity/latest", Reply(401, {"message": "Invalid token"}))
    with pytest.raises(CarbonSourceError, match="HTTP 401"):
        await em.current()
    assert len(server.hits("/v3/carbon-intensity/latest")) == 1


# --- WattTime --------------------------------------------------------------------------------------------------

async def test_watttime_logs_in_then_reads_the_marginal_percentile(server, wt):
    moment = datetime(2024, 5, 1, 10, 5, tzinfo=UTC)
    server.json("/login", {"token": "bearer-1"})
    server.json("/v3/signal-index", watttime_index(42.0, moment))
    first = await wt.current()
    await wt.current()
    assert (first.intensity, first.unit, first.marginal, first.timestamp) == (42.0, "percentile", True, moment)
    login = server.hits("/login")
    assert len(login) == 1  # the token is reused
    assert base64.b64decode(login[0].headers["authorization"].split()[1]).decode() == f"alice:{PASSWORD}"
    index = server.hits("/v3/signal-index")[0]
    assert index.headers["authorization"] == "Bearer bearer-1"
    assert index.query == {"region": "CAISO_NORTH", "signal_type": "co2_moer"}


async def test_watttime_logs_in_again_when_the_token_is_refused(server, wt):
    moment = datetime(2024, 5, 1, 10, 5, tzinfo=UTC)
    server.route("/login", Reply(body={"token": "old"}), Reply(body={"token": "new"}))
    server.route("/v3/signal-index", Reply(body=watttime_index(10.0, moment)), Reply(401, {"error": "expired"}),
                 Reply(body=watttime_index(20.0, moment)))
    assert (await wt.current()).intensity == 10.0
    assert (await wt.current()).intensity == 20.0
    assert [h.headers["authorization"] for h in server.hits("/v3/signal-index")] == [
        "Bearer old", "Bearer old", "Bearer new"]


async def test_watttime_value_outside_a_percentile_is_rejected(server, wt):
    server.json("/login", {"token": "t"})
    server.json("/v3/signal-index", watttime_index(150.0, NOON))
    with pytest.raises(CarbonSourceError, match="less than or equal to 100"):
        await wt.current()


# --- HTTP faults -----------------------------------------------------------------------------------------------

async def test_a_500_is_retried(server, uk):
    server.route("/intensity", Reply(500, "oops"), Reply(502, ""), Reply(body=uk_national(uk_period(NOON, 1, 2))))
    assert (await uk.current()).intensity == 2
    assert len(server.hits("/intensity")) == 3


async def test_persistent_500_gives_up_after_the_configured_attempts(server, uk):
    server.route("/intensity", Reply(500, "oops"))
    with pytest.raises(CarbonSourceError, match=r"HTTP 500 \(3 attempts\)"):
        await uk.current()
    assert len(server.hits("/intensity")) == 3


async def test_timeouts_are_retried_then_reported(server, uk):
    slow = Reply(body=uk_national(uk_period(NOON, 1, 2)), delay=0.6)
    server.route("/intensity", slow, Reply(body=uk_national(uk_period(NOON, 5, 6))))
    assert (await uk.current()).intensity == 6
    server.route("/intensity", slow)
    started = time.monotonic()
    with pytest.raises(CarbonSourceError, match="timed out"):
        await uk.current()
    assert time.monotonic() - started < 2.0  # three 0.3 s timeouts and tiny backoffs, not the server's delay


@pytest.mark.parametrize("body, message", [(b"", "empty body"), (b"  \n", "empty body"),
                                           (b'{"data": [', "malformed JSON"), (b"<html>502</html>", "malformed JSON")])
async def test_empty_and_malformed_bodies_are_errors(server, uk, body, message):
    server.route("/intensity", Reply(200, body))
    with pytest.raises(CarbonSourceError, match=message):
        await uk.current()


async def test_429_retry_after_is_respected(server, uk):
    server.route("/intensity", Reply(429, "", {"Retry-After": "1"}), Reply(body=uk_national(uk_period(NOON, 1, 2))))
    assert (await uk.current()).intensity == 2
    first, second = server.hits("/intensity")
    assert second.at - first.at >= 0.95


async def test_a_long_retry_after_ends_the_poll_and_is_reported(server, uk):
    server.route("/intensity", Reply(429, "", {"Retry-After": "120"}))
    with pytest.raises(CarbonSourceError, match="retry after 120") as caught:
        await uk.current()
    assert caught.value.retry_after == 120 and len(server.hits("/intensity")) == 1


async def test_connection_refused_is_an_error():
    source = UkCarbonIntensitySource(UkCarbonIntensityConfig(base_url="http://127.0.0.1:9"),
                                     http=HttpSettings(timeout_s=0.3, attempts=2, backoff_s=0.0))
    try:
        with pytest.raises(CarbonSourceError, match="ConnectError"):
            await source.current()
    finally:
        await source.aclose()


def test_retry_after_forms_and_backoff_bounds():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412500.0) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    settings = HttpSettings(backoff_s=1.0, backoff_max_s=5.0)
    delays = [backoff_delay(attempt, settings) for attempt in range(10) for _ in range(20)]
    assert all(0 <= d <= 5.0 for d in delays) and len(set(delays)) > 100  # capped, and jittered


# --- secrets ---------------------------------------------------------------------------------------------------

async def test_secrets_stay_out_of_reprs_errors_and_logs(server, em, wt, caplog):
    from gateway.settings import load_settings

    settings = [load_settings(None, {"carbon": {
        "source": "watttime", "watttime": {"username": "alice", "password": PASSWORD, "region": "CAISO_NORTH"}}}),
        load_settings(None, {"carbon": {"source": "electricitymaps",
                                        "electricitymaps": {"zone": "GB", "auth_token": TOKEN}}})]
    server.route("/login", Reply(403, {"error": "bad credentials"}))
    server.route("/v3/carbon-intensity/latest", Reply(500, ""))
    caplog.set_level(logging.DEBUG)
    errors = []
    for source in (em, wt):
        with pytest.raises(CarbonSourceError) as caught:
            await source.current()
        errors.append(str(caught.value))
    text = " ".join([*map(repr, settings), *(str(s.model_dump()) for s in settings), repr(em), repr(wt),
                     caplog.text, *errors])
    assert "HTTP 403" in text and "HTTP 500" in text
    assert TOKEN not in text and PASSWORD not in text
    assert base64.b64encode(f"alice:{PASSWORD}".encode()).decode() not in text


@pytest.fixture
def now():
    from datetime import UTC, datetime

    from .payloads import half_hour

    return half_hour(datetime.now(UTC))


async def test_a_body_over_the_limit_is_refused_while_it_streams(server, now):
    from gateway.carbon import CarbonSourceError, HttpSettings, UkCarbonIntensityConfig, UkCarbonIntensitySource

    from .payloads import uk_national, uk_period

    limited = HttpSettings(timeout_s=2, attempts=1, max_body_bytes=64 * 1024)
    source = UkCarbonIntensitySource(UkCarbonIntensityConfig(base_url=server.url), http=limited)
    padding = [uk_period(now, 200, 200)] * 2000  # valid JSON, ~300 kB
    server.json("/intensity", uk_national(*padding))
    with pytest.raises(CarbonSourceError, match="65536-byte limit"):
        await source.current()
    server.json("/intensity", uk_national(uk_period(now, 205, 200)))
    assert (await source.current()).intensity == 200  # the next good answer is read as ever
    await source.aclose()


async def test_a_large_valid_body_under_the_limit_is_read(server, now):
    from gateway.carbon import HttpSettings, UkCarbonIntensityConfig, UkCarbonIntensitySource

    from .payloads import uk_national, uk_period

    source = UkCarbonIntensitySource(UkCarbonIntensityConfig(base_url=server.url),
                                     http=HttpSettings(timeout_s=5, attempts=1))
    server.json("/intensity", uk_national(*([uk_period(now, 205, 200)] * 2000)))  # parsed in a thread
    assert (await source.current()).intensity == 200
    await source.aclose()


# --- past ranges -----------------------------------------------------------------------------------------------

JUNE = datetime(2020, 6, 1, tzinfo=UTC)


def _half_hours(start: datetime, end: datetime) -> list[datetime]:
    count = int((end - start) / timedelta(minutes=30))
    return [start + i * timedelta(minutes=30) for i in range(count)]


async def test_uk_past_asks_for_twenty_days_in_two_calls_and_keeps_what_begins_in_the_range(server, uk):
    start, end = JUNE + timedelta(minutes=10), JUNE + timedelta(days=20)
    split = JUNE + timedelta(days=14)
    value = {moment: float(i % 300) for i, moment in enumerate(_half_hours(JUNE - timedelta(minutes=30), end))}
    # As the API does: each answer starts with the period that ends at `from`, and the first call's last period
    # is the second's first.
    first = [uk_period(m, v + 4, v) for m, v in value.items() if m <= split]
    second = [uk_period(m, v + 4, None if m >= end - timedelta(hours=1) else v)
              for m, v in value.items() if split - timedelta(minutes=30) <= m]
    server.route("/intensity/*/*", Reply(body=uk_national(*first)), Reply(body=uk_national(*reversed(second))))
    readings = await uk.past(start, end)
    assert [h.path for h in server.hits("/intensity/*/*")] == [
        "/intensity/2020-06-01T00:10Z/2020-06-15T00:10Z", "/intensity/2020-06-15T00:10Z/2020-06-21T00:00Z"]
    expected = [m for m in value if start <= m < end]
    assert [r.timestamp for r in readings] == expected  # oldest first, once each, none before `start`
    assert len(readings) == 20 * 48 - 1 and all(r.source == "uk" for r in readings)
    assert [r.intensity for r in readings[:3]] == [value[m] for m in expected[:3]]  # actual, where measured
    assert [(r.intensity, r.forecast) for r in readings[-2:]] == [(value[m] + 4, True) for m in expected[-2:]]


async def test_uk_regional_past_is_the_regions_forecast(server):
    source = UkCarbonIntensitySource(UkCarbonIntensityConfig(base_url=server.url, region_id=11), http=FAST_HTTP)
    try:
        server.json("/regional/intensity/*/*/regionid/11", {"data": uk_region(uk_periods(JUNE, [90, 80, 70]))})
        readings = await source.past(JUNE, JUNE + timedelta(hours=1))
        assert [(r.intensity, r.forecast) for r in readings] == [(94, True), (84, True)]
        (asked,) = server.hits("/regional/*")
        assert asked.path == "/regional/intensity/2020-06-01T00:00Z/2020-06-01T01:00Z/regionid/11"
    finally:
        await source.aclose()


async def test_electricitymaps_past_range_in_ten_day_calls(server, em):
    start, end = JUNE, JUNE + timedelta(days=20)
    hours = [start + i * timedelta(hours=1) for i in range(20 * 24)]
    first = [em_point(h, 100 + i % 50) for i, h in enumerate(hours[:240])]
    second = [em_point(h, None if i == 0 else 200.0) for i, h in enumerate(hours[240:])]
    server.route("/v3/carbon-intensity/past-range", Reply(body=em_past_range(first)),
                 Reply(body=em_past_range(second)))
    readings = await em.past(start, end)
    asked = server.hits("/v3/carbon-intensity/past-range")
    assert [(h.query["start"], h.query["end"]) for h in asked] == [
        ("2020-06-01T00:00:00Z", "2020-06-11T00:00:00Z"), ("2020-06-11T00:00:00Z", "2020-06-21T00:00:00Z")]
    assert all(h.query["zone"] == "GB" and h.headers["auth-token"] == TOKEN for h in asked)
    assert len(readings) == 479 and hours[240] not in {r.timestamp for r in readings}  # the null hour is skipped
    assert [r.timestamp for r in readings] == sorted(r.timestamp for r in readings)
    assert readings[0].intensity == 100 and readings[-1].intensity == 200


async def test_electricitymaps_past_of_another_zone_is_refused(server, em):
    server.json("/v3/carbon-intensity/past-range", em_past_range([em_point(JUNE, 300, zone="FR")], zone="FR"))
    with pytest.raises(CarbonSourceError, match="got FR"):
        await em.past(JUNE, JUNE + timedelta(hours=2))


@pytest.mark.parametrize("reply, message", [
    (Reply(500, "oops"), r"HTTP 500 \(3 attempts\)"),
    (Reply(403, {"message": "Your plan does not include past-range"}), "HTTP 403"),
    (Reply(body={"zone": "GB", "history": []}), "unexpected .* payload: data"),
    (Reply(body=b"<html>"), "malformed JSON"),
])
async def test_a_failing_provider_is_a_carbon_source_error(server, uk, em, reply, message):
    server.route("/intensity/*", reply)
    server.route("/v3/carbon-intensity/past-range", reply)
    for source in (uk, em):
        with pytest.raises(CarbonSourceError, match=message):
            await source.past(JUNE, JUNE + timedelta(days=1))


async def test_an_empty_range_asks_nothing_and_naive_times_are_utc(server, uk, em):
    assert await uk.past(JUNE, JUNE) == [] and await em.past(JUNE + timedelta(days=1), JUNE) == []
    assert server.requests == []
    server.json("/intensity/*/*", uk_national(*uk_periods(JUNE, [200, 210])))
    readings = await uk.past(JUNE.replace(tzinfo=None), (JUNE + timedelta(hours=1)).replace(tzinfo=None))
    assert [r.timestamp for r in readings] == [JUNE, JUNE + timedelta(minutes=30)]


async def test_sources_without_a_past_return_none(wt):
    from gateway.carbon import StaticSource

    assert await StaticSource(200.0).past(JUNE, JUNE + timedelta(days=30)) == []
    assert await wt.past(JUNE, JUNE + timedelta(days=30)) == []
