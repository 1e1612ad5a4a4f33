"""A chaos run: everything production does to the gateway, at once, under load. Bounded, 127.0.0.1 only.

    python benchmarks/chaos.py                      # 120 s
    python benchmarks/chaos.py --seconds 300 --json var/bench/chaos.json

One gateway process in its embedded shape (its own local Triton, explicit model control, a one-model
pool), a carbon provider that misbehaves, and, while ``--clients`` well-behaved clients classify images
and send binary tensors back to back:

* clients trickling their bodies a byte at a time (they must get 408, and hold no request slot);
* unfinished huge headers (431) and headers that never end (408);
* clients hanging up mid-upload (499 in the log and the metrics, not 500);
* an admin brute force (401, then 429 for that client);
* the carbon provider answering 500s, garbage, timestamps without a timezone and 8 MB bodies;
* the local tritonserver SIGKILLed a third of the way in (the gateway restarts it: 503 meanwhile).

Prints a table: requests sent and answered by status, lost requests (no answer at all: must be 0),
500s (the gateway's own errors: must be 0), the gateway's RSS before, at its peak and after, and how
long serving took to come back after the kill.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import PROJECT, REPOSITORY, SHARED_DATA, save_json

from gateway.testing.http import HttpReply, LocalHttpServer
from gateway.testing.processes import GatewayProcess, free_port
from gateway.testing.tensors import binary_infer_request

TOKEN = "chaos-run-admin-token-0123456789"


class MisbehavingProvider:
    """The UK Carbon Intensity API's format, answering badly more often than not."""

    def __init__(self) -> None:
        self.rng = random.Random(7)
        self.server = LocalHttpServer(self.respond, name="chaos-provider")

    def respond(self, path: str, headers: dict[str, str]) -> HttpReply:
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        period = {"from": now.strftime("%Y-%m-%dT%H:%M"), "to": now.strftime("%Y-%m-%dT%H:30"),  # no timezone
                  "intensity": {"forecast": 180, "actual": 175, "index": "moderate"}}
        roll = self.rng.random()
        if roll < 0.25:
            return HttpReply(500, b'{"error": "upstream"}')
        if roll < 0.40:
            return HttpReply(200, b"<html>not json</html>")
        if roll < 0.50:
            return HttpReply(200, json.dumps({"data": [period] * 40_000}).encode())  # ~8 MB
        return HttpReply(200, json.dumps({"data": [period]}).encode(), {"Content-Type": "application/json"})


def sample_rss(pid: int, stop: threading.Event, into: list[float]) -> None:
    process = psutil.Process(pid)
    while not stop.wait(0.5):
        with contextlib.suppress(psutil.NoSuchProcess):
            into.append(sum(p.memory_info().rss for p in (process, *process.children(recursive=True))
                            if "tritonserver" not in " ".join(p.cmdline()) and "stub" not in p.name()) / 2**20)


async def well_behaved(url: str, until: float, tally: Counter, failures: list[str], kill_at: list[float],
                       recovered: list[float]) -> None:
    images = [p.read_bytes() for p in sorted((SHARED_DATA / "images").glob("*.JPEG"))]
    body, headers = binary_infer_request(np.zeros((1, 3, 224, 224), np.float32))
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        turn = 0
        while time.monotonic() < until:
            turn += 1
            tally["sent"] += 1
            try:
                if turn % 2:
                    response = await client.post("/v1/classify", content=images[turn % len(images)],
                                                 headers={"content-type": "image/jpeg"})
                else:
                    response = await client.post("/v2/models/auto/infer", content=body, headers=headers)
            except httpx.TransportError as exc:
                tally["lost"] += 1
                failures.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.1)
                continue
            tally[response.status_code] += 1
            if response.status_code == 503:
                if kill_at:
                    tally["503 after the kill"] += 1
                await asyncio.sleep(0.2)
            elif response.status_code == 200 and tally["503 after the kill"] and not recovered:
                recovered.append(time.monotonic() - kill_at[0])  # the first success once the outage showed


def trickle(port: int, seconds: float, tally: Counter) -> None:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=seconds + 15) as sock:
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: g\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: 99999\r\n\r\n")
        deadline = time.monotonic() + seconds
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline:
                sock.sendall(b"\xff")
                time.sleep(0.5)
        tally[f"trickle {sock.recv(64)[:12].decode(errors='replace').strip()}"] += 1


def huge_header(port: int, tally: Counter) -> None:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: g\r\nX-Junk: ")
        with contextlib.suppress(OSError):
            for _ in range(16):
                sock.sendall(b"a" * 256 * 1024)
        tally[f"huge header {sock.recv(64)[:12].decode(errors='replace').strip()}"] += 1


def hang_up(port: int, tally: Counter) -> None:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: g\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: 99999\r\n\r\n" + b"\xff" * 500)
        time.sleep(0.05)
    tally["hang-ups"] += 1


def admin_guess(url: str, tally: Counter) -> None:
    with contextlib.suppress(httpx.TransportError):
        response = httpx.post(f"{url}/admin/reload-pool", headers={"Authorization": f"Bearer guess-{random.random()}"},
                              timeout=10)
        tally[f"admin guess {response.status_code}"] += 1


def attacks(port: int, url: str, until: float, tally: Counter) -> None:
    """The hostile clients, a few at a time, until ``until``."""
    threads: list[threading.Thread] = []
    while time.monotonic() < until - 12:
        for target, args in ((trickle, (port, 8.0, tally)), (huge_header, (port, tally)), (hang_up, (port, tally)),
                             (admin_guess, (url, tally))):
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            threads.append(thread)
        time.sleep(1.0)
    for thread in threads:
        thread.join(timeout=30)


