import numpy as np
import pytest

from gateway.policy.budget import lower_hull
from gateway.pool import ModelPool, ModelSpec, load_pool
from gateway.modelzoo.build import PAPER_POOL
from pydantic import ValidationError

from gateway.policy import (CarbonPricePolicy, CarbonWindow, Constraints, FixedPolicy, InterpolationPolicy,
                               OnlineBudgetPolicy, policy_settings, make_policy)
from gateway.errors import NoEligibleModel

WINDOW = CarbonWindow(low=100.0, high=300.0)


def pool(*models: tuple[str, float, float]) -> ModelPool:
    return ModelPool(models=tuple(ModelSpec(name=n, energy_mj=e, error_rate=r) for n, e, r in models))


@pytest.fixture
def paper() -> InterpolationPolicy:
    return InterpolationPolicy(load_pool(PAPER_POOL))


def test_cleanest_grid_gets_the_most_energy_hungry_model(paper):
    assert paper.select(100.0, WINDOW).name == "resnet152"


def test_dirtiest_grid_gets_the_least_energy_hungry_model(paper):
    assert paper.select(300.0, WINDOW).name == "resnet34"


def test_intensity_outside_the_window_is_clamped(paper):
    assert paper.select(-50.0, WINDOW).name == "resnet152"
    assert paper.select(10_000.0, WINDOW).name == "resnet34"


def test_target_energy_is_the_mirrored_interpolation(paper):
    # E = E_low + (C_high - C)/(C_high - C_low) * (E_high - E_low)
    e_low, e_high = 359.9321833, 1238.147188
    for c in (100.0, 150.0, 225.0, 300.0):
        expected = e_low + (300.0 - c) / 200.0 * (e_high - e_low)
        assert paper.target_energy(c, WINDOW) == pytest.approx(expected)


def test_nearest_energy_wins(paper):
    # Halfway through the window the target is ~799 mJ: ResNet101 (803 mJ) is nearest.
    assert paper.select(200.0, WINDOW).name == "resnet101"
    # Near C_high the target sits between ResNet34 (360) and ResNet50 (421): ~385 -> ResNet34.
    assert paper.select(294.0, WINDOW).name == "resnet34"
    # ~404 mJ is nearer ResNet50.
    assert paper.select(290.0, WINDOW).name == "resnet50"


def test_selection_is_monotone_in_intensity(paper):
    intensities = np.linspace(0, 400, 4001)
    energies = np.array([paper.candidates[i].energy_mj for i in paper.select_indices(intensities, WINDOW)])
    assert np.all(np.diff(energies) <= 0)
    assert set(paper.select_indices(intensities, WINDOW)) == set(range(4))


def test_exact_tie_goes_to_the_lower_energy_model():
    policy = InterpolationPolicy(pool(("small", 100.0, 10.0), ("big", 300.0, 5.0)))
    # Midway through the window the target is exactly 200 mJ, equidistant from both models.
    assert policy.target_energy(200.0, WINDOW) == pytest.approx(200.0)
    assert policy.select(200.0, WINDOW).name == "small"
    assert policy.select(199.0, WINDOW).name == "big"


def test_one_model_pool_always_serves_that_model():
    policy = InterpolationPolicy(pool(("only", 50.0, 9.0)))
    assert {policy.select(c, WINDOW).name for c in (0.0, 100.0, 200.0, 300.0, 1e6)} == {"only"}


def test_equal_energies_serve_the_most_accurate():
    policy = InterpolationPolicy(pool(("a", 200.0, 9.0), ("b", 200.0, 4.0), ("c", 200.0, 7.0)))
    assert {policy.select(c, WINDOW).name for c in (100.0, 200.0, 300.0)} == {"b"}


def test_equal_energy_twin_is_never_chosen_over_its_more_accurate_twin():
    policy = InterpolationPolicy(pool(("small", 100.0, 10.0), ("worse", 300.0, 8.0), ("better", 300.0, 6.0)))
    assert [s.name for s in policy.candidates] == ["small", "better"]
    assert policy.select(100.0, WINDOW).name == "better"


def test_degenerate_window_maps_to_the_middle_of_the_energy_range():
    policy = InterpolationPolicy(pool(("s", 100.0, 9.0), ("m", 200.0, 7.0), ("l", 300.0, 5.0)))
    flat = CarbonWindow(low=250.0, high=250.0)
    assert flat.degenerate
    assert {policy.select(c, flat).name for c in (0.0, 250.0, 900.0)} == {"m"}


