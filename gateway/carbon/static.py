from __future__ import annotations

from datetime import datetime, UTC
from typing import Literal

from pydantic import Field

from .base import CarbonReading
from .options import CarbonSourceOptions


class StaticSource:
    """A fixed carbon intensity: for demos, tests, and grids without an API."""

    name = "static"

    def __init__(self, intensity: float):
        if intensity < 0:
            raise ValueError("carbon intensity must be >= 0 gCO2/kWh")
        self.intensity = intensity

    async def current(self) -> CarbonReading:
        return CarbonReading(intensity=self.intensity, timestamp=datetime.now(UTC), source=self.name)

    async def history(self) -> list[CarbonReading]:
        return []

    async def forecast(self) -> list[CarbonReading]:
        return []

    async def past(self, start: datetime, end: datetime) -> list[CarbonReading]:
        """Nothing: a fixed value was never observed, so it has no past."""
        return []

    async def aclose(self) -> None:
        return None


class StaticOptions(CarbonSourceOptions):
    """``carbon.source: static``: one value, always."""

    source: Literal["static"] = "static"
    intensity: float = Field(default=250.0, ge=0, description="gCO2/kWh.")

    def build(self) -> StaticSource:
        return StaticSource(self.intensity)
