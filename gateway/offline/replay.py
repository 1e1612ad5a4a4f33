"""Trace replay: run the selection policies over a carbon-intensity trace and a request trace.

The unit of work is a trace period (e.g. half an hour): every request of a period meets the same
intensity, so a month of half-hours with any number of requests is ~1,500 steps. The policies are
the live gateway's own objects (``gateway.policy``), built from ``PolicySettings``; the periods and
their requests come from ``workload``.

Policies without state run vectorised over all periods at once. Policies that plan over time
(``error-target``, ``online-budget``) run in one causal pass, driven through the same hooks the live
gateway calls (``advance``, ``replan``, ``select``, ``observe``), from a lead-in of history before
the measured range; they see the trace's future only as a provider's forecast would show it
(``perfect``: the next ``forecast_hours``) or not at all (``none``).

Every policy is scored against the hindsight optimum (``policy.budget.Allocation``): the least CO2
at which its mean error could have been served on the same trace, and against a baseline model on
the paper's carbon-emission efficiency.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, UTC
from functools import cached_property, partial
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..arrays import FloatArray
from ..carbon.trace import load_trace
from ..policy import (CarbonPricePolicy, CarbonWindow, ErrorTargetOptions, FixedOptions,
                      InterpolationOptions, OnlineBudgetOptions, PolicyOptions, make_policy)
from ..policy.budget import Allocation, grams_per_mj
from ..policy.error_target import ErrorTargetPolicy
from ..state.memory import MemoryStore
from ..pool import ModelPool, load_pool
from .workload import HOUR, Workload, build_workload, load_request_trace, weekly_profile

#: What a causal policy is told of the future: nothing, or the trace itself for ``forecast_hours``.
Forecast = Literal["none", "perfect"]


class ReplayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    carbon_trace: Path
    time_column: str = "Time"
    value_column: str = "Carbon Intensity"
    max_hold_periods: int = Field(default=4, ge=1, description="A carbon value is held across a gap for at most "
                                  "this many typical periods; longer gaps are left out of the replay.")
    requests: Path
    request_time_column: str = "timestamp"
    request_count_column: str | None = Field(default="sum_req", description="None: the request trace is a "
                                             "per-request arrival log (one row per request).")
    pool: Path
    start: datetime | None = Field(default=None, description="First period replayed (UTC); default: the trace's.")
    end: datetime | None = Field(default=None, description="End of the replay, exclusive; default: the trace's.")
    total_requests: float = Field(default=100e6, gt=0, description="Requests over the replayed range.")
    pue: float = Field(default=1.0, ge=1.0)
    window_hours: float = Field(default=24.0, ge=0, description="Interpolation: trailing window for C_low/C_high, "
                                "as the live monitor keeps it; 0: the whole replayed range.")
    baseline: str = Field(default="resnet50", description="Model the efficiency metric compares against.")
    hysteresis: float = Field(default=0.0, ge=0, description="g/kWh; > 0 adds an interpolation+hysteresis run.")
    target: ErrorTargetOptions = Field(default_factory=ErrorTargetOptions, description="The error-target policy "
                                       "replayed: `carbon-gateway replay` takes the gateway's own `policy` settings "
                                       "(settings file, environment) as `serve` does, its target flags over them.")
    forecasts: tuple[Forecast, ...] = ("none", "perfect")
    forecast_hours: float = Field(default=48.0, gt=0, description="How far a perfect forecast reaches.")
    budget_g: float | None = Field(default=None, gt=0, description="Also run online-budget with this many grams "
                                   "per budget period.")
    budget_period_hours: float = Field(default=24.0, gt=0, description="online-budget: budget period.")
    by_month: bool = Field(default=False, description="Also score every calendar month on its own.")
    replicas: int = Field(default=1, ge=1, le=64, description="Also replay error-target as this many processes "
                          "sharing the requests (with restart_every_hours or alone).")
    restart_every_hours: float | None = Field(default=None, gt=0, description="Also replay error-target with each "
                                              "process restarted this often (staggered across replicas).")
    state_store: Literal["memory", "none"] = Field(default="memory", description="Whether the simulated fleet "
                                                   "shares its account and history through a store.")


# --- what the policies see ----------------------------------------------------------------------------


def trailing_window(workload: Workload, hours: float) -> CarbonWindow:
    """Per period, C_low/C_high over the trailing ``hours`` (inclusive of now), as the live monitor
    keeps them; ``hours == 0``: the whole replayed range."""
    if hours <= 0:
        c = workload.intensities
        return CarbonWindow(float(c.min()), float(c.max()))
    all_times, all_values = workload.trace.times, workload.trace.values
    end = np.searchsorted(all_times, workload.times, side="right")  # one past each period
    begin = np.searchsorted(all_times, workload.times - hours * HOUR, side="left")
    width = int((end - begin).max())
    padded = np.concatenate([np.full(width - 1, np.nan), all_values])
    views = np.lib.stride_tricks.sliding_window_view(padded, width)[end - 1]  # rows end at each period
    age = np.arange(width)[::-1][np.newaxis, :]
    views = np.where(age < (end - begin)[:, np.newaxis], views, np.nan)
    return CarbonWindow(np.nanmin(views, axis=1), np.nanmax(views, axis=1))


def forecast_rows(workload: Workload, times: FloatArray, hours: float) -> tuple[FloatArray, np.ndarray, np.ndarray]:
    """The trace as (time, intensity) rows, and per moment in ``times`` the slice of rows a provider's
    perfect forecast of ``hours`` would show: strictly after the moment, up to ``hours`` ahead."""
    rows = np.column_stack([workload.trace.times, workload.trace.values])
    return (rows, np.searchsorted(workload.trace.times, times, side="right"),
            np.searchsorted(workload.trace.times, times + hours * HOUR, side="right"))


# --- running the policies ------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What a policy did: per period, the share of requests each pool model (by energy) served."""

    label: str
    shares: np.ndarray  # (periods, models)
    parameter: dict[str, float]

    def select(self, mask: np.ndarray) -> Run:
        return dataclasses.replace(self, shares=self.shares[mask])


