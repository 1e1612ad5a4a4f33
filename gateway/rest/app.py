"""The FastAPI application: the REST front door over a running ``Runtime`` (``gateway.serving.runtime``).

The app starts nothing: ``gateway.server.GatewayServer`` starts the runtime and both front doors around it.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..metrics.prometheus import PrometheusSink, process_sink
from ..serving.runtime import Runtime
from ..settings import GatewaySettings
from . import routes, v2
from .errors import install_error_handlers
from .middleware import GatewayMiddleware
from .routes import FailedAttempts

DESCRIPTION = """
Serves ImageNet classification and, for every request, picks the ResNet to run from the grid's
carbon intensity: a large, accurate model when the grid is clean, a small one when it is dirty.
The default policy (`error-target`) is as accurate on average over each month as a target model
(the pool's second most accurate) at the least CO2; the paper's interpolation selector (Jung,
arXiv 2403.15824, mirrored as the paper intends), fixed models and CO2 budgets are configurable.

Every response says which model ran, the carbon intensity used, the expected error rate, and the
request's energy and CO2, in its JSON body and in `X-*` headers. The Open Inference Protocol (KServe v2)
is served under `/v2` and, when configured, over gRPC.
"""


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


def create_app(settings: GatewaySettings, runtime: Runtime, sink: PrometheusSink | None = None,
               alive: Callable[[], bool] | None = None) -> FastAPI:
    """The REST app in front of ``runtime``'s data plane.

    ``sink``: the Prometheus sink ``/metrics`` renders (this process's by default; the runtime must report
    to the same one); ``alive``: False once the gateway cannot recover by itself (its local Triton).
    """
    app = FastAPI(title="Carbon-aware inference gateway", version=__version__, description=DESCRIPTION,
                  docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.sink = sink or process_sink()
    app.state.alive = alive or (lambda: True)
    app.state.admin_attempts = FailedAttempts()
    for included in (routes.inference, v2.inference, v2.router, routes.router):  # the hot routes first
        app.include_router(included)
    _offline_docs(app)
    install_error_handlers(app)
    app.add_middleware(GatewayMiddleware, plane=lambda: runtime.plane, max_bytes=settings.limits.max_upload_bytes,
                       body_timeout_s=settings.limits.body_timeout_s)
    return app
