from __future__ import annotations

from datetime import datetime, UTC

from .base import CarbonReading


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

    async def aclose(self) -> None:
        return None
