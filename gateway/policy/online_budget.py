"""``online-budget``: a CO2 budget per period, met online from the past and a forecast."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from ..errors import ConfigError
from ..pool import ModelPool, ModelSpec
from .budget import grams_per_mj
from .base import ForecastPoints, PolicyOptions, SelectionPolicy
from .carbon_price import CarbonPricePolicy

class OnlineBudgetPolicy(CarbonPricePolicy):
    """A CO2 budget per period, met online from the past and a forecast.

    The caller drives it with three calls (trace replay does exactly this each period):

    - ``enter_period(now)``: at each poll; renews the budget when ``now`` (epoch s) enters a new period;
    - ``plan(intensities, counts)``: with the forecast for the rest of the budget period (first
      entry: now) and the requests expected in each step; sets the price at which that forecast
      spends exactly the budget left (no more);
    - ``charge(intensity, model, count)``: after serving, charges the grams spent.

    The live gateway reaches them through the ``SelectionPolicy`` hooks ``advance``, ``replan``
    (which turns the provider's forecast and the recent request rate into ``plan``'s arguments) and
    ``observe``.

    Between plans it behaves as ``carbon-price``. With an exact forecast the period's budget is
    never exceeded; when the budget is spent (or cannot be met) it serves the least-energy model.
    """

    name = "online-budget"
    needs_planning = True

    def __init__(self, pool: ModelPool, budget_g: float, *, period_hours: float = 24.0, pue: float = 1.0,
                 **options: Any):
        super().__init__(pool, 0.0, pue=pue, **options)
        if not budget_g > 0 or not period_hours > 0:
            raise ConfigError("online-budget needs budget_g > 0 and period_hours > 0")
        self.budget_g = float(budget_g)
        self.period_s = float(period_hours) * 3600.0
        self.spent_g = 0.0
        self._period: int | None = None

    @property
    def remaining_g(self) -> float:
        return self.budget_g - self.spent_g

    def period_end(self, now: float) -> float:
        """Epoch seconds at which the budget period holding ``now`` ends."""
        return (math.floor(now / self.period_s) + 1) * self.period_s

    def enter_period(self, now: float) -> bool:
        """Enter the budget period holding ``now``; True (and the budget renewed) if it is a new one."""
        period = math.floor(now / self.period_s)
        if period == self._period:
            return False
        self._period, self.spent_g = period, 0.0
        return True

    def advance(self, now: float) -> None:
        self.enter_period(now)

    def plan(self, intensities: npt.ArrayLike, counts: npt.ArrayLike) -> float:
        """Set and return the price that fits the forecast into the budget left."""
        if self.remaining_g <= 0:
            self.price = math.inf
        else:
            self.price = self.allocation(intensities, counts).price_for_budget(self.remaining_g)
        return self.price

    def replan(self, now: float, intensity: float, forecast: ForecastPoints,
               rate: float) -> float:
        """Plan the rest of the budget period: the forecast points inside it (else ``intensity`` persists),
        each step expecting ``rate`` requests per second."""
        self.enter_period(now)
        end = self.period_end(now)
        ahead = [(moment, value) for moment, value in forecast if now <= moment < end]
        starts = [now, *(moment for moment, _ in ahead[1:])]
        intensities = [intensity, *(value for _, value in ahead[1:])]
        edges = np.array([*starts, end])
        counts = np.maximum(np.diff(edges), 0.0) * rate
        return self.plan(np.array(intensities), counts)

    def observe(self, intensity: float, model: ModelSpec, count: float = 1.0) -> None:
        self.charge(intensity, model, count)

    def inherit(self, previous: SelectionPolicy) -> None:
        """The CO2 spent in the current budget period, and the price planned for the rest of it."""
        if isinstance(previous, OnlineBudgetPolicy) and previous.period_s == self.period_s:
            self.spent_g, self._period, self.price = previous.spent_g, previous._period, previous.price

    def charge(self, intensity: float, model: ModelSpec | str, count: float = 1.0) -> float:
        """Charge ``count`` requests served by ``model`` at ``intensity``; returns the grams charged."""
        spec = model if isinstance(model, ModelSpec) else self.pool.by_name[model]
        grams = float(count) * spec.energy_mj * float(grams_per_mj(intensity, self.pue))
        self.spent_g += grams
        if self.remaining_g <= 0:
            self.price = math.inf
        return grams


class OnlineBudgetOptions(PolicyOptions):
    """``online-budget``: a CO2 budget per period, its price re-solved online."""

    name: Literal["online-budget"] = "online-budget"
    budget_g: float = Field(gt=0, description="Grams of CO2 per budget period.")
    period_hours: float = Field(default=24.0, gt=0, description="The budget renews every this many hours, "
                                "counted from the Unix epoch (24: at UTC midnight).")

    def build(self, pool: ModelPool, *, pue: float = 1.0) -> OnlineBudgetPolicy:
        return OnlineBudgetPolicy(pool, self.budget_g, period_hours=self.period_hours, pue=pue, **self.common())
