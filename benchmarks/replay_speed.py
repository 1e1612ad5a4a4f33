"""How fast replay runs: the whole ``carbon-gateway replay --no-plots`` study, wall clock, for a month
and a year of each shared trace, then where the time of one month goes.

    python benchmarks/replay_speed.py [../shared/data]

The issue's bar: a month <= 1 s and a year <= 5 s for the whole CLI study, the planning policies
included. Prints figures; asserts nothing (speed depends on the machine).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from datetime import datetime, UTC
from pathlib import Path

from gateway.carbon.trace import load_trace
from gateway.modelzoo.build import PAPER_POOL
from gateway.offline.replay import Replay, ReplayConfig, run_study, trailing_window
from gateway.offline.workload import build_workload, load_request_trace, weekly_profile
from gateway.policy import policy_settings
from gateway.pool import load_pool

CLI = Path(sys.executable).with_name("carbon-gateway")
GRIDS = {"GB 2020": ("carbon/gb_2020_entsoe.csv", "Time", "Carbon Intensity", "2020-06-01", "2020-07-01"),
         "CAISO 2022": ("carbon/us_ciso_2022_hourly.csv", "timestamp", "avg_CI", "2022-06-01", "2022-07-01"),
         "DE 2020 (15 min)": ("carbon/de_2020_entsoe.csv", "Time", "Carbon Intensity", "2020-06-01", "2020-07-01")}
WIKI = "requests/wikipedia_en_2016-01_hourly.txt"


def cli_wall(shared: Path, grid: tuple[str, ...], month: bool) -> float:
    path, time_column, value_column, start, end = grid
    command = [str(CLI), "replay", "--carbon-trace", str(shared / path), "--time-column", time_column,
               "--value-column", value_column, "--requests", str(shared / WIKI), "--pool", str(PAPER_POOL),
               "--no-plots"]
    if month:
        command += ["--start", start, "--end", end]
    else:
        command += ["--by-month"]
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run([*command, "--out", out], check=True, capture_output=True)
        return time.perf_counter() - started


def timed(label: str, action):
    started = time.perf_counter()
    result = action()
    print(f"  {label:<52} {1000 * (time.perf_counter() - started):8.1f} ms")
    return result


def breakdown(shared: Path) -> None:
    path, _, _, start, end = GRIDS["GB 2020"]
    config = ReplayConfig(carbon_trace=shared / path, requests=shared / WIKI, pool=PAPER_POOL,
                          start=datetime.fromisoformat(start).replace(tzinfo=UTC),
                          end=datetime.fromisoformat(end).replace(tzinfo=UTC))
    print("where one month's time goes (GB, June 2020, in process):")
    trace = timed("load carbon trace (22k rows)", lambda: load_trace(config.carbon_trace))
    requests = timed("load request trace", lambda: load_request_trace(config.requests))
    workload = timed("build workload with a 2-week lead-in", lambda: build_workload(
        trace, weekly_profile(requests), 1e8, config.start, config.end, lead_hours=336))
    replay = Replay(load_pool(PAPER_POOL), workload)
    window = timed("trailing 24 h window", lambda: trailing_window(workload, 24))
    timed("interpolation, all periods at once", lambda: replay.static(
        "i", policy_settings(name="interpolation"), window))
    target = config.target
    timed("error-target, one causal pass (no forecast)", lambda: replay.causal("e", target, "none"))
    timed("error-target, one causal pass (48 h forecast)", lambda: replay.causal("e", target, "perfect"))
    timed("hindsight frontier", lambda: replay.frontier)
    timed("the whole study (run_study)", lambda: run_study(config))


def main(shared: Path) -> None:
    print(f"{'carbon-gateway replay --no-plots':<40} {'month':>8} {'year (--by-month)':>18}")
    for name, grid in GRIDS.items():
        print(f"{name:<40} {cli_wall(shared, grid, True):7.2f}s {cli_wall(shared, grid, False):17.2f}s")
    breakdown(shared)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data")
