"""Trace replay on the shared traces: the paper's figures, the budget policies, the CLI."""

import csv
import json
import re
from datetime import datetime, UTC
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gateway.carbon.trace import load_trace
from gateway.cli import app
from gateway.modelzoo.build import PAPER_POOL
from gateway.offline.replay import Outcome, ReplayConfig, run_study, trailing_window, with_efficiency
from gateway.offline.report import summary_lines
from gateway.offline.workload import build_workload

GB = ("carbon/gb_2020_entsoe.csv", "Time", "Carbon Intensity")
CAISO = ("carbon/us_ciso_2022_hourly.csv", "timestamp", "avg_CI")
WIKI = "requests/wikipedia_en_2016-01_hourly.txt"


def config(shared: Path, grid=GB, start="2020-06-01", end="2020-06-08", **extra) -> ReplayConfig:
    path, time_column, value_column = grid
    values = dict(carbon_trace=shared / path, time_column=time_column, value_column=value_column,
                  requests=shared / WIKI, pool=PAPER_POOL, start=start, end=end, forecasts=("none",))
    return ReplayConfig(**(values | extra))


def test_paper_efficiency_figures():
    # Section 4: ResNet101 over ResNet50 gains 9.58% for 2676 g; ResNet152 16.58% for 5720 g.
    base = Outcome(policy="resnet50", co2_g=0.0, energy_kwh=0, mean_error=7.138, accuracy_gain_pct=0,
                   extra_co2_g=0, efficiency=None, switches=0)
    r101 = with_efficiency(base.model_copy(update={"co2_g": 2676.0, "mean_error": 6.454}), base)
    r152 = with_efficiency(base.model_copy(update={"co2_g": 5720.0, "mean_error": 5.954}), base)
    heuristic = with_efficiency(base.model_copy(update={"co2_g": 1532.0, "mean_error": 6.57}), base)
    assert r101.accuracy_gain_pct == pytest.approx(9.58, abs=0.005)
    assert r101.efficiency == pytest.approx(0.00358, abs=5e-6)
    assert r152.efficiency == pytest.approx(0.0029, abs=5e-5)
    assert heuristic.accuracy_gain_pct == pytest.approx(7.96, abs=0.05)  # the paper rounds to 8.00
    assert heuristic.efficiency == pytest.approx(0.00522, abs=3e-5)


def test_trailing_window_matches_the_past_day(shared_data):
    workload = build_workload(load_trace(shared_data / GB[0]), np.ones(168), 1e6,
                              config(shared_data).start, config(shared_data).end)
    window = trailing_window(workload, 24)
    t = 100
    past = workload.trace.values[(workload.trace.times > workload.times[t] - 86400 - 1)
                                 & (workload.trace.times <= workload.times[t])]
    assert window.low[t] == past.min() and window.high[t] == past.max()
    assert np.all(window.low <= workload.intensities) and np.all(workload.intensities <= window.high)


def test_gb_june_reproduces_the_paper_ordering(shared_data):
    study = run_study(config(shared_data, end="2020-07-01", window_hours=0, forecasts=()))
    by = {r.policy: r for r in study.report.results}
    h, r50, r101, r152 = by["interpolation"], by["fixed:resnet50"], by["fixed:resnet101"], by["fixed:resnet152"]
    assert r50.mean_error > h.mean_error > r152.mean_error
    assert r50.co2_g < h.co2_g < r101.co2_g
    assert h.efficiency > r101.efficiency > r152.efficiency


@pytest.mark.parametrize("grid,start,end", [(GB, "2020-06-01", "2020-06-08"), (CAISO, "2022-06-01", "2022-06-08")])
def test_the_hindsight_optimum_beats_the_heuristic_and_the_headline_is_in_extra_co2(shared_data, grid, start, end):
    study = run_study(config(shared_data, grid, start, end))
    by = {r.policy: r for r in study.report.results}
    h, at_co2, at_error = by["interpolation"], by["optimal@heuristic's CO2"], by["optimal@heuristic's error"]
    assert at_co2.co2_g <= h.co2_g * (1 + 1e-9) and at_co2.mean_error < h.mean_error
    assert at_error.mean_error <= h.mean_error + 1e-9 and at_error.co2_g < h.co2_g
    headline = study.report.headline
    saved = h.co2_g - at_error.co2_g
    assert headline.co2_saved_g == pytest.approx(saved)
    assert headline.extra_co2_saved_pct == pytest.approx(saved / h.extra_co2_g * 100)  # the paper's terms
    assert headline.co2_saved_pct_of_total == pytest.approx(saved / h.co2_g * 100)
    assert headline.extra_co2_saved_pct > headline.co2_saved_pct_of_total


