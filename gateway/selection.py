"""Selection policies: which model of the pool serves a request, given the carbon intensity.

- ``fixed``: always one model (the paper's baselines).
- ``interpolation``: the paper's heuristic with the direction the paper's text intends (see
  ``../shared/papers/README.md``): the equation read literally maps the dirtiest grid to the most
  energy-hungry model, so the intensity axis is mirrored,

      (C_high - C) / (C_high - C_low) = (E_selected - E_low) / (E_high - E_low)

  which picks E_high at C_low and E_low at C_high; the model whose energy per inference is nearest
  to E_selected serves the request.
- ``carbon-price``: the least ``error + price * grams`` per request, the Lagrangian of "least error
  within a CO2 budget" (``gateway.budget``); with the price the offline optimum finds on a trace it
  *is* that optimum, up to one split period.
- ``online-budget``: the same rule, its price re-solved from the budget left in the current period,
  the provider's forecast and the grams already spent (``advance`` / ``plan`` / ``observe``).

Every policy works on arrays of intensities, so the gateway (one value) and trace replay (millions
of requests in thousands of periods) run the same code. Common options: a latency SLO (slow models
are never candidates), per-request ``Constraints`` (a minimum accuracy, a latency bound) and
hysteresis against flapping.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .budget import MJ_PER_KWH, Allocation, choose_on_hull, grams_per_mj, hull_slopes, lower_hull
from .pool import ModelPool, ModelSpec


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


class Constraints(BaseModel):
    """Per-request limits on the chosen model (e.g. from a request header)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_accuracy: float | None = Field(default=None, ge=0, le=100,
                                       description="Least accuracy, percent: 100 - the pool's error rate.")
    max_latency_ms: float | None = Field(default=None, gt=0,
                                         description="Slowest model latency accepted (unknown latency passes).")

    def allows(self, spec: ModelSpec) -> bool:
        if self.min_accuracy is not None and 100.0 - spec.error_rate < self.min_accuracy - 1e-9:
            return False
        return self.max_latency_ms is None or spec.latency_ms is None or spec.latency_ms <= self.max_latency_ms


class NoEligibleModel(LookupError):
    """No model of the pool meets a request's constraints."""


@runtime_checkable
class SelectionPolicy(Protocol):
    name: str

    def select_indices(self, intensities: npt.ArrayLike, window: CarbonWindow,
                       constraints: Constraints | None = None) -> np.ndarray:
        """For each intensity, the index into ``self.candidates`` of the chosen model."""
        ...

    @property
    def candidates(self) -> tuple[ModelSpec, ...]:
        """The models the policy may choose, as ``select_indices`` numbers them."""
        ...

    def select(self, intensity: float, window: CarbonWindow, constraints: Constraints | None = None) -> ModelSpec:
        """The model for one request."""
        ...

    def preview(self, intensity: float, window: CarbonWindow) -> ModelSpec:
        """What ``select`` would choose now, leaving the policy's state (hysteresis) as it was."""
        ...


