"""The ``carbon`` section of the configuration; each provider with settings of its own adds a section
(``carbon.uk``, ``carbon.electricitymaps``, ...) from ``registry.PROVIDERS``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from ..choices import one_of
from ._http import HttpSettings
from .monitor import CarbonMonitor
from .registry import PROVIDERS, make_source


class CarbonSettingsBase(BaseModel):
    """Where the carbon intensity comes from and how outages and the selector's window are handled.

    See ``gateway.carbon.monitor`` for the outage policy and the choice of ``window_basis``.
    """

    model_config = ConfigDict(extra="forbid")

    source: str = Field(default="static", description="A provider of ``gateway.carbon.registry``: "
                        + ", ".join(PROVIDERS) + ".")
    intensity: float = Field(default=250.0, ge=0, description="Static source: gCO2/kWh.")
    trace_path: Path | None = Field(default=None, description="Trace replay: a .csv or .json file.")
    time_column: str = "Time"
    value_column: str = "Carbon Intensity"
    speedup: float = Field(default=1.0, gt=0, description="Trace replay: trace seconds per wall second.")
    start: datetime | None = Field(default=None, description="Trace replay: where in the trace to begin.")
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

    def section(self, name: str) -> Any:
        """A provider's own settings section, ``carbon.<name>``."""
        return getattr(self, name)

    @field_validator("source")
    @classmethod
    def _registered(cls, source: str) -> str:
        return one_of(source, PROVIDERS, "carbon source")

    @model_validator(mode="after")
    def _consistent(self) -> CarbonSettingsBase:
        requires = PROVIDERS[self.source].requires
        if not all(_lookup(self, dotted) for dotted in requires):
            raise ValueError(f"carbon.source={self.source} needs {_dotted_list(list(requires))}")
        if self.c_low is not None and self.c_high is not None and self.c_high <= self.c_low:
            raise ValueError(f"carbon.c_high ({self.c_high}) must be above carbon.c_low ({self.c_low})")
        return self


def _lookup(settings: BaseModel, dotted: str) -> Any:
    value: Any = settings
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _dotted_list(paths: list[str]) -> str:
    """``carbon.a.b``, ``carbon.a.b and .c``, ``carbon.a.b, .c and .d``: later fields of one section by leaf."""
    first, *rest = paths
    parent = first.rpartition(".")[0]
    named = [f"carbon.{first}", *(f".{p.rpartition('.')[2]}" if p.rpartition(".")[0] == parent and parent
                                  else f"carbon.{p}" for p in rest)]
    return named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"


if TYPE_CHECKING:
    CarbonSettings = CarbonSettingsBase
else:
    CarbonSettings = create_model(
        "CarbonSettings", __base__=CarbonSettingsBase, __doc__=CarbonSettingsBase.__doc__,
        **{name: (provider.config, Field(default_factory=provider.config))
           for name, provider in PROVIDERS.items() if provider.config is not None})


def make_monitor(settings: CarbonSettings) -> CarbonMonitor:
    """The monitor of the configured source, with its window and outage settings."""
    c_low, c_high = settings.c_low, settings.c_high
    if PROVIDERS[settings.source].percentile:  # a 0-100 percentile, whatever the observed range
        c_low, c_high = (0.0 if c_low is None else c_low), (100.0 if c_high is None else c_high)
    source = make_source(settings)
    poll_interval = settings.poll_interval_s
    changes_every = getattr(source, "change_interval_s", None)
    if changes_every is not None:  # e.g. a replayed trace: poll at least as often as it changes
        poll_interval = min(poll_interval, max(0.5, changes_every))
    return CarbonMonitor(source, poll_interval=poll_interval,
                         window_hours=settings.window_hours, c_low=c_low, c_high=c_high,
                         default_intensity=settings.default_intensity, max_age=settings.max_age_s,
                         window_basis=settings.window_basis, forecast_interval=settings.forecast_interval_s,
                         startup_timeout=settings.startup_timeout_s)
