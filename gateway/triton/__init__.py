"""Triton Inference Server: the gRPC client the gateway serves through, and a local server process.

- ``client``: ``TritonClient``, the ``InferenceBackend`` (``gateway.serving.backend``) of a real
  deployment: one async gRPC channel, Triton's errors mapped onto ``gateway.errors``;
- ``server``: ``LocalTritonServer``, the CPU ``tritonserver`` that the ``nvidia-pytriton`` wheel ships,
  started for the embedded default, the tests and ``profile``.

Imports: tritonclient, ``gateway.errors`` and ``gateway.serving.backend`` (the protocol it implements).
"""

from .client import TritonClient
from .server import LocalTritonServer, pytriton_root

__all__ = ["LocalTritonServer", "TritonClient", "pytriton_root"]