def metrics_outcomes(url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    found: Counter = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "carbon_gateway_requests_total":
                found[sample.labels["outcome"]] += sample.value
    return dict(found)


async def run(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="carbon-gateway-chaos-"))
    pool = yaml.safe_load((REPOSITORY / "pool.yaml").read_text())
    pool["models"] = [m for m in pool["models"] if m["name"] == "resnet18"]
    (workdir / "pool.yaml").write_text(yaml.safe_dump(pool))
    provider = MisbehavingProvider()
    grpc = free_port()
    env = {"CARBON_GATEWAY_TRITON__GRPC_PORT": str(grpc), "CARBON_GATEWAY_TRITON__HTTP_PORT": str(free_port()),
           "CARBON_GATEWAY_TRITON__METRICS_PORT": str(free_port()), "CARBON_GATEWAY_TRITON__MODEL_CONTROL": "explicit",
           "CARBON_GATEWAY_ADMIN_TOKEN": TOKEN, "CARBON_GATEWAY_CARBON__SOURCE": "uk",
           "CARBON_GATEWAY_CARBON__UK__BASE_URL": provider.server.url, "CARBON_GATEWAY_CARBON__POLL_INTERVAL_S": "1",
           "CARBON_GATEWAY_CARBON__HTTP__TIMEOUT_S": "2", "CARBON_GATEWAY_CARBON__HTTP__ATTEMPTS": "1",
           "CARBON_GATEWAY_LIMITS__BODY_TIMEOUT_S": "3", "CARBON_GATEWAY_LIMITS__HEADER_TIMEOUT_S": "3",
           "CARBON_GATEWAY_LIMITS__MAX_IN_FLIGHT": "16"}
    gateway = GatewayProcess("--repository", str(REPOSITORY), "--pool", str(workdir / "pool.yaml"), cwd=workdir,
                             env=env, log_file=workdir / "gateway.log")
    tally: Counter = Counter()
    hostile: Counter = Counter()
    failures: list[str] = []
    rss: list[float] = []
    kill_at: list[float] = []
    recovered: list[float] = []
    with gateway:
        await asyncio.sleep(3)  # the carbon poll and the first requests settle
        stop = threading.Event()
        threading.Thread(target=sample_rss, args=(gateway.process.pid, stop, rss), daemon=True).start()
        await asyncio.sleep(1.5)
        rss_before = rss[-1] if rss else float("nan")
        started = time.monotonic()
        until = started + args.seconds
        attackers = threading.Thread(target=attacks, args=(gateway.port, gateway.url, until, hostile), daemon=True)
        attackers.start()

        async def kill_triton() -> None:
            await asyncio.sleep(args.seconds / 3)
            pids = subprocess.run(["pgrep", "-f", f"tritonserver.*grpc-port={grpc}"], capture_output=True,
                                  text=True).stdout.split()
            if pids:
                os.kill(int(pids[0]), signal.SIGKILL)
                kill_at.append(time.monotonic())

        await asyncio.gather(kill_triton(), *(well_behaved(gateway.url, until, tally, failures, kill_at, recovered)
                                              for _ in range(args.clients)))
        attackers.join(timeout=60)
        await asyncio.sleep(3)
        stop.set()
        rss_after = rss[-1] if rss else float("nan")
        outcomes = metrics_outcomes(gateway.url)
        ready = httpx.get(f"{gateway.url}/readyz", timeout=10).json()
    provider.server.close()
    log = gateway.output()
    tally.pop("503 after the kill", None)
    return {"seconds": args.seconds, "clients": args.clients,
            "sent": tally["sent"], "by_status": {str(k): v for k, v in tally.items() if isinstance(k, int)},
            "lost": tally["lost"], "internal_errors_500": tally[500], "hostile": dict(hostile),
            "metrics_outcomes": outcomes, "tracebacks_in_log": log.count("Traceback"),
            "rss_mib": {"before": rss_before, "peak": max(rss, default=float("nan")), "after": rss_after},
            "triton_recovery_s": recovered[0] if recovered else None, "carbon_status_at_end": ready["carbon"]["status"],
            "failures": failures[:5]}


def table(result: dict) -> str:
    rows = [("requests sent (well-behaved)", result["sent"]),
            *((f"answered {status}", count) for status, count in sorted(result["by_status"].items())),
            ("lost (no answer at all; must be 0)", result["lost"]),
            ("500 internal errors (must be 0)", result["internal_errors_500"]),
            ("tracebacks in the gateway's log", result["tracebacks_in_log"]),
            *((f"hostile: {name}", count) for name, count in sorted(result["hostile"].items())),
            ("metrics outcomes", ", ".join(f"{k} {v:.0f}" for k, v in sorted(result["metrics_outcomes"].items()))),
            ("gateway RSS MiB before / peak / after",
             "{before:.0f} / {peak:.0f} / {after:.0f}".format(**result["rss_mib"])),
            ("first 200 after the Triton kill (s)", "-" if result["triton_recovery_s"] is None
             else f"{result['triton_recovery_s']:.1f}"),
            ("carbon status at the end", result["carbon_status_at_end"])]
    return "\n".join(["| what | figure |", "|---|---:|", *(f"| {name} | {value} |" for name, value in rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--clients", type=int, default=4, help="well-behaved clients, back to back")
    parser.add_argument("--json", type=Path, default=PROJECT / "var" / "bench" / "chaos.json")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(table(result))
    save_json(args.json, result)
    if result["lost"] or result["internal_errors_500"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
