"""The carbon-intensity providers the configuration can name: one line each, name -> the provider's options.

Each options model lives beside its provider, says what the provider needs, and builds its ``CarbonSource``;
the ``carbon`` section of the settings is a union of these models, told apart by ``source``.
"""

from __future__ import annotations

from .electricitymaps import ElectricityMapsOptions
from .options import CarbonSourceOptions
from .static import StaticOptions
from .trace import TraceOptions
from .uk import UkOptions
from .watttime import WattTimeOptions

PROVIDERS: dict[str, type[CarbonSourceOptions]] = {
    "static": StaticOptions,
    "trace": TraceOptions,
    "uk": UkOptions,
    "electricitymaps": ElectricityMapsOptions,
    "watttime": WattTimeOptions,
}
DEFAULT_PROVIDER = "static"
