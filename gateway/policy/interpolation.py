"""``interpolation``: the paper's heuristic, mirrored so that a cleaner grid gets a bigger model."""

from __future__ import annotations

from typing import Literal

import bisect

import numpy as np
import numpy.typing as npt

from ..arrays import FloatArray, IndexArray
from ..pool import ModelPool
from .base import PolicyBase, PolicyOptions
from .window import CarbonWindow


class InterpolationPolicy(PolicyBase):
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

    def target_energy(self, intensities: npt.ArrayLike, window: CarbonWindow) -> FloatArray:
        """E_selected of the (mirrored) interpolation formula, in mJ."""
        c = np.asarray(intensities, dtype=np.float64)
        low, high = np.asarray(window.low, dtype=np.float64), np.asarray(window.high, dtype=np.float64)
        e_low, e_high = self._energies[0], self._energies[-1]
        span = high - low
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.where(span > 0, np.clip((high - c) / np.where(span > 0, span, 1.0), 0.0, 1.0), 0.5)
        target: FloatArray = e_low + fraction * (e_high - e_low)
        return target

    def choose(self, intensities: FloatArray, window: CarbonWindow) -> IndexArray:
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


class InterpolationOptions(PolicyOptions):
    """``interpolation``: the paper's heuristic, mirrored as the paper intends."""

    name: Literal["interpolation"] = "interpolation"

    def build(self, pool: ModelPool, *, pue: float = 1.0) -> InterpolationPolicy:
        return InterpolationPolicy(pool, **self.common())
