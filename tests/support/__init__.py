"""The project's test and benchmark harness (not shipped in the package).

- ``processes``: free ports, a real local ``tritonserver``, ``carbon-gateway serve`` as a process;
- ``http``: local HTTP servers that play the carbon providers and Triton's ``/metrics``; a synthetic GPU;
- ``tensors``: KServe v2 binary requests as a client writes them;
- ``kserve_sdk_client``: the KServe SDK against a gateway, in a process of its own;
- ``backend``: ``FakeBackend``, an in-process ``InferenceBackend`` for the service and API tests that do
  not need what only a real Triton can show.
"""
