"""What the service needs of an inference server: ``InferenceBackend``.

``gateway.triton.TritonClient`` is the real one; the tests' in-process fake
(``tests/support/backend.py``) is another, so the service and the HTTP layer can be tested without a
tritonserver. Errors are ``gateway.errors.TritonError`` and its subclasses, whatever the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["EncodedImage", "Inference", "InferenceBackend", "TensorSignature"]

from ..arrays import Float32Array, OutputArray
from ..protocol.signature import TensorSignature


@dataclass(frozen=True)
class Inference:
    """What a model answered: its first output, and the version of the model that ran."""

    outputs: OutputArray
    model_version: str


@dataclass(frozen=True)
class EncodedImage:
    """An upload as it arrived, for a backend that decodes it (``triton.image_model``): a batch of one."""

    data: bytes
    max_pixels: int

    def __len__(self) -> int:
        return 1


@runtime_checkable
class InferenceBackend(Protocol):
    """An inference server holding the pool's models, addressed by name and version ("" = latest)."""

    @property
    def url(self) -> str:
        """Where it is, for people reading ``/readyz``."""
        ...

    async def infer(self, name: str, batch: Float32Array, version: str = "") -> Inference:
        """Run ``batch`` through a model. Raises ``TritonError``."""
        ...

    async def infer_image(self, name: str, image: EncodedImage, version: str = "") -> Inference:
        """Decode and preprocess ``image`` as ``gateway.imagenet.decode`` does, then run it through a model.

        Raises ``ImageError`` for a bad upload, ``TritonError`` otherwise.
        """
        ...

    async def server_live(self) -> bool: ...

    async def model_ready(self, name: str, version: str = "") -> bool: ...

    async def signature(self, name: str, version: str = "") -> TensorSignature:
        """The model's input and output; raises ``TritonError`` when the server does not know it."""
        ...

    def cached_signature(self, name: str, version: str = "") -> TensorSignature | None:
        """The signature if it was read before, without asking the server."""
        ...

    async def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        """The model's KServe v2 metadata: ``name``, ``versions``, ``platform``, ``inputs``, ``outputs``."""
        ...

    async def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        """The model's configuration, as Triton's HTTP ``/config`` endpoint writes it."""
        ...

    async def model_statistics(self, name: str, version: str = "") -> dict[str, Any]:
        """Triton's statistics extension for the model: ``{"model_stats": [...]}``."""
        ...

    async def repository_index(self) -> dict[str, tuple[str, str]]:
        """Every model the server could load: name -> (state, reason)."""
        ...

    async def load_model(self, name: str) -> None: ...

    async def unload_model(self, name: str) -> None: ...

    async def close(self) -> None: ...
