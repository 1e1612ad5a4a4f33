"""The window of carbon intensity that the selector maps onto the pool's energy range."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CarbonWindow:
    """The range of carbon intensity (gCO2/kWh) the selector maps onto the pool's energy range.

    ``low`` and ``high`` may be arrays (one window per intensity, as trace replay's trailing window).
    """

    low: float | np.ndarray
    high: float | np.ndarray

    @property
    def degenerate(self) -> bool | np.ndarray:
        return ~(np.asarray(self.high) > np.asarray(self.low))

