from __future__ import annotations

from datetime import datetime, UTC
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import CarbonSourceError

__all__ = ["GRAMS_PER_KWH", "CarbonReading", "CarbonSource", "CarbonSourceError"]


#: The unit of average (attributional) intensities, which most providers and traces report.
GRAMS_PER_KWH = "gCO2eq/kWh"


class CarbonReading(BaseModel):
    """One carbon-intensity value for the period starting at ``timestamp``.

    ``intensity`` is in ``unit``: gCO2eq/kWh for every source except WattTime, whose signal index is
    a 0-100 percentile of *marginal* emissions (``marginal=True``).
    """

    model_config = ConfigDict(frozen=True)

    intensity: float = Field(ge=0, allow_inf_nan=False, description="Carbon intensity, in `unit`.")
    timestamp: datetime = Field(description="Start of the period the value is for (UTC); a timestamp without a "
                                "timezone is taken as UTC.")
    source: str = Field(description="Which provider produced the value.")
    forecast: bool = False
    unit: str = GRAMS_PER_KWH
    marginal: bool = Field(default=False, description="Marginal (not average) emissions.")

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, moment: datetime) -> datetime:
        # Naive and aware datetimes cannot be compared: one provider's naive stamp would break the monitor.
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@runtime_checkable
class CarbonSource(Protocol):
    """Where carbon intensity comes from. Implementations must not block the event loop.

    A source whose values change on a schedule may say how often with a ``change_interval_s``
    attribute (wall seconds); the monitor then polls at least that often.
    """

    name: str

    async def current(self) -> CarbonReading:
        """The latest value; raises ``CarbonSourceError`` when none can be had."""
        ...

    async def history(self) -> list[CarbonReading]:
        """Values already observed before now, oldest first (may be empty)."""
        ...

    async def forecast(self) -> list[CarbonReading]:
        """Predicted values from the current period on, oldest first (empty when not offered)."""
        ...

    async def past(self, start: datetime, end: datetime) -> list[CarbonReading]:
        """The values of the periods that begin in ``[start, end)`` (wall-clock, UTC; a naive time is UTC), oldest
        first; empty when the source keeps none. A long range may take several calls to the provider: this is for
        filling a policy's history at start, not for the polling loop. Raises ``CarbonSourceError``."""
        ...

    async def aclose(self) -> None: ...
