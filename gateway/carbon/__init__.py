"""Carbon-intensity sources and the background monitor that keeps the current value.

One module per provider, each a small class implementing ``CarbonSource``:

* ``static``: a fixed value;
* ``trace``: a CSV/JSON trace replayed as live, optionally time-compressed;
* ``uk``: the GB Carbon Intensity API (national or regional, with history, forecast and past ranges);
* ``electricitymaps``: Electricity Maps v3 (latest, history, forecast, past ranges);
* ``watttime``: WattTime v3 signal index (marginal emissions, as a 0-100 percentile).

Each provider's module also holds its options model (``options.CarbonSourceOptions`` plus its own
fields), which builds its source. ``registry`` names them for the configuration (a new provider is one
module plus one line there), ``settings`` is the ``carbon`` section (a discriminated union over the
registry), ``monitor`` keeps the current value, ``_http`` is the HTTP client the providers share
(retries, ``Retry-After``), ``_ranges`` splits a past range into the spans an API serves per call.
Configuration flows one way: settings -> registry -> providers.

Besides the current value, each source offers ``history`` (what the monitor's window needs), ``forecast``
and ``past(start, end)``: the values of any past range, for a new gateway to fill its policy's history
with when its state store is empty (empty where the source keeps none: ``static``, ``watttime``).

Imports: httpx, pydantic, numpy, ``gateway.errors`` and ``gateway.policy.window``; never serving,
HTTP serving or metrics.
"""

from ._http import HttpSettings
from .base import GRAMS_PER_KWH, CarbonReading, CarbonSource, CarbonSourceError
from .electricitymaps import ElectricityMapsConfig, ElectricityMapsOptions, ElectricityMapsSource
from .monitor import CarbonMonitor, CarbonState
from .options import CarbonSourceOptions
from .registry import DEFAULT_PROVIDER, PROVIDERS
from .settings import CarbonSettings, make_monitor
from .static import StaticOptions, StaticSource
from .trace import TraceOptions, TraceReplaySource, load_trace
from .uk import UkCarbonIntensityConfig, UkCarbonIntensitySource, UkOptions
from .watttime import WattTimeConfig, WattTimeOptions, WattTimeSource


__all__ = [
    "DEFAULT_PROVIDER",
    "GRAMS_PER_KWH",
    "PROVIDERS",
    "CarbonMonitor",
    "CarbonReading",
    "CarbonSettings",
    "CarbonSource",
    "CarbonSourceError",
    "CarbonSourceOptions",
    "CarbonState",
    "ElectricityMapsConfig",
    "ElectricityMapsOptions",
    "ElectricityMapsSource",
    "HttpSettings",
    "StaticOptions",
    "StaticSource",
    "TraceOptions",
    "TraceReplaySource",
    "UkCarbonIntensityConfig",
    "UkCarbonIntensitySource",
    "UkOptions",
    "WattTimeConfig",
    "WattTimeOptions",
    "WattTimeSource",
    "load_trace",
    "make_monitor",
]
