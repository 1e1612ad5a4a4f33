"""Figures of a replay study (needs matplotlib, the ``plots`` extra)."""

from __future__ import annotations

from datetime import datetime, UTC
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .replay import Study

#: The runs drawn on the timeline, when the study has them.
TIMELINE_RUNS = ("interpolation", "error-target (no forecast)", "optimal@target")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_timeline(study: Study, path: Path) -> Path:
    """Carbon intensity (with the heuristic's window) over time, and the energy per request each
    policy chose: a step up is a bigger model."""
    plt = _pyplot()
    w = study.replay.workload
    moments = [datetime.fromtimestamp(t, UTC) for t in w.times]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, height_ratios=(1, 1.3))
    top.step(moments, w.intensities, where="post", color="black", lw=0.8, label="intensity")
    low, high = np.broadcast_to(study.window.low, w.times.shape), np.broadcast_to(study.window.high, w.times.shape)
    top.fill_between(moments, low, high, step="post", color="tab:gray", alpha=0.2, label="C_low..C_high")
    top.set_ylabel("gCO2/kWh")
    top.legend(loc="upper right", fontsize=7)
    for label in (r for r in TIMELINE_RUNS if r in study.runs):
        bottom.step(moments, study.replay.mean_energy(study.runs[label]), where="post", lw=0.9, label=label)
    bottom.set_yticks([s.energy_mj for s in study.replay.models], [s.name for s in study.replay.models], fontsize=7)
    bottom.set_ylabel("model (energy/request)")
    bottom.legend(loc="upper right", fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_pareto(study: Study, path: Path) -> Path:
    """CO2 against mean error: the hindsight optimum's frontier and where each policy landed; the right
    panel zooms in on the policies, which land close together."""
    plt = _pyplot()
    fig, (whole, zoom) = plt.subplots(1, 2, figsize=(11, 4.5), width_ratios=(1, 1.2))
    frontier = np.asarray(study.report.frontier)
    policies = [r for r in study.report.results if not r.policy.startswith("fixed:")]
    for ax in (whole, zoom):
        ax.plot(frontier[:, 0] / 1000, frontier[:, 1], "-", lw=1, color="0.2", label="hindsight optimum (frontier)")
        for result in study.report.results:
            if result.policy.startswith("fixed:"):  # the baselines: labelled in place
                ax.plot(result.co2_g / 1000, result.mean_error, "s", ms=5, color="0.3")
                ax.annotate(result.policy.removeprefix("fixed:"), (result.co2_g / 1000, result.mean_error),
                            fontsize=7, xytext=(4, 2), textcoords="offset points")
        markers = iter("oDv^<>phX*P" * 3)
        for result in policies:  # they cluster near each other: told apart by marker, in the legend
            ax.plot(result.co2_g / 1000, result.mean_error, next(markers), ms=6, ls="none", label=result.policy)
        ax.set_xlabel("total CO2 (kg)")
        ax.grid(alpha=0.3)
    whole.set_ylabel("mean error (%)")
    co2 = np.array([r.co2_g for r in policies]) / 1000
    error = np.array([r.mean_error for r in policies])
    pad_x, pad_y = 0.08 * np.ptp(co2) + 1e-9, 0.08 * np.ptp(error) + 1e-9
    zoom.set_xlim(co2.min() - pad_x, co2.max() + pad_x)
    zoom.set_ylim(error.min() - pad_y, error.max() + pad_y)
    zoom.set_title("the policies, closer", fontsize=9)
    zoom.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
