"""Run the gateway: ``GatewayServer`` starts one runtime and both front doors around it, as peers.

MLServer's ``server.py`` is the model. In one process, ``GatewayServer`` builds the runtime (the data plane
and its background work), the REST app and, with ``grpc_port``, the gRPC server, each in front of that
one data plane; then it serves HTTP under uvicorn until a signal, and stops the doors before the runtime.

With ``workers`` > 1 the parent process binds the HTTP socket, runs what there is one of (the local
Triton and its supervisor, the energy meter's sampler) and keeps that many worker processes running, each
a ``GatewayServer`` on the shared socket (gRPC shares its port through ``SO_REUSEPORT``). A worker is told
one thing: the path of a file, readable by this user alone, that holds what the parent resolved.

Unless ``triton.url`` is set, a local CPU Triton is started first (and stopped last); with it, the remote
Triton is checked for the pool's models. Configuration problems raise a ``GatewayError`` before anything
listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import uvicorn
from pydantic import BaseModel, SecretStr

from .errors import GatewayError, TritonError, TritonServerError
from .lifecycle import die_with_parent
from .grpc.servicer import CONTROL_RPCS, InferenceServicer, ServerLimits, message_limit, start_server
from .metrics.prometheus import PrometheusSink, process_sink
from .pool import ModelPool
from .protocol.signature import RESNET
from .rest.app import create_app
from .rest.httptools import LimitedHttpToolsProtocol
from .serving.backend import InferenceBackend
from .serving.metadata import shared_signature
from .serving.runtime import Runtime, SharedMeter, check_meter, load_parts, running, shared_meter
from .settings import GatewaySettings
from .triton import LocalTritonServer, TritonClient
from .triton.server import TritonSupervisor, start_local_triton

logger = logging.getLogger(__name__)

class GatewayServer:
    """One gateway process: the runtime, and the REST and gRPC doors in front of its data plane.

    ``async with GatewayServer(...) as server`` starts the runtime, builds ``server.app`` and starts gRPC
    (when ``grpc_port`` is set); leaving it stops gRPC, then the runtime. ``serve`` also runs HTTP.
    ``backend``: a Triton gRPC address (host:port), or any ``InferenceBackend``.
    """

    def __init__(self, settings: GatewaySettings, backend: str | InferenceBackend, *,
                 shared: SharedMeter | None = None, sink: PrometheusSink | None = None,
                 alive: Callable[[], bool] | None = None):
        self.settings = settings
        self.backend = backend
        self.shared = shared
        self.sink = sink or process_sink()
        self.alive = alive
        self._stack: AsyncExitStack | None = None
        self._runtime: Runtime | None = None
        self.grpc: grpc.aio.Server | None = None
        self.app: Any = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("the gateway server is not started")
        return self._runtime

    def _backend(self) -> InferenceBackend:
        if not isinstance(self.backend, str):
            return self.backend
        triton = self.settings.triton
        return TritonClient(self.backend, triton.request_timeout_s, shared_memory_slots=triton.shared_memory_slots,
                            shared_memory_bytes=triton.shared_memory_bytes, image_model=triton.image_model)

    async def __aenter__(self) -> GatewayServer:
        settings = self.settings
        async with AsyncExitStack() as stack:
            self._runtime = await stack.enter_async_context(running(settings, self._backend(), self.shared, self.sink))
            self.app = create_app(settings, self._runtime, self.sink, self.alive)
            if settings.grpc_port is not None:
                self.grpc = await start_server(InferenceServicer(self._runtime.plane), settings.host,
                                               settings.grpc_port, await self._grpc_limits())
                stack.push_async_callback(self.grpc.stop, 5)
            self._stack = stack.pop_all()
        return self

    async def _grpc_limits(self) -> ServerLimits:
        """The gRPC server's bounds, its message limit from the pool's signature (a ResNet's until Triton
        answers: a pool of larger inputs needs Triton up when the gateway starts)."""
        limits = self.settings.limits
        try:
            signature = await self.runtime.plane.signature()
        except GatewayError as exc:
            logger.warning("gRPC message limit from a ResNet's input: the pool's signature is unknown (%s)", exc)
            signature = RESNET
        return ServerLimits(max_message_bytes=message_limit(signature, limits.max_batch),
                            max_concurrent_rpcs=limits.max_in_flight + CONTROL_RPCS,
                            idle_s=limits.grpc_idle_s, max_age_s=limits.grpc_connection_age_s,
                            grace_s=min(10.0, limits.grpc_connection_age_s))

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Start, serve HTTP (on ``sockets`` when a parent bound them) until a signal, and stop."""
        settings = self.settings
        async with self:
            http = _HttpServer(uvicorn.Config(self.app, host=settings.host, port=settings.port,
                                              http=LimitedHttpToolsProtocol, log_level=settings.log_level,
                                              access_log=False, timeout_graceful_shutdown=settings.shutdown_timeout_s,
                                              proxy_headers=bool(settings.forwarded_allow_ips),
                                              forwarded_allow_ips=settings.forwarded_allow_ips or None))
            with _signals_stop(http, settings.shutdown_timeout_s):
                await http.serve(sockets)


