"""Trace replay: run the selection policies over a carbon-intensity trace and a request trace.

The unit of work is a trace period (e.g. half an hour): every request of a period meets the same
intensity, so a month of half-hours with any number of requests is ~1,500 vectorised steps. The
policies are the live gateway's own objects (``gateway.policy``), built from ``PolicySettings``.
The periods and their requests come from ``workload``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..carbon.trace import load_trace
from ..policy import CarbonPricePolicy, CarbonWindow, OnlineBudgetPolicy, PolicySettings, make_policy
from ..policy.budget import Allocation, grams_per_mj
from ..pool import ModelPool, load_pool
from .workload import HOUR, Workload, build_workload, load_request_trace, weekly_profile

Forecast = Literal["perfect", "persistence"]


class ReplayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    carbon_trace: Path
    time_column: str = "Time"
    value_column: str = "Carbon Intensity"
    requests: Path
    request_time_column: str = "timestamp"
    request_count_column: str = "sum_req"
    pool: Path
    start: datetime | None = Field(default=None, description="First period replayed (UTC); default: the trace's.")
    end: datetime | None = Field(default=None, description="End of the replay, exclusive; default: the trace's.")
    total_requests: float = Field(default=100e6, gt=0, description="Requests over the replayed range.")
    pue: float = Field(default=1.0, ge=1.0)
    window_hours: float = Field(default=24.0, ge=0, description="Interpolation: trailing window for C_low/C_high, "
                                "as the live monitor keeps it; 0: the whole replayed range.")
    baseline: str = Field(default="resnet50", description="Model the efficiency metric compares against.")
    hysteresis: float = Field(default=0.0, ge=0, description="g/kWh; > 0 adds an interpolation+hysteresis run.")
    budget_period_hours: float = Field(default=24.0, gt=0, description="Online budget policy: budget period.")
    forecasts: tuple[Forecast, ...] = ("perfect", "persistence")
    frontier_points: int = Field(default=6, ge=0, description="Budgets swept to draw the online policy's frontier.")


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


def intensity_forecast(workload: Workload, kind: Forecast) -> np.ndarray:
    """What a provider would have forecast for each period: the truth, or the value 24 h before."""
    if kind == "perfect":
        return workload.intensities
    index = np.searchsorted(workload.trace.times, workload.times - 24 * HOUR, side="right") - 1
    return workload.trace.values[np.clip(index, 0, None)]


# --- running the policies ------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What a policy did: per period, the share of requests each pool model (by energy) served."""

    label: str
    shares: np.ndarray  # (periods, models)
    parameter: dict[str, float]
    period_spend_g: np.ndarray | None = None  # online budget: grams spent in each budget period
    period_budget_g: float | None = None


class Outcome(BaseModel):
    """One policy's totals and its carbon-emission efficiency against the baseline model."""

    policy: str
    co2_g: float
    energy_kwh: float
    mean_error: float
    accuracy_gain_pct: float = Field(description="(baseline error - error) / baseline error, percent.")
    extra_co2_g: float = Field(description="CO2 above the baseline's.")
    efficiency: float | None = Field(description="accuracy_gain_pct / extra_co2_g (paper, section 4); "
                                     "None when no extra CO2 was spent.")
    switches: int = Field(description="Periods in which the main model changed.")
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

    def _one_hot(self, names: Iterable[str]) -> np.ndarray:
        shares = np.zeros((len(self.workload.times), len(self.models)))
        shares[np.arange(len(shares)), [self._column[n] for n in names]] = 1.0
        return shares

    def static(self, label: str, settings: PolicySettings, window: CarbonWindow) -> Run:
        """A policy without budget state, all periods at once (in time order, for hysteresis)."""
        policy = make_policy(self.pool, settings, pue=self.pue)
        chosen = policy.select_indices(self.workload.intensities, window)
        return Run(label, self._one_hot(policy.candidates[i].name for i in chosen), _parameters(settings))

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

    def online(self, label: str, budget_g: float, forecast: Forecast, period_hours: float = 24.0) -> Run:
        """The online budget policy, period by period, seeing only now, the past and ``forecast``."""
        settings = PolicySettings(name="online-budget", budget_g=budget_g, period_hours=period_hours)
        policy = make_policy(self.pool, settings, pue=self.pue)
        assert isinstance(policy, OnlineBudgetPolicy)
        w = self.workload
        predicted = intensity_forecast(w, forecast).copy()
        names: list[str] = []
        spend: dict[int, float] = {}
        window = CarbonWindow(0.0, 0.0)  # unused by price policies
        for t in range(len(w.times)):
            policy.enter_period(w.times[t])
            stop = int(np.searchsorted(w.times, policy.period_end(w.times[t]), side="left"))
            ahead = predicted[t:stop].copy()
            ahead[0] = w.intensities[t]  # the current intensity is known
            policy.plan(ahead, w.counts[t:stop])
            spec = policy.select(w.intensities[t], window)
            key = math.floor(w.times[t] / policy.period_s)
            spend[key] = spend.get(key, 0.0) + policy.charge(w.intensities[t], spec, w.counts[t])
            names.append(spec.name)
        return Run(label, self._one_hot(names), {"budget_g_per_period": budget_g},
                   np.array(list(spend.values())), budget_g)

    def outcome(self, run: Run, baseline: Outcome | None = None) -> Outcome:
        energy_mj = float(np.sum(run.shares * self.workload.counts[:, np.newaxis] * self.energies))
        co2 = float(np.sum(run.shares * self.workload.counts[:, np.newaxis] * self._grams_per_request))
        error = float(self.workload.counts @ (run.shares @ self.errors)) / self.workload.total_requests
        main = np.argmax(run.shares, axis=1)
        result = Outcome(policy=run.label, co2_g=co2, energy_kwh=energy_mj / 3.6e9, mean_error=error,
                         accuracy_gain_pct=0.0, extra_co2_g=0.0, efficiency=None,
                         switches=int(np.count_nonzero(np.diff(main))), parameter=run.parameter)
        return with_efficiency(result, baseline or result)

    def mean_energy(self, run: Run) -> np.ndarray:
        """Per period, the mean energy per request (mJ) of what the policy served."""
        return run.shares @ self.energies