class Outcome(BaseModel):
    """One policy's totals, its carbon-emission efficiency against the baseline model, and its regret
    against the hindsight optimum."""

    policy: str
    co2_g: float
    energy_kwh: float
    mean_error: float
    accuracy_gain_pct: float = Field(description="(baseline error - error) / baseline error, percent.")
    extra_co2_g: float = Field(description="CO2 above the baseline's.")
    efficiency: float | None = Field(description="accuracy_gain_pct / extra_co2_g (paper, section 4); "
                                     "None when no extra CO2 was spent.")
    switches: int = Field(description="Periods in which the main model changed.")
    over_optimum_g: float = Field(default=0.0, description="CO2 above the hindsight optimum's at the same mean "
                                  "error (>= 0 up to rounding).")
    regret_pct: float | None = Field(default=None, description="over_optimum_g as a percentage of the optimum's "
                                     "extra CO2 over the baseline at that error; None when that is not positive.")
    regret_at_target_pct: float | None = Field(default=None, description="CO2 above the hindsight optimum that meets "
                                               "the target exactly, as a percentage of that optimum's extra CO2 over "
                                               "the baseline: a policy more accurate than asked pays for it here.")
    parameter: dict[str, float] = {}


class Replay:
    """Replays ``workload`` on ``pool``; each method returns a ``Run`` for ``outcome``."""

    def __init__(self, pool: ModelPool, workload: Workload, pue: float = 1.0):
        self.pool = pool
        self.workload = workload
        self.pue = pue
        self.models = pool.by_energy
        self._column = {spec.name: i for i, spec in enumerate(self.models)}
        self.energies = np.array([s.energy_mj for s in self.models])
        self.errors = np.array([s.error_rate for s in self.models])
        self._grams_per_request = grams_per_mj(workload.intensities, pue)[:, np.newaxis] * self.energies

    def select(self, mask: np.ndarray) -> Replay:
        """The same replay restricted to the periods in ``mask`` (e.g. one month)."""
        w = self.workload
        part = dataclasses.replace(w, times=w.times[mask], durations=w.durations[mask],
                                   intensities=w.intensities[mask], counts=w.counts[mask])
        return Replay(self.pool, part, self.pue)

    def _one_hot(self, columns: Iterable[int] | np.ndarray) -> np.ndarray:
        shares = np.zeros((len(self.workload.times), len(self.models)))
        shares[np.arange(len(shares)), np.fromiter(columns, dtype=np.intp, count=len(shares))] = 1.0
        return shares

    def static(self, label: str, settings: PolicyOptions, window: CarbonWindow) -> Run:
        """A policy without budget state, all periods at once (in time order, for hysteresis)."""
        policy = make_policy(self.pool, settings, pue=self.pue)
        chosen = policy.select_indices(self.workload.intensities, window)
        columns = np.array([self._column[spec.name] for spec in policy.candidates])
        return Run(label, self._one_hot(columns[chosen]), _parameters(settings))

    def causal(self, label: str, settings: PolicyOptions, forecast: Forecast = "none",
               forecast_hours: float = 48.0) -> Run:
        """A planning policy in one pass through the lead-in and the range, driven as the live gateway
        drives it: each period it plans (with the forecast a provider would give), serves the period's
        requests and reports them."""
        policy = make_policy(self.pool, settings, pue=self.pue)
        w = self.workload
        parts = [part for part in (w.lead, w) if part is not None]
        times, intensities, counts, durations = (np.concatenate([getattr(part, field) for part in parts])
                                                 for field in ("times", "intensities", "counts", "durations"))
        rows, ahead_from, ahead_to = forecast_rows(w, times, forecast_hours if forecast == "perfect" else 0.0)
        window = CarbonWindow(0.0, 0.0)  # planning policies choose by price, not by the window
        columns = np.empty(len(times), dtype=np.intp)
        rate = 0.0
        for t in range(len(times)):
            now, intensity = float(times[t]), float(intensities[t])
            policy.advance(now)
            policy.replan(now, intensity, rows[ahead_from[t]:ahead_to[t]], rate)
            spec = policy.select(intensity, window)
            policy.observe(intensity, spec, float(counts[t]))
            columns[t] = self._column[spec.name]
            rate = float(counts[t] / durations[t]) if durations[t] > 0 else 0.0
        return Run(label, self._one_hot(columns[len(times) - len(w.times):]), _parameters(settings))

    def fleet(self, label: str, settings: ErrorTargetOptions, forecast: Forecast = "none",
              forecast_hours: float = 48.0, *, replicas: int = 1, restart_every_hours: float | None = None,
              shared_state: bool = True) -> Run:
        """``causal`` for a fleet: ``replicas`` processes share each period's requests equally, each restarts
        every ``restart_every_hours`` (staggered, replica i at i/replicas of the interval). With
        ``shared_state`` they exchange their account and history through one store after every period, and a
        restarted one loads them back, as the live gateway does through ``state.url`` (``PolicySync``);
        without, a restarted one starts with an empty account and only the grid's past intensity (a
        provider's history)."""
        w = self.workload
        parts = [part for part in (w.lead, w) if part is not None]
        times, intensities, counts, durations = (np.concatenate([getattr(part, field) for part in parts])
                                                 for field in ("times", "intensities", "counts", "durations"))
        rows, ahead_from, ahead_to = forecast_rows(w, times, forecast_hours if forecast == "perfect" else 0.0)
        clock = [float(times[0])]
        store = MemoryStore(clock=lambda: clock[0]) if shared_state else None
        span_s = settings.history_hours * HOUR

        def started(now: float) -> ErrorTargetPolicy:
            policy = settings.build(self.pool, pue=self.pue)
            policy.advance(now)
            if store is not None:
                policy.restore(store.load_now("replay", policy.period_start, now - span_s))
            else:  # the provider's past: intensities, no requests
                past = (times < now) & (times >= now - span_s)
                for start, seconds, value in zip(times[past], durations[past], intensities[past], strict=True):
                    policy.learn(float(start), float(seconds), float(value))
            return policy

        fleet = [started(float(times[0])) for _ in range(replicas)]
        interval = (restart_every_hours or math.inf) * HOUR
        restarts = [float(times[0]) + interval * (i + 1) / replicas for i in range(replicas)]
        window = CarbonWindow(0.0, 0.0)
        shares = np.zeros((len(times), len(self.models)))
        rate = 0.0
        for t in range(len(times)):
            now, intensity = float(times[t]), float(intensities[t])
            clock[0] = now
            for i in range(replicas):
                if now >= restarts[i]:
                    fleet[i] = started(now)
                    restarts[i] += interval * math.ceil((now - restarts[i] + 1e-9) / interval)
                policy = fleet[i]
                policy.advance(now)
                policy.replan(now, intensity, rows[ahead_from[t]:ahead_to[t]], rate / replicas)
                spec = policy.select(intensity, window)
                policy.observe(intensity, spec, float(counts[t]) / replicas)
                shares[t, self._column[spec.name]] += 1.0 / replicas
            if store is not None:
                for policy in fleet:
                    policy.apply(store.exchange_now(policy.take_delta("replay")))
            rate = float(counts[t] / durations[t]) if durations[t] > 0 else 0.0
        return Run(label, shares[len(times) - len(w.times):], _parameters(settings))

    def optimum(self, label: str, *, budget_g: float | None = None, mean_error: float | None = None) -> Run:
        """The offline optimum over the whole range (requests of one period may be split)."""
        policy = CarbonPricePolicy(self.pool, 0.0, pue=self.pue)
        plan = self.allocation(policy).plan(budget_g=budget_g, mean_error=mean_error)
        shares = np.zeros((len(self.workload.times), len(self.models)))
        for position, spec in enumerate(policy.hull):
            shares[:, self._column[spec.name]] += plan.shares[:, position]
        return Run(label, shares, {"price": plan.price})

    def allocation(self, policy: CarbonPricePolicy | None = None) -> Allocation:
        policy = policy or CarbonPricePolicy(self.pool, 0.0, pue=self.pue)
        return policy.allocation(self.workload.intensities, self.workload.counts)

    @cached_property
    def frontier(self) -> tuple[FloatArray, FloatArray]:
        """The hindsight Pareto frontier's vertices: (CO2 g, mean error %), by rising error."""
        co2, error = self.allocation().frontier()
        return co2, error

    def optimal_co2(self, mean_error: float) -> float:
        """The least CO2 at which this trace could have been served at ``mean_error`` (the frontier is
        piecewise linear between its vertices; outside its range, its end)."""
        co2, error = self.frontier
        return float(np.interp(mean_error, error, co2))

    def outcome(self, run: Run, baseline: Outcome | None = None, target_error: float | None = None) -> Outcome:
        energy_mj = float(np.sum(run.shares * self.workload.counts[:, np.newaxis] * self.energies))
        co2 = float(np.sum(run.shares * self.workload.counts[:, np.newaxis] * self._grams_per_request))
        error = float(self.workload.counts @ (run.shares @ self.errors)) / self.workload.total_requests
        main = np.argmax(run.shares, axis=1)
        result = Outcome(policy=run.label, co2_g=co2, energy_kwh=energy_mj / 3.6e9, mean_error=error,
                         accuracy_gain_pct=0.0, extra_co2_g=0.0, efficiency=None,
                         switches=int(np.count_nonzero(np.diff(main))), parameter=run.parameter)
        result = with_efficiency(result, baseline or result)
        optimal = self.optimal_co2(error)
        optimal_extra = optimal - (baseline.co2_g if baseline else co2)
        meaningful = optimal_extra > 1e-9 * max(co2, 1e-300)  # not the baseline itself, up to rounding
        at_target: float | None = None
        if target_error is not None:
            target_extra = self.optimal_co2(target_error) - (baseline.co2_g if baseline else co2)
            if target_extra > 1e-9 * max(co2, 1e-300):
                at_target = (co2 - self.optimal_co2(target_error)) / target_extra * 100
        return result.model_copy(update={"over_optimum_g": co2 - optimal,
                                         "regret_pct": (co2 - optimal) / optimal_extra * 100 if meaningful else None,
                                         "regret_at_target_pct": at_target})

    def mean_energy(self, run: Run) -> np.ndarray:
        """Per period, the mean energy per request (mJ) of what the policy served."""
        return run.shares @ self.energies