def test_vectorised_and_scalar_selection_agree(paper):
    intensities = np.random.default_rng(0).uniform(50, 350, size=500)
    vector = paper.select_indices(intensities, WINDOW)
    assert [paper.candidates[i].name for i in vector] == [paper.select(c, WINDOW).name for c in intensities]


def test_fixed_policy_ignores_intensity(paper):
    policy = FixedPolicy(load_pool(PAPER_POOL), "resnet50")
    assert {policy.select(c, WINDOW).name for c in (0.0, 200.0, 900.0)} == {"resnet50"}


def test_make_policy_rejects_unknown_names():
    with pytest.raises(ValidationError, match="greedy"):
        policy_settings(name="greedy")
    with pytest.raises(ValueError, match="not in the pool"):
        make_policy(load_pool(PAPER_POOL), policy_settings(name="fixed", model="vgg16"))


# --- budget policies, constraints, hysteresis --------------------------------------------------------


def random_periods(seed: int = 0, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(20, 400, n), rng.uniform(1e3, 1e5, n)


def paper_pool() -> ModelPool:
    return load_pool(PAPER_POOL)


def co2_of(policy, intensities, counts) -> float:
    energies = np.array([policy.candidates[i].energy_mj for i in policy.select_indices(intensities, WINDOW)])
    return float(np.sum(counts * energies * intensities) / 3.6e9)


def test_lower_hull_drops_dominated_and_non_convex_models():
    # b is dominated (more energy, more error); d sits above the chord c-e.
    energies = [100, 150, 200, 300, 400]
    errors = [10, 11, 6, 5.5, 3]
    assert lower_hull(energies, errors).tolist() == [0, 2, 4]


@pytest.mark.parametrize("price", [0.0, 1e3, 3e4, 1e5, 1e7])
def test_carbon_price_policy_is_monotone_in_intensity(price):
    policy = CarbonPricePolicy(paper_pool(), price)
    energies = [policy.candidates[i].energy_mj for i in policy.select_indices(np.linspace(0, 800, 2001), WINDOW)]
    assert np.all(np.diff(energies) <= 0)


def test_carbon_price_extremes():
    policy = CarbonPricePolicy(paper_pool(), 0.0)
    assert policy.select(500.0, WINDOW).name == "resnet152"
    policy.price = float("inf")
    assert policy.select(1.0, WINDOW).name == "resnet34"


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6, 0.95])
def test_price_for_budget_never_exceeds_the_budget(fraction):
    policy = CarbonPricePolicy(paper_pool(), 0.0)
    c, n = random_periods()
    allocation = policy.allocation(c, n)
    budget = allocation.min_co2 + fraction * (allocation.max_co2 - allocation.min_co2)
    policy.price = allocation.price_for_budget(budget)
    spent = co2_of(policy, c, n)
    assert spent <= budget
    assert spent >= budget * 0.97  # and it uses nearly all of it


def test_split_plan_meets_the_budget_exactly_and_beats_any_fixed_mix():
    c, n = random_periods(1)
    policy = CarbonPricePolicy(paper_pool(), 0.0)
    allocation = policy.allocation(c, n)
    budget = 0.5 * (allocation.min_co2 + allocation.max_co2)
    plan = allocation.plan(budget_g=budget)
    assert plan.co2_g == pytest.approx(budget, rel=1e-9)
    assert np.allclose(plan.shares.sum(axis=1), 1.0)
    # Dual: the least CO2 for that mean error is the same point.
    dual = allocation.plan(mean_error=plan.mean_error)
    assert dual.co2_g == pytest.approx(budget, rel=1e-6)
    # Any intensity-blind mix of ResNet50/101 with the same CO2 has more error.
    e50, e101 = 420.6213298, 803.0948846
    grams_per_mj = float(np.sum(n * c) / 3.6e9)
    share101 = (budget / grams_per_mj - e50) / (e101 - e50)
    assert 0 < share101 < 1
    assert plan.mean_error < share101 * 6.454 + (1 - share101) * 7.138


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_optimum_is_never_worse_than_the_heuristic(seed):
    c, n = random_periods(seed)
    pool_ = paper_pool()
    heuristic = InterpolationPolicy(pool_)
    window = CarbonWindow(float(c.min()), float(c.max()))
    chosen = [heuristic.candidates[i] for i in heuristic.select_indices(c, window)]
    h_co2 = float(np.sum(n * c * [s.energy_mj for s in chosen]) / 3.6e9)
    h_error = float(np.sum(n * [s.error_rate for s in chosen]) / n.sum())
    allocation = CarbonPricePolicy(pool_, 0.0).allocation(c, n)
    assert allocation.plan(budget_g=h_co2).mean_error <= h_error + 1e-12
    assert allocation.plan(mean_error=h_error).co2_g <= h_co2 * (1 + 1e-12)