def test_regret_is_measured_against_the_frontier_at_the_same_error(shared_data):
    study = run_study(config(shared_data))
    by = {r.policy: r for r in study.report.results}
    assert by["optimal@target"].regret_pct == pytest.approx(0.0, abs=1e-6)
    assert by["optimal@target"].mean_error == pytest.approx(study.report.target_error)
    assert by["interpolation"].regret_pct > 5  # the heuristic is far from the frontier
    assert all(r.over_optimum_g >= -1e-6 * r.co2_g for r in by.values())  # nothing beats the hindsight optimum
    # The least and most accurate fixed models are the frontier's two ends.
    assert by["fixed:resnet152"].over_optimum_g == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("forecast, blind_until", [("none", "2020-06-04"), ("perfect", "2020-06-02")])
def test_the_planning_policy_does_not_see_the_future(shared_data, tmp_path, forecast, blind_until):
    """Triple the trace's intensity from June 4: the choices before then cannot change (a 48 h forecast
    sees the change from June 2)."""
    trace = load_trace(shared_data / GB[0])
    changed_from = datetime(2020, 6, 4, tzinfo=UTC).timestamp()
    values = np.where(trace.times >= changed_from, trace.values * 3, trace.values)
    altered = tmp_path / "altered.csv"
    rows = zip(trace.times, values, strict=True)
    altered.write_text("Time,Carbon Intensity\n" + "".join(f"{t:.0f},{v}\n" for t, v in rows))
    label = "error-target (no forecast)" if forecast == "none" else "error-target (48 h forecast)"
    original, changed = (run_study(config(shared_data, (path, "Time", "Carbon Intensity"), forecasts=(forecast,)))
                         for path in (shared_data / GB[0], altered))
    before = original.replay.workload.times < datetime.fromisoformat(blind_until).replace(tzinfo=UTC).timestamp()
    assert np.array_equal(original.runs[label].shares[before], changed.runs[label].shares[before])
    assert not np.array_equal(original.runs[label].shares, changed.runs[label].shares)


@pytest.mark.parametrize("grid", [GB, CAISO])
def test_error_target_month_by_month_on_every_shared_trace(shared_data, grid):
    """The issue's bar, on every full month of both traces, with and without a forecast: the target met
    within 0.03 points; extra CO2 within 20 % of the hindsight optimum at the target every month, and within
    5 % in at least 85 % of them; and a better carbon-emission efficiency than fixed ResNet101, fixed
    ResNet152 and the heuristic. (DE 2020 misses the 85 %: docs/replay.md.)"""
    study = run_study(config(shared_data, grid, start=None, end=None, forecasts=("none", "perfect"), by_month=True))
    target = study.report.target_error
    full = [month for month in study.report.months if not month.partial]
    assert all(month.days >= 27.9 for month in full)
    assert len(full) >= 11
    for label in ("error-target (no forecast)", "error-target (48 h forecast)"):
        regrets = []
        for month in full:
            by = {r.policy: r for r in month.results}
            r = by[label]
            assert abs(r.mean_error - target) <= 0.03, (month.month, label, r.mean_error)
            regret = r.regret_at_target_pct
            assert regret is not None and regret <= 20.0, (month.month, label, regret)
            regrets.append(regret)
            for rival in ("fixed:resnet101", "fixed:resnet152", "interpolation"):
                assert r.efficiency > by[rival].efficiency, (month.month, label, rival)
        assert np.mean([regret <= 5.0 for regret in regrets]) >= 0.85, (label, regrets)


def test_a_partial_month_is_flagged_and_skipped_rows_are_counted(shared_data, tmp_path):
    """DE's trace ends 9 days into January 2021: that month missed its target by 0.24 points unflagged."""
    rows = (shared_data / "carbon" / "de_2020_entsoe.csv").read_text().splitlines()
    clipped = tmp_path / "de.csv"
    blanked = [f"{row.split(',')[0]}," if i in (500, 501) else row for i, row in enumerate(rows)]
    clipped.write_text("\n".join(blanked[:1 + 96 * 50]) + "\n")  # header, 50 days from 2019-12-20
    study = run_study(config(shared_data, (clipped, "Time", "Carbon Intensity"), start=None, end=None,
                             forecasts=("none",), by_month=True))
    assert [(m.month, m.partial) for m in study.report.months] == [
        ("2019-12", True), ("2020-01", False), ("2020-02", True)]
    assert any("2 rows skipped" in note for note in study.report.notes), study.report.notes
    lines = summary_lines(study)
    assert any(line.startswith("partial months, scored apart") and "2019-12" in line and "2020-02" in line
               for line in lines), lines
    assert lines[0].startswith("error-target (no forecast)") and lines[-1].startswith("Reference, the hindsight")