def with_efficiency(result: Outcome, baseline: Outcome) -> Outcome:
    """The paper's carbon-emission efficiency: relative accuracy gain (%) per extra gram of CO2."""
    gain = (baseline.mean_error - result.mean_error) / baseline.mean_error * 100.0
    extra = result.co2_g - baseline.co2_g
    return result.model_copy(update={"accuracy_gain_pct": gain, "extra_co2_g": extra,
                                     "efficiency": gain / extra if extra > 0 else None})


def _parameters(settings: PolicyOptions) -> dict[str, float]:
    values = {"price": getattr(settings, "price", None), "hysteresis": settings.hysteresis or None,
              "budget_g": getattr(settings, "budget_g", None), "target_error": getattr(settings, "target_error", None)}
    return {k: float(v) for k, v in values.items() if v is not None}


# --- the whole study -------------------------------------------------------------------------------


class Headline(BaseModel):
    """The hindsight optimum against the paper's heuristic, in the paper's terms and in total CO2."""

    heuristic: str
    extra_co2_saved_pct: float = Field(description="At the heuristic's mean error: the CO2 the optimum saves, "
                                       "as a percentage of the heuristic's extra CO2 over the baseline (the "
                                       "paper's terms).")
    co2_saved_g: float
    co2_saved_pct_of_total: float = Field(description="The same grams as a percentage of the heuristic's total.")
    error_saved_points: float = Field(description="At the heuristic's CO2: mean error points the optimum saves.")