def test_frontier_is_convex_and_decreasing():
    c, n = random_periods(3, 200)
    co2, error = CarbonPricePolicy(paper_pool(), 0.0).allocation(c, n).frontier()
    assert np.all(np.diff(co2) <= 1e-9) and np.all(np.diff(error) >= -1e-12)
    slopes = np.diff(error) / np.diff(co2)
    finite = np.isfinite(slopes)
    assert np.all(np.diff(slopes[finite]) <= 1e-9 * np.abs(slopes[finite][1:]).max())


def test_online_budget_with_an_exact_forecast_stays_within_each_period():
    c, n = random_periods(4, 96)  # two days of half-hours
    policy = OnlineBudgetPolicy(paper_pool(), budget_g=float(np.sum(n[:48] * c[:48] * 600) / 3.6e9))
    times = 1_600_000_000 - 1_600_000_000 % 86400 + np.arange(96) * 1800.0
    spent = []
    for t in range(96):
        if policy.enter_period(times[t]):
            spent.append(0.0)
        stop = int(np.searchsorted(times, policy.period_end(times[t])))
        policy.plan(c[t:stop], n[t:stop])
        spent[-1] += policy.charge(c[t], policy.select(c[t], WINDOW), n[t])
    assert len(spent) == 2
    assert all(s <= policy.budget_g * (1 + 1e-9) for s in spent)
    assert all(s >= policy.budget_g * 0.9 for s in spent)


def test_online_budget_falls_back_to_the_smallest_model_when_spent():
    policy = OnlineBudgetPolicy(paper_pool(), budget_g=1e-3)
    policy.enter_period(0.0)
    policy.plan([200.0], [1.0])
    policy.charge(200.0, "resnet152", 100)
    assert policy.remaining_g < 0
    assert policy.select(1.0, WINDOW).name == "resnet34"
    assert policy.enter_period(86400.0) and policy.spent_g == 0.0


def test_an_online_budget_for_a_new_pool_goes_on_from_what_was_spent():
    """A pool reload mid-period must not renew the budget: the new policy takes over the spending."""
    old = OnlineBudgetPolicy(paper_pool(), budget_g=1e-3)
    old.enter_period(0.0)
    old.plan([200.0], [1.0])
    old.charge(200.0, "resnet152", 100)
    new = OnlineBudgetPolicy(pool(("a", 100.0, 9.0), ("b", 200.0, 7.0)), budget_g=1e-3)
    new.inherit(old)
    assert new.spent_g == old.spent_g and new.remaining_g < 0 and new.price == old.price
    assert not new.enter_period(3600.0)  # the same period: still spent
    assert new.select(1.0, WINDOW).name == "a"


def test_latency_slo_removes_slow_models():
    slow = pool(("a", 100.0, 9.0), ("b", 200.0, 7.0), ("c", 300.0, 5.0))
    slow = slow.model_copy(update={"models": tuple(m.model_copy(update={"latency_ms": latency})
                                                   for m, latency in zip(slow.models, (5.0, 10.0, 50.0), strict=True))})
    policy = InterpolationPolicy(slow, max_latency_ms=20.0)
    assert [s.name for s in policy.candidates] == ["a", "b"]
    assert policy.select(0.0, WINDOW).name == "b"
    with pytest.raises(ValueError, match="latency SLO"):
        InterpolationPolicy(slow, max_latency_ms=1.0)


def test_minimum_accuracy_moves_to_the_nearest_accurate_enough_model(paper):
    # At the dirtiest intensity the heuristic picks ResNet34 (91.42% top-5 accuracy).
    assert paper.select(300.0, WINDOW, Constraints(min_accuracy=93.0)).name == "resnet101"
    assert paper.select(300.0, WINDOW, Constraints(min_accuracy=92.0)).name == "resnet50"
    # A choice that already meets it is kept.
    assert paper.select(100.0, WINDOW, Constraints(min_accuracy=93.0)).name == "resnet152"
    with pytest.raises(NoEligibleModel):
        paper.select(100.0, WINDOW, Constraints(min_accuracy=99.0))


