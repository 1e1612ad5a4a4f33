"""Selection policies: which model of the pool serves a request, given the carbon intensity.

- ``error-target`` (the default): meet a mean error rate over each calendar month (or day, week) at
  the least CO2, knowing only the past and the provider's forecast: it re-plans the carbon price of
  ``carbon-price`` from the observed history and the error already served (``error_target``).
- ``fixed``: always one model (the paper's baselines).
- ``interpolation``: the paper's heuristic with the direction the paper's text intends (see
  ``../shared/papers/README.md``): the equation read literally maps the dirtiest grid to the most
  energy-hungry model, so the intensity axis is mirrored,

      (C_high - C) / (C_high - C_low) = (E_selected - E_low) / (E_high - E_low)

  which picks E_high at C_low and E_low at C_high; the model whose energy per inference is nearest
  to E_selected serves the request.
- ``carbon-price``: the least ``error + price * grams`` per request, the Lagrangian of "least error
  within a CO2 budget" (``budget``); with the price the offline optimum finds on a trace it *is*
  that optimum, up to one split period.
- ``online-budget``: the same rule, its price re-solved from the budget left in the current period,
  the provider's forecast and the grams already spent (``advance`` / ``replan`` / ``observe``).

Every policy works on arrays of intensities, so the gateway (one value) and trace replay (millions
of requests in thousands of periods) run the same code. Common options: a latency SLO (slow models
are never candidates), per-request ``Constraints`` (a minimum accuracy, a latency bound) and
hysteresis against flapping.

Modules: ``window`` (the C_low/C_high window), ``base`` (the ``SelectionPolicy`` protocol, constraints,
the shared machinery, ``PolicyOptions``), one module per policy with its options model, ``budget`` (the
exact CO2/error allocation solver), ``registry`` (name -> options model) and ``settings`` (the ``policy``
section: a discriminated union over the registry). Configuration flows one way: settings read the
registry, the registry the policies; no policy knows the settings, so a new policy is one module plus one
registry line.

Imports: numpy, pydantic, ``gateway.pool`` and ``gateway.errors`` only; never the carbon sources,
serving, HTTP or metrics.
"""

from .base import Constraints, PolicyBase, PolicyOptions, SelectionPolicy
from .carbon_price import CarbonPriceOptions, CarbonPricePolicy
from .error_target import ErrorTargetOptions, ErrorTargetPolicy
from .fixed import FixedOptions, FixedPolicy
from .interpolation import InterpolationOptions, InterpolationPolicy
from .online_budget import OnlineBudgetOptions, OnlineBudgetPolicy
from .registry import DEFAULT_POLICY, POLICIES, make_policy
from .settings import PolicySettings, policy_settings
from .window import CarbonWindow

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "CarbonPriceOptions",
    "CarbonPricePolicy",
    "CarbonWindow",
    "Constraints",
    "ErrorTargetOptions",
    "ErrorTargetPolicy",
    "FixedOptions",
    "FixedPolicy",
    "InterpolationOptions",
    "InterpolationPolicy",
    "OnlineBudgetOptions",
    "OnlineBudgetPolicy",
    "PolicyBase",
    "PolicyOptions",
    "PolicySettings",
    "SelectionPolicy",
    "make_policy",
    "policy_settings",
]
