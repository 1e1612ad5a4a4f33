"""What every policy is: the ``SelectionPolicy`` protocol, per-request ``Constraints``, and the
machinery the policies share (candidates, latency SLO, constraints, hysteresis)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from ..arrays import FloatArray, IndexArray
from ..errors import ConfigError, NoEligibleModel
from ..pool import ModelPool, ModelSpec
from .window import CarbonWindow

#: A forecast: (epoch s, gCO2/kWh) points, as pairs or as an (n, 2) array (trace replay's slices).
ForecastPoints: TypeAlias = Sequence[tuple[float, float]] | FloatArray


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


@runtime_checkable
class SelectionPolicy(Protocol):
    """Which model serves each request. Trace replay calls it on arrays, the gateway on one value.

    ``advance``, ``replan`` and ``observe`` are the hooks of policies with state over time (a CO2
    budget); for the others they do nothing, so callers drive every policy the same way.
    """

    # Read-only properties, so that the policies' class variables satisfy them.
    @property
    def name(self) -> str: ...

    @property
    def needs_planning(self) -> bool:
        """Whether the live gateway should call ``replan`` periodically."""
        ...

    @property
    def candidates(self) -> tuple[ModelSpec, ...]:
        """The models the policy may choose, as ``select_indices`` numbers them."""
        ...

    def select_indices(self, intensities: npt.ArrayLike, window: CarbonWindow,
                       constraints: Constraints | None = None) -> IndexArray:
        """For each intensity, the index into ``self.candidates`` of the chosen model."""
        ...

    def select(self, intensity: float, window: CarbonWindow, constraints: Constraints | None = None) -> ModelSpec:
        """The model for one request."""
        ...

    def preview(self, intensity: float, window: CarbonWindow) -> ModelSpec:
        """What ``select`` would choose now, leaving the policy's state (hysteresis) as it was."""
        ...

    def advance(self, now: float) -> None:
        """The wall clock (epoch seconds) moved to ``now``."""
        ...

    def replan(self, now: float, intensity: float, forecast: ForecastPoints,
               rate: float) -> float | None:
        """Re-plan from ``now`` with the current ``intensity``, a forecast of (epoch s, intensity) and the
        request ``rate`` (per second) seen lately; returns the new parameter (a price) or None."""
        ...

    def observe(self, intensity: float, model: ModelSpec, count: float = 1.0) -> None:
        """``count`` requests were served by ``model`` at ``intensity``."""
        ...

    def inherit(self, previous: SelectionPolicy) -> None:
        """Take over ``previous``'s account of the period so far: a pool reload replaces the policy mid-period,
        and a budget spent or an error served must not be forgotten with the old pool."""
        ...


class PolicyOptions(BaseModel):
    """The options every policy takes; each policy's own model (beside it) adds ``name`` and its parameters,
    and builds the policy (``build``). The ``policy`` section of the settings is one of them, by ``name``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    max_latency_ms: float | None = Field(default=None, gt=0, description="Latency SLO: models slower than this "
                                         "are never chosen (models without latency_ms stay eligible).")
    hysteresis: float = Field(default=0.0, ge=0, description="gCO2/kWh the intensity must move past a switching "
                              "point before the chosen model changes (0: off).")

    def build(self, pool: ModelPool, *, pue: float = 1.0) -> SelectionPolicy:
        """The policy these options describe, for ``pool``; ``ConfigError`` when the pool cannot satisfy them."""
        raise NotImplementedError

    def common(self) -> dict[str, Any]:
        """The keyword arguments of ``PolicyBase``."""
        return {"max_latency_ms": self.max_latency_ms, "hysteresis": self.hysteresis}


class PolicyBase:
    """Shared machinery: candidates, the latency SLO, per-request constraints and hysteresis.

    Subclasses implement ``choose``: a pure, vectorised map from intensities to candidate indices
    that is non-increasing in energy as intensity rises.
    """

    name: ClassVar[str] = "base"
    needs_planning: ClassVar[bool] = False
    #: Drop a model whose energy equals a more accurate one's (it can never be the better choice).
    _dedupe_equal_energy = True

    def __init__(self, pool: ModelPool, *, max_latency_ms: float | None = None, hysteresis: float = 0.0):
        self.pool = pool
        self.max_latency_ms = max_latency_ms
        self.hysteresis = hysteresis
        fast = [s for s in pool.by_energy if max_latency_ms is None or s.latency_ms is None
                or s.latency_ms <= max_latency_ms]
        if not fast:
            raise ConfigError(f"no model of pool {pool.name!r} meets the latency SLO of {max_latency_ms} ms")
        self._candidates = tuple(s for i, s in enumerate(fast) if i == 0 or not self._dedupe_equal_energy
                                 or s.energy_mj != fast[i - 1].energy_mj)  # by_energy: most accurate first
        self._energies = np.array([s.energy_mj for s in self._candidates], dtype=np.float64)
        self._energy_list = [float(e) for e in self._energies]
        self._errors = np.array([s.error_rate for s in self._candidates], dtype=np.float64)
        self._last: int | None = None

    @property
    def candidates(self) -> tuple[ModelSpec, ...]:
        return self._candidates

    def advance(self, now: float) -> None:
        return None

    def replan(self, now: float, intensity: float, forecast: ForecastPoints,
               rate: float) -> float | None:
        return None

    def observe(self, intensity: float, model: ModelSpec, count: float = 1.0) -> None:
        return None

    def inherit(self, previous: SelectionPolicy) -> None:
        return None

    def choose(self, intensities: FloatArray, window: CarbonWindow) -> IndexArray:
        raise NotImplementedError

    def select_indices(self, intensities: npt.ArrayLike, window: CarbonWindow,
                       constraints: Constraints | None = None) -> IndexArray:
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
            # ``choose``, held equal to it by tests/policy/test_selection.py.
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

    def _damp(self, c: FloatArray, window: CarbonWindow, chosen: IndexArray) -> IndexArray:
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

    def _constrain(self, chosen: IndexArray, constraints: Constraints) -> IndexArray:
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

