"""The carbon-intensity providers the configuration can name: one line each.

A provider is a ``CarbonSource`` class, how the ``carbon`` settings build it, and, when it has one,
its own settings section (``carbon.<name>``), which ``CarbonSettings`` grows from this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel

from .base import CarbonSource
from .electricitymaps import ElectricityMapsConfig, ElectricityMapsSource
from .static import StaticSource
from .trace import TraceReplaySource, load_trace
from .uk import UkCarbonIntensityConfig, UkCarbonIntensitySource
from .watttime import WattTimeConfig, WattTimeSource

if TYPE_CHECKING:
    from .settings import CarbonSettings


@dataclass(frozen=True)
class Provider:
    build: Callable[[CarbonSettings], CarbonSource]
    #: Its settings section, ``carbon.<name>``, when it has one.
    config: type[BaseModel] | None = None
    #: Settings (dotted, under ``carbon.``) that must be set to use it.
    requires: tuple[str, ...] = ()
    #: A 0-100 percentile rather than gCO2/kWh: the selector's window defaults to 0..100.
    percentile: bool = False


def _trace(settings: CarbonSettings) -> CarbonSource:
    assert settings.trace_path is not None  # ``requires``
    trace = load_trace(settings.trace_path, settings.time_column, settings.value_column)
    return TraceReplaySource(trace, speedup=settings.speedup, start=settings.start, history_hours=settings.window_hours)


PROVIDERS: dict[str, Provider] = {
    "static": Provider(lambda s: StaticSource(s.intensity)),
    "trace": Provider(_trace, requires=("trace_path",)),
    "uk": Provider(lambda s: UkCarbonIntensitySource(s.section("uk"), http=s.http), UkCarbonIntensityConfig),
    "electricitymaps": Provider(lambda s: ElectricityMapsSource(s.section("electricitymaps"), http=s.http),
                                ElectricityMapsConfig, ("electricitymaps.zone", "electricitymaps.auth_token")),
    "watttime": Provider(lambda s: WattTimeSource(s.section("watttime"), http=s.http), WattTimeConfig,
                         ("watttime.username", "watttime.password", "watttime.region"), percentile=True),
}


def make_source(settings: CarbonSettings) -> CarbonSource:
    """The configured provider's source; raises ``CarbonSourceError`` (e.g. an unreadable trace)."""
    return PROVIDERS[settings.source].build(settings)