class MonthResult(BaseModel):
    """One calendar month scored on its own: its own baseline and hindsight frontier."""

    month: str
    days: float
    partial: bool = Field(default=False, description="The trace covers only part of the month: its account ran "
                          "on the whole month's expectation, so its error and regret are not comparable with a "
                          "full month's, and it is left out of the month-by-month criteria.")
    results: list[Outcome]


class Report(BaseModel):
    config: ReplayConfig
    periods: int
    first_period: datetime
    last_period: datetime
    requests: float
    target_error: float
    notes: list[str] = Field(description="What the workload assumed: gaps held or left out, profile fills.")
    results: list[Outcome]
    headline: Headline
    frontier: list[list[float]] = Field(description="The hindsight optimum's [[co2_g, mean_error], ...].")
    months: list[MonthResult] = []


@dataclass
class Study:
    """Everything one ``replay`` run measured, plus what the plots need."""

    report: Report
    replay: Replay
    runs: dict[str, Run]
    window: CarbonWindow


def run_study(config: ReplayConfig) -> Study:
    """Fixed models, the heuristic (trailing and hindsight windows), ``error-target`` with each forecast,
    optionally ``online-budget``, and the hindsight optima they are measured against."""
    pool = load_pool(config.pool)
    if config.baseline not in pool.by_name:
        raise ValueError(f"baseline {config.baseline!r} is not in the pool {sorted(pool.by_name)}")
    target = config.target
    target_error = target.build(pool).target_error
    trace = load_trace(config.carbon_trace, config.time_column, config.value_column)
    requests = load_request_trace(config.requests, config.request_time_column, config.request_count_column)
    workload = build_workload(trace, weekly_profile(requests), config.total_requests, config.start, config.end,
                              max_hold_periods=config.max_hold_periods, lead_hours=target.history_hours)
    replay = Replay(pool, workload, config.pue)
    window = trailing_window(workload, config.window_hours)

    runs: dict[str, Run] = {}
    for spec in pool.by_energy:
        runs[f"fixed:{spec.name}"] = replay.static(f"fixed:{spec.name}",
                                                   FixedOptions(model=spec.name), window)
    interpolation = InterpolationOptions()
    runs["interpolation"] = replay.static("interpolation", interpolation, window)
    runs["interpolation (hindsight window)"] = replay.static("interpolation (hindsight window)", interpolation,
                                                             trailing_window(workload, 0))
    if config.hysteresis > 0:
        runs["interpolation+hysteresis"] = replay.static(
            "interpolation+hysteresis", InterpolationOptions(hysteresis=config.hysteresis), window)
    causal: dict[str, Callable[[str], Run]] = {
        f"error-target ({_forecast_label(forecast, config.forecast_hours)})":
            partial(replay.causal, settings=target, forecast=forecast, forecast_hours=config.forecast_hours)
        for forecast in config.forecasts}
    if config.replicas > 1 or config.restart_every_hours is not None:
        fleet = (f"{config.replicas} replica{'s' if config.replicas > 1 else ''}"
                 + (f", restarted every {config.restart_every_hours:g} h" if config.restart_every_hours else "")
                 + (", shared state" if config.state_store == "memory" else ", no shared state"))
        causal |= {f"error-target ({_forecast_label(forecast, config.forecast_hours)}; {fleet})":
                   partial(replay.fleet, settings=target, forecast=forecast, forecast_hours=config.forecast_hours,
                           replicas=config.replicas, restart_every_hours=config.restart_every_hours,
                           shared_state=config.state_store == "memory")
                   for forecast in config.forecasts}
    if config.budget_g is not None:
        budget = OnlineBudgetOptions(budget_g=config.budget_g, period_hours=config.budget_period_hours)
        causal |= {f"online-budget ({_forecast_label(forecast, config.forecast_hours)})":
                   partial(replay.causal, settings=budget, forecast=forecast, forecast_hours=config.forecast_hours)
                   for forecast in config.forecasts}
    runs.update(_run_causal(causal))
    heuristic = replay.outcome(runs["interpolation"])
    runs["optimal@target"] = replay.optimum("optimal@target", mean_error=target_error)
    runs["optimal@heuristic's error"] = replay.optimum("optimal@heuristic's error", mean_error=heuristic.mean_error)
    runs["optimal@heuristic's CO2"] = replay.optimum("optimal@heuristic's CO2", budget_g=heuristic.co2_g)

    results = _score(replay, runs, config.baseline, target_error)
    by_label = {r.policy: r for r in results}
    co2, error = replay.frontier
    report = Report(config=config, periods=len(workload.times),
                    first_period=datetime.fromtimestamp(workload.times[0], UTC),
                    last_period=datetime.fromtimestamp(workload.times[-1], UTC),
                    requests=workload.total_requests, target_error=target_error,
                    notes=[requests.description, *workload.notes], results=results,
                    headline=_headline(by_label), frontier=np.column_stack([co2, error]).tolist(),
                    months=by_month(replay, runs, config.baseline, target_error) if config.by_month else [])
    return Study(report, replay, runs, window)


