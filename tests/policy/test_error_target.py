"""``error-target``: a mean error met over each calendar period, causally, near the hindsight optimum."""

from datetime import datetime, UTC

import numpy as np
import pytest

from gateway.errors import ConfigError
from gateway.modelzoo.build import PAPER_POOL
from gateway.policy import CarbonPricePolicy, CarbonWindow, ErrorTargetPolicy, policy_settings, make_policy
from gateway.policy.error_target import default_target, period_bounds
from gateway.pool import load_pool

HOUR = 3600.0
JUNE = datetime(2020, 6, 1, tzinfo=UTC).timestamp()
ANY_WINDOW = CarbonWindow(0.0, 0.0)  # price policies do not use it


def synthetic_month(seed: int = 0, days: int = 58) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-hourly times, intensities (a daily cycle on a drifting level, with noise) and request counts,
    starting four weeks before June so the policy has history when June begins."""
    rng = np.random.default_rng(seed)
    times = JUNE - 28 * 24 * HOUR + np.arange(days * 48) * 1800.0
    hours = (times % (24 * HOUR)) / HOUR
    level = 220 + 60 * np.sin(2 * np.pi * (times - times[0]) / (9 * 24 * HOUR))
    intensities = np.clip(level + 70 * np.sin(2 * np.pi * (hours - 9) / 24) + rng.normal(0, 20, len(times)), 20, None)
    counts = 1e4 * (1.2 + np.sin(2 * np.pi * (hours - 15) / 24)) * rng.uniform(0.9, 1.1, len(times))
    return times, intensities, counts


def run(policy: ErrorTargetPolicy, times, intensities, counts) -> list[str]:
    """Drive ``policy`` as the gateway does: plan, serve each period's requests, report them."""
    served = []
    for moment, intensity, count in zip(times, intensities, counts, strict=True):
        policy.plan(moment, intensity, np.empty(0), np.empty(0))
        spec = policy.select(intensity, ANY_WINDOW)
        policy.observe(intensity, spec, count)
        served.append(spec.name)
    return served


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_meets_the_target_over_the_month_within_five_percent_of_the_hindsight_optimum(seed):
    pool = load_pool(PAPER_POOL)
    times, intensities, counts = synthetic_month(seed)
    policy = ErrorTargetPolicy(pool, target_model="resnet101")
    served = run(policy, times, intensities, counts)
    june = times >= JUNE
    errors = np.array([pool.by_name[name].error_rate for name in served])
    energies = np.array([pool.by_name[name].energy_mj for name in served])
    achieved = float(counts[june] @ errors[june] / counts[june].sum())
    co2 = float(np.sum(counts[june] * energies[june] * intensities[june]) / 3.6e9)
    baseline = float(np.sum(counts[june] * pool.by_name["resnet50"].energy_mj * intensities[june]) / 3.6e9)
    optimum = CarbonPricePolicy(pool, 0.0).allocation(intensities[june], counts[june]).plan(mean_error=achieved)
    assert abs(achieved - pool.by_name["resnet101"].error_rate) <= 0.03
    assert (co2 - baseline) <= 1.05 * (optimum.co2_g - baseline)
    assert policy.mean_error == pytest.approx(achieved)  # its own account of the period


def test_debt_raises_accuracy_and_credit_lowers_it():
    pool = load_pool(PAPER_POOL)
    prices = {}
    for served_by in ("resnet34", "resnet152"):
        policy = ErrorTargetPolicy(pool, target_model="resnet101")
        policy.plan(JUNE, 200.0, np.empty(0), np.empty(0))
        policy.observe(200.0, pool.by_name[served_by], 1e6)
        prices[served_by] = policy.plan(JUNE + HOUR, 200.0, np.empty(0), np.empty(0))
    assert prices["resnet34"] < prices["resnet152"]  # behind the target: a lower carbon price, bigger models


def test_a_forecast_of_a_dirtier_afternoon_keeps_the_morning_bigger():
    pool = load_pool(PAPER_POOL)
    flat, dirty_later = ErrorTargetPolicy(pool, period="day"), ErrorTargetPolicy(pool, period="day")
    ahead = JUNE + HOUR * np.arange(1, 24)
    flat.plan(JUNE, 200.0, ahead, np.full(23, 200.0))
    dirty_later.plan(JUNE, 200.0, ahead, np.full(23, 400.0))
    # Stepping down costs least accuracy per gram where the grid is dirty: save there, not now.
    assert dirty_later.select(200.0, ANY_WINDOW).energy_mj >= flat.select(200.0, ANY_WINDOW).energy_mj
    assert dirty_later.price < flat.price


def test_the_default_target_is_the_second_most_accurate_model():
    pool = load_pool(PAPER_POOL)
    assert default_target(pool).name == "resnet101"
    assert ErrorTargetPolicy(pool).target_error == pool.by_name["resnet101"].error_rate
    assert make_policy(pool, policy_settings(name="error-target", target_error=7.0)).target_error == 7.0


