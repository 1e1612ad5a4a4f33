"""WattTime API v3 (https://api.watttime.org): the ``co2_moer`` signal index of a balancing area.

Not comparable with the other sources: WattTime reports *marginal* operating emissions (what one
more kWh now would emit), and ``/v3/signal-index`` gives them as a 0-100 percentile of the
region's recent values, not gCO2eq/kWh. Readings carry ``unit="percentile"`` and ``marginal=True``;
the selector's window should be 0..100 (the runtime uses that unless ``c_low``/``c_high`` are set),
and grams of CO2 computed from it are not meaningful. No history, past range or forecast is fetched: the
historical endpoint needs a paid plan, and the forecast is in lbs/MWh, another unit again.

Auth: ``GET /login`` with HTTP basic auth returns a bearer token (valid 30 min); it is renewed
before expiry and once more whenever the API answers 401/403.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from .base import CarbonReading, CarbonSourceError
from ._http import HttpSettings, HttpStatusError, JsonHttpClient, parse_payload
from .options import CarbonSourceOptions

TOKEN_LIFETIME_S = 25 * 60  # WattTime's tokens last 30 minutes; renew a little early


class WattTimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = "https://api.watttime.org"
    username: str = Field(min_length=1)
    password: SecretStr
    region: str = Field(min_length=1, description="Balancing area, e.g. `CAISO_NORTH`.")
    signal_type: str = "co2_moer"


class _Token(BaseModel):
    token: str = Field(min_length=1)


class _IndexPoint(BaseModel):
    point_time: datetime
    value: float = Field(ge=0, le=100, allow_inf_nan=False)


class _Meta(BaseModel):
    region: str | None = None
    signal_type: str | None = None
    units: str = "percentile"


class _SignalIndex(BaseModel):
    data: list[_IndexPoint] = Field(min_length=1)
    meta: _Meta = _Meta()


class WattTimeSource:
    """A region's marginal-emissions percentile (0 = cleanest, 100 = dirtiest of recent history)."""

    name = "watttime"

    def __init__(self, config: WattTimeConfig, *, http: HttpSettings | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._http = JsonHttpClient(config.base_url, http or HttpSettings(), provider=self.name)
        self._clock = clock
        self._token: str | None = None
        self._token_at = 0.0

    def __repr__(self) -> str:
        return f"WattTimeSource(region={self.config.region!r}, base_url={self.config.base_url!r})"

    async def current(self) -> CarbonReading:
        path = "/v3/signal-index"
        params = {"region": self.config.region, "signal_type": self.config.signal_type}
        try:
            payload = await self._http.get_json(path, params=params, headers=await self._auth_header())
        except HttpStatusError as exc:
            if exc.status_code not in (401, 403):
                raise
            self._token = None  # expired or revoked: log in again, once
            payload = await self._http.get_json(path, params=params, headers=await self._auth_header())
        index = parse_payload(_SignalIndex, payload, self.name, path)
        if index.meta.signal_type not in (None, self.config.signal_type):
            raise CarbonSourceError(f"{self.name}: asked for {self.config.signal_type}, got {index.meta.signal_type}")
        point = max(index.data, key=lambda p: p.point_time)
        return CarbonReading(intensity=point.value, timestamp=point.point_time, source=self.name,
                             unit=index.meta.units, marginal=True)

    async def history(self) -> list[CarbonReading]:
        return []

    async def forecast(self) -> list[CarbonReading]:
        return []

    async def past(self, start: datetime, end: datetime) -> list[CarbonReading]:
        """Nothing: WattTime's historical data (``/v3/historical``) needs a paid plan, so none is fetched."""
        return []

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _auth_header(self) -> dict[str, str]:
        if self._token is None or self._clock() - self._token_at > TOKEN_LIFETIME_S:
            auth = httpx.BasicAuth(self.config.username, self.config.password.get_secret_value())
            login = parse_payload(_Token, await self._http.get_json("/login", auth=auth), self.name, "/login")
            self._token, self._token_at = login.token, self._clock()
        return {"Authorization": f"Bearer {self._token}"}


class WattTimeOptions(CarbonSourceOptions):
    """``carbon.source: watttime``, configured in ``carbon.watttime``: a 0-100 index, never grams."""

    percentile = True

    source: Literal["watttime"] = "watttime"
    watttime: WattTimeConfig

    def build(self) -> WattTimeSource:
        return WattTimeSource(self.watttime, http=self.http)
