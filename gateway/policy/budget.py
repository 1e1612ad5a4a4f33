"""Carbon-budget allocation: which model serves each period's requests so that error is least for the CO2.

Serving ``n_t`` requests in period ``t`` (intensity ``c_t``) on model ``k`` costs
``n_t * g(c_t, e_k)`` grams, ``g = e_k [mJ] * c_t [g/kWh] * PUE / 3.6e9``, and contributes
``n_t * r_k`` to the summed error. Minimising summed error under a CO2 budget is a multiple-choice
knapsack. When a period's requests may be split between models (its LP relaxation), the Lagrangian
solves it exactly:

- only models on the lower convex hull of (energy, error) are ever worth serving;
- for a carbon *price* ``lam`` (error-rate points per gram per request) each period independently
  serves the hull model minimising ``r_k + lam * g(c_t, e_k)``, i.e. it steps down from hull model
  ``j`` to ``j - 1`` once ``lam`` passes ``s_j / g'(c_t)``, where ``s_j`` is the hull's error drop per
  mJ between ``j - 1`` and ``j`` and ``g'(c) = c * PUE / 3.6e9`` grams per mJ;
- sorting all these step-downs by price traces the whole CO2-vs-error Pareto frontier, piecewise
  linear; a budget (or a target mean error) falls on one step, which is taken fractionally.

The same ``Allocation`` serves the offline optimum on a full trace (replay) and the online policy,
which re-solves it over the rest of its budget period from a forecast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from ..arrays import FloatArray, IndexArray

MJ_PER_KWH = 3.6e9


def grams_per_mj(intensities: npt.ArrayLike, pue: float = 1.0) -> FloatArray:
    """gCO2 per millijoule at each intensity (gCO2/kWh)."""
    return np.asarray(intensities, dtype=np.float64) * pue / MJ_PER_KWH


def lower_hull(energies: npt.ArrayLike, errors: npt.ArrayLike) -> IndexArray:
    """Indices of the models on the lower convex hull of (energy, error), by increasing energy.

    These are the only models a price-based policy ever serves: any other is beaten by a mix of
    its hull neighbours. ``energies`` must be sorted ascending.
    """
    e = np.asarray(energies, dtype=np.float64)
    r = np.asarray(errors, dtype=np.float64)
    hull: list[int] = []
    for i in range(len(e)):
        if hull and r[i] >= r[hull[-1]]:
            continue  # costs at least as much energy for no less error
        if hull and e[i] == e[hull[-1]]:
            hull.pop()  # same energy, lower error: replaces it
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b is above the chord a-i (or on it): a mix of a and i does at least as well.
            if (r[b] - r[a]) * (e[i] - e[a]) >= (r[i] - r[a]) * (e[b] - e[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    return np.asarray(hull, dtype=np.intp)


def hull_slopes(energies: FloatArray, errors: FloatArray) -> FloatArray:
    """Error drop per mJ between consecutive hull models (strictly decreasing along a hull)."""
    slopes: FloatArray = -np.diff(errors) / np.diff(energies)
    return slopes


def choose_on_hull(slopes: FloatArray, price: float, intensities: npt.ArrayLike, pue: float = 1.0) -> IndexArray:
    """Hull position minimising ``error + price * grams`` per intensity; ties go to the lower energy.

    An infinite price (no budget left) always picks the least-energy model.
    """
    c = np.asarray(intensities, dtype=np.float64)
    if math.isinf(price):
        return np.zeros(c.shape, dtype=np.intp)
    marginal = (price * pue / MJ_PER_KWH) * c
    positions: IndexArray = (slopes > marginal[..., np.newaxis]).sum(axis=-1).astype(np.intp)
    return positions


@dataclass(frozen=True)
class Plan:
    """A solution: the price, per-period shares of requests per hull model, and what it costs."""

    price: float
    shares: FloatArray  # (periods, hull models), rows sum to 1
    co2_g: float
    mean_error: float
    feasible: bool = True


class Allocation:
    """The exact frontier for serving ``counts`` requests at ``intensities`` on the hull models."""

    def __init__(self, intensities: npt.ArrayLike, counts: npt.ArrayLike, energies: npt.ArrayLike,
                 errors: npt.ArrayLike, pue: float = 1.0, *, ascending: bool = False):
        """``ascending``: the caller vouches that ``intensities`` rise (a planner that binned them), which
        spares a sort at every plan."""
        self.ascending = ascending
        self.intensities = np.asarray(intensities, dtype=np.float64).reshape(-1)
        self.counts = np.asarray(counts, dtype=np.float64).reshape(-1)
        if self.intensities.shape != self.counts.shape:
            raise ValueError("intensities and counts must have the same length")
        self.energies = np.asarray(energies, dtype=np.float64)
        self.errors = np.asarray(errors, dtype=np.float64)
        self.pue = pue
        self._energy_step: FloatArray = self.energies[1:] - self.energies[:-1]
        self._error_step: FloatArray = self.errors[:-1] - self.errors[1:]
        self.slopes: FloatArray = self._error_step / self._energy_step
        self.total_requests = float(self.counts.sum())
        self._gpm = grams_per_mj(self.intensities, pue)
        self._grams_per_period_mj = float(self.counts @ self._gpm)  # grams per mJ of every request
        # At price 0 every period serves the most accurate hull model.
        self.max_co2: float = self._grams_per_period_mj * self.energies[-1]
        self.best_error_sum: float = self.total_requests * self.errors[-1]

    def _prices(self) -> FloatArray:
        """(periods, segments): the price at which each period steps down each hull segment."""
        prices: FloatArray = np.divide(self.slopes[np.newaxis, :], self._gpm[:, np.newaxis],
                                       out=np.full((len(self._gpm), len(self.slopes)), np.inf),
                                       where=self._gpm[:, np.newaxis] > 0)
        return prices

    def _co2_drops(self) -> FloatArray:
        drops: FloatArray = (self.counts * self._gpm)[:, np.newaxis] * self._energy_step[np.newaxis, :]
        return drops

    @cached_property
    def _steps(self) -> tuple[FloatArray, IndexArray, IndexArray, FloatArray, FloatArray]:
        """Step-downs sorted by price: (price, period, hull position, CO2 after, error sum after)."""
        prices = self._prices()
        error_rise = self.counts[:, np.newaxis] * self._error_step[np.newaxis, :]
        order = np.argsort(prices, axis=None, kind="stable")
        period, segment = np.unravel_index(order, prices.shape)
        co2_after = self.max_co2 - np.cumsum(self._co2_drops().reshape(-1)[order])
        error_after = self.best_error_sum + np.cumsum(error_rise.reshape(-1)[order])
        return prices.reshape(-1)[order], period, segment, co2_after, error_after

    @property
    def min_co2(self) -> float:
        least_energy: float = self.energies[0]
        return self._grams_per_period_mj * least_energy

    def frontier(self) -> tuple[FloatArray, FloatArray]:
        """The Pareto frontier's vertices: (CO2 g, mean error %), from the most to the least CO2."""
        _, _, _, co2, err = self._steps
        total = max(self.total_requests, 1e-300)
        return (np.concatenate([[self.max_co2], co2]),
                np.concatenate([[self.best_error_sum], err]) / total)

    def price_for_budget(self, budget_g: float) -> float:
        """The least price whose whole-period (unsplit) choice keeps CO2 within ``budget_g``.

        ``inf`` when even the least-energy model everywhere exceeds the budget.
        """
        if budget_g >= self.max_co2:
            return 0.0
        prices = self._prices().reshape(-1)  # the online policy's hot path: only what it needs
        order = np.argsort(prices, kind="stable")
        prices = prices[order]
        co2 = self.max_co2 - np.cumsum(self._co2_drops().reshape(-1)[order])
        k = int(np.searchsorted(-co2, -budget_g, side="left"))  # first step with co2 <= budget
        # A hair above the step's price, so rounding in ``choose_on_hull`` cannot undo the step.
        return float(prices[k]) * (1 + 1e-9) if k < len(prices) else float("inf")

    def price_for_error(self, mean_error: float) -> float:
        """The price at which serving these periods unsplit comes closest to ``mean_error`` from below,
        interpolated across the step that would cross it (a live policy's estimate of the optimum's price).

        0 when even the most accurate model everywhere misses ``mean_error``; ``inf`` when the least-energy
        model everywhere meets it.
        """
        allowed_rise = mean_error * self.total_requests - self.best_error_sum
        if allowed_rise <= 0:
            return 0.0
        # Segment by segment, from the dirtiest period: each segment's prices then rise, and a stable sort
        # merges those runs in linear time (the planner calls this at every poll).
        dirtiest = slice(None, None, -1) if self.ascending else np.argsort(-self._gpm, kind="stable")
        gpm = self._gpm[dirtiest]
        prices = np.divide(self.slopes[:, np.newaxis], gpm[np.newaxis, :],
                           out=np.full((len(self.slopes), len(gpm)), np.inf), where=gpm[np.newaxis, :] > 0).reshape(-1)
        order = np.argsort(prices, kind="stable")
        ordered = prices[order]
        cumulative = np.cumsum((self._error_step[:, np.newaxis] * self.counts[dirtiest][np.newaxis, :]
                                ).reshape(-1)[order])
        # The first step that overshoots; a level that reaches ``mean_error`` to rounding is taken: a target set
        # to a hull model's error at one intensity serves that model, whatever the float sums came to.
        i = int(np.searchsorted(cumulative, allowed_rise * (1 + 1e-9), side="right"))
        if i >= len(ordered):
            return math.inf
        # Steps at one price (periods at one intensity) are taken together or not at all: the overshooting
        # level is every step at that step's price; all before it are taken.
        first = int(np.searchsorted(ordered, ordered[i], side="left"))
        last = int(np.searchsorted(ordered, ordered[i], side="right")) - 1
        before = float(cumulative[first - 1]) if first > 0 else 0.0
        # A hair above the last level taken, so rounding in ``choose_on_hull`` cannot undo it; and below
        # the level that overshoots, however much of it would fit.
        low = float(ordered[first - 1]) * (1 + 1e-9) if first > 0 else 0.0
        fraction = max(allowed_rise - before, 0.0) / (float(cumulative[last]) - before)
        return low + fraction * max(float(ordered[i]) * (1 - 1e-9) - low, 0.0)

    def plan(self, *, budget_g: float | None = None, mean_error: float | None = None,
             split: bool = True) -> Plan:
        """The least-error plan within ``budget_g`` grams, or the least-CO2 plan within ``mean_error``.

        With ``split`` the one period on the boundary is divided between two models so the
        constraint holds with equality (the exact LP optimum); without, that period takes the
        feasible side.
        """
        if (budget_g is None) == (mean_error is None):
            raise ValueError("give exactly one of budget_g and mean_error")
        prices, period, segment, co2, err = self._steps
        n = len(prices)
        if budget_g is not None:
            feasible = budget_g >= self.min_co2 * (1 - 1e-12)
            if budget_g >= self.max_co2:
                k, fraction = -1, 0.0
            else:
                k = min(int(np.searchsorted(-co2, -budget_g, side="left")), n - 1)
                before = self.max_co2 if k == 0 else co2[k - 1]
                span = before - co2[k]
                fraction = 1.0 if span <= 0 else min(max((before - budget_g) / span, 0.0), 1.0)
        else:
            assert mean_error is not None  # exactly one of the two, checked above
            target = mean_error * self.total_requests
            feasible = target >= self.best_error_sum * (1 - 1e-12)
            # Steps raise error; take them while error stays within the target.
            k = int(np.searchsorted(err, target, side="right"))  # first step that would exceed it
            if k >= n:
                k, fraction = n - 1, 1.0
            else:
                before = self.best_error_sum if k == 0 else err[k - 1]
                span = err[k] - before
                fraction = 0.0 if span <= 0 else min(max((target - before) / span, 0.0), 1.0)
        if not split and 0.0 < fraction < 1.0:
            fraction = 1.0 if budget_g is not None else 0.0
        positions = np.full(len(self.intensities), len(self.energies) - 1, dtype=np.intp)
        if k >= 0:
            # Every step before k is taken: each period ends at the lowest position it stepped to.
            taken = np.zeros(len(self.intensities), dtype=np.intp)
            np.add.at(taken, period[:k], 1)
            positions -= taken
        shares = np.zeros((len(self.intensities), len(self.energies)))
        shares[np.arange(len(positions)), positions] = 1.0
        price = 0.0
        if k >= 0 and fraction > 0:
            t, j = period[k], segment[k]  # step from hull position j + 1 down to j
            shares[t, j + 1] -= fraction
            shares[t, j] += fraction
            price = float(prices[k])
        elif k > 0:
            price = float(prices[k - 1])
        co2_total = float(np.sum(shares * (self.counts * self._gpm)[:, np.newaxis] * self.energies))
        error_sum = float(np.sum(shares * self.counts[:, np.newaxis] * self.errors))
        return Plan(price, shares, co2_total, error_sum / max(self.total_requests, 1e-300), bool(feasible))
