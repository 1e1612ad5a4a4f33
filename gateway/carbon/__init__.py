"""Carbon-intensity sources and the background monitor that keeps the current value.

One module per provider, each a small class implementing ``CarbonSource``:

* ``static``: a fixed value;
* ``trace``: a CSV/JSON trace replayed as live, optionally time-compressed;
* ``uk``: the GB Carbon Intensity API (national or regional, with history and forecast);
* ``electricitymaps``: Electricity Maps v3 (latest, history, forecast);
* ``watttime``: WattTime v3 signal index (marginal emissions, as a 0-100 percentile).

``registry`` names them for the configuration (a new provider is one module plus one line there),
``settings`` is the ``carbon`` section, ``monitor`` keeps the current value, ``_http`` is the HTTP
client the providers share (retries, ``Retry-After``).

Imports: httpx, pydantic, numpy, ``gateway.errors`` and ``gateway.policy.window``; never serving,
HTTP serving or metrics.
"""

from ._http import HttpSettings
from .base import GRAMS_PER_KWH, CarbonReading, CarbonSource, CarbonSourceError
from .electricitymaps import ElectricityMapsConfig, ElectricityMapsSource
from .monitor import CarbonMonitor, CarbonState
from .registry import PROVIDERS, make_source
from .settings import CarbonSettings, make_monitor
from .static import StaticSource
from .trace import TraceReplaySource, load_trace
from .uk import UkCarbonIntensityConfig, UkCarbonIntensitySource
from .watttime import WattTimeConfig, WattTimeSource


__all__ = [
    "GRAMS_PER_KWH",
    "PROVIDERS",
    "CarbonMonitor",
    "CarbonReading",
    "CarbonSettings",
    "CarbonSource",
    "CarbonSourceError",
    "CarbonState",
    "ElectricityMapsConfig",
    "ElectricityMapsSource",
    "HttpSettings",
    "StaticSource",
    "TraceReplaySource",
    "UkCarbonIntensityConfig",
    "UkCarbonIntensitySource",
    "WattTimeConfig",
    "WattTimeSource",
    "load_trace",
    "make_monitor",
    "make_source",
]
