"""What a replay study writes: results.csv/json, periods.csv, the plots, and the tables it prints."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .replay import MonthResult, Outcome, ReplayConfig, Study, run_study

RESULT_COLUMNS = ("policy", "co2_g", "energy_kwh", "mean_error", "accuracy_gain_pct", "extra_co2_g",
                  "efficiency", "over_optimum_g", "regret_pct", "regret_at_target_pct", "switches")


def write_outputs(study: Study, directory: Path, plots: bool = True) -> list[Path]:
    """results.csv, results.json, periods.csv and (with matplotlib) timeline.png and pareto.png."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "results.csv", directory / "results.json", directory / "periods.csv"]
    with written[0].open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(RESULT_COLUMNS)
        for r in study.report.results:
            writer.writerow([getattr(r, c) if getattr(r, c) is not None else "" for c in RESULT_COLUMNS])
    written[1].write_text(json.dumps(study.report.model_dump(mode="json"), indent=1) + "\n")
    w = study.replay.workload
    labels = [label for label in study.runs if not label.startswith("fixed:")]
    columns = [w.times.astype("datetime64[s]").astype(str), np.char.mod("%.3f", w.intensities),
               np.char.mod("%.1f", w.counts),
               *(np.char.mod("%.2f", study.replay.mean_energy(study.runs[label])) for label in labels)]
    with written[2].open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", "intensity", "requests", *(f"{label}_mj" for label in labels)])
        writer.writerows(zip(*columns, strict=True))
    if plots:
        from .plots import plot_pareto, plot_timeline  # matplotlib: the plots extra

        written.append(plot_timeline(study, directory / "timeline.png"))
        written.append(plot_pareto(study, directory / "pareto.png"))
    return written


def signed(value: float, digits: int = 0, unit: str = "") -> str:
    """``+1,234 g`` / ``-0.021``: the sign always shown, once."""
    return f"{round(value, digits) + 0.0:+,.{digits}f}{unit}"  # + 0.0: no "-0.0"


def _efficiency(r: Outcome | None) -> str:
    return "-" if r is None or r.efficiency is None else f"{r.efficiency:.5f}"


def _regret(value: float | None) -> str:
    return "-" if value is None else signed(value, 1, " %")


def summary_lines(study: Study) -> list[str]:
    """The study's findings in sentences: each live (causal) policy against the fixed models and the
    heuristic first, then the months, then the hindsight optimum as a reference no live policy reaches."""
    report = study.report
    h = report.headline
    by_label = {r.policy: r for r in report.results}
    base = report.config.baseline
    fixed = [by_label.get(f"fixed:{name}") for name in ("resnet101", "resnet152")]
    heuristic = by_label["interpolation"]
    lines = []
    for r in report.results:
        if r.policy.startswith("error-target"):
            lines.append(f"{r.policy}: mean error {r.mean_error:.3f} % for a target of {report.target_error:.3f} % "
                         f"({signed(r.mean_error - report.target_error, 3)} points), {r.co2_g:,.0f} g CO2 "
                         f"(heuristic {heuristic.co2_g:,.0f} g at {heuristic.mean_error:.3f} %"
                         + "".join(f", {f.policy.removeprefix('fixed:')} {f.co2_g:,.0f} g at {f.mean_error:.3f} %"
                                   for f in fixed if f)
                         + f"); efficiency {_efficiency(r)} (heuristic {_efficiency(heuristic)}"
                         + "".join(f", {f.policy.removeprefix('fixed:')} {_efficiency(f)}" for f in fixed if f)
                         + f"); extra CO2 over the hindsight optimum {_regret(r.regret_at_target_pct)} at the "
                           f"target, {_regret(r.regret_pct)} at the error reached.")
    lines += month_lines(report.months, report.target_error)
    lines.append(f"Reference, the hindsight optimum (no live policy can reach it) against the heuristic "
                 f"({h.heuristic}, {report.config.window_hours:g} h window): at its mean error, "
                 f"{h.extra_co2_saved_pct:.1f} % less extra CO2 over {base} ({signed(-h.co2_saved_g, unit=' g')}, "
                 f"{h.co2_saved_pct_of_total:.1f} % of its total CO2); at its CO2, "
                 f"{signed(-h.error_saved_points, 3)} error points.")
    return lines


