"""The GB National Grid ESO Carbon Intensity API (https://api.carbonintensity.org.uk), no key needed.

National values come from ``/intensity``: ``actual`` when the period has been measured, else its
``forecast``. A region (``region_id`` 1-17; 11 is South West England) comes from
``/regional/regionid/{id}`` and is forecast-only: the API publishes no regional actuals. Both have
24 h of history (``pt24h``) and a 24 h forecast (``fw24h``) in half-hour periods, and any past range
(``/intensity/{from}/{to}``, ``/regional/intensity/{from}/{to}/regionid/{id}``) of at most 14 days per call:
``past`` asks for a longer one in consecutive calls.
"""

from __future__ import annotations

from datetime import datetime, timedelta, UTC
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import CarbonReading, CarbonSourceError
from ._http import HttpSettings, JsonHttpClient, parse_payload
from ._ranges import spans, utc, within
from .options import CarbonSourceOptions

#: The longest range the API serves in one call.
MAX_RANGE = timedelta(days=14)


class UkCarbonIntensityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = "https://api.carbonintensity.org.uk"
    region_id: int | None = Field(default=None, ge=1, le=17, description="Unset: Great Britain as a whole.")


class _Intensity(BaseModel):
    forecast: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    actual: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    index: str | None = None


class _Period(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    intensity: _Intensity


class _National(BaseModel):
    data: list[_Period]


class _Region(BaseModel):
    regionid: int
    shortname: str | None = None
    data: list[_Period]


class _RegionList(BaseModel):
    """``/regional/regionid/{id}``: ``data`` is a list holding the one region."""

    data: list[_Region] = Field(min_length=1)


class _RegionRange(BaseModel):
    """``/regional/intensity/{from}/{range}/regionid/{id}``: ``data`` is the region object itself."""

    data: _Region


def _api_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _minute(moment: datetime, *, up: bool = False) -> datetime:
    """``moment`` on a whole minute, the API's resolution: down, or up (``up``) when it is past one."""
    floor = moment.replace(second=0, microsecond=0)
    return floor + timedelta(minutes=1) if up and floor < moment else floor


class UkCarbonIntensitySource:
    """National or regional GB carbon intensity, gCO2eq/kWh, in half-hour periods."""

    name = "uk"

    def __init__(self, config: UkCarbonIntensityConfig | None = None, *, http: HttpSettings | None = None):
        self.config = config or UkCarbonIntensityConfig()
        self._http = JsonHttpClient(self.config.base_url, http or HttpSettings(), provider=self.name,
                                    headers={"Accept": "application/json"})

    def __repr__(self) -> str:
        return f"UkCarbonIntensitySource(region_id={self.config.region_id!r}, base_url={self.config.base_url!r})"

    async def current(self) -> CarbonReading:
        periods = await self._periods(None)
        if not periods:
            raise CarbonSourceError(f"{self.name}: no current period in the response")
        reading = self._reading(periods[-1])
        if reading is None:
            raise CarbonSourceError(f"{self.name}: the current period has neither an actual nor a forecast value")
        return reading

    async def history(self) -> list[CarbonReading]:
        return self._readings(await self._periods(f"{_api_time(datetime.now(UTC))}/pt24h"))

    async def forecast(self) -> list[CarbonReading]:
        start = _api_time(datetime.now(UTC) - timedelta(minutes=30))
        return [r.model_copy(update={"forecast": True}) for r in self._readings(await self._periods(f"{start}/fw24h"))]

    async def past(self, start: datetime, end: datetime) -> list[CarbonReading]:
        """The half-hours that begin in ``[start, end)``: ``actual`` where measured, else ``forecast`` (always, for
        a region), in calls of at most 14 days. The API also returns the period that ends at ``from``; it is
        left out."""
        start, end = utc(start), utc(end)
        periods: list[_Period] = []
        for low, high in spans(_minute(start), _minute(end, up=True), MAX_RANGE):
            periods += await self._periods(f"{_api_time(low)}/{_api_time(high)}")
        return within(self._readings(periods), start, end)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _periods(self, span: str | None) -> list[_Period]:
        """The current period (``span`` None), or those of a range: ``{from}/{to}``, ``{from}/pt24h`` or
        ``{from}/fw24h``."""
        region = self.config.region_id
        if region is None:
            path = "/intensity" if span is None else f"/intensity/{span}"
            return parse_payload(_National, await self._http.get_json(path), self.name, path).data
        if span is None:
            path = f"/regional/regionid/{region}"
            regions = parse_payload(_RegionList, await self._http.get_json(path), self.name, path).data
            return regions[0].data
        path = f"/regional/intensity/{span}/regionid/{region}"
        return parse_payload(_RegionRange, await self._http.get_json(path), self.name, path).data.data

    def _reading(self, period: _Period) -> CarbonReading | None:
        actual, forecast = period.intensity.actual, period.intensity.forecast
        value = actual if actual is not None else forecast
        if value is None:
            return None
        return CarbonReading(intensity=value, timestamp=period.start, source=self.name, forecast=actual is None)

    def _readings(self, periods: list[_Period]) -> list[CarbonReading]:
        readings = (self._reading(period) for period in periods)
        return sorted((r for r in readings if r is not None), key=lambda r: r.timestamp)


class UkOptions(CarbonSourceOptions):
    """``carbon.source: uk``, configured in ``carbon.uk``: the GB Carbon Intensity API."""

    source: Literal["uk"] = "uk"
    uk: UkCarbonIntensityConfig = Field(default_factory=UkCarbonIntensityConfig)

    def build(self) -> UkCarbonIntensitySource:
        return UkCarbonIntensitySource(self.uk, http=self.http)
