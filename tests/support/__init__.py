"""The tests' own harness (the processes, local servers and request writers they share with the benchmarks are
``gateway.testing``'s).

- ``data``: where the shared data is (``CARBON_GATEWAY_SHARED_DATA``, else ``../shared/data``), the pool's
  models, the sample images;
- ``gateway``: settings for a test and the gateway on an in-process ASGI client;
- ``backend``: ``FakeBackend``, an in-process ``InferenceBackend`` for the service and API tests that do
  not need what only a real Triton can show;
- ``images``: images written to order (any format, or a PNG whose header says anything);
- ``clock``: a clock that moves only when a test says so;
- ``kserve_sdk_client``: the KServe SDK against a gateway, in a process of its own;
- ``prometheus``, ``dashboard``: a real Prometheus scraping the gateway, and the Grafana dashboard's queries;
- ``redis``: a real ``redis-server`` for the policy-state store, killed, frozen and restarted on demand.
"""
