"""The KServe Python SDK's REST and gRPC clients against a gateway, in a process of their own (the SDK's protos
and tritonclient's cannot share one). Prints a JSON report; writes each way's logits as <way>.npy.

    python -m tests.support.kserve_sdk_client HTTP_HOST:PORT GRPC_HOST:PORT DIRECTORY   (DIRECTORY/batch.npy in)
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest
from kserve.inference_client import RESTConfig


def request(batch: np.ndarray, way: str, binary: bool = True) -> InferRequest:
    tensor = InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    return InferRequest(model_name="auto", infer_inputs=[tensor], request_id=f"kserve-{way}")


async def main(http: str, grpc: str, directory: Path) -> dict[str, dict[str, object]]:
    batch = np.load(directory / "batch.npy")
    report: dict[str, dict[str, object]] = {}
    rest = InferenceRESTClient(RESTConfig(protocol="v2"))
    base = f"http://{http}"
    try:
        for way, binary in (("rest-binary", True), ("rest-json", False)):
            response = await rest.infer(base, request(batch, way, binary), model_name="auto")
            np.save(directory / f"{way}.npy", response.outputs[0].as_numpy())
            report[way] = {"live": await rest.is_server_live(base), "ready": await rest.is_server_ready(base),
                           "model_ready": await rest.is_model_ready(base, "auto"), "id": response.id,
                           "model_name": response.model_name,
                           "carbon_intensity": (response.parameters or {}).get("carbon_intensity")}
    finally:
        await rest.close()
    client = InferenceGRPCClient(grpc)
    try:
        response = await client.infer(request(batch, "grpc"))
        np.save(directory / "grpc.npy", response.outputs[0].as_numpy())
        report["grpc"] = {"live": await client.is_server_live(), "ready": await client.is_server_ready(),
                          "model_ready": await client.is_model_ready("auto"), "id": response.id,
                          "model_name": response.model_name}
    finally:
        await client.close()
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))))
