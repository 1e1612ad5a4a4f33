"""``FakeBackend``: an in-process ``InferenceBackend`` for testing the service and the HTTP layer without a
tritonserver. What only a real Triton can show (the gRPC client, loading, restarts) stays in the tests
that start one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import numpy as np

from gateway.errors import InvalidTensor, ModelNotReady, TritonError, TritonUnavailable, UnknownVersion
from gateway.imagenet.decode import image_to_tensor
from gateway.protocol.signature import TensorSignature
from gateway.serving.backend import EncodedImage, Inference

CLASSES = 1000
INPUT_DIMS = (3, 224, 224)


class FakeBackend:
    """Holds ``models`` (all ready unless told otherwise) and answers as Triton would, in-process.

    Each model's logits are a fixed function of the input and the model's name, so a test can check that
    the answer came from the model it expects: ``expected_logits(name, batch)``.

    ``live``: whether the server answers at all; ``not_ready``: models loaded but not ready; ``delay_s``:
    how long each inference takes. ``calls`` records ``(model, batch size)`` of every inference.
    """

    url = "fake-backend"

    def __init__(self, models: Iterable[str], *, weights: str = "random", delay_s: float = 0.0):
        self.models = set(models)
        self.not_ready: set[str] = set()
        self.live = True
        self.delay_s = delay_s
        self.weights = weights
        self.calls: list[tuple[str, int]] = []
        self.images = 0
        self.closed = False
        self._seen: set[str] = set()

    @staticmethod
    def expected_logits(name: str, batch: np.ndarray) -> np.ndarray:
        """What ``infer`` answers for ``batch`` on ``name``: class ``len(name) * 7`` leads, by the input mean."""
        logits = np.zeros((len(batch), CLASSES), dtype=np.float32)
        logits[:, (len(name) * 7) % CLASSES] = 5.0 + batch.reshape(len(batch), -1).mean(axis=1)
        return logits

    def _check(self, name: str) -> None:
        if not self.live:
            raise TritonUnavailable("Triton is unreachable: fake backend is down")
        if name not in self.models or name in self.not_ready:
            raise ModelNotReady(f"model {name!r} is not ready in Triton")

    async def infer(self, name: str, batch: np.ndarray, version: str = "") -> Inference:
        self._check(name)
        if version not in ("", "1"):
            raise UnknownVersion(f"model {name!r}: Request for unknown model: {name!r} version {version} is not found")
        if batch.shape[1:] != INPUT_DIMS or batch.dtype != np.float32:
            raise InvalidTensor(f"unexpected shape {list(batch.shape)} or datatype {batch.dtype}")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.calls.append((name, len(batch)))
        self._seen.add(name)
        return Inference(self.expected_logits(name, batch), "1")

    async def infer_image(self, name: str, image: EncodedImage, version: str = "") -> Inference:
        """As Triton's ``image`` model: decoded with the gateway's code, then ``infer`` (``images`` counts them)."""
        self._check(name)
        self.images += 1
        return await self.infer(name, image_to_tensor(image.data, image.max_pixels)[np.newaxis], version)

    async def server_live(self) -> bool:
        return self.live

    async def model_ready(self, name: str, version: str = "") -> bool:
        return self.live and name in self.models and name not in self.not_ready

    async def signature(self, name: str, version: str = "") -> TensorSignature:
        self._check(name)
        self._seen.add(name)
        return self._signature()

    def _signature(self) -> TensorSignature:
        return TensorSignature(input_name="input", input_datatype="FP32", input_dims=INPUT_DIMS, output_name="logits",
                               output_datatype="FP32", output_dims=(CLASSES,), max_batch_size=8,
                               parameters={"weights": self.weights})

    def cached_signature(self, name: str, version: str = "") -> TensorSignature | None:
        return self._signature() if name in self._seen else None

    async def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        self._check(name)
        return {"name": name, "versions": ["1"], "platform": "python",
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, *INPUT_DIMS]}],
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, CLASSES]}]}

    async def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        self._check(name)
        return {"name": name, "backend": "python", "max_batch_size": 8,
                "input": [{"name": "input", "data_type": "TYPE_FP32", "dims": list(INPUT_DIMS)}],
                "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": [CLASSES]}],
                "parameters": {"weights": {"string_value": self.weights}}}

    async def model_statistics(self, name: str, version: str = "") -> dict[str, Any]:
        self._check(name)
        count = sum(items for model, items in self.calls if model == name)
        return {"model_stats": [{"name": name, "version": "1", "inference_count": count,
                                 "execution_count": sum(1 for model, _ in self.calls if model == name)}]}

    async def repository_index(self) -> dict[str, tuple[str, str]]:
        if not self.live:
            raise TritonUnavailable("Triton is unreachable: fake backend is down")
        return {name: ("READY" if name not in self.not_ready else "UNAVAILABLE", "") for name in self.models}

    async def load_model(self, name: str) -> None:
        if not self.live:
            raise TritonUnavailable("Triton is unreachable: fake backend is down")
        if name not in self.models:
            raise TritonError(f"Triton error: failed to load {name!r}")
        self.not_ready.discard(name)

    async def unload_model(self, name: str) -> None:
        self.not_ready.add(name)

    async def close(self) -> None:
        self.closed = True
