"""``error-target``: meet a mean error rate over each calendar period at the least CO2, causally.

The hindsight optimum for "least CO2 at mean error r*" over a period is one carbon price for the
whole period (``budget.Allocation``): serve each request the hull model minimising
``error + price * grams``. A live gateway cannot know that price, so it re-estimates it at every
plan (model-predictive control):

1. the rest of the period is predicted from what a live gateway knows: the provider's forecast
   where there is one, and beyond it the intensities and requests observed lately, as a mixture of
   two windows: the last ``recent_hours`` (the weather now) and the last ``history_hours`` (the grid's
   usual level). The recent window's weight for a day k days ahead is phi**k, where phi is the day-to-day
   persistence (lag-1 autocorrelation) of the grid's daily mean intensity over the last four weeks,
   measured as it runs: a grid whose days resemble the day before leans on the recent window for
   longer, one that swings leans on the long one. What matters is the level of the rest of the period:
   replayed with that level known in advance (only its level: the shape of the last weeks, scaled),
   the worst month's regret falls to about 2 % (docs/replay.md);
2. the error still allowed is what keeps the *whole period's* mean at the target: the error debt
   or credit of the requests already served is spread over the requests expected;
3. the price is the one at which the prediction meets that error (``Allocation.price_for_error``).

Step 2 is the feedback: a prediction that was too optimistic shows up as debt and raises the
price, so the period's mean lands on the target whatever the forecast's quality.

The period's account (requests, error, CO2, per model) and the observed history are the fleet's when
the gateway runs with a state store: ``take_delta`` hands what this process added since the last
exchange to the store, ``apply`` takes the fleet's totals back, ``restore`` loads them at start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, UTC
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ..arrays import FloatArray
from ..errors import ConfigError
from ..pool import ModelPool, ModelSpec
from ..state.models import StateDelta, StateSnapshot
from .base import ForecastPoints, PolicyOptions, SelectionPolicy
from .budget import grams_per_mj
from .carbon_price import CarbonPricePolicy
from .history import DAY_S, BucketHistory, intensity_bins


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


@dataclass
class Ledger:
    """One period's account: requests served, their summed error rate (%), their CO2, requests per model."""

    period_start: float = -math.inf
    served: float = 0.0
    error_sum: float = 0.0
    co2_g: float = 0.0
    by_model: dict[str, float] = field(default_factory=dict)

    def add(self, count: float, error: float, co2_g: float, model: str) -> None:
        self.served += count
        self.error_sum += count * error
        self.co2_g += co2_g
        self.by_model[model] = self.by_model.get(model, 0.0) + count

    def merge(self, other: Ledger) -> None:
        self.served += other.served
        self.error_sum += other.error_sum
        self.co2_g += other.co2_g
        for model, count in other.by_model.items():
            self.by_model[model] = self.by_model.get(model, 0.0) + count


@dataclass
class _Pending:
    """What this process served and saw since it last handed its delta over."""

    ledger: Ledger
    requests: dict[int, float] = field(default_factory=dict)  # bucket start -> requests
    buckets: set[int] = field(default_factory=set)  # buckets whose intensity it observed


