"""What the tests and the benchmarks share to drive the gateway for real: no part of serving imports it.

- ``processes``: free ports, a real local ``tritonserver``, ``carbon-gateway serve`` as a process;
- ``http``: local HTTP servers that play the carbon providers and Triton's ``/metrics``; a synthetic GPU;
- ``tensors``: KServe v2 binary requests as a client writes them.

Imports: httpx, numpy, ``gateway.triton``; the core never imports this package (import-linter).
"""
