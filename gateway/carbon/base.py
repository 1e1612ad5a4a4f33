from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


class CarbonSourceError(RuntimeError):
    """A source could not produce a trustworthy reading (network, HTTP status, garbage payload)."""


class CarbonReading(BaseModel):
    """One carbon-intensity value, in gCO2eq/kWh, for the period starting at ``timestamp``."""

    model_config = ConfigDict(frozen=True)

    intensity: float = Field(ge=0, description="Carbon intensity, gCO2eq/kWh.")
    timestamp: datetime = Field(description="Start of the period the value is for (UTC).")
    source: str = Field(description="Which provider produced the value.")
    forecast: bool = False


@runtime_checkable
class CarbonSource(Protocol):
    """Where carbon intensity comes from. Implementations must not block the event loop."""

    name: str

    async def current(self) -> CarbonReading:
        """The latest value; raises ``CarbonSourceError`` when none can be had."""
        ...

    async def history(self) -> list[CarbonReading]:
        """Values already observed before now, oldest first (may be empty)."""
        ...

    async def aclose(self) -> None: ...