@pytest.mark.parametrize("options, message", [
    ({"target_error": 3.0}, "outside what the pool can serve"),
    ({"target_model": "vgg16"}, "not in the pool"),
    ({"target_error": 6.5, "target_model": "resnet50"}, "not both"),
])
def test_impossible_targets_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        ErrorTargetPolicy(load_pool(PAPER_POOL), **options)


def test_it_is_the_default_policy(monkeypatch):
    monkeypatch.delenv("CARBON_GATEWAY_POLICY__NAME", raising=False)
    from gateway.settings import load_settings

    assert policy_settings().name == "error-target"
    assert load_settings(None, {}).policy.name == "error-target"


@pytest.mark.parametrize("period, moment, start, end", [
    ("day", "2020-06-15T13:00", "2020-06-15", "2020-06-16"),
    ("week", "2020-06-17T13:00", "2020-06-15", "2020-06-22"),  # Monday to Monday
    ("month", "2020-12-31T23:59", "2020-12-01", "2021-01-01"),
    ("month", "2020-02-10T00:00", "2020-02-01", "2020-03-01"),
])
def test_periods_are_utc_calendar_periods(period, moment, start, end):
    def epoch(text):
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()

    assert period_bounds(epoch(moment), period) == (epoch(start), epoch(end))


def test_a_new_period_starts_a_new_account():
    pool = load_pool(PAPER_POOL)
    policy = ErrorTargetPolicy(pool, period="day")
    policy.plan(JUNE + 23 * HOUR, 200.0, np.empty(0), np.empty(0))
    policy.observe(200.0, pool.by_name["resnet34"], 100.0)
    assert policy.mean_error == pool.by_name["resnet34"].error_rate
    policy.advance(JUNE + 24 * HOUR)
    assert policy.mean_error is None


def test_a_constant_intensity_still_meets_a_target_between_two_models():
    # At one intensity every step-down costs the same price, so no price serves a mix: the feedback
    # alone splits the month between the two models, late (the worst case; docs/replay.md, Not done).
    pool = load_pool(PAPER_POOL)
    policy = ErrorTargetPolicy(pool, target_error=6.2)
    served = set()
    for step in range(30 * 24 * 6):  # June, re-planned every 10 minutes
        policy.plan(JUNE + 600.0 * step, 250.0, np.empty(0), np.empty(0), rate=1.0)
        spec = policy.select(250.0, ANY_WINDOW)
        policy.observe(250.0, spec, 600.0)
        served.add(spec.name)
    assert served == {"resnet101", "resnet152"}
    assert abs(policy.mean_error - 6.2) <= 0.05


@pytest.mark.parametrize("target", ["resnet34", "resnet50", "resnet101"])
def test_a_target_on_a_model_serves_that_model_at_any_time_of_the_period(target):
    """At one intensity the target model's error is reached exactly, so whether its level is taken must not
    depend on how the request counts (time left in the month) happen to round."""
    pool = load_pool(PAPER_POOL)
    served = set()
    for moment in JUNE + np.random.default_rng(0).uniform(0, 30 * 24 * HOUR, 100):
        policy = ErrorTargetPolicy(pool, target_model=target)
        policy.plan(moment, 250.0, np.empty(0), np.empty(0))
        served.add(policy.select(250.0, ANY_WINDOW).name)
    assert served == {target}


def test_a_policy_for_a_new_pool_takes_over_the_periods_account():
    """A pool reload mid-period: the new policy goes on from the error served so far, not from nothing."""
    pool = load_pool(PAPER_POOL)
    smaller = pool.model_copy(update={"models": [m for m in pool.models if m.name != "resnet152"]})
    old = ErrorTargetPolicy(pool, period="day")
    old.plan(JUNE + 10 * HOUR, 200.0, np.empty(0), np.empty(0))
    old.history.add(JUNE + 9 * HOUR, HOUR, 200.0, 500.0)
    old.observe(200.0, pool.by_name["resnet34"], 100.0)
    new = ErrorTargetPolicy(smaller, period="day")
    new.inherit(old)
    assert new.mean_error == old.mean_error == pool.by_name["resnet34"].error_rate
    assert new.price == old.price and new.history is old.history
    new.plan(JUNE + 10.5 * HOUR, 200.0, np.empty(0), np.empty(0))  # the half hour since the old plan is learned
    assert old.history.window(JUNE + 10.5 * HOUR, 24)[2].sum() == 500.0 + 100.0
    new.advance(JUNE + 11 * HOUR)  # still the same day: the account stays
    assert new.served == 100.0
    other = ErrorTargetPolicy(smaller, period="week")  # another period's account is not this one's
    other.inherit(old)
    assert other.mean_error is None
