"""``error-target``: meet a mean error rate over each calendar period at the least CO2, causally.

The hindsight optimum for "least CO2 at mean error r*" over a period is one carbon price for the
whole period (``budget.Allocation``): serve each request the hull model minimising
``error + price * grams``. A live gateway cannot know that price, so it re-estimates it at every
plan (model-predictive control):

1. the rest of the period is predicted from what a live gateway knows: the provider's forecast
   where there is one, and beyond it the last ``history_hours`` of observed (intensity, requests),
   replayed as a profile of what is to come (with no history yet: the current intensity persists);
2. the error still allowed is what keeps the *whole period's* mean at the target: the error debt
   or credit of the requests already served is spread over the requests expected;
3. the price is the one at which the prediction meets that error (``Allocation.price_for_error``).

Step 2 is the feedback: a prediction that was too optimistic shows up as debt and raises the
price, so the period's mean lands on the target whatever the forecast's quality.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime, timedelta, UTC
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ..arrays import FloatArray
from ..errors import ConfigError
from ..pool import ModelPool, ModelSpec
from .base import ForecastPoints, PolicyOptions, SelectionPolicy
from .carbon_price import CarbonPricePolicy


Period = Literal["day", "week", "month"]


def period_bounds(now: float, period: Period) -> tuple[float, float]:
    """Start and end (epoch s) of the UTC calendar ``period`` holding ``now``."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":  # ISO weeks: Monday 00:00 UTC
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    return start.timestamp(), end.timestamp()


def default_target(pool: ModelPool) -> ModelSpec:
    """The pool's second most accurate model (its most accurate if it has one): "as accurate on average
    as ResNet101" for the paper's pool, at a fraction of ResNet101's CO2."""
    ranked = sorted(pool.models, key=lambda spec: (spec.error_rate, spec.energy_mj))
    return ranked[min(1, len(ranked) - 1)]


