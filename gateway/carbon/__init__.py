"""Carbon-intensity sources and the background monitor that keeps the current value."""

from .base import CarbonReading, CarbonSource, CarbonSourceError
from .monitor import CarbonMonitor, CarbonState
from .static import StaticSource
from .trace import TraceReplaySource, load_trace

__all__ = [
    "CarbonMonitor",
    "CarbonReading",
    "CarbonSource",
    "CarbonSourceError",
    "CarbonState",
    "StaticSource",
    "TraceReplaySource",
    "load_trace",
]
