"""How fast replay runs: a month of half-hours (GB June 2020) with 100 million requests.

    python benchmarks/replay_speed.py [../shared/data]

Prints wall times; asserts nothing (speed depends on the machine).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from gateway.carbon.trace import load_trace
from gateway.modelzoo.build import PAPER_POOL
from gateway.pool import load_pool
from gateway.offline.replay import Replay, trailing_window
from gateway.offline.workload import build_workload, load_request_trace, weekly_profile
from gateway.settings import PolicySettings
from datetime import UTC


def timed(label: str, action):
    started = time.perf_counter()
    result = action()
    print(f"{label:<48} {1000 * (time.perf_counter() - started):8.1f} ms")
    return result


def main(shared: Path) -> None:
    trace = timed("load carbon trace (GB 2020, 22k rows)", lambda: load_trace(shared / "carbon/gb_2020_entsoe.csv"))
    requests = timed("load request trace", lambda: load_request_trace(
        shared / "requests/wikipedia_en_2016-01_hourly.txt"))
    workload = timed("build workload (June, 1e8 requests)", lambda: build_workload(
        trace, weekly_profile(requests), 1e8, *map(_utc, ("2020-06-01", "2020-07-01"))))
    replay = Replay(load_pool(PAPER_POOL), workload)
    window = timed("trailing 24 h window", lambda: trailing_window(workload, 24))
    for name in ("fixed", "interpolation"):
        settings = PolicySettings(name=name, model="resnet101" if name == "fixed" else None)
        run = timed(f"{name} policy, {len(workload.times)} periods",
                    lambda name=name, settings=settings: replay.static(name, settings, window))
        timed("  outcome", lambda run=run: replay.outcome(run))
    budget = replay.outcome(replay.static("h", PolicySettings(), window)).co2_g
    timed("offline optimum (exact frontier + split plan)", lambda: replay.optimum("opt", budget_g=budget))
    timed("online budget policy, one run (perfect forecast)", lambda: replay.online("on", budget / 30, "perfect"))
    timed("online budget policy, one run (persistence)", lambda: replay.online("on", budget / 30, "persistence"))


def _utc(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text).replace(tzinfo=UTC)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data")
