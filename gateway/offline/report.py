"""What a replay study writes: results.csv/json, periods.csv and, with matplotlib, the plots."""

from __future__ import annotations

import csv
import json
from datetime import datetime, UTC
from collections.abc import Callable
from pathlib import Path

from .replay import ReplayConfig, Study, run_study

RESULT_COLUMNS = ("policy", "co2_g", "energy_kwh", "mean_error", "accuracy_gain_pct", "extra_co2_g",
                  "efficiency", "switches")


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
    with written[2].open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", "intensity", "requests", *(f"{label}_mj" for label in labels)])
        energies = [study.replay.mean_energy(study.runs[label]) for label in labels]
        for t in range(len(w.times)):
            moment = datetime.fromtimestamp(w.times[t], UTC).isoformat()
            writer.writerow([moment, f"{w.intensities[t]:.3f}", f"{w.counts[t]:.1f}",
                             *(f"{e[t]:.2f}" for e in energies)])
    if plots:
        from .plots import plot_pareto, plot_timeline  # matplotlib: the plots extra

        written.append(plot_timeline(study, directory / "timeline.png"))
        written.append(plot_pareto(study, directory / "pareto.png"))
    return written


def replay_and_report(config: ReplayConfig, out: Path, plots: bool = True) -> Study:
    """``carbon-gateway replay``: run the study with a progress bar, print its table, write its files."""
    import sys

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    with Progress(transient=True) as bar:
        def progress(total: int) -> Callable[[], None]:
            task = bar.add_task("online policy: calibrating budgets", total=total)
            return lambda: bar.advance(task)

        study = run_study(config, progress)
    written = write_outputs(study, out, plots)
    report = study.report
    table = Table(title=f"{report.periods} periods {report.first_period:%Y-%m-%d} .. {report.last_period:%Y-%m-%d}, "
                        f"{report.requests:,.0f} requests; efficiency vs {config.baseline}")
    for column in ("policy", "CO2 g", "energy kWh", "mean error %", "acc. gain %", "extra CO2 g", "efficiency",
                   "switches"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for r in report.results:
        table.add_row(r.policy, f"{r.co2_g:,.0f}", f"{r.energy_kwh:,.1f}", f"{r.mean_error:.3f}",
                      f"{r.accuracy_gain_pct:.2f}", f"{r.extra_co2_g:,.0f}",
                      "-" if r.efficiency is None else f"{r.efficiency:.5f}", str(r.switches))
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(table)
    for c in report.comparisons:
        console.print(f"{c.policy}: at the heuristic's CO2, error -{c.error_saved_points:.3f} points "
                      f"({c.error_saved_pct:.1f}%); at its mean error, CO2 -{c.co2_saved_g:,.0f} g "
                      f"({c.co2_saved_pct:.1f}%)")
    console.print("wrote " + ", ".join(str(p) for p in written))
    return study
