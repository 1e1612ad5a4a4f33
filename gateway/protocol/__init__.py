"""The Open Inference Protocol (KServe v2) without a transport: what both front doors speak.

- ``signature``: ``TensorSignature``, a model's one input and one output (a pool's shared one describes
  ``auto``);
- ``codec``: the REST tensor codec (JSON ``data`` and the binary tensor extension) and the input checks
  that gRPC requests pass too.

Imports: numpy, orjson, simdjson, ``gateway.arrays`` and ``gateway.errors``; never a web framework or grpc.
"""
