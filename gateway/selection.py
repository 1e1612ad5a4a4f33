"""Selection policies: which model of the pool serves a request, given the carbon intensity.

The interpolation policy is the paper's heuristic with the direction the paper's text intends
(see ``../shared/papers/README.md``): the equation read literally maps the dirtiest grid to the
most energy-hungry model, so the intensity axis is mirrored,

    (C_high - C) / (C_high - C_low) = (E_selected - E_low) / (E_high - E_low)

which picks E_high at C_low and E_low at C_high. The model whose energy per inference is
nearest to E_selected serves the request.

Each policy works on arrays of intensities, so the gateway (one value) and trace replay
(millions of values) run the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from .pool import ModelPool, ModelSpec


@dataclass(frozen=True)
class CarbonWindow:
    """The range of carbon intensity (gCO2/kWh) the selector maps onto the pool's energy range."""

    low: float
    high: float

    @property
    def degenerate(self) -> bool:
        return not self.high > self.low


@runtime_checkable
class SelectionPolicy(Protocol):
    name: str

    def select_indices(self, intensities: npt.ArrayLike, window: CarbonWindow) -> np.ndarray:
        """For each intensity, the index into ``self.candidates`` of the chosen model."""
        ...

    @property
    def candidates(self) -> tuple[ModelSpec, ...]:
        """The models the policy may choose, as ``select_indices`` numbers them."""
        ...

    def select(self, intensity: float, window: CarbonWindow) -> ModelSpec:
        """The model for one request."""
        ...


class _PolicyBase:
    name = "base"

    def __init__(self, pool: ModelPool):
        self.pool = pool

    @property
    def candidates(self) -> tuple[ModelSpec, ...]:
        return self.pool.by_energy

    def select_indices(self, intensities: npt.ArrayLike, window: CarbonWindow) -> np.ndarray:
        raise NotImplementedError

    def select(self, intensity: float, window: CarbonWindow) -> ModelSpec:
        """The model for one request: the live gateway's entry point."""
        return self.candidates[int(self.select_indices(intensity, window).reshape(-1)[0])]


class FixedPolicy(_PolicyBase):
    """Always the same model: the baselines of the paper's evaluation."""

    name = "fixed"

    def __init__(self, pool: ModelPool, model: str):
        super().__init__(pool)
        names = [spec.name for spec in self.candidates]
        if model not in names:
            raise ValueError(f"fixed policy: model {model!r} is not in the pool {names}")
        self.model = model
        self._index = names.index(model)

    def select_indices(self, intensities: npt.ArrayLike, window: CarbonWindow) -> np.ndarray:
        return np.full(np.shape(intensities), self._index, dtype=np.intp)


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

    def __init__(self, pool: ModelPool):
        super().__init__(pool)
        by_energy = pool.by_energy
        # Keep the first (most accurate) model of each run of equal energies.
        keep = [i for i, spec in enumerate(by_energy) if i == 0 or spec.energy_mj != by_energy[i - 1].energy_mj]
        self._candidates = tuple(by_energy[i] for i in keep)
        self._energies = np.array([spec.energy_mj for spec in self._candidates], dtype=np.float64)

    @property
    def candidates(self) -> tuple[ModelSpec, ...]:
        return self._candidates

    def target_energy(self, intensities: npt.ArrayLike, window: CarbonWindow) -> np.ndarray:
        """E_selected of the (mirrored) interpolation formula, in mJ."""
        c = np.asarray(intensities, dtype=np.float64)
        e_low, e_high = self._energies[0], self._energies[-1]
        if window.degenerate:
            fraction = np.full(c.shape, 0.5)
        else:
            fraction = np.clip((window.high - c) / (window.high - window.low), 0.0, 1.0)
        return e_low + fraction * (e_high - e_low)

    def select_indices(self, intensities: npt.ArrayLike, window: CarbonWindow) -> np.ndarray:
        target = self.target_energy(intensities, window)
        energies = self._energies
        upper = np.clip(np.searchsorted(energies, target, side="left"), 0, len(energies) - 1)
        lower = np.clip(upper - 1, 0, len(energies) - 1)
        take_lower = (target - energies[lower]) <= (energies[upper] - target)
        return np.where(take_lower, lower, upper).astype(np.intp)


def make_policy(pool: ModelPool, name: str, model: str | None = None) -> SelectionPolicy:
    """Build the configured policy."""
    if name == "interpolation":
        return InterpolationPolicy(pool)
    if name == "fixed":
        if not model:
            raise ValueError("the fixed policy needs a model name")
        return FixedPolicy(pool, model)
    raise ValueError(f"unknown selection policy {name!r} (known: interpolation, fixed)")