def month_lines(months: Sequence[MonthResult], target_error: float) -> list[str]:
    """Per causal policy, the month-by-month criteria over the full months; partial months apart."""
    full = [m for m in months if not m.partial]
    if not full:
        return []
    lines = []
    for label in (r.policy for r in full[0].results if r.policy.startswith("error-target")):
        runs = [next(r for r in m.results if r.policy == label) for m in full]
        misses = [abs(r.mean_error - target_error) for r in runs]
        regrets = [r.regret_at_target_pct for r in runs if r.regret_at_target_pct is not None]
        within = sum(1 for value in regrets if value <= 5.0)
        lines.append(f"{label}, {len(full)} full months: |error - target| <= 0.03 points in "
                     f"{sum(1 for miss in misses if miss <= 0.03)} (worst {max(misses):.3f}); regret at the target "
                     f"<= 5 % in {within} of {len(regrets)}"
                     + (f", worst {max(regrets):.1f} %." if regrets else "."))
    partial = [m for m in months if m.partial]
    if partial:
        lines.append("partial months, scored apart (their account ran on a whole month's expectation): "
                     + ", ".join(f"{m.month} ({m.days:.1f} days)" for m in partial) + ".")
    return lines


def replay_and_report(config: ReplayConfig, out: Path, plots: bool = True) -> Study:
    """``carbon-gateway replay``: run the study, print its tables, write its files."""
    import sys

    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    with console.status("replaying the policies"):
        study = run_study(config)
    written = write_outputs(study, out, plots)
    report = study.report
    table = Table(title=f"{report.periods} periods {report.first_period:%Y-%m-%d} .. {report.last_period:%Y-%m-%d}, "
                        f"{report.requests:,.0f} requests; efficiency vs {config.baseline}; regret: CO2 over the "
                        "hindsight optimum at the target and at the policy's own mean error")
    for column in ("policy", "CO2 g", "energy kWh", "mean error %", "acc. gain %", "extra CO2 g", "efficiency",
                   "regret @target %", "regret @error %", "switches"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for r in report.results:
        table.add_row(r.policy, f"{r.co2_g:,.0f}", f"{r.energy_kwh:,.1f}", f"{r.mean_error:.3f}",
                      signed(r.accuracy_gain_pct, 2), signed(r.extra_co2_g), _efficiency(r),
                      _regret(r.regret_at_target_pct), _regret(r.regret_pct), str(r.switches))
    console.print(table)
    for line in summary_lines(study):
        console.print(line)
    if report.months:
        console.print(month_table(report.months, report.target_error))
    for note in report.notes:
        console.print(f"[dim]note: {note}[/dim]")
    console.print("wrote " + ", ".join(str(p) for p in written))
    return study


def month_table(months: Sequence[MonthResult], target_error: float) -> object:
    """Per month: each error-target run's error and regret, and the efficiencies it should beat."""
    from rich.table import Table

    labels = [r.policy for r in months[0].results if r.policy.startswith("error-target")]
    rivals = [r.policy for r in months[0].results if r.policy in ("interpolation", "fixed:resnet101",
                                                                  "fixed:resnet152")]
    table = Table(title=f"Month by month (target {target_error:.3f} %)")
    table.add_column("month")
    table.add_column("days", justify="right")
    for label in labels:
        table.add_column(f"{label}: error % / regret @target %", justify="right")
        table.add_column("efficiency", justify="right")
    for rival in rivals:
        table.add_column(f"{rival} efficiency", justify="right")
    for month in months:
        by_label = {r.policy: r for r in month.results}
        cells = [month.month + (" (partial)" if month.partial else ""), f"{month.days:.1f}"]
        for label in labels:
            r = by_label[label]
            regret = "-" if r.regret_at_target_pct is None else signed(r.regret_at_target_pct, 1)
            cells += [f"{r.mean_error:.3f} / {regret}", _efficiency(r)]
        cells += [_efficiency(by_label[rival]) for rival in rivals]
        table.add_row(*cells)
    return table
