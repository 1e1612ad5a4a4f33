"""Run the gateway as a server: one uvicorn process, or several workers sharing one energy meter.

Unless ``triton.url`` is set, a local CPU Triton is started first (and stopped last); with it, the
remote Triton is checked for the pool's models. Configuration problems raise a ``GatewayError``
before anything listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import SecretStr

from ..errors import TritonError, TritonServerError
from ..pool import ModelPool
from ..serving.metadata import shared_io
from ..serving.runtime import check_meter, load_parts, shared_meter
from ..settings import GatewaySettings
from ..triton import LocalTritonServer, TritonClient
from ..triton.server import TritonSupervisor, start_local_triton
from .app import SETTINGS_ENV, create_app
from .protocol import IMPORT_PATH, LimitedHttpToolsProtocol

logger = logging.getLogger(__name__)


def serve(settings: GatewaySettings) -> None:
    """Check the configuration, then serve until SIGINT/SIGTERM; raises ``GatewayError`` on bad config."""
    parts = load_parts(settings)
    check_meter(settings)
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
        await shared_io(client, pool)
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


class _Server(uvicorn.Server):
    # uvicorn re-raises SIGTERM after its shutdown, which would skip stopping the local Triton.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_one(settings: GatewaySettings, pool: ModelPool) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    server: _Server | None = None

    def on_signal() -> None:
        if server is None:
            if main is not None:
                main.cancel()
        elif server.should_exit:  # a second signal: stop waiting for anyone
            logger.warning("second signal: exiting now")
            server.force_exit = True
        else:
            logger.info("draining for up to %g s (signal again to exit at once)", settings.shutdown_timeout_s)
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    local, supervisor, watch = None, None, None
    try:
        local = await _start_triton(settings, pool)
        if local is not None:
            supervisor = _supervisor(local, settings, pool)
            watch = asyncio.create_task(supervisor.run(), name="triton-supervisor")
        url = local.grpc_url if local is not None else settings.triton.url
        assert url is not None
        alive = supervisor.is_healthy if supervisor is not None else None
        limit_request_heads(settings)
        server = _Server(uvicorn.Config(create_app(settings, url, alive=alive), host=settings.host, port=settings.port,
                                        http=LimitedHttpToolsProtocol,
                                        log_level=settings.log_level, access_log=False,
                                        timeout_graceful_shutdown=settings.shutdown_timeout_s))
        logger.info("gateway on http://%s:%d (docs: /docs)", settings.host, settings.port)
        await server.serve()
    except asyncio.CancelledError:
        logger.info("interrupted before the gateway started")
    finally:
        if supervisor is not None and watch is not None:
            supervisor.stop()
            watch.cancel()
        if local is not None:
            local.stop()


def _reveal(value: Any) -> Any:
    """JSON for what the standard encoder cannot write; secrets in clear (they are the parent's own)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _serve_workers(settings: GatewaySettings, pool: ModelPool) -> None:
    """Several uvicorn worker processes; metrics are shared through PROMETHEUS_MULTIPROC_DIR (set by the CLI
    before prometheus_client was imported)."""
    from ..prometheus import process_sink, require_multiprocess

    require_multiprocess()
    local = asyncio.run(_start_triton(settings, pool))
    gave_up = Path(tempfile.mkdtemp(prefix="carbon-gateway-")) / "triton-gave-up"
    supervisor = _supervisor(local, settings, pool, gave_up) if local is not None else None
    if supervisor is not None:  # this process only waits on uvicorn's workers: supervise from a thread
        threading.Thread(target=lambda: asyncio.run(supervisor.run()), name="triton-supervisor", daemon=True).start()
    try:
        url = local.grpc_url if local is not None else settings.triton.url
        # One GPU, one energy counter: this process reads it, the workers report their requests to it.
        with shared_meter(settings, process_sink()) as meter:
            os.environ[SETTINGS_ENV] = json.dumps({"settings": settings.model_dump(), "triton_url": url,
                                                   "meter": meter.model_dump() if meter else None,
                                                   "triton_gave_up_file": str(gave_up) if supervisor else None},
                                                  default=_reveal)
            logger.info("gateway on http://%s:%d with %d workers (docs: /docs)", settings.host, settings.port,
                        settings.workers)
            uvicorn.run("gateway.api.app:app_from_environment", factory=True, host=settings.host, http=IMPORT_PATH,
                        port=settings.port, workers=settings.workers, log_level=settings.log_level, access_log=False,
                        timeout_graceful_shutdown=settings.shutdown_timeout_s)
    finally:
        if supervisor is not None:
            supervisor.stop()
        if local is not None:
            local.stop()


def limit_request_heads(settings: GatewaySettings) -> None:
    """This process's request-head limits (the protocol class is uvicorn's to instantiate)."""
    LimitedHttpToolsProtocol.configure(settings.limits.max_header_bytes, settings.limits.header_timeout_s)


def _supervisor(local: LocalTritonServer, settings: GatewaySettings, pool: ModelPool,
                gave_up_file: Path | None = None) -> TritonSupervisor:
    return TritonSupervisor(local, [m.backend_name for m in pool.models],
                            ready_timeout_s=settings.triton.startup_timeout_s, gave_up_file=gave_up_file)
