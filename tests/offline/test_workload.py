"""The replayed workload: request traces, the weekly profile, the carbon periods and their requests."""

from datetime import datetime, UTC

import numpy as np
import pytest

from gateway.carbon.trace import load_trace
from gateway.offline.workload import build_workload, load_request_trace, week_slot, weekly_profile

GB = "carbon/gb_2020_entsoe.csv"
WIKI = "requests/wikipedia_en_2016-01_hourly.txt"
JUNE_WEEK = (datetime(2020, 6, 1, tzinfo=UTC), datetime(2020, 6, 8, tzinfo=UTC))


def test_requests_follow_the_wikipedia_week_and_sum_to_the_total(shared_data):
    requests = load_request_trace(shared_data / WIKI)
    assert np.all(np.diff(requests.times) > 0)  # the file's rows are unsorted
    profile = weekly_profile(requests)
    assert profile.shape == (168,) and np.all(profile > 0)
    trace = load_trace(shared_data / GB)
    workload = build_workload(trace, profile, 5e6)
    assert workload.total_requests == pytest.approx(5e6)
    june = build_workload(trace, profile, 1e6, *JUNE_WEEK)
    assert len(june.times) == 7 * 48
    # Half-hour periods of the same UTC hour get the same share; the daily peak follows the profile.
    slots = week_slot(june.times)
    assert np.allclose(june.counts[slots == slots[0]], june.counts[0])
    assert int(np.argmax(profile)) == int(slots[np.argmax(june.counts)])
