"""``fixed``: always the same model."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from ..arrays import FloatArray, IndexArray
from ..errors import ConfigError
from ..pool import ModelPool
from .base import PolicyBase, PolicyOptions
from .window import CarbonWindow


class FixedPolicy(PolicyBase):
    """Always the same model: the baselines of the paper's evaluation."""

    name = "fixed"
    _dedupe_equal_energy = False

    def __init__(self, pool: ModelPool, model: str, **options: Any):
        super().__init__(pool, **options)
        names = [spec.name for spec in self.candidates]
        if model not in names:
            raise ConfigError(f"fixed policy: model {model!r} is not in the pool {names}"
                             + (" (or misses the latency SLO)" if model in pool.by_name else ""))
        self.model = model
        self._index = names.index(model)

    def choose(self, intensities: FloatArray, window: CarbonWindow) -> IndexArray:
        return np.full(np.shape(intensities), self._index, dtype=np.intp)

    def _choose_one(self, intensity: float, low: float, high: float) -> int:
        return self._index


class FixedOptions(PolicyOptions):
    """``fixed``: always ``model``."""

    name: Literal["fixed"] = "fixed"
    model: str = Field(description="The model that serves every request.")

    def build(self, pool: ModelPool, *, pue: float = 1.0) -> FixedPolicy:
        return FixedPolicy(pool, self.model, **self.common())
