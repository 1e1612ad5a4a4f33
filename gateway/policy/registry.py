"""The policies the configuration can name: one line each, name -> the policy's options model.

Each options model lives beside its policy, says what the policy needs, and builds it (``build``); the
``policy`` section of the settings is a union of these models, told apart by ``name``.
"""

from __future__ import annotations

from ..pool import ModelPool
from .base import PolicyOptions, SelectionPolicy
from .carbon_price import CarbonPriceOptions
from .error_target import ErrorTargetOptions
from .fixed import FixedOptions
from .interpolation import InterpolationOptions
from .online_budget import OnlineBudgetOptions

POLICIES: dict[str, type[PolicyOptions]] = {
    "error-target": ErrorTargetOptions,
    "interpolation": InterpolationOptions,
    "fixed": FixedOptions,
    "carbon-price": CarbonPriceOptions,
    "online-budget": OnlineBudgetOptions,
}
DEFAULT_POLICY = "error-target"


def make_policy(pool: ModelPool, options: PolicyOptions, *, pue: float = 1.0) -> SelectionPolicy:
    """The configured policy for ``pool``; raises ``ConfigError`` when the pool cannot satisfy it."""
    return options.build(pool, pue=pue)
