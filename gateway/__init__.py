"""Carbon-intensity-aware inference gateway.

For every request it picks the model to run from a pool of ResNets according to the grid's carbon
intensity now, runs it on Triton, and accounts its energy and CO2. The packages, by role:

- ``policy``: which model serves a request (the paper's interpolation selector, budgets, prices);
- ``carbon``: where the carbon intensity comes from, kept fresh in the background;
- ``energy``: energy meters and per-request attribution;
- ``serving``: the transport-free core that combines them for each request, behind one data plane;
- ``state``: the policy's account and observed history, kept for every process of a deployment (a file, Redis);
- ``protocol``: the Open Inference Protocol without a transport: the tensor signature and codec;
- ``rest`` and ``grpc``: the two front doors, peers that each convert and call the data plane;
- ``server``: one process's runtime and both doors around it, one process or several workers;
- ``triton``: the inference server: its gRPC client and a local server process;
- ``metrics``: the sink the core writes to, and its Prometheus implementation;
- ``imagenet``: decoding uploads, class names, top-k predictions;
- ``offline``: trace replay, reports, plots, profiling;
- ``modelzoo``: the ResNets and the model-repository builder.

Beside them, what every package shares: ``errors`` (the one error tree), ``settings``, ``pool``,
``arrays``, ``cli``. The import rules are checked by import-linter (``.importlinter``): the core never
imports a front door or prometheus_client, the front doors never import each other, policies know
nothing of sources, meters, serving or where their state is kept, the state store is storage alone, and no
package imports in a cycle.
"""

__version__ = "0.1.0"
