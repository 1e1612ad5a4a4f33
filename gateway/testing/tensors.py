"""KServe v2 requests as a client would write them."""

from __future__ import annotations

import json

import numpy as np


def binary_infer_request(array: np.ndarray, *, binary_output: bool = False, extra: dict | None = None,
                         size: int | None = None) -> tuple[bytes, dict[str, str]]:
    """A KServe v2 binary-extension request: its JSON header, then the raw little-endian FP32 bytes.

    ``binary_output`` asks for the logits the same way; ``extra`` adds top-level header fields; ``size``
    overrides the declared ``binary_data_size`` (to send a lying one).
    """
    raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
    header = {"inputs": [{"name": "input", "shape": list(array.shape), "datatype": "FP32",
                          "parameters": {"binary_data_size": len(raw) if size is None else size}}], **(extra or {})}
    if binary_output:
        header["parameters"] = {"binary_data_output": True}
    encoded = json.dumps(header).encode()
    return encoded + raw, {"Inference-Header-Content-Length": str(len(encoded)),
                           "Content-Type": "application/octet-stream"}