class History:
    """The trailing ``hours`` of observed intervals, kept as a histogram over intensity.

    A prediction needs only how many seconds and requests fell at each intensity, not their order,
    so the window is summed into 1 g/kWh bins: planning costs the same for a day or a month of history.
    """

    BIN = 1.0  # g/kWh

    def __init__(self, hours: float):
        self.span_s = hours * 3600.0
        self._intervals: deque[tuple[float, float, int, float, float]] = deque()
        self._seconds = np.zeros(1024)
        self._requests = np.zeros(1024)
        self._weighted = np.zeros(1024)  # intensity x seconds, for each bin's mean intensity

    def add(self, start: float, duration: float, intensity: float, requests: float) -> None:
        b = int(intensity / self.BIN)
        if b >= len(self._seconds):
            grow = max(b + 1, 2 * len(self._seconds)) - len(self._seconds)
            self._seconds, self._requests, self._weighted = (
                np.append(a, np.zeros(grow)) for a in (self._seconds, self._requests, self._weighted))
        self._intervals.append((start + duration, duration, b, requests, intensity * duration))
        self._count(b, duration, requests, intensity * duration)
        horizon = start + duration - self.span_s
        while self._intervals and self._intervals[0][0] <= horizon:
            _, old_duration, old_bin, old_requests, old_weighted = self._intervals.popleft()
            self._count(old_bin, -old_duration, -old_requests, -old_weighted)

    def _count(self, b: int, seconds: float, requests: float, weighted: float) -> None:
        self._seconds[b] += seconds
        self._requests[b] += requests
        self._weighted[b] += weighted
        if self._seconds[b] <= 1e-6:  # emptied: drop the rounding left over
            self._seconds[b] = self._requests[b] = self._weighted[b] = 0.0

    def summary(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Per occupied bin: mean intensity, seconds observed, requests served."""
        occupied = np.flatnonzero(self._seconds)
        seconds = self._seconds[occupied]
        return self._weighted[occupied] / seconds, seconds, np.maximum(self._requests[occupied], 0.0)


class ErrorTargetPolicy(CarbonPricePolicy):
    """Meet a mean error rate over each UTC calendar ``period`` at the least CO2, knowing only the past.

    Driven like ``online-budget``: ``replan(now, intensity, forecast, rate)`` at every poll (trace
    replay: every period) and ``observe(intensity, model, count)`` after serving; between plans it
    behaves as ``carbon-price`` at the planned price.
    """

    name = "error-target"
    needs_planning = True

    def __init__(self, pool: ModelPool, target_error: float | None = None, *, target_model: str | None = None,
                 period: Period = "month", history_hours: float = 336.0, settle_hours: float = 96.0,
                 pue: float = 1.0, **options: Any):
        super().__init__(pool, 0.0, pue=pue, **options)
        if target_error is not None and target_model is not None:
            raise ConfigError("error-target: give target_error or target_model, not both")
        if target_model is not None and target_model not in pool.by_name:
            raise ConfigError(f"error-target: target model {target_model!r} is not in the pool {sorted(pool.by_name)}")
        if target_error is None:
            target_error = (pool.by_name[target_model] if target_model else default_target(pool)).error_rate
        hull_errors = [spec.error_rate for spec in self.hull]
        if not min(hull_errors) <= target_error <= max(hull_errors):
            raise ConfigError(f"error-target: a mean error of {target_error} % is outside what the pool can "
                              f"serve ({min(hull_errors)}..{max(hull_errors)} %)")
        if not history_hours > 0 or not settle_hours >= 0:
            raise ConfigError("error-target: history_hours must be > 0 and settle_hours >= 0")
        self.target_error = float(target_error)
        self.period: Period = period
        self.history = History(history_hours)
        self.served = 0.0
        self.error_sum = 0.0
        self._period_end = -math.inf
        self.settle_s = settle_hours * 3600.0
        self._unplanned = 0.0  # requests served since the last plan
        self._last_plan: tuple[float, float] | None = None  # (time, intensity)

    @property
    def mean_error(self) -> float | None:
        """The mean error served so far in the current period (None before the first request)."""
        return self.error_sum / self.served if self.served > 0 else None

    def advance(self, now: float) -> None:
        if now >= self._period_end:
            self._period_end = period_bounds(now, self.period)[1]
            self.served = self.error_sum = 0.0

    def observe(self, intensity: float, model: ModelSpec, count: float = 1.0) -> None:
        self.served += count
        self.error_sum += count * model.error_rate
        self._unplanned += count

    def inherit(self, previous: SelectionPolicy) -> None:
        """The period's served requests and error, the traffic history and the price: none belongs to a pool."""
        if isinstance(previous, ErrorTargetPolicy) and previous.period == self.period:
            self.served, self.error_sum, self._unplanned = previous.served, previous.error_sum, previous._unplanned
            self._period_end, self.history, self.price = previous._period_end, previous.history, previous.price
            self._last_plan = previous._last_plan  # the requests since then go into the history at the next plan

    def replan(self, now: float, intensity: float, forecast: ForecastPoints,
               rate: float) -> float:
        ahead = np.asarray(forecast, dtype=np.float64).reshape(-1, 2)
        ahead = ahead[ahead[:, 0] > now]
        return self.plan(now, intensity, ahead[:, 0], ahead[:, 1], rate)

    def plan(self, now: float, intensity: float, forecast_times: FloatArray, forecast_values: FloatArray,
             rate: float = 0.0) -> float:
        """Set and return the price expected to meet the target over the rest of the period.

        ``forecast_times``/``forecast_values``: the provider's forecast after ``now`` (may be empty);
        ``rate``: requests per second lately, used only until there is history.
        """
        self.advance(now)
        if self._last_plan is not None and now > self._last_plan[0]:
            self.history.add(self._last_plan[0], now - self._last_plan[0], self._last_plan[1], self._unplanned)
            self._unplanned = 0.0
        self._last_plan = (now, intensity)
        intensities, counts = self._predict(now, intensity, forecast_times, forecast_values, rate)
        expected = float(counts.sum())
        debt = self.error_sum - self.target_error * self.served
        settle = max(expected, expected / max(self._period_end - now, 1.0) * self.settle_s)
        allowed = self.target_error - debt / settle
        self.price = self.allocation(intensities, counts).price_for_error(allowed)
        return self.price

    def _predict(self, now: float, intensity: float, forecast_times: FloatArray, forecast_values: FloatArray,
                 rate: float) -> tuple[FloatArray, FloatArray]:
        """Intensities and expected requests over the rest of the period (first entry: now)."""
        end = self._period_end
        seen_intensity, seen_s, seen_requests = self.history.summary()
        observed_s = float(seen_s.sum())
        observed_requests = float(seen_requests.sum())
        # Only relative counts matter until requests are served, so any positive rate will do then.
        rate = observed_requests / observed_s if observed_requests > 0 else rate if rate > 0 else 1.0
        inside = forecast_times < end
        times = np.concatenate([[now], forecast_times[inside]])
        values = np.concatenate([[intensity], forecast_values[inside]])
        # The forecast's last point lasts as long as its steps do on average (an hour with no forecast).
        step = float(times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 3600.0
        edges = np.minimum(np.append(times, times[-1] + step), end)
        durations = np.diff(edges)
        rest = end - edges[-1]
        if rest <= 0 or observed_s <= 0:  # no profile yet: the last known value persists
            durations[-1] += max(rest, 0.0)
            return values, durations * rate
        scale = rest / observed_s
        profile_counts = seen_requests * scale if observed_requests > 0 else seen_s * scale * rate
        return np.concatenate([values, seen_intensity]), np.concatenate([durations * rate, profile_counts])


class ErrorTargetOptions(PolicyOptions):
    """``error-target`` (the default): a mean error rate met over each calendar period at the least CO2."""

    name: Literal["error-target"] = "error-target"
    target_error: float | None = Field(default=None, ge=0, le=100, description="The mean error rate (%) to meet "
                                       "over each target_period.")
    target_model: str | None = Field(default=None, description="Be as accurate on average as this model. Default "
                                     "(neither given): the pool's second most accurate model.")
    target_period: Period = Field(default="month", description="The UTC calendar period over which the mean "
                                  "error is met.")
    history_hours: float = Field(default=336.0, gt=0, description="Observed hours (intensity, requests) that "
                                 "predict the rest of the period beyond the provider's forecast.")
    settle_hours: float = Field(default=96.0, ge=0, description="An error debt or credit is paid back over the "
                                "rest of the period, but over at least this many hours of expected requests, so "
                                "the last days of a period do not swing between extremes.")

    def build(self, pool: ModelPool, *, pue: float = 1.0) -> ErrorTargetPolicy:
        return ErrorTargetPolicy(pool, self.target_error, target_model=self.target_model, period=self.target_period,
                                 history_hours=self.history_hours, settle_hours=self.settle_hours, pue=pue,
                                 **self.common())