class _PolicyBase:
    """Shared machinery: candidates, the latency SLO, per-request constraints and hysteresis.

    Subclasses implement ``choose``: a pure, vectorised map from intensities to candidate indices
    that is non-increasing in energy as intensity rises.
    """

    name = "base"
    #: Drop a model whose energy equals a more accurate one's (it can never be the better choice).
    _dedupe_equal_energy = True

    def __init__(self, pool: ModelPool, *, max_latency_ms: float | None = None, hysteresis: float = 0.0):
        self.pool = pool
        self.max_latency_ms = max_latency_ms
        self.hysteresis = hysteresis
        fast = [s for s in pool.by_energy if max_latency_ms is None or s.latency_ms is None
                or s.latency_ms <= max_latency_ms]
        if not fast:
            raise ValueError(f"no model of pool {pool.name!r} meets the latency SLO of {max_latency_ms} ms")
        self._candidates = tuple(s for i, s in enumerate(fast) if i == 0 or not self._dedupe_equal_energy
                                 or s.energy_mj != fast[i - 1].energy_mj)  # by_energy: most accurate first
        self._energies = np.array([s.energy_mj for s in self._candidates], dtype=np.float64)
        self._energy_list = [float(e) for e in self._energies]
        self._errors = np.array([s.error_rate for s in self._candidates], dtype=np.float64)
        self._last: int | None = None

    @property
    def candidates(self) -> tuple[ModelSpec, ...]:
        return self._candidates

    def choose(self, intensities: np.ndarray, window: CarbonWindow) -> np.ndarray:
        raise NotImplementedError

    def select_indices(self, intensities: npt.ArrayLike, window: CarbonWindow,
                       constraints: Constraints | None = None) -> np.ndarray:
        """For each intensity, the index into ``candidates`` of the chosen model.

        With hysteresis the policy has state: the intensities are taken as consecutive
        observations (a trace in time order; one value per call in the gateway).
        """
        c = np.asarray(intensities, dtype=np.float64)
        chosen = self.choose(c, window)
        if self.hysteresis > 0:
            chosen = self._damp(c, window, chosen)
        if constraints is not None:
            chosen = self._constrain(chosen, constraints)
        return chosen

    def select(self, intensity: float, window: CarbonWindow, constraints: Constraints | None = None) -> ModelSpec:
        """The model for one request: the live gateway's entry point.

        Raises ``NoEligibleModel`` when no model meets ``constraints``.
        """
        if self.hysteresis == 0 and constraints is None and np.ndim(window.low) == 0:
            # numpy's per-call overhead dwarfs the arithmetic for one value: a scalar twin of
            # ``choose``, held equal to it by tests/test_selection.py.
            return self.candidates[self._choose_one(float(intensity), float(window.low), float(window.high))]
        return self.candidates[int(self.select_indices(intensity, window, constraints).reshape(-1)[0])]

    def _choose_one(self, intensity: float, low: float, high: float) -> int:
        return int(self.choose(np.asarray([intensity]), CarbonWindow(low, high))[0])

    def preview(self, intensity: float, window: CarbonWindow) -> ModelSpec:
        """What ``select`` would choose now, leaving the hysteresis state as it was (for metrics)."""
        last = self._last
        try:
            return self.select(intensity, window)
        finally:
            self._last = last

    def _damp(self, c: np.ndarray, window: CarbonWindow, chosen: np.ndarray) -> np.ndarray:
        """Schmitt trigger: change model only if it would still change with the intensity moved
        ``hysteresis`` g/kWh back towards the current model's side."""
        bigger = self.choose(c - self.hysteresis, window).reshape(-1)  # as if cleaner: at least as big
        smaller = self.choose(c + self.hysteresis, window).reshape(-1)  # as if dirtier: at most as big
        out = chosen.reshape(-1).copy()
        last = self._last
        for t in range(out.size):
            if last is not None:
                out[t] = min(max(last, int(smaller[t])), int(bigger[t]))
            last = int(out[t])
        self._last = last
        return out.reshape(chosen.shape)

    def _constrain(self, chosen: np.ndarray, constraints: Constraints) -> np.ndarray:
        """Replace each disallowed choice by the allowed model nearest in energy (ties: the more accurate)."""
        allowed = np.array([constraints.allows(s) for s in self.candidates])
        if not allowed.any():
            raise NoEligibleModel(f"no model meets {constraints.model_dump(exclude_none=True)}")
        if allowed.all():
            return chosen
        options = np.flatnonzero(allowed)
        distance = np.abs(self._energies[options][np.newaxis, :] - self._energies[chosen.reshape(-1)][:, np.newaxis])
        # Among equally near options prefer the more energy (more accurate): the last minimum.
        nearest = options[distance.shape[1] - 1 - np.argmin(distance[:, ::-1], axis=1)]
        return np.where(allowed[chosen], chosen, nearest.reshape(chosen.shape)).astype(np.intp)


class FixedPolicy(_PolicyBase):
    """Always the same model: the baselines of the paper's evaluation."""

    name = "fixed"
    _dedupe_equal_energy = False

    def __init__(self, pool: ModelPool, model: str, **options):
        super().__init__(pool, **options)
        names = [spec.name for spec in self.candidates]
        if model not in names:
            raise ValueError(f"fixed policy: model {model!r} is not in the pool {names}"
                             + (" (or misses the latency SLO)" if model in pool.by_name else ""))
        self.model = model
        self._index = names.index(model)

    def choose(self, intensities: np.ndarray, window: CarbonWindow) -> np.ndarray:
        return np.full(np.shape(intensities), self._index, dtype=np.intp)

    def _choose_one(self, intensity: float, low: float, high: float) -> int:
        return self._index


