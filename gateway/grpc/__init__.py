"""The gRPC front door: ``inference.GRPCInferenceService`` (the Open Inference Protocol), as Triton serves it.

- ``servicer``: the service's calls, each converting a request, calling the data plane and converting back;
- ``converters``: protobuf messages to and from the data plane's terms.

A peer of ``gateway.rest``: both call ``gateway.serving``'s data plane and neither imports the other.
"""