def _run_causal(jobs: dict[str, Callable[[str], Run]]) -> dict[str, Run]:
    """The causal runs, each in its own process where there are cores for them: each is one long pass that
    numpy cannot vectorise (a plan depends on the account the previous ones left), and they are independent."""
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers <= 1:
        return {label: job(label) for label, job in jobs.items()}
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as executor:
        futures = {label: executor.submit(job, label) for label, job in jobs.items()}
        return {label: future.result() for label, future in futures.items()}


def _forecast_label(forecast: Forecast, hours: float) -> str:
    return "no forecast" if forecast == "none" else f"{hours:g} h forecast"


def _score(replay: Replay, runs: dict[str, Run], baseline: str, target_error: float) -> list[Outcome]:
    base = replay.outcome(runs[f"fixed:{baseline}"])
    return [replay.outcome(run, base, target_error) for run in runs.values()]


def _headline(by_label: dict[str, Outcome]) -> Headline:
    heuristic = by_label["interpolation"]
    at_error, at_co2 = by_label["optimal@heuristic's error"], by_label["optimal@heuristic's CO2"]
    saved = heuristic.co2_g - at_error.co2_g
    return Headline(heuristic="interpolation",
                    extra_co2_saved_pct=saved / heuristic.extra_co2_g * 100 if heuristic.extra_co2_g > 0 else 0.0,
                    co2_saved_g=saved, co2_saved_pct_of_total=saved / heuristic.co2_g * 100,
                    error_saved_points=heuristic.mean_error - at_co2.mean_error)


def by_month(replay: Replay, runs: dict[str, Run], baseline: str, target_error: float) -> list[MonthResult]:
    """Each UTC calendar month of the range scored on its own: the causal policies as they ran (their
    accounting periods are months), against that month's own baseline and hindsight frontier. A month the
    trace covers less than 90 % of is flagged ``partial``."""
    moments = replay.workload.times.astype("datetime64[s]").astype("datetime64[M]")
    months = []
    for month in np.unique(moments):
        mask = moments == month
        part = replay.select(mask)
        scored = {label: run.select(mask) for label, run in runs.items() if not label.startswith("optimal@")}
        days = float(part.workload.durations.sum()) / (24 * HOUR)
        length = float(((month + 1).astype("datetime64[s]") - month.astype("datetime64[s]")).astype(np.int64))
        months.append(MonthResult(month=str(month), days=days, partial=days * 24 * HOUR < 0.9 * length,
                                  results=_score(part, scored, baseline, target_error)))
    return months