def test_cli_replay_writes_tables_and_plots(shared_data, tmp_path):
    out = tmp_path / "replay"
    result = CliRunner().invoke(app, [
        "replay", "--carbon-trace", str(shared_data / CAISO[0]), "--time-column", "timestamp",
        "--value-column", "avg_CI", "--requests", str(shared_data / WIKI), "--request-time-column", "timestamp",
        "--request-count-column", "sum_req", "--pool", str(PAPER_POOL),
        "--start", "2022-06-01", "--end", "2022-06-04", "--total-requests", "2e6", "--forecast", "perfect",
        "--hysteresis", "5", "--budget-g", "20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "error-target (48 h forecast)" in result.output and "regret" in result.output
    assert re.search(r"(?<![\w-])--\d", result.output) is None  # a sign is printed once
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert [r["policy"] for r in rows][:5] == ["fixed:resnet34", "fixed:resnet50", "fixed:resnet101",
                                               "fixed:resnet152", "interpolation"]
    assert {"interpolation+hysteresis", "online-budget (48 h forecast)"} <= {r["policy"] for r in rows}
    report = json.loads((out / "results.json").read_text())
    assert report["periods"] == 72 and report["requests"] == pytest.approx(2e6)
    assert report["frontier"][0][1] == pytest.approx(5.954)  # the most accurate end: ResNet152 everywhere
    for name in ("timeline.png", "pareto.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list(csv.reader((out / "periods.csv").read_text().splitlines()))) == 73


def test_cli_replay_takes_an_arrival_log_shorter_than_a_day(shared_data, tmp_path):
    arrivals = tmp_path / "arrivals.csv"
    start = datetime(2016, 1, 4, 9, tzinfo=UTC).timestamp()
    rng = np.random.default_rng(0)
    arrivals.write_text("time,path\n" + "".join(f"{start + t:.3f},/v1/classify\n"
                                                 for t in np.sort(rng.uniform(0, 5 * 3600, 2000))))
    result = CliRunner().invoke(app, [
        "replay", "--carbon-trace", str(shared_data / GB[0]), "--requests", str(arrivals),
        "--request-time-column", "time", "--request-count-column", "", "--pool", str(PAPER_POOL),
        "--start", "2020-06-01", "--end", "2020-06-03", "--no-plots", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "note:" in result.output and "5 h" in result.output


def test_cli_replay_reports_a_bad_baseline(shared_data, tmp_path):
    result = CliRunner().invoke(app, [
        "replay", "--carbon-trace", str(shared_data / GB[0]), "--requests", str(shared_data / WIKI),
        "--pool", str(PAPER_POOL), "--baseline", "vgg16", "--no-plots", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "baseline 'vgg16'" in result.output


def test_cli_replay_takes_the_gateways_policy_settings(shared_data, tmp_path):
    """What is replayed is what `serve` would run: the settings file's error-target options, the CLI's target
    flags over them."""
    settings = tmp_path / "gateway.yaml"
    settings.write_text("policy:\n  name: error-target\n  target_model: resnet152\n  settle_hours: 48\n")
    path = GB[0]
    common = ["replay", "--carbon-trace", str(shared_data / path), "--requests", str(shared_data / WIKI),
              "--pool", str(PAPER_POOL), "--start", "2020-06-01", "--end", "2020-06-03", "--forecast", "none",
              "--no-plots", "--config", str(settings)]
    runner = CliRunner()
    for extra, expected in (([], {"target_model": "resnet152", "target_error": None}),
                            (["--target-error", "6.0"], {"target_model": None, "target_error": 6.0})):
        out = tmp_path / f"out{len(extra)}"
        result = runner.invoke(app, [*common, *extra, "--out", str(out)])
        assert result.exit_code == 0, result.output
        target = json.loads((out / "results.json").read_text())["config"]["target"]
        assert {k: target[k] for k in expected} == expected and target["settle_hours"] == 48
    broken = tmp_path / "broken.yaml"
    broken.write_text("policy:\n  name: error-target\n  settle_hours: -1\n")
    result = runner.invoke(app, [*common[:-1], str(broken), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "settle_hours" in result.output


@pytest.mark.parametrize("store", ["memory", "none"])
def test_a_fleet_restarted_daily_keeps_the_target_only_with_a_shared_store(shared_data, store):
    """Two replicas, each restarted every 24 h: sharing account and history through a store they meet the
    month's target as one process does; without, each restart forgets the account (GB June 2020: +0.15)."""
    study = run_study(config(shared_data, start="2020-06-01", end="2020-07-01", replicas=2, restart_every_hours=24,
                             state_store=store))
    by = {r.policy: r for r in study.report.results}
    alone = by["error-target (no forecast)"]
    shared = "shared state" if store == "memory" else "no shared state"
    fleet = by[f"error-target (no forecast; 2 replicas, restarted every 24 h, {shared})"]
    target = study.report.target_error
    assert abs(alone.mean_error - target) <= 0.03
    if store == "memory":
        assert abs(fleet.mean_error - target) <= 0.03
        assert fleet.regret_at_target_pct is not None and fleet.regret_at_target_pct <= alone.regret_at_target_pct + 2
    else:
        assert abs(fleet.mean_error - target) > 0.05
