"""The HTTP front door: FastAPI over the transport-free core in ``gateway.serving``.

- ``app``: ``create_app``, the application and its middleware stack;
- ``routes``: the gateway's own endpoints (classification, health, models, metrics, admin);
- ``v2``: the Open Inference Protocol (KServe v2) over HTTP, as Triton speaks it: health, metadata,
  readiness, configuration, repository index, statistics and inference, for every pool model and ``auto``;
- ``options``: the inference routes' per-request options (headers, query);
- ``schemas``: the request and response bodies (pydantic);
- ``middleware``: pure ASGI layers (body-size limit, concurrency limit, request IDs, request metrics);
- ``errors``: the one handler that turns every ``GatewayError`` into its status and JSON body (the
  protocol's ``{"error": message}`` shape under ``/v2``);
- ``httptools``: uvicorn's httptools protocol with limits on a request head's size and time.

``/docs`` serves Swagger UI from the swagger-ui-bundle package, so it works offline. A peer of
``gateway.grpc``: both call ``gateway.serving``'s data plane and neither imports the other; the KServe v2
tensor codec is ``gateway.protocol``'s. Nothing in the core imports this package.
"""

from .app import create_app

__all__ = ["create_app"]