class _HttpServer(uvicorn.Server):
    # uvicorn re-raises SIGTERM after its shutdown, which would skip stopping gRPC, the runtime and Triton:
    # ``_signals_stop`` handles the signals instead.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def _signals_stop(server: uvicorn.Server, drain_s: float) -> Iterator[None]:
    """SIGINT/SIGTERM: drain for up to ``drain_s``; a second one: exit at once."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if server.should_exit:
            logger.warning("second signal: exiting now")
            server.force_exit = True
        else:
            logger.info("draining for up to %g s (signal again to exit at once)", drain_s)
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def serve(settings: GatewaySettings) -> None:
    """Check the configuration, then serve until SIGINT/SIGTERM; raises ``GatewayError`` on bad config."""
    parts = load_parts(settings)
    check_meter(settings)
    LimitedHttpToolsProtocol.configure(settings.limits.max_header_bytes, settings.limits.header_timeout_s)
    try:
        if settings.workers == 1:
            _run(_serve_one(settings, parts.pool))
        else:
            _serve_workers(settings, parts.pool)
    except KeyboardInterrupt:
        pass


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop where it is installed (uvicorn's ``standard`` extra), as uvicorn's own workers
    do: its event loop and transports cost a request about a third less CPU than asyncio's."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


async def _start_triton(settings: GatewaySettings, pool: ModelPool) -> LocalTritonServer | None:
    """The local Triton when no ``triton.url`` is set (None otherwise, after checking the remote one); either
    way, the pool's models must share one signature (``auto`` is described by it)."""
    models = [m.backend_name for m in pool.models]
    if settings.triton.image_model is not None:
        models.append(settings.triton.image_model)
    if settings.triton.url is not None:
        if await check_remote_triton(settings.triton.url, models):
            await _check_signature(settings.triton.url, pool)
        return None
    local = await start_local_triton(settings.triton, models)
    try:
        await _check_signature(local.grpc_url, pool)
    except BaseException:
        local.stop()
        raise
    return local


async def _check_signature(url: str, pool: ModelPool) -> None:
    client = TritonClient(url)
    try:
        await shared_signature(client, pool)
    finally:
        await client.close()


async def check_remote_triton(url: str, models: list[str]) -> bool:
    """Refuse to start on a pool naming models the Triton lacks; a Triton that is down is only a warning (False)."""
    client = TritonClient(url)
    try:
        index = await client.repository_index()
    except TritonError as exc:
        logger.warning("Triton at %s is not answering yet (%s); /readyz will say when it is", url, exc)
        return False
    finally:
        await client.close()
    missing = [m for m in models if m not in index]
    if missing:
        raise TritonServerError(f"model(s) {missing} the gateway serves from are not in the repository of the Triton "
                                f"at {url} (it has {sorted(index)})")
    return True


async def _serve_one(settings: GatewaySettings, pool: ModelPool) -> None:
    main = asyncio.current_task()
    assert main is not None  # run by ``_run``
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # until the server takes the signals over
        loop.add_signal_handler(sig, main.cancel)
    local, supervisor, watch = None, None, None
    try:
        local = await _start_triton(settings, pool)
        if local is not None:
            supervisor = _supervisor(local, settings, pool)
            watch = asyncio.create_task(supervisor.run(), name="triton-supervisor")
        url = local.grpc_url if local is not None else settings.triton.url
        assert url is not None
        alive = supervisor.is_healthy if supervisor is not None else None
        logger.info("gateway on http://%s:%d (docs: /docs)", settings.host, settings.port)
        await GatewayServer(settings, url, alive=alive).serve()
    except asyncio.CancelledError:
        logger.info("interrupted before the gateway started")
    finally:
        if supervisor is not None and watch is not None:
            supervisor.stop()
            watch.cancel()
        if local is not None:
            local.stop()


# --- several workers ------------------------------------------------------------------------------


class WorkerBrief(BaseModel):
    """What a worker needs of its parent, in a file only this user can read: the resolved settings (secrets
    included, which is why it is not in the environment), where Triton is, the shared meter, and the file
    the parent's Triton supervisor writes when it gives up."""

    settings: dict[str, Any]
    triton_url: str
    meter: SharedMeter | None = None
    triton_gave_up_file: str | None = None


