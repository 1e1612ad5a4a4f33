"""The FastAPI application."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..prometheus import PrometheusSink, process_sink
from ..serving.backend import InferenceBackend
from ..serving.runtime import SharedMeter, running
from ..settings import GatewaySettings
from ..triton import TritonClient
from .errors import install_error_handlers
from .grpc_server import InferenceServicer, start_server
from .middleware import GatewayMiddleware
from . import routes, v2
from .routes import FailedAttempts

DESCRIPTION = """
Serves ImageNet classification and, for every request, picks the ResNet to run from the grid's
carbon intensity *now*: a large, accurate model when the grid is clean, a small one when it is dirty
(the interpolation selector of Jung, arXiv 2403.15824, mirrored as the paper intends).

Every response says which model ran, the carbon intensity used, the expected error rate, and the
request's energy and CO2, in its JSON body and in `X-*` headers.
"""


SETTINGS_ENV = "CARBON_GATEWAY_RESOLVED_SETTINGS"


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker, from the settings the parent process resolved and validated."""
    from .protocol import LimitedHttpToolsProtocol

    payload = json.loads(os.environ[SETTINGS_ENV])
    shared = SharedMeter.model_validate(payload["meter"]) if payload.get("meter") else None
    settings = GatewaySettings.model_validate(payload["settings"])
    LimitedHttpToolsProtocol.configure(settings.limits.max_header_bytes, settings.limits.header_timeout_s)
    gave_up = payload.get("triton_gave_up_file")  # the parent's Triton supervisor writes it when it gives up
    alive = (lambda: not Path(gave_up).exists()) if gave_up else None
    return create_app(settings, payload["triton_url"], shared, alive=alive)


SWAGGER_ASSETS = "/docs/assets"


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from the swagger-ui-bundle package: it works on a cluster with no internet."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount(SWAGGER_ASSETS, StaticFiles(directory=swagger_ui_path), name="swagger-ui")

    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - docs",
                                   swagger_js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{SWAGGER_ASSETS}/favicon-32x32.png")

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)


def create_app(settings: GatewaySettings, backend: str | InferenceBackend, shared_meter: SharedMeter | None = None,
               sink: PrometheusSink | None = None, alive: Callable[[], bool] | None = None) -> FastAPI:
    """The gateway app in front of ``backend``: a Triton gRPC address (host:port), or any ``InferenceBackend``.

    ``shared_meter`` when it is one worker of several (see ``serving.runtime.shared_meter``); ``sink``: where
    metrics go, by default this process's Prometheus registry.
    """
    sink = sink or process_sink()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        inference = (TritonClient(backend, settings.triton.request_timeout_s,
                                  shared_memory_slots=settings.triton.shared_memory_slots,
                                  shared_memory_bytes=settings.triton.shared_memory_bytes,
                                  image_model=settings.triton.image_model)
                     if isinstance(backend, str) else backend)
        async with running(settings, inference, shared_meter, sink) as runtime:
            app.state.service = runtime.service
            app.state.reloader = runtime.reloader
            grpc = None
            if settings.grpc_port is not None:
                servicer = InferenceServicer(lambda: runtime.service, sink, settings.limits.max_batch,
                                             settings.limits.max_in_flight)
                grpc = await start_server(servicer, settings.host, settings.grpc_port)
            try:
                yield
            finally:
                if grpc is not None:
                    await grpc.stop(grace=5)

    app = FastAPI(title="Carbon-aware inference gateway", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.sink = sink
    app.state.alive = alive or (lambda: True)  # False: the gateway cannot recover by itself (its local Triton)
    app.state.admin_attempts = FailedAttempts()
    for included in (routes.inference, v2.inference, v2.router, routes.router):  # the hot routes first
        app.include_router(included)
    _offline_docs(app)
    install_error_handlers(app)
    app.add_middleware(GatewayMiddleware, sink=sink, max_bytes=settings.limits.max_upload_bytes,
                       max_in_flight=settings.limits.max_in_flight, body_timeout_s=settings.limits.body_timeout_s)
    return app