class InterpolationPolicy(_PolicyBase):
    """The paper's heuristic, mirrored so that a cleaner grid gets a bigger model.

    Rules the paper leaves open, decided here:
    - intensities outside the window are clamped to it;
    - a degenerate window (C_high <= C_low: nothing observed yet, or a flat grid) carries no
      information about whether now is clean or dirty, so it maps to the middle of the energy range;
    - a target exactly halfway between two models goes to the lower-energy one;
    - models with equal energy: the more accurate one is the only candidate (the other can never
      be the better choice); a pool whose models all cost the same always serves its most accurate.
    """

    name = "interpolation"

    def target_energy(self, intensities: npt.ArrayLike, window: CarbonWindow) -> np.ndarray:
        """E_selected of the (mirrored) interpolation formula, in mJ."""
        c = np.asarray(intensities, dtype=np.float64)
        low, high = np.asarray(window.low, dtype=np.float64), np.asarray(window.high, dtype=np.float64)
        e_low, e_high = self._energies[0], self._energies[-1]
        span = high - low
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.where(span > 0, np.clip((high - c) / np.where(span > 0, span, 1.0), 0.0, 1.0), 0.5)
        return e_low + fraction * (e_high - e_low)

    def choose(self, intensities: np.ndarray, window: CarbonWindow) -> np.ndarray:
        target = self.target_energy(intensities, window)
        energies = self._energies
        upper = np.clip(np.searchsorted(energies, target, side="left"), 0, len(energies) - 1)
        lower = np.clip(upper - 1, 0, len(energies) - 1)
        take_lower = (target - energies[lower]) <= (energies[upper] - target)
        return np.where(take_lower, lower, upper).astype(np.intp)

    def _choose_one(self, intensity: float, low: float, high: float) -> int:
        energies = self._energy_list
        e_low, e_high = energies[0], energies[-1]
        span = high - low
        fraction = min(max((high - intensity) / span, 0.0), 1.0) if span > 0 else 0.5
        target = e_low + fraction * (e_high - e_low)
        upper = min(bisect.bisect_left(energies, target), len(energies) - 1)
        lower = max(upper - 1, 0)
        return lower if target - energies[lower] <= energies[upper] - target else upper


class CarbonPricePolicy(_PolicyBase):
    """Serve the model minimising ``error_rate + price * grams of CO2`` for each request.

    ``price`` is in error-rate points (%) per gram of CO2 per request. Only models on the lower
    convex hull of (energy, error) are ever chosen; the window is not used. For the price that
    ``gateway.budget.Allocation`` finds on a trace this is the least-error policy within that budget.
    """

    name = "carbon-price"

    def __init__(self, pool: ModelPool, price: float, *, pue: float = 1.0, **options):
        super().__init__(pool, **options)
        if not price >= 0:
            raise ValueError(f"carbon price must be >= 0, got {price}")
        self.price = float(price)
        self.pue = pue
        self._hull = lower_hull(self._energies, self._errors)
        self._slopes = hull_slopes(self._energies[self._hull], self._errors[self._hull])
        self._slope_list = [float(slope) for slope in self._slopes]

    @property
    def hull(self) -> tuple[ModelSpec, ...]:
        """The models this policy can choose, by increasing energy."""
        return tuple(self._candidates[i] for i in self._hull)

    def allocation(self, intensities: npt.ArrayLike, counts: npt.ArrayLike) -> Allocation:
        """The exact CO2/error frontier for serving ``counts`` requests at ``intensities`` on the hull."""
        return Allocation(intensities, counts, self._energies[self._hull], self._errors[self._hull], self.pue)

    def choose(self, intensities: np.ndarray, window: CarbonWindow) -> np.ndarray:
        return self._hull[choose_on_hull(self._slopes, self.price, intensities, self.pue)]

    def _choose_one(self, intensity: float, low: float, high: float) -> int:
        if math.isinf(self.price):
            return int(self._hull[0])
        marginal = (self.price * self.pue / MJ_PER_KWH) * intensity
        return int(self._hull[sum(1 for slope in self._slope_list if slope > marginal)])


