"""What every carbon provider's settings share: polling, outages, the selector's window, HTTP.

Each provider's module holds a subclass of ``CarbonSourceOptions`` with its ``source`` name, its own fields
(flat, as ``static`` and ``trace`` have them, or in a section named after it, as the HTTP providers do),
and ``build``, which makes its ``CarbonSource``. The ``carbon`` section of the settings is one of those
subclasses, told apart by ``source`` (``gateway.carbon.settings``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._http import HttpSettings
from .base import CarbonSource


class CarbonSourceOptions(BaseModel):
    """Where the carbon intensity comes from and how outages and the selector's window are handled.

    See ``gateway.carbon.monitor`` for the outage policy and the choice of ``window_basis``.
    """

    model_config = ConfigDict(extra="forbid")

    #: A 0-100 percentile rather than gCO2/kWh: the selector's window defaults to 0..100.
    percentile: ClassVar[bool] = False

    source: str
    http: HttpSettings = Field(default=HttpSettings(), description="Timeouts and retries of the HTTP providers.")
    poll_interval_s: float = Field(default=60.0, gt=0)
    forecast_interval_s: float = Field(default=1800.0, gt=0, description="How often the forecast is refetched.")
    max_age_s: float | None = Field(default=None, ge=0, description="How long the last good value outlives "
                                    "failing polls before the forecast or default replaces it; "
                                    "default: 3 poll intervals.")
    startup_timeout_s: float = Field(default=10.0, gt=0, description="Longest startup waits for a first value.")
    window_basis: Literal["history", "forecast"] = Field(
        default="history", description="C_low/C_high from the observed last window_hours, or from the "
                                        "provider's forecast for the next window_hours.")
    window_hours: float = Field(default=24.0, gt=0, description="Span of the window that sets C_low/C_high.")
    c_low: float | None = Field(default=None, ge=0, description="Override the observed C_low.")
    c_high: float | None = Field(default=None, ge=0, description="Override the observed C_high.")
    default_intensity: float = Field(default=250.0, ge=0, description="Used when nothing better is known.")

    @model_validator(mode="after")
    def _window_ordered(self) -> CarbonSourceOptions:
        if self.c_low is not None and self.c_high is not None and self.c_high <= self.c_low:
            raise ValueError(f"carbon.c_high ({self.c_high}) must be above carbon.c_low ({self.c_low})")
        return self

    def build(self) -> CarbonSource:
        """The provider's source; raises ``CarbonSourceError`` (e.g. an unreadable trace)."""
        raise NotImplementedError