def _reveal(value: Any) -> Any:
    """JSON for what the standard encoder cannot write; secrets in clear (they are the parent's own)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


@contextlib.contextmanager
def _brief_file(brief: WorkerBrief) -> Iterator[Path]:
    """``brief`` in a private directory (0700) and file (0600), removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="carbon-gateway-workers-"))
    path = directory / "brief.json"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(brief.model_dump(), file, default=_reveal)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def read_brief(path: Path) -> tuple[GatewaySettings, WorkerBrief]:
    brief = WorkerBrief.model_validate_json(Path(path).read_text())
    return GatewaySettings.model_validate(brief.settings), brief


def worker_server(path: Path) -> GatewayServer:
    """A worker's ``GatewayServer``, from its parent's brief."""
    settings, brief = read_brief(path)
    LimitedHttpToolsProtocol.configure(settings.limits.max_header_bytes, settings.limits.header_timeout_s)
    gave_up = brief.triton_gave_up_file
    alive = (lambda: not Path(gave_up).exists()) if gave_up else None
    return GatewayServer(settings, brief.triton_url, shared=brief.meter, alive=alive)


def _worker_main(path: str, sockets: list[socket.socket], parent: int) -> None:
    """A worker process: its own ``GatewayServer`` on the parent's socket; it drains and stops when the
    parent dies, however it dies (an orphan would go on serving the port and writing the policy's account)."""
    die_with_parent(parent)
    server = worker_server(Path(path))
    logging.basicConfig(level=server.settings.log_level.upper(),
                        format="%(asctime)s %(levelname)-7s %(name)s[%(process)d]: %(message)s")
    try:
        _run(server.serve(sockets))
    except KeyboardInterrupt:
        pass


class Workers:
    """Keeps ``count`` worker processes serving on ``sockets``: one that dies is replaced; SIGINT/SIGTERM
    stop them all (each drains for up to ``drain_s``), a second signal kills them."""

    def __init__(self, count: int, brief: Path, sockets: list[socket.socket], drain_s: float):
        self.count = count
        self.brief = brief
        self.sockets = sockets
        self.drain_s = drain_s
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[Any] = []
        self.stopping = threading.Event()
        self.signals = 0

    def _spawn(self) -> Any:
        process = self.context.Process(target=_worker_main, args=(str(self.brief), self.sockets, os.getpid()),
                                       name="carbon-gateway-worker")
        process.start()
        return process

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        self.stopping.set()
        if self.signals > 1:
            logger.warning("second signal: killing the workers")
            for process in self.processes:
                if process.is_alive():
                    process.kill()

    def run(self) -> None:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.processes = [self._spawn() for _ in range(self.count)]
            while not self.stopping.wait(0.5):
                for index, process in enumerate(self.processes):
                    if not process.is_alive() and not self.stopping.is_set():
                        logger.warning("worker %s exited with %s: starting another", process.pid, process.exitcode)
                        self.processes[index] = self._spawn()
            for process in self.processes:
                if process.is_alive():
                    process.terminate()  # SIGTERM: each drains
            deadline = time.monotonic() + self.drain_s + 10
            for process in self.processes:
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
                    process.join()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _serve_workers(settings: GatewaySettings, pool: ModelPool) -> None:
    """Several worker processes; metrics are shared through PROMETHEUS_MULTIPROC_DIR (set by the CLI before
    prometheus_client was imported)."""
    from .metrics.prometheus import require_multiprocess

    require_multiprocess()
    local = asyncio.run(_start_triton(settings, pool))
    gave_up = Path(tempfile.mkdtemp(prefix="carbon-gateway-")) / "triton-gave-up"
    supervisor = _supervisor(local, settings, pool, gave_up) if local is not None else None
    if supervisor is not None:  # this process only keeps the workers: supervise from a thread
        threading.Thread(target=lambda: asyncio.run(supervisor.run()), name="triton-supervisor", daemon=True).start()
    try:
        url = local.grpc_url if local is not None else settings.triton.url
        assert url is not None
        # One GPU, one energy counter: this process reads it, the workers report their requests to it.
        with shared_meter(settings, process_sink()) as meter:
            brief = WorkerBrief(settings=settings.model_dump(), triton_url=url, meter=meter,
                                triton_gave_up_file=str(gave_up) if supervisor else None)
            with _brief_file(brief) as path:
                sock = uvicorn.Config(app="", host=settings.host, port=settings.port).bind_socket()
                logger.info("gateway on http://%s:%d with %d workers (docs: /docs)", settings.host, settings.port,
                            settings.workers)
                try:
                    Workers(settings.workers, path, [sock], settings.shutdown_timeout_s).run()
                finally:
                    sock.close()
    finally:
        if supervisor is not None:
            supervisor.stop()
        if local is not None:
            local.stop()


def _supervisor(local: LocalTritonServer, settings: GatewaySettings, pool: ModelPool,
                gave_up_file: Path | None = None) -> TritonSupervisor:
    return TritonSupervisor(local, [m.backend_name for m in pool.models],
                            ready_timeout_s=settings.triton.startup_timeout_s, gave_up_file=gave_up_file)
