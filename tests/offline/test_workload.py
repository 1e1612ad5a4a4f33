"""The replayed workload: request traces, the weekly profile, the carbon periods and their requests."""

from datetime import datetime, timedelta, UTC

import numpy as np
import pytest

from gateway.carbon.trace import load_trace
from gateway.offline import workload as workload_module
from gateway.offline.workload import (RequestProfile, build_workload, load_request_trace, week_slot,
                                      weekly_profile)

GB = "carbon/gb_2020_entsoe.csv"
CISO = "carbon/us_ciso_2022_hourly.csv"
WIKI = "requests/wikipedia_en_2016-01_hourly.txt"
JUNE_WEEK = (datetime(2020, 6, 1, tzinfo=UTC), datetime(2020, 6, 8, tzinfo=UTC))
MONDAY = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday: hour h of this day is week slot h
HOUR = 3600.0


def _epoch(moment: datetime) -> float:
    return moment.timestamp()


def _hourly_counts(path, hours: dict[int, float]) -> None:
    """A CSV count trace: ``{hour since MONDAY: count}``, ISO times."""
    rows = [f"{(MONDAY + timedelta(hours=h)).isoformat()},{count}" for h, count in hours.items()]
    path.write_text("timestamp,sum_req\n" + "\n".join(rows) + "\n")


def test_requests_follow_the_wikipedia_week_and_sum_to_the_total(shared_data):
    requests = load_request_trace(shared_data / WIKI)
    assert np.all(np.diff(requests.times) > 0)  # the file's rows are unsorted
    assert requests.observed.all() and requests.skipped_rows == 0
    profile = weekly_profile(requests)
    assert profile.rates.shape == (168,) and np.all(profile.rates > 0)
    assert profile.notes == ()  # January 2016 covers every (weekday, hour) slot
    trace = load_trace(shared_data / GB)
    workload = build_workload(trace, profile, 5e6)
    assert workload.total_requests == pytest.approx(5e6)
    june = build_workload(trace, profile, 1e6, *JUNE_WEEK)
    assert len(june.times) == 7 * 48
    # Half-hour periods of the same UTC hour get the same share; the daily peak follows the profile.
    slots = week_slot(june.times)
    assert np.allclose(june.counts[slots == slots[0]], june.counts[0])
    assert int(np.argmax(profile.rates)) == int(slots[np.argmax(june.counts)])


def test_csv_count_trace_with_iso_times_in_any_order_skips_bad_rows(tmp_path):
    path = tmp_path / "requests.csv"
    path.write_text("sum_req,timestamp,region\n"
                    "30,2024-01-01T02:10:00Z,eu\n"
                    "10,2024-01-01 00:00:00,eu\n"            # naive: UTC
                    "5,2024-01-01T02:50:00+00:00,us\n"       # the same hour as the first row
                    "7,2024-01-01T02:30:00+01:00,us\n"       # 01:30 UTC
                    "oops,2024-01-01 00:30:00,eu\n"          # unreadable count
                    "4,yesterday,eu\n"                       # unreadable time
                    "-3,2024-01-01 00:45:00,eu\n"            # negative count
                    "9\n")                                   # too few fields
    requests = load_request_trace(path)
    assert requests.times.tolist() == [_epoch(MONDAY) + h * HOUR for h in range(3)]
    assert requests.counts.tolist() == [10.0, 7.0, 35.0]
    assert requests.observed.all()
    assert requests.skipped_rows == 4
    assert "4 rows skipped" in requests.description


def test_arrival_log_is_summed_into_hours_with_zero_hours_inside(tmp_path):
    start = _epoch(MONDAY)
    path = tmp_path / "arrivals.txt"  # whitespace-separated, unix seconds, other columns ignored
    arrivals = [start + 3 * HOUR + 5, start + 10, start + 3599, start + 3 * HOUR + 1800, start + 1200]
    path.write_text("user timestamp\n" + "".join(f"u{i} {t}\n" for i, t in enumerate(arrivals)) + "u9 never\n")
    requests = load_request_trace(path, count_column=None)
    assert requests.times.tolist() == [start + h * HOUR for h in range(4)]
    assert requests.counts.tolist() == [3.0, 0.0, 0.0, 2.0]
    assert requests.observed.all()  # the empty hours inside the log are zero requests, not missing
    assert requests.skipped_rows == 1
    assert requests.description.startswith("request trace (arrival log): 5 requests over 4 h")
    rates = weekly_profile(requests).rates
    assert rates[:4].tolist() == [3.0, 0.0, 0.0, 2.0]
    assert rates[4] == pytest.approx(5 / 4)  # hours the log never saw take the mean of those it did


def test_numeric_times_are_not_parsed_row_by_row(tmp_path, monkeypatch):
    def refuse(text: str) -> float:
        raise AssertionError(f"parsed {text!r} row by row")

    monkeypatch.setattr(workload_module, "parse_time", refuse)
    path = tmp_path / "arrivals.csv"
    times = _epoch(MONDAY) + np.arange(0, 20 * HOUR, 7.5)
    path.write_text("timestamp,path\n" + "".join(f"{t:.1f},/x\n" for t in times))
    requests = load_request_trace(path, count_column=None)
    assert requests.counts.tolist() == [480.0] * 20