def with_efficiency(result: Outcome, baseline: Outcome) -> Outcome:
    """The paper's carbon-emission efficiency: relative accuracy gain (%) per extra gram of CO2."""
    gain = (baseline.mean_error - result.mean_error) / baseline.mean_error * 100.0
    extra = result.co2_g - baseline.co2_g
    return result.model_copy(update={"accuracy_gain_pct": gain, "extra_co2_g": extra,
                                     "efficiency": gain / extra if extra > 0 else None})


def _parameters(settings: PolicySettings) -> dict[str, float]:
    values = {"price": settings.price, "hysteresis": settings.hysteresis or None}
    return {k: float(v) for k, v in values.items() if v is not None}


def calibrate(evaluate: Callable[[float], float], target: float, low: float, high: float, *, rising: bool,
              tolerance: float = 2e-4, steps: int = 16, tick: Callable[[], None] | None = None) -> float:
    """Where the monotone ``evaluate`` crosses ``target`` in [low, high] (regula falsi, Illinois
    variant), returned on the side where ``evaluate <= target``: the largest such parameter if
    ``rising``, else the smallest. Stops within ``tolerance`` (relative) of the target."""
    f_low, f_high = evaluate(low) - target, evaluate(high) - target
    feasible = low if rising else high
    side = 0
    for _ in range(steps):
        if f_high == f_low:
            break
        middle = min(max(high - f_high * (high - low) / (f_high - f_low), low), high)
        if not low < middle < high:
            middle = 0.5 * (low + high)
        f_middle = evaluate(middle) - target
        if tick is not None:
            tick()
        if f_middle <= 0:
            feasible = middle
            if abs(f_middle) <= tolerance * abs(target):
                break
        if (f_middle <= 0) == rising:  # the crossing lies above middle
            low, f_low = middle, f_middle
            if side == 1:
                f_high /= 2
            side = 1
        else:
            high, f_high = middle, f_middle
            if side == -1:
                f_low /= 2
            side = -1
    return feasible


# --- the whole study -------------------------------------------------------------------------------


class Comparison(BaseModel):
    """How a policy improves on the paper's heuristic at equal CO2 and at equal mean error."""

    policy: str
    error_saved_points: float = Field(description="Heuristic's mean error minus the policy's, at <= its CO2.")
    error_saved_pct: float
    co2_saved_g: float = Field(description="Heuristic's CO2 minus the policy's, at <= its mean error.")
    co2_saved_pct: float


class Report(BaseModel):
    config: ReplayConfig
    periods: int
    first_period: datetime
    last_period: datetime
    requests: float
    results: list[Outcome]
    comparisons: list[Comparison]
    frontier: dict[str, list[list[float]]] = Field(description="label -> [[co2_g, mean_error], ...]")


@dataclass
class Study:
    """Everything one ``replay`` run measured, plus what the plots need."""

    report: Report
    replay: Replay
    runs: dict[str, Run]
    window: CarbonWindow


