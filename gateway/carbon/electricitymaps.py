"""Electricity Maps API v3 (https://api.electricitymap.org): ``/v3/carbon-intensity/{latest,history,forecast}``
and ``past-range``.

Needs an ``auth-token`` (sent as that header, never logged). Values are gCO2eq/kWh, lifecycle by
default; ``history`` holds the past 24 h hourly, ``forecast`` (on plans that include it) the
coming hours, ``past-range`` any past range of at most 10 days per call (``past`` asks for a longer one
in consecutive calls; plans without it answer 401/403, a ``CarbonSourceError``). Points without a
value (``carbonIntensity: null``) are skipped.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from .base import CarbonReading, CarbonSourceError
from ._http import HttpSettings, JsonHttpClient, parse_payload
from ._ranges import spans, utc, within
from .options import CarbonSourceOptions

#: The longest range ``past-range`` serves in one call (hourly values).
MAX_RANGE = timedelta(days=10)


class ElectricityMapsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = "https://api.electricitymap.org"
    zone: str = Field(min_length=1, description="Zone key, e.g. `GB`, `DE`, `US-CAL-CISO`.")
    auth_token: SecretStr
    emission_factor_type: Literal["lifecycle", "direct"] | None = Field(
        default=None, description="Unset: the API's default (lifecycle).")


class _Point(BaseModel):
    carbonIntensity: float | None = Field(ge=0, allow_inf_nan=False)
    datetime: datetime
    isEstimated: bool | None = None


class _Latest(_Point):
    zone: str
    carbonIntensity: float = Field(ge=0, allow_inf_nan=False)


class _History(BaseModel):
    zone: str
    history: list[_Point]


class _Forecast(BaseModel):
    zone: str
    forecast: list[_Point]


class _PastRange(BaseModel):
    zone: str
    data: list[_Point]


def _api_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class ElectricityMapsSource:
    """One zone's carbon intensity from Electricity Maps."""

    name = "electricitymaps"

    def __init__(self, config: ElectricityMapsConfig, *, http: HttpSettings | None = None):
        self.config = config
        self._http = JsonHttpClient(config.base_url, http or HttpSettings(), provider=self.name,
                                    headers={"auth-token": config.auth_token.get_secret_value()})

    def __repr__(self) -> str:
        return f"ElectricityMapsSource(zone={self.config.zone!r}, base_url={self.config.base_url!r})"

    @property
    def _params(self) -> dict[str, str]:
        params = {"zone": self.config.zone}
        if self.config.emission_factor_type is not None:
            params["emissionFactorType"] = self.config.emission_factor_type
        return params

    async def current(self) -> CarbonReading:
        path = "/v3/carbon-intensity/latest"
        latest = parse_payload(_Latest, await self._http.get_json(path, params=self._params), self.name, path)
        self._check_zone(latest.zone)
        return self._reading(latest.carbonIntensity, latest.datetime)

    async def history(self) -> list[CarbonReading]:
        path = "/v3/carbon-intensity/history"
        history = parse_payload(_History, await self._http.get_json(path, params=self._params), self.name, path)
        self._check_zone(history.zone)
        return self._readings(history.history, forecast=False)

    async def forecast(self) -> list[CarbonReading]:
        path = "/v3/carbon-intensity/forecast"
        forecast = parse_payload(_Forecast, await self._http.get_json(path, params=self._params), self.name, path)
        self._check_zone(forecast.zone)
        return self._readings(forecast.forecast, forecast=True)

    async def past(self, start: datetime, end: datetime) -> list[CarbonReading]:
        """The hours that begin in ``[start, end)``, from ``past-range`` in calls of at most 10 days."""
        start, end = utc(start), utc(end)
        path, readings = "/v3/carbon-intensity/past-range", []
        for low, high in spans(start, end, MAX_RANGE):
            params = {**self._params, "start": _api_time(low), "end": _api_time(high)}
            past = parse_payload(_PastRange, await self._http.get_json(path, params=params), self.name, path)
            self._check_zone(past.zone)
            readings += self._readings(past.data, forecast=False)
        return within(readings, start, end)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _check_zone(self, zone: str) -> None:
        if zone != self.config.zone:
            raise CarbonSourceError(f"{self.name}: asked for zone {self.config.zone}, got {zone}")

    def _reading(self, value: float, moment: datetime, forecast: bool = False) -> CarbonReading:
        return CarbonReading(intensity=value, timestamp=moment, source=self.name, forecast=forecast)

    def _readings(self, points: list[_Point], *, forecast: bool) -> list[CarbonReading]:
        readings = [self._reading(p.carbonIntensity, p.datetime, forecast) for p in points
                    if p.carbonIntensity is not None]
        return sorted(readings, key=lambda r: r.timestamp)


class ElectricityMapsOptions(CarbonSourceOptions):
    """``carbon.source: electricitymaps``, configured in ``carbon.electricitymaps``."""

    source: Literal["electricitymaps"] = "electricitymaps"
    electricitymaps: ElectricityMapsConfig

    def build(self) -> ElectricityMapsSource:
        return ElectricityMapsSource(self.electricitymaps, http=self.http)
