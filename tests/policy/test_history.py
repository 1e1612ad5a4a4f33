"""The observed history a planning policy keeps: 15-minute buckets over a span, as its store keeps them."""

import numpy as np
import pytest

from gateway.policy.history import DAY_S, BucketHistory
from gateway.state.models import BUCKET_S

HOUR = 3600.0


def test_it_keeps_only_its_span_and_splits_intervals_over_buckets():
    history = BucketHistory(span_hours=3)
    for i, intensity in enumerate([100.0, 200.0, 250.0, 300.0]):
        touched = history.add(i * HOUR, HOUR, intensity, 10.0 * (i + 1))
        assert touched == [(int(i * HOUR + k * BUCKET_S), 2.5 * (i + 1)) for k in range(4)]  # an hour: 4 buckets
    intensities, seconds, requests, _ = history.window(4 * HOUR, hours=24)
    # Three hours and the bucket in progress are kept: of the first hour, its last quarter.
    assert intensities.tolist() == [100.0] + [200.0] * 4 + [250.0] * 4 + [300.0] * 4
    assert seconds.sum() == 3.25 * HOUR and requests.sum() == pytest.approx(2.5 + 20.0 + 30.0 + 40.0)
    assert history.hours == pytest.approx(3.25)
    assert history.window(4 * HOUR, hours=1)[0].tolist() == [300.0] * 4


def test_an_interval_across_a_bucket_edge_is_shared_in_proportion():
    history = BucketHistory(span_hours=2)
    history.add(600.0, 600.0, 100.0, 60.0)  # 300 s in the first bucket, 300 s in the second
    _, seconds, requests, _ = history.window(1800.0, hours=1)
    assert seconds.tolist() == [300.0, 300.0] and requests.tolist() == [30.0, 30.0]


def test_daily_means_are_of_whole_days_mostly_observed():
    history = BucketHistory(span_hours=5 * 24)
    for day, level in enumerate([100.0, 200.0, 300.0]):
        history.add(day * DAY_S, DAY_S, level)
    history.add(3 * DAY_S, 3 * HOUR, 999.0)  # today: not a whole day yet
    assert history.daily_means(3 * DAY_S + 3 * HOUR, days=7).tolist() == [100.0, 200.0, 300.0]


def test_what_the_store_knows_fills_the_gaps_but_not_what_it_saw_itself():
    history = BucketHistory(span_hours=24)
    history.add(0.0, BUCKET_S, 120.0, 5.0)
    history.set_bucket(0, intensity=999.0, requests=50.0)  # the fleet's requests; its own intensity stays
    history.set_bucket(BUCKET_S, intensity=80.0, requests=7.0)  # a bucket it never saw: the store's
    intensities, seconds, requests, _ = history.window(2 * BUCKET_S, hours=1)
    assert intensities.tolist() == [120.0, 80.0] and requests.tolist() == [50.0, 7.0]
    assert np.all(seconds == BUCKET_S)


def test_intensity_bins_are_one_percent_wide_at_any_level():
    from gateway.policy.history import BIN_RATIO, BINS, intensity_bins

    for low in (30.0, 600.0):  # a hydro grid and a coal one: the same relative precision
        assert intensity_bins([low * BIN_RATIO ** 1.5])[0] - intensity_bins([low])[0] in (1, 2)
    assert intensity_bins([0.0, 1e9]).tolist() == [0, BINS - 1]  # below the floor and above the top: the ends
