import numpy as np
import pytest

from gateway.pool import ModelPool, ModelSpec, load_pool
from gateway.modelzoo.build import PAPER_POOL
from gateway.selection import CarbonWindow, FixedPolicy, InterpolationPolicy, make_policy

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
    with pytest.raises(ValueError, match="unknown selection policy"):
        make_policy(load_pool(PAPER_POOL), "greedy")
    with pytest.raises(ValueError, match="not in the pool"):
        make_policy(load_pool(PAPER_POOL), "fixed", "vgg16")