def test_missing_count_hours_are_missing_not_zero(tmp_path):
    # Two weeks of a flat 100 requests/hour, with hours 6-11 of the first Tuesday and one hour of the
    # second Thursday absent: their slots keep the mean of the hours that have rows.
    absent = {*range(30, 36), 7 * 24 + 3 * 24 + 12}
    path = tmp_path / "counts.csv"
    _hourly_counts(path, {h: 100.0 for h in range(14 * 24) if h not in absent})
    requests = load_request_trace(path)
    assert len(requests.times) == 14 * 24
    assert [int(h) for h in np.flatnonzero(~requests.observed)] == sorted(absent)
    assert "7 hours without a row: missing data, not zero" in requests.description
    profile = weekly_profile(requests)
    assert profile.rates.tolist() == [100.0] * 168
    assert profile.notes == ()


def test_a_trace_shorter_than_a_week_repeats_its_hour_of_day_means(tmp_path):
    # Monday to Wednesday; hour h of day d has 10 * (h + 1) + d requests.
    path = tmp_path / "three-days.csv"
    _hourly_counts(path, {24 * d + h: 10.0 * (h + 1) + d for d in range(3) for h in range(24)})
    profile = weekly_profile(load_request_trace(path))
    week = profile.rates.reshape(7, 24)
    assert week[:3].tolist() == [[10.0 * (h + 1) + d for h in range(24)] for d in range(3)]
    assert np.allclose(week[3:], [10.0 * (h + 1) + 1 for h in range(24)])  # mean over the 3 days
    assert profile.notes == ("the request trace covers 72 of the week's 168 (weekday, hour) slots (3 days): "
                             "the other slots repeat its hour-of-day means",)


def test_a_trace_shorter_than_a_day_takes_its_mean_rate_for_the_other_hours(tmp_path):
    path = tmp_path / "five-hours.csv"
    _hourly_counts(path, {9: 100.0, 10: 200.0, 11: 300.0, 12: 400.0, 13: 500.0})  # Monday 09:00-14:00
    profile = weekly_profile(load_request_trace(path))
    week = profile.rates.reshape(7, 24)
    assert week[0, 9:14].tolist() == [100.0, 200.0, 300.0, 400.0, 500.0]
    assert week[0, :9].tolist() == [300.0] * 9 and week[0, 14:].tolist() == [300.0] * 10
    assert np.array_equal(week[1:], np.tile(week[0], (6, 1)))
    assert len(profile.notes) == 2
    assert profile.notes[0].startswith("the request trace covers 5 of the 24 hours of the day: the other 19 take "
                                       "the mean rate of those 5 (300 requests/h)")
    assert "covers 5 of the week's 168" in profile.notes[1]


def test_an_all_zero_trace_is_refused(tmp_path):
    path = tmp_path / "zeros.csv"
    _hourly_counts(path, {h: 0.0 for h in range(48)})
    with pytest.raises(ValueError, match="no requests"):
        weekly_profile(load_request_trace(path))