class ErrorTargetPolicy(CarbonPricePolicy):
    """Meet a mean error rate over each UTC calendar ``period`` at the least CO2, knowing only the past.

    Driven like ``online-budget``: ``replan(now, intensity, forecast, rate)`` at every poll (trace
    replay: every period) and ``observe(intensity, model, count)`` after serving; between plans it
    behaves as ``carbon-price`` at the planned price.
    """

    name = "error-target"
    needs_planning = True
    #: Days of daily means that measure the grid's day-to-day persistence.
    PERSISTENCE_DAYS = 28

    def __init__(self, pool: ModelPool, target_error: float | None = None, *, target_model: str | None = None,
                 period: Period = "month", history_hours: float = 672.0, recent_hours: float = 24.0,
                 settle_hours: float = 24.0, pue: float = 1.0, **options: Any):
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
        if not history_hours > 0 or not 0 < recent_hours <= history_hours or not settle_hours >= 0:
            raise ConfigError("error-target: need history_hours > 0, 0 < recent_hours <= history_hours and "
                              "settle_hours >= 0")
        self.target_error = float(target_error)
        self.period: Period = period
        self.history_span_hours = float(history_hours)
        self.recent_hours = float(recent_hours)
        self.history = BucketHistory(history_hours)
        self.ledger = Ledger()
        self._pending = _Pending(Ledger())
        self._period_end = -math.inf
        self.settle_s = settle_hours * 3600.0
        self._last_plan: tuple[float, float] | None = None  # (time, intensity)
        self._unplanned = 0.0  # requests served since the last plan
        self._persistence: tuple[int, float] | None = None  # (day, phi)

    # --- the account ---------------------------------------------------------------------------------

    @property
    def served(self) -> float:
        return self.ledger.served

    @property
    def error_sum(self) -> float:
        return self.ledger.error_sum

    @property
    def mean_error(self) -> float | None:
        """The mean error served so far in the current period (None before the first request)."""
        return self.ledger.error_sum / self.ledger.served if self.ledger.served > 0 else None

    @property
    def period_start(self) -> float:
        return self.ledger.period_start

    @property
    def period_end(self) -> float:
        return self._period_end

    def advance(self, now: float) -> None:
        if now >= self._period_end:
            start, self._period_end = period_bounds(now, self.period)
            self.ledger = Ledger(period_start=start)
            self._pending.ledger = Ledger(period_start=start)

    def observe(self, intensity: float, model: ModelSpec, count: float = 1.0) -> None:
        co2 = count * model.energy_mj * float(grams_per_mj(intensity, self.pue))
        self.ledger.add(count, model.error_rate, co2, model.name)
        self._pending.ledger.add(count, model.error_rate, co2, model.name)
        self._unplanned += count  # into the history, over the interval they were served in, at the next plan

    def inherit(self, previous: SelectionPolicy) -> None:
        """The period's account, the history and the price: none belongs to a pool (a reload keeps them)."""
        if isinstance(previous, ErrorTargetPolicy) and previous.period == self.period:
            self.ledger, self._pending = previous.ledger, previous._pending
            self._period_end, self.history, self.price = previous._period_end, previous.history, previous.price
            self._last_plan, self._unplanned = previous._last_plan, previous._unplanned

    # --- the fleet's account, through a store --------------------------------------------------------

    def take_delta(self, key: str) -> StateDelta:
        """What this process served and observed since the last delta, for the store. The caller sends it
        until the store takes it (``PolicySync``: the same delta, so that it counts once) and then ``apply``s
        the answer; this process's account goes on counting it meanwhile."""
        pending, self._pending = self._pending, _Pending(Ledger(period_start=self.ledger.period_start))
        intensities = {b: value for b in sorted(pending.buckets) if (value := self.history.mean_intensity(b))
                       is not None}
        ledger = pending.ledger
        return StateDelta(key=key, period_start=max(ledger.period_start, 0.0),
                          period_end=max(self._period_end, max(ledger.period_start, 0.0) + 1.0),
                          served=ledger.served, error_sum=ledger.error_sum, co2_g=ledger.co2_g,
                          by_model=dict(ledger.by_model), intensity=intensities, requests=dict(pending.requests))

    def apply(self, snapshot: StateSnapshot) -> None:
        """The fleet's totals after the store took the last delta: they replace this process's view, plus
        what it served since."""
        if snapshot.period_start == self.ledger.period_start:
            fleet = Ledger(snapshot.period_start, snapshot.served, snapshot.error_sum, snapshot.co2_g,
                           dict(snapshot.by_model))
            fleet.merge(self._pending.ledger)
            self.ledger = fleet
        for bucket, count in snapshot.requests.items():
            self.history.set_bucket(bucket, requests=count + self._pending.requests.get(bucket, 0.0))
        for bucket, value in snapshot.intensity.items():
            self.history.set_bucket(bucket, intensity=value)

    def restore(self, snapshot: StateSnapshot) -> None:
        """Start from the fleet's state: its account of the current period and its history."""
        if snapshot.period_start == self.ledger.period_start or self.ledger.period_start == -math.inf:
            self.ledger = Ledger(snapshot.period_start, snapshot.served, snapshot.error_sum, snapshot.co2_g,
                                 dict(snapshot.by_model))
            self._pending = _Pending(Ledger(period_start=snapshot.period_start))
            if self.ledger.period_start > -math.inf:
                self._period_end = period_bounds(self.ledger.period_start, self.period)[1]
        for bucket in sorted(set(snapshot.intensity) | set(snapshot.requests)):
            self.history.set_bucket(bucket, intensity=snapshot.intensity.get(bucket),
                                    requests=snapshot.requests.get(bucket))

    def learn(self, start: float, seconds: float, intensity: float) -> None:
        """The grid's intensity over a time before this process served (a provider's past): history, to be
        written to the store too, with no requests counted."""
        for bucket, _ in self.history.add(start, seconds, intensity):
            self._pending.buckets.add(bucket)

    @property
    def history_hours(self) -> float:
        """Hours of observed intensity the policy plans with."""
        return self.history.hours

    # --- planning ------------------------------------------------------------------------------------

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
            start, seen = self._last_plan
            for bucket, requests in self.history.add(start, now - start, seen, self._unplanned):
                self._pending.buckets.add(bucket)
                self._pending.requests[bucket] = self._pending.requests.get(bucket, 0.0) + requests
            self._unplanned = 0.0
        self._last_plan = (now, intensity)
        intensities, counts, ascending = self._predict(now, intensity, forecast_times, forecast_values, rate)
        expected = float(counts.sum())
        debt = self.ledger.error_sum - self.target_error * self.ledger.served
        settle = max(expected, expected / max(self._period_end - now, 1.0) * self.settle_s)
        allowed = self.target_error - debt / settle
        self.price = self.allocation(intensities, counts, ascending=ascending).price_for_error(allowed)
        return self.price

    def _predict(self, now: float, intensity: float, forecast_times: FloatArray, forecast_values: FloatArray,
                 rate: float) -> tuple[FloatArray, FloatArray, bool]:
        """Intensities and expected requests over the rest of the period, per intensity bin of the history
        (points per bin, not per bucket: the allocation's cost grows with its points), and whether they are in
        ascending order (they are, unless there is no history yet). Called at every plan,
        so written for few numpy calls (a replayed year plans 35,000 times)."""
        end = self._period_end
        history = self.history
        observed_s, observed_requests, counted_s = history.sums()
        # Requests per second where they were counted; the intensities learned from a provider's past (before
        # this gateway served) are weighted at that rate too.
        rate = observed_requests / counted_s if observed_requests > 0 else rate if rate > 0 else 1.0
        inside = forecast_times < end
        if inside.any():
            times = np.concatenate([[now], forecast_times[inside]])
            values = np.concatenate([[intensity], forecast_values[inside]])
            # The forecast's last point lasts as long as its steps do on average.
            step = float(times[-1] - times[0]) / (len(times) - 1)
            edges = np.minimum(np.append(times, times[-1] + step), end)
            known, rest = np.diff(edges) * rate, end - float(edges[-1])
        else:  # the value now, for an hour
            values, known = np.array([intensity]), np.array([(min(now + 3600.0, end) - now) * rate])
            rest = end - min(now + 3600.0, end)
        if rest <= 0 or observed_s <= 1e-6:  # no history yet: the last known value persists
            known[-1] += max(rest, 0.0) * rate
            return values, known, False
        bins = intensity_bins(values)
        first, stop = history.occupied
        first, stop = min(first, int(bins.min())), max(stop, int(bins.max()) + 1)
        bins -= first
        s, w, r, counted = history.totals(first, stop)
        # Beyond the forecast, day k is the recent window with weight phi**k, the long one with the rest; each
        # weighs a bin by its requests where they were counted, else by its time at the counted rate.
        observed = s > 1e-6  # bins with history (an emptied bin keeps float dust)
        long = np.where(observed, r + (s - counted) * rate, 0.0)
        recent = history.binned_window(now, self.recent_hours, rate, first, stop)
        recent_total = float(recent.sum())
        recent_share = self._recent_share(now, rest) if recent_total > 0 else 0.0
        counts = long * ((1.0 - recent_share) * rest * rate / float(long.sum()))
        if recent_share > 0:
            counts += recent * (recent_share * rest * rate / recent_total)
        # Each bin at its observed mean intensity; the forecast's points join the bins they fall in.
        weighted = counts * np.divide(w, s, out=np.zeros(stop - first), where=observed)
        if len(values) == 1:
            counts[bins[0]] += known[0]
            weighted[bins[0]] += known[0] * values[0]
        else:
            counts += np.bincount(bins, weights=known, minlength=stop - first)
            weighted += np.bincount(bins, weights=known * values, minlength=stop - first)
        used = np.flatnonzero(counts > 0)
        return weighted[used] / counts[used], counts[used], True

    def _recent_share(self, now: float, rest: float) -> float:
        """The recent window's share of the ``rest`` seconds beyond the forecast: phi**k for day k ahead."""
        phi = self.persistence(now)
        days, partial = divmod(rest, DAY_S)
        # sum over the whole days k = 1..n of phi**k, then the partial day n + 1
        whole = phi * (1.0 - phi ** days) / (1.0 - phi) if phi < 1.0 else days
        return float((DAY_S * whole + partial * phi ** (days + 1)) / rest)

    def persistence(self, now: float) -> float:
        """phi: the lag-1 autocorrelation of the last four weeks' daily mean intensity (0.5 with under a week);
        worked out once a day."""
        day = int(now // DAY_S)
        if self._persistence is None or self._persistence[0] != day:
            self._persistence = (day, _lag1(self.history.daily_means(now, self.PERSISTENCE_DAYS)))
        return self._persistence[1]


def _lag1(means: FloatArray) -> float:
    if len(means) < 7:
        return 0.5
    deviations = means - means.mean()
    spread = float(deviations @ deviations)
    if spread <= 0:
        return 0.5
    return float(np.clip((deviations[1:] @ deviations[:-1]) / spread, 0.0, 0.98))


class ErrorTargetOptions(PolicyOptions):
    """``error-target`` (the default): a mean error rate met over each calendar period at the least CO2."""

    name: Literal["error-target"] = "error-target"
    target_error: float | None = Field(default=None, ge=0, le=100, description="The mean error rate (%) to meet "
                                       "over each target_period.")
    target_model: str | None = Field(default=None, description="Be as accurate on average as this model. Default "
                                     "(neither given): the pool's second most accurate model.")
    target_period: Period = Field(default="month", description="The UTC calendar period over which the mean "
                                  "error is met.")
    history_hours: float = Field(default=672.0, gt=0, description="The long window: observed hours (intensity, "
                                 "requests) that show the grid's usual level, for the rest of the period beyond "
                                 "the provider's forecast.")
    recent_hours: float = Field(default=24.0, gt=0, description="The recent window: the weather now, weighted "
                                "for the days ahead by the grid's measured day-to-day persistence.")
    settle_hours: float = Field(default=24.0, ge=0, description="An error debt or credit is paid back over the "
                                "rest of the period, but over at least this many hours of expected requests, so "
                                "the last day of a period does not swing between extremes.")

    def build(self, pool: ModelPool, *, pue: float = 1.0) -> ErrorTargetPolicy:
        return ErrorTargetPolicy(pool, self.target_error, target_model=self.target_model, period=self.target_period,
                                 history_hours=self.history_hours, recent_hours=self.recent_hours,
                                 settle_hours=self.settle_hours, pue=pue, **self.common())