class OnlineBudgetPolicy(CarbonPricePolicy):
    """A CO2 budget per period, met online from the past and a forecast.

    The caller drives it with three calls (trace replay does exactly this each period):

    - ``advance(now)``: at each poll; renews the budget when ``now`` (epoch s) enters a new period;
    - ``plan(intensities, counts)``: with the forecast for the rest of the budget period (first
      entry: now) and the requests expected in each step; sets the price at which that forecast
      spends exactly the budget left (no more);
    - ``observe(intensity, model, count)``: after serving, charges the grams spent.

    Between plans it behaves as ``carbon-price``. With an exact forecast the period's budget is
    never exceeded; when the budget is spent (or cannot be met) it serves the least-energy model.
    """

    name = "online-budget"

    def __init__(self, pool: ModelPool, budget_g: float, *, period_hours: float = 24.0, pue: float = 1.0,
                 **options):
        super().__init__(pool, 0.0, pue=pue, **options)
        if not budget_g > 0 or not period_hours > 0:
            raise ValueError("online-budget needs budget_g > 0 and period_hours > 0")
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

    def advance(self, now: float) -> bool:
        """Enter the budget period holding ``now``; True (and the budget renewed) if it is a new one."""
        period = math.floor(now / self.period_s)
        if period == self._period:
            return False
        self._period, self.spent_g = period, 0.0
        return True

    def plan(self, intensities: npt.ArrayLike, counts: npt.ArrayLike) -> float:
        """Set and return the price that fits the forecast into the budget left."""
        if self.remaining_g <= 0:
            self.price = math.inf
        else:
            self.price = self.allocation(intensities, counts).price_for_budget(self.remaining_g)
        return self.price

    def observe(self, intensity: float, model: ModelSpec | str, count: float = 1.0) -> float:
        """Charge ``count`` requests served by ``model`` at ``intensity``; returns the grams charged."""
        spec = model if isinstance(model, ModelSpec) else self.pool.by_name[model]
        grams = float(count) * spec.energy_mj * float(grams_per_mj(intensity, self.pue))
        self.spent_g += grams
        if self.remaining_g <= 0:
            self.price = math.inf
        return grams


class PolicySettings(BaseModel):
    """Which selection policy serves requests, and its parameters (the ``policy`` section of the settings)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["interpolation", "fixed", "carbon-price", "online-budget"] = "interpolation"
    model: str | None = Field(default=None, description="fixed: the model.")
    price: float | None = Field(default=None, ge=0, description="carbon-price: error-rate points (%) one request "
                                "trades for one gram of CO2; `carbon-gateway replay` prints the price that "
                                "meets a budget on a past trace.")
    budget_g: float | None = Field(default=None, gt=0, description="online-budget: grams of CO2 per budget period.")
    period_hours: float = Field(default=24.0, gt=0, description="online-budget: the budget renews every this many "
                                "hours, counted from the Unix epoch (24: at UTC midnight).")
    max_latency_ms: float | None = Field(default=None, gt=0, description="Latency SLO: models slower than this "
                                         "are never chosen (models without latency_ms stay eligible).")
    hysteresis: float = Field(default=0.0, ge=0, description="gCO2/kWh the intensity must move past a switching "
                              "point before the chosen model changes (0: off).")

    @model_validator(mode="after")
    def _parameters_given(self) -> PolicySettings:
        needed = {"fixed": "model", "carbon-price": "price", "online-budget": "budget_g"}.get(self.name)
        if needed is not None and getattr(self, needed) is None:
            raise ValueError(f"policy {self.name} needs policy.{needed}")
        return self



def make_policy(pool: ModelPool, settings: PolicySettings, *, pue: float = 1.0) -> SelectionPolicy:
    """Build the configured policy."""
    options = {"max_latency_ms": settings.max_latency_ms, "hysteresis": settings.hysteresis}
    if settings.name == "interpolation":
        return InterpolationPolicy(pool, **options)
    if settings.name == "fixed":
        assert settings.model is not None  # enforced by PolicySettings
        return FixedPolicy(pool, settings.model, **options)
    if settings.name == "carbon-price":
        assert settings.price is not None
        return CarbonPricePolicy(pool, settings.price, pue=pue, **options)
    assert settings.budget_g is not None
    return OnlineBudgetPolicy(pool, settings.budget_g, period_hours=settings.period_hours, pue=pue, **options)