def test_missing_columns_and_unusable_files_are_named(tmp_path):
    csv_path = tmp_path / "other.csv"
    csv_path.write_text("time,requests\n2024-01-01,5\n")
    with pytest.raises(ValueError, match=r"other\.csv has no column\(s\) \['timestamp', 'sum_req'\]; "
                                         r"it has \['time', 'requests'\]"):
        load_request_trace(csv_path)
    table = tmp_path / "other.txt"
    table.write_text("when count\n1 2\n")
    with pytest.raises(ValueError, match=r"no column\(s\) \['timestamp'\]; it has \['when', 'count'\]"):
        load_request_trace(table, count_column=None)
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,sum_req\nsoon,3\n2024-01-01,-1\n")
    with pytest.raises(ValueError, match=r"bad\.csv has no usable rows \(2 skipped"):
        load_request_trace(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("\n")
    with pytest.raises(ValueError, match=r"empty\.csv is empty"):
        load_request_trace(empty)


def _carbon_trace(path, half_hours: list[float]) -> None:
    rows = [f"{(MONDAY + timedelta(hours=h)).strftime('%Y-%m-%d %H:%M:%S')},{100 + i}"
            for i, h in enumerate(half_hours)]
    path.write_text("Time,Carbon Intensity\n" + "\n".join(rows) + "\n")


def test_carbon_gaps_are_held_up_to_the_limit_and_left_out_beyond_it(tmp_path):
    # Half-hours on Monday, with no value from 05:00 to 07:00 (2 h: held) nor from 08:00 to 20:00
    # (12 h: held for 2 h, the 10 h from 10:00 left out).
    hours = [h / 2 for h in range(0, 11)] + [7.0, 7.5, 8.0] + [h / 2 for h in range(40, 48)]
    path = tmp_path / "carbon.csv"
    _carbon_trace(path, hours)
    trace = load_trace(path)
    rates = np.arange(1.0, 169.0)  # slot s: s + 1 requests per hour
    workload = build_workload(trace, RequestProfile(rates, ("a profile note",)), 1000.0)
    start = _epoch(MONDAY)
    by_hour = dict(zip(((workload.times - start) / HOUR).tolist(), workload.durations.tolist(), strict=True))
    assert by_hour[5.0] == 2 * HOUR and by_hour[8.0] == 2 * HOUR and by_hour[23.5] == HOUR / 2
    replayed = [h for h in range(24) if not 10 <= h < 20]
    scale = 1000.0 / sum(rates[h] for h in replayed)
    expected = {h: scale * rates[int(h)] / 2 for h in by_hour}
    expected[5.0] = scale * (rates[5] + rates[6])  # the held value meets hours 5 and 6 at the profile's rates
    expected[8.0] = scale * (rates[8] + rates[9])
    counts = dict(zip(by_hour, workload.counts.tolist(), strict=True))
    assert counts == pytest.approx(expected)
    assert workload.total_requests == pytest.approx(1000.0)
    ends = workload.times + workload.durations  # nothing is replayed from 10:00 to 20:00
    assert not np.any((workload.times < start + 20 * HOUR) & (ends > start + 10 * HOUR))
    assert workload.gaps.held == 2 and workload.gaps.held_hours == pytest.approx(3.0)
    assert workload.gaps.left_out == ((start + 10 * HOUR, 10.0),)
    assert workload.notes == (
        "carbon trace: 2 gaps held for up to 2 h (4 x 30 min): 3.0 h filled; 1 gap longer than 2 h (4 x 30 min) "
        "left out of the replay (10.0 h): 10.0 h from 2024-01-01 10:00 UTC",
        "a profile note")
    stretched = build_workload(trace, RequestProfile(rates), 1000.0, max_hold_periods=24)
    assert stretched.gaps.left_out == () and stretched.gaps.held_hours == pytest.approx(13.0)
    with pytest.raises(ValueError, match="max_hold_periods"):
        build_workload(trace, RequestProfile(rates), 1000.0, max_hold_periods=0)


def test_the_lead_in_has_the_main_ranges_requests_per_profile_hour(shared_data):
    trace = load_trace(shared_data / GB)
    profile = weekly_profile(load_request_trace(shared_data / WIKI))
    workload = build_workload(trace, profile, 1e6, *JUNE_WEEK, lead_hours=48)
    lead = workload.lead
    assert lead is not None and lead.lead is None
    assert len(lead.times) == 96 and lead.times[0] == _epoch(JUNE_WEEK[0]) - 48 * HOUR
    assert lead.times[-1] == _epoch(JUNE_WEEK[0]) - HOUR / 2
    assert workload.total_requests == pytest.approx(1e6)
    # Saturday 30 May and Saturday 6 June: the same slots, the same requests.
    week_later = lead.times[0] + 7 * 24 * HOUR
    saturday = (workload.times >= week_later) & (workload.times < week_later + 24 * HOUR)
    assert np.allclose(lead.counts[:48], workload.counts[saturday])
    assert build_workload(trace, profile, 1e6, *JUNE_WEEK).lead is None
    early = build_workload(trace, profile, 1e6, datetime(2019, 12, 20, 10, tzinfo=UTC), lead_hours=24)
    assert early.lead is not None and len(early.lead.times) == 20
    assert early.notes[0] == ("lead-in: 10.0 h of the 24 h asked before the range "
                              "(the carbon trace starts 2019-12-20 00:00 UTC)")


@pytest.mark.parametrize("name, columns, held", [(GB, (), 0), (CISO, ("timestamp", "avg_CI"), 3)])
def test_real_trace_gap_reports_add_up(shared_data, name, columns, held):
    trace = load_trace(shared_data / name, *columns)
    workload = build_workload(trace, np.ones(168), 1e6)
    step = trace.typical_step
    lengths = np.diff(trace.times, append=trace.times[-1] + step)
    beyond_a_step = float(np.clip(lengths - step, 0, None).sum()) / HOUR
    gaps = workload.gaps
    assert gaps.held == held  # CAISO 2022 lacks three hours (three 2-h steps); GB 2020 lacks none
    assert gaps.held_hours + gaps.left_out_hours == pytest.approx(beyond_a_step)
    span = trace.times[-1] + step - trace.times[0]
    assert workload.durations.sum() + gaps.left_out_hours * HOUR == pytest.approx(span)
    assert workload.durations[-1] == step
    # CAISO's three missing hours are blank rows: counted, then held over
    assert [note.split(":")[1].split("(")[0].strip() for note in workload.notes] == (
        ["3 rows skipped", "3 gaps held for up to 4 h"] if held else [])
    short = build_workload(trace, np.ones(168), 1e6, max_hold_periods=1)
    assert short.gaps.held_hours == 0 and short.gaps.left_out_hours == pytest.approx(beyond_a_step)
