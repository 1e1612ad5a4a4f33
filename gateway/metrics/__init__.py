"""Metrics: the one way they leave the core, and its Prometheus adapter.

- ``sink``: ``MetricsSink``, what the core (service, energy accountant, reloader, data plane) is given and
  calls with what happened, in its own terms; ``NullSink`` drops it;
- ``prometheus``: ``PrometheusSink``, the sink that turns those calls into Prometheus series (one process,
  or several workers through ``PROMETHEUS_MULTIPROC_DIR``).

The core imports ``sink`` only (import-linter keeps prometheus_client out of it); the front doors and the
server hand it a ``PrometheusSink``, as client_python's collectors are handed a ``registry=``.
"""

from .sink import GatewaySnapshot, MetricsSink, NullSink

__all__ = ["GatewaySnapshot", "MetricsSink", "NullSink"]
