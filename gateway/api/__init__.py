"""The HTTP layer: FastAPI over the transport-free core in ``gateway.serving``.

- ``app``: ``create_app``, the application and its middleware stack;
- ``routes``: the endpoints (classification, the KServe v2 tensor route, health, models, metrics, admin);
- ``kserve``: the KServe v2 tensor codec (JSON and the binary extension);
- ``schemas``: the request and response bodies (pydantic);
- ``middleware``: pure ASGI layers (body-size limit, concurrency limit, request IDs, request metrics);
- ``errors``: the one handler that turns every ``GatewayError`` into its status and JSON body;
- ``server``: running it under uvicorn, one process or several workers, with a local Triton if needed.

Imports anything below it; nothing in the core imports this package.
"""

from .app import create_app

__all__ = ["create_app"]
