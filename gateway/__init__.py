"""Carbon-intensity-aware inference gateway.

For every request it picks the model to run from a pool of ResNets according to the grid's carbon
intensity now, runs it on Triton, and accounts its energy and CO2. The packages, by role:

- ``policy``: which model serves a request (the paper's interpolation selector, budgets, prices);
- ``carbon``: where the carbon intensity comes from, kept fresh in the background;
- ``energy``: energy meters and per-request attribution;
- ``serving``: the transport-free core that combines them for each request;
- ``triton``: the inference server: its gRPC client and a local server process;
- ``api``: the HTTP layer (FastAPI) and its server (uvicorn);
- ``offline``: trace replay, reports, plots, profiling;
- ``modelzoo``: the ResNets and the model-repository builder.

Beside them: ``errors`` (the one error tree), ``telemetry`` (the metrics sink the core writes to),
``prometheus`` (its Prometheus implementation), ``settings``, ``pool``, ``imaging``, ``labels``, ``cli``.
The import rules are checked by import-linter (``.importlinter``): the core never imports the HTTP
layer or prometheus_client, policies know nothing of sources, meters or serving, and no package
imports in a cycle.
"""

__version__ = "0.1.0"
