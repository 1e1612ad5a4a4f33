"""``carbon-price``: the least error + price x grams of CO2, per request."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy.typing as npt
from pydantic import Field

from ..arrays import FloatArray, IndexArray
from ..errors import ConfigError
from ..pool import ModelPool, ModelSpec
from .base import PolicyBase, PolicyOptions
from .budget import MJ_PER_KWH, Allocation, choose_on_hull, hull_slopes, lower_hull
from .window import CarbonWindow

class CarbonPricePolicy(PolicyBase):
    """Serve the model minimising ``error_rate + price * grams of CO2`` for each request.

    ``price`` is in error-rate points (%) per gram of CO2 per request. Only models on the lower
    convex hull of (energy, error) are ever chosen; the window is not used. For the price that
    ``gateway.policy.budget.Allocation`` finds on a trace this is the least-error policy within that budget.
    """

    name = "carbon-price"

    def __init__(self, pool: ModelPool, price: float, *, pue: float = 1.0, **options: Any):
        super().__init__(pool, **options)
        if not price >= 0:
            raise ConfigError(f"carbon price must be >= 0, got {price}")
        self.price = float(price)
        self.pue = pue
        self._hull = lower_hull(self._energies, self._errors)
        self._slopes = hull_slopes(self._energies[self._hull], self._errors[self._hull])
        self._slope_list = [float(slope) for slope in self._slopes]
        self._hull_energies, self._hull_errors = self._energies[self._hull], self._errors[self._hull]

    @property
    def hull(self) -> tuple[ModelSpec, ...]:
        """The models this policy can choose, by increasing energy."""
        return tuple(self._candidates[i] for i in self._hull)

    def allocation(self, intensities: npt.ArrayLike, counts: npt.ArrayLike, *, ascending: bool = False
                   ) -> Allocation:
        """The exact CO2/error frontier for serving ``counts`` requests at ``intensities`` on the hull."""
        return Allocation(intensities, counts, self._hull_energies, self._hull_errors, self.pue, ascending=ascending)

    def choose(self, intensities: FloatArray, window: CarbonWindow) -> IndexArray:
        return self._hull[choose_on_hull(self._slopes, self.price, intensities, self.pue)]

    def _choose_one(self, intensity: float, low: float, high: float) -> int:
        if math.isinf(self.price):
            return int(self._hull[0])
        marginal = (self.price * self.pue / MJ_PER_KWH) * intensity
        return int(self._hull[sum(1 for slope in self._slope_list if slope > marginal)])


class CarbonPriceOptions(PolicyOptions):
    """``carbon-price``: the least ``error + price * grams`` per request."""

    name: Literal["carbon-price"] = "carbon-price"
    price: float = Field(ge=0, description="Error-rate points (%) one request trades for one gram of CO2; "
                         "`carbon-gateway replay` prints the price that meets a budget on a past trace.")

    def build(self, pool: ModelPool, *, pue: float = 1.0) -> CarbonPricePolicy:
        return CarbonPricePolicy(pool, self.price, pue=pue, **self.common())
