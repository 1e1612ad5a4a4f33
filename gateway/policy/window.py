"""The window of carbon intensity that the selector maps onto the pool's energy range."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..arrays import FloatArray


@dataclass(frozen=True)
class CarbonWindow:
    """The range of carbon intensity (gCO2/kWh) the selector maps onto the pool's energy range.

    ``low`` and ``high`` may be arrays (one window per intensity, as trace replay's trailing window).
    """

    low: float | FloatArray
    high: float | FloatArray

    @property
    def degenerate(self) -> np.bool_ | npt.NDArray[np.bool_]:
        return ~(np.asarray(self.high) > np.asarray(self.low))

