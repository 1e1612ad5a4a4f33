"""What hostile clients can make the gateway hold: one gateway process, its memory watched, 127.0.0.1 only.

    python benchmarks/abuse.py                          # about two minutes
    python benchmarks/abuse.py --json var/bench/abuse.json

The gateway serves the null model from a local Triton, with both doors open (``--grpc-port``), an admin
token, and its gRPC connections aged out after ``--connection-age`` seconds and idle ones after
``--idle`` (the defaults are 60 s each; shorter here so that the run shows them acting). One scenario at a
time, each reported with the gateway's RSS before, at its peak (sampled every 20 ms) and two seconds after,
and whether a good request over REST and over gRPC was answered at the end of it:

* ``version-flood``: 100 gRPC requests and 100 REST requests, each with a different junk model version
  (1 MB over gRPC; 8 KB in a REST path): all refused (400 / INVALID_ARGUMENT), nothing kept;
* ``name-flood``: 100 gRPC requests naming a 2 MB model: refused, each logged in one short line;
* ``oversized``: 64 concurrent gRPC requests announcing 40 MB: refused as their length arrives;
* ``stalled``: 500 gRPC calls that stop just short of the largest valid request: at most
  ``max_in_flight`` + 16 are held (the rest refused at once) until their connections age out;
* ``idle``: 1000 HTTP/2 connections that never call: closed after ``--idle`` seconds;
* ``lockout``: guesses of the admin token with rotating ``X-Forwarded-For``: limited by the real peer, and
  the valid token still works.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import httpx
import numpy as np
import psutil
import tritonclient.grpc as grpcclient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import PROJECT, workdir
from overhead import null_repository

from gateway.grpc.servicer import CONTROL_RPCS, message_limit
from gateway.protocol.signature import RESNET
from gateway.testing.h2calls import idle_connection, partial_call
from gateway.testing.processes import GatewayProcess, free_port, running_triton
from gateway.testing.tensors import binary_infer_request

MB = 1 << 20
TOKEN = "abuse-benchmark-admin-token"
MAX_IN_FLIGHT = 64
_gateway_pid = 0  # set once the gateway runs


class RssWatch:
    """The peak RSS of a process while the block runs, sampled on a thread."""

    def __init__(self, pid: int, interval_s: float = 0.02):
        self.process = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()

    def rss(self) -> int:
        return self.process.memory_info().rss

    def __enter__(self) -> RssWatch:
        self.before = self.rss()
        self.peak = self.before
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def good_rest(url: str) -> bool:
    body, headers = binary_infer_request(np.zeros((1, 3, 224, 224), np.float32))
    try:
        return httpx.post(f"{url}/v2/models/auto/infer", content=body, headers=headers, timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def good_grpc(address: str) -> bool:
    client = grpcclient.InferenceServerClient(address)
    tensor = grpcclient.InferInput("input", [1, 3, 224, 224], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3, 224, 224), np.float32))
    try:
        client.infer("auto", [tensor], client_timeout=10)
        return True
    except Exception:  # noqa: BLE001 - any failure is the answer
        return False
    finally:
        client.close()


def infer_raw(address: str, model: str, version: str) -> grpc.StatusCode:
    """A ModelInfer with ``model`` and ``version`` as given (a stock client cannot send them this large)."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    request.inputs.add(name="input", datatype="FP32", shape=[1, 3, 224, 224])
    request.raw_input_contents.append(np.zeros((1, 3, 224, 224), np.float32).tobytes())
    with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 * MB)]) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                   request_serializer=service_pb2.ModelInferRequest.SerializeToString,
                                   response_deserializer=service_pb2.ModelInferResponse.FromString)
        try:
            call(request, timeout=30)
            return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            return exc.code()


async def version_flood(url: str, address: str) -> dict:
    statuses = [await asyncio.to_thread(infer_raw, address, "null", "1" + f"{i:06d}" + "x" * MB) for i in range(100)]
    body, headers = binary_infer_request(np.zeros((1, 3, 224, 224), np.float32))
    async with httpx.AsyncClient(timeout=30) as client:
        rest = [(await client.post(f"{url}/v2/models/null/versions/1{i:06d}{'x' * 8000}/infer", content=body,
                                   headers=headers)).status_code for i in range(100)]
    return {"grpc": _counts(s.name for s in statuses), "rest": _counts(str(s) for s in rest)}


async def name_flood(url: str, address: str) -> dict:
    statuses = [await asyncio.to_thread(infer_raw, address, f"{i:06d}" + "m" * (2 * MB), "") for i in range(100)]
    return {"grpc": _counts(s.name for s in statuses)}


async def oversized(url: str, address: str) -> dict:
    host, port = address.split(":")
    calls = await asyncio.gather(*(partial_call(host, int(port), 40 * MB, 40 * MB, stall_timeout_s=5)
                                   for _ in range(64)))
    await asyncio.gather(*(call.close() for call in calls))
    return {"refused": sum(c.grpc_status == 8 or c.reset for c in calls),
            "max_sent_mb": max(c.sent for c in calls) / MB}