def test_hysteresis_stops_flapping_around_a_switch_point():
    two = pool(("small", 100.0, 10.0), ("big", 300.0, 5.0))
    # The switch point of this pool's interpolation is at 200 g/kWh.
    wobble = 200.0 + np.tile([-3.0, 3.0], 20)
    plain = InterpolationPolicy(two).select_indices(wobble, WINDOW)
    damped = InterpolationPolicy(two, hysteresis=10.0).select_indices(wobble, WINDOW)
    assert np.count_nonzero(np.diff(plain)) == 39
    assert np.count_nonzero(np.diff(damped)) == 0
    # A real move past the margin still switches.
    moved = InterpolationPolicy(two, hysteresis=10.0).select_indices([150.0, 195.0, 205.0, 215.0], WINDOW)
    assert [two.by_energy[i].name for i in moved] == ["big", "big", "big", "small"]


def test_make_policy_builds_every_policy_from_settings():
    pool_ = paper_pool()
    parameters = {"interpolation": {}, "fixed": {"model": "resnet50"}, "carbon-price": {"price": 1e4},
                  "online-budget": {"budget_g": 10.0}}
    built = {name: make_policy(pool_, policy_settings(name=name, **values)) for name, values in parameters.items()}
    assert {name: type(p).__name__ for name, p in built.items()} == {
        "interpolation": "InterpolationPolicy", "fixed": "FixedPolicy",
        "carbon-price": "CarbonPricePolicy", "online-budget": "OnlineBudgetPolicy"}
    assert all(p.name == name for name, p in built.items())
    with pytest.raises(ValueError, match=r"carbon-price\.price\s+Field required"):
        policy_settings(name="carbon-price")
    with pytest.raises(ValueError, match=r"fixed\.price\s+Extra inputs are not permitted"):
        policy_settings(name="fixed", model="resnet50", price=1e4)  # another policy's option is a mistake


@pytest.mark.parametrize("make", [
    lambda pool: InterpolationPolicy(pool),
    lambda pool: make_policy(pool, policy_settings(name="carbon-price", price=25600.0)),
    lambda pool: make_policy(pool, policy_settings(name="carbon-price", price=float("inf"))),
    lambda pool: make_policy(pool, policy_settings(name="fixed", model="resnet101")),
], ids=["interpolation", "carbon-price", "price-inf", "fixed"])
def test_scalar_fast_path_equals_the_vectorised_policy(make):
    """``select`` (one request, pure Python) and ``select_indices`` (replay, numpy) are the same function."""
    policy = make(load_pool(PAPER_POOL))
    rng = np.random.default_rng(1)
    lows = rng.uniform(0, 300, 300)
    spans = rng.choice([0.0, 1e-9, 50.0, 400.0], 300)
    windows = [CarbonWindow(lo, lo + span) for lo, span in zip(lows, spans, strict=True)]
    # Include exact window ends and the exact tie points between neighbouring models.
    for window in windows:
        for c in (*rng.uniform(-100, 800, 5), window.low, window.high, (window.low + window.high) / 2):
            fast = policy.select(c, window)
            slow = policy.candidates[int(policy.select_indices(c, window)[()])]
            assert fast == slow, (c, window)


def test_preview_leaves_the_hysteresis_state_alone():
    window = CarbonWindow(100.0, 300.0)
    watched = InterpolationPolicy(load_pool(PAPER_POOL), hysteresis=10.0)
    unwatched = InterpolationPolicy(load_pool(PAPER_POOL), hysteresis=10.0)
    # ResNet101/152 switch at ~149.6 g/kWh; 148 is inside the 10 g/kWh band, so it keeps the last model.
    for intensity in (160.0, 148.0, 160.0, 148.0):
        assert watched.preview(100.0, window).name == "resnet152"  # a scrape while the grid looks clean
        assert watched.select(intensity, window) == unwatched.select(intensity, window)
    assert unwatched.select(148.0, window).name == "resnet101"


def test_price_for_error_on_intensities_known_to_rise_is_the_sorted_answer():
    from gateway.policy.budget import Allocation

    rng = np.random.default_rng(7)
    intensities = np.sort(rng.uniform(20, 600, 300))
    counts = rng.uniform(0, 50, 300)
    energies, errors = np.array([100.0, 200.0, 350.0, 600.0]), np.array([30.0, 27.0, 24.5, 22.0])
    for target in (22.5, 24.0, 26.0, 29.0):
        vouched = Allocation(intensities, counts, energies, errors, ascending=True).price_for_error(target)
        assert vouched == Allocation(intensities[::-1], counts[::-1], energies, errors).price_for_error(target)
