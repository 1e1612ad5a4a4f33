"""Serving: the transport-free core that the HTTP layer (``gateway.rest``) delegates to.

- ``service``: ``GatewayService``: decide, fall back to a ready model, infer, charge energy and CO2;
- ``backend``: ``InferenceBackend``, what the service needs of an inference server (Triton, or the
  tests' in-process fake);
- ``predictions``: logits to the top-k classes;
- ``cpu``: the bounded thread pool that decodes and preprocesses off the event loop;
- ``health``: readiness of the backend and the pool's models;
- ``planner``: keeps a budget policy's plan current;
- ``footprint``: the gateway's own CPU time and its estimated energy;
- ``reload``: swaps the pool while serving (file change, SIGHUP, admin API);
- ``runtime``: builds all of it from the settings and runs its background work.

Imports: the domain packages (``policy``, ``carbon``, ``energy``), ``gateway.pool``, ``gateway.errors``,
``gateway.metrics.sink``; never FastAPI, uvicorn or prometheus_client (metrics go through the
``MetricsSink`` the service is given), and never ``gateway.triton`` (the backend is handed in).
"""