def run_study(config: ReplayConfig, progress: Callable[[int], Callable[[], None]] | None = None) -> Study:
    """Fixed models, the heuristic, the offline optimum and the online policy at the heuristic's CO2
    and at its mean error, plus the frontiers. ``progress(total)`` returns a per-step callback."""
    pool = load_pool(config.pool)
    if config.baseline not in pool.by_name:
        raise ValueError(f"baseline {config.baseline!r} is not in the pool {sorted(pool.by_name)}")
    trace = load_trace(config.carbon_trace, config.time_column, config.value_column)
    requests = load_request_trace(config.requests, config.request_time_column, config.request_count_column)
    workload = build_workload(trace, weekly_profile(requests), config.total_requests, config.start, config.end)
    replay = Replay(pool, workload, config.pue)
    window = trailing_window(workload, config.window_hours)

    runs: dict[str, Run] = {}
    for spec in pool.by_energy:
        runs[f"fixed:{spec.name}"] = replay.static(f"fixed:{spec.name}",
                                                   PolicySettings(name="fixed", model=spec.name), window)
    runs["interpolation"] = replay.static("interpolation", PolicySettings(name="interpolation"), window)
    if config.hysteresis > 0:
        runs["interpolation+hysteresis"] = replay.static(
            "interpolation+hysteresis", PolicySettings(name="interpolation", hysteresis=config.hysteresis), window)
    heuristic = replay.outcome(runs["interpolation"])
    runs["optimal@co2"] = replay.optimum("optimal@co2", budget_g=heuristic.co2_g)
    runs["optimal@error"] = replay.optimum("optimal@error", mean_error=heuristic.mean_error)

    allocation = replay.allocation()
    periods = max(1, round(float(workload.durations.sum()) / (config.budget_period_hours * HOUR)))
    low, high = allocation.min_co2 / periods, 2 * allocation.max_co2 / periods
    steps = 8  # evaluations budgeted per calibration for the progress bar
    tick = progress(len(config.forecasts) * (2 * steps + config.frontier_points)) if progress else None
    online_frontiers: dict[str, list[list[float]]] = {}
    for forecast in config.forecasts:
        def online(budget: float, label: str = f"online-{forecast}") -> Run:
            return replay.online(label, budget, forecast, config.budget_period_hours)  # noqa: B023

        at_co2 = calibrate(lambda b: replay.outcome(online(b)).co2_g, heuristic.co2_g, low, high,
                           rising=True, tick=tick)
        runs[f"online-{forecast}@co2"] = online(at_co2, f"online-{forecast}@co2")
        at_error = calibrate(lambda b: replay.outcome(online(b)).mean_error, heuristic.mean_error, low, high,
                             rising=False, tick=tick)
        runs[f"online-{forecast}@error"] = online(at_error, f"online-{forecast}@error")
        sweep = []
        for budget in np.geomspace(low * 1.02, high / 2, config.frontier_points):
            result = replay.outcome(online(float(budget)))
            sweep.append([result.co2_g, result.mean_error])
            if tick is not None:
                tick()
        online_frontiers[f"online-{forecast}"] = sweep

    baseline = replay.outcome(runs[f"fixed:{config.baseline}"])
    results = [replay.outcome(run, baseline) for run in runs.values()]
    by_label = {r.policy: r for r in results}
    comparisons = [
        _compare(name, by_label[f"{name}@co2"], by_label[f"{name}@error"], by_label["interpolation"])
        for name in ["optimal", *(f"online-{f}" for f in config.forecasts)]
    ]
    co2, error = allocation.frontier()
    frontier = {"optimal": np.column_stack([co2, error]).tolist(), **online_frontiers}
    report = Report(config=config, periods=len(workload.times),
                    first_period=datetime.fromtimestamp(workload.times[0], UTC),
                    last_period=datetime.fromtimestamp(workload.times[-1], UTC),
                    requests=workload.total_requests, results=results, comparisons=comparisons,
                    frontier=frontier)
    return Study(report, replay, runs, window)


def _compare(name: str, at_co2: Outcome, at_error: Outcome, heuristic: Outcome) -> Comparison:
    return Comparison(
        policy=name,
        error_saved_points=heuristic.mean_error - at_co2.mean_error,
        error_saved_pct=(heuristic.mean_error - at_co2.mean_error) / heuristic.mean_error * 100,
        co2_saved_g=heuristic.co2_g - at_error.co2_g,
        co2_saved_pct=(heuristic.co2_g - at_error.co2_g) / heuristic.co2_g * 100,
    )