async def stalled(url: str, address: str, limit: int) -> dict:
    host, port = address.split(":")
    calls = []
    for _ in range(10):  # 500 in batches of 50: each call is a connection of its own
        calls += await asyncio.gather(*(partial_call(host, int(port), limit - 1024, limit - 2048, stall_timeout_s=2)
                                        for _ in range(50)))
    held = sum(not c.ended for c in calls)
    good = {"rest_during": await asyncio.to_thread(good_rest, url),
            "grpc_during": await asyncio.to_thread(good_grpc, address)}
    started = time.monotonic()
    await asyncio.gather(*(c.settle(timeout_s=90) for c in calls))
    released_s = time.monotonic() - started
    await asyncio.gather(*(c.close() for c in calls))
    return {"held": held, "refused_at_once": len(calls) - held, "released_after_s": round(released_s, 1), **good}


async def idle(url: str, address: str, idle_s: float) -> dict:
    host, port = address.split(":")
    pid = psutil.Process(_gateway_pid)
    fds_before = pid.num_fds()
    connections = []
    for _ in range(20):
        connections += await asyncio.gather(*(idle_connection(host, int(port)) for _ in range(50)))
    fds_held = pid.num_fds() - fds_before
    await asyncio.gather(*(c.settle(timeout_s=idle_s + 10) for c in connections))
    closed = sum(c.ended for c in connections)
    await asyncio.gather(*(c.close() for c in connections))
    return {"connections": len(connections), "fds_while_held": fds_held, "closed_by_the_gateway": closed,
            "fds_after": pid.num_fds() - fds_before}


async def lockout(url: str, address: str) -> dict:
    async with httpx.AsyncClient(timeout=10) as client:
        guesses = [(await client.post(f"{url}/admin/reload-pool", headers={
            "Authorization": f"Bearer guess-{i}", "X-Forwarded-For": f"10.0.{i // 250}.{i % 250}"})).status_code
            for i in range(50)]
        valid = (await client.post(f"{url}/admin/reload-pool",
                                   headers={"Authorization": f"Bearer {TOKEN}"})).status_code
    return {"guesses": _counts(str(s) for s in guesses), "valid_token": valid}


def _counts(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


async def run(args: argparse.Namespace) -> dict:
    repository = null_repository()
    logs = workdir()
    grpc_port = free_port()
    env = {"CARBON_GATEWAY_ADMIN_TOKEN": TOKEN, "CARBON_GATEWAY_LIMITS__MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
           "CARBON_GATEWAY_LIMITS__GRPC_CONNECTION_AGE_S": str(args.connection_age),
           "CARBON_GATEWAY_LIMITS__GRPC_IDLE_S": str(args.idle), "CARBON_GATEWAY_POLICY__NAME": "interpolation"}
    limit = message_limit(RESNET, 8)
    results: dict = {"message_limit_bytes": limit, "max_concurrent_rpcs": MAX_IN_FLIGHT + CONTROL_RPCS,
                     "connection_age_s": args.connection_age, "idle_s": args.idle, "scenarios": []}
    async with running_triton(repository, ["null"], logs / "tritonserver.log") as triton:
        with GatewayProcess("--triton", triton.grpc_url, "--repository", str(repository), "--grpc-port",
                            str(grpc_port), "--carbon-intensity", "300", cwd=PROJECT, env=env,
                            log_file=logs / "gateway.log") as gateway:
            address = f"127.0.0.1:{grpc_port}"
            global _gateway_pid
            _gateway_pid = gateway.process.pid
            scenarios: list[tuple[str, Callable[[], Awaitable[dict]]]] = [
                ("version-flood", lambda: version_flood(gateway.url, address)),
                ("name-flood", lambda: name_flood(gateway.url, address)),
                ("oversized", lambda: oversized(gateway.url, address)),
                ("stalled", lambda: stalled(gateway.url, address, limit)),
                ("idle", lambda: idle(gateway.url, address, args.idle)),
                ("lockout", lambda: lockout(gateway.url, address)),
            ]
            log_start = len(gateway.output())
            # Twice each: memory a scenario leaves behind is the allocator's high-water mark if the second
            # pass peaks no higher, a leak if it keeps growing.
            chosen = [entry for entry in scenarios if not args.scenarios or entry[0] in args.scenarios]
            for name, scenario in [entry for entry in chosen for _ in range(args.repeat)]:
                with RssWatch(gateway.process.pid) as watch:
                    outcome = await scenario()
                await asyncio.sleep(2)
                row = {"scenario": name, "rss_before_mb": watch.before / MB, "rss_peak_mb": watch.peak / MB,
                       "rss_after_mb": watch.rss() / MB, "good_rest": await asyncio.to_thread(good_rest, gateway.url),
                       "good_grpc": await asyncio.to_thread(good_grpc, address), **outcome}
                results["scenarios"].append(row)
                print(f"{name:14s} RSS {row['rss_before_mb']:6.0f} -> peak {row['rss_peak_mb']:6.0f} -> "
                      f"{row['rss_after_mb']:6.0f} MB  good REST {row['good_rest']}  good gRPC {row['good_grpc']}  "
                      f"{json.dumps(outcome)}", flush=True)
            logged = gateway.output()[log_start:]
            results["log"] = {"bytes": len(logged), "lines": len(logged.splitlines()),
                              "tracebacks": logged.count("Traceback")}
            print(f"gateway log over the run: {results['log']}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connection-age", type=float, default=10.0, help="limits.grpc_connection_age_s")
    parser.add_argument("--idle", type=float, default=10.0, help="limits.grpc_idle_s")
    parser.add_argument("--repeat", type=int, default=2, help="passes of each scenario")
    parser.add_argument("--scenarios", nargs="+", default=None, help="some of the scenarios, by name")
    parser.add_argument("--json", type=Path, default=PROJECT / "var" / "bench" / "abuse.json")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
