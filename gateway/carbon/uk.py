"""The GB National Grid ESO Carbon Intensity API (https://api.carbonintensity.org.uk), no key needed.

National values come from ``/intensity``: ``actual`` when the period has been measured, else its
``forecast``. A region (``region_id`` 1-17; 11 is South West England) comes from
``/regional/regionid/{id}`` and is forecast-only: the API publishes no regional actuals. Both have
24 h of history (``pt24h``) and a 24 h forecast (``fw24h``) in half-hour periods.
"""

from __future__ import annotations

from datetime import datetime, timedelta, UTC
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import CarbonReading, CarbonSourceError
from ._http import HttpSettings, JsonHttpClient, parse_payload
from .options import CarbonSourceOptions


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
        return self._readings(await self._periods("pt24h"))

    async def forecast(self) -> list[CarbonReading]:
        return [r.model_copy(update={"forecast": True}) for r in self._readings(await self._periods("fw24h"))]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _periods(self, span: str | None) -> list[_Period]:
        region = self.config.region_id
        start = _api_time(datetime.now(UTC) - (timedelta(minutes=30) if span == "fw24h" else timedelta()))
        if region is None:
            path = "/intensity" if span is None else f"/intensity/{start}/{span}"
            return parse_payload(_National, await self._http.get_json(path), self.name, path).data
        if span is None:
            path = f"/regional/regionid/{region}"
            regions = parse_payload(_RegionList, await self._http.get_json(path), self.name, path).data
            return regions[0].data
        path = f"/regional/intensity/{start}/{span}/regionid/{region}"
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
