"""The policies the configuration can name: one line each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..pool import ModelPool
from .base import PolicyBase, SelectionPolicy
from .carbon_price import CarbonPricePolicy
from .error_target import ErrorTargetPolicy
from .fixed import FixedPolicy
from .interpolation import InterpolationPolicy
from .online_budget import OnlineBudgetPolicy

if TYPE_CHECKING:
    from .settings import PolicySettings

POLICIES: dict[str, type[PolicyBase]] = {
    "error-target": ErrorTargetPolicy,
    "interpolation": InterpolationPolicy,
    "fixed": FixedPolicy,
    "carbon-price": CarbonPricePolicy,
    "online-budget": OnlineBudgetPolicy,
}


def make_policy(pool: ModelPool, settings: PolicySettings, *, pue: float = 1.0) -> SelectionPolicy:
    """The configured policy for ``pool``; raises ``ConfigError`` when the pool cannot satisfy it."""
    return POLICIES[settings.name].from_settings(pool, settings, pue=pue)
