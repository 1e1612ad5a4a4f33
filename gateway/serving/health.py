"""What ``/readyz`` and ``/v1/models`` report: whether the backend answers and has each pool model ready."""

from __future__ import annotations

import asyncio

from ..errors import TritonError
from ..pool import ModelPool
from .backend import InferenceBackend


async def readiness(backend: InferenceBackend, pool: ModelPool) -> tuple[bool, dict[str, bool]]:
    """Whether the backend answers, and per pool model whether it has it ready."""
    if not await backend.server_live():
        return False, {spec.name: False for spec in pool.models}
    ready = await asyncio.gather(*(backend.model_ready(s.backend_name, s.triton_version) for s in pool.models))
    return True, {spec.name: bool(ok) for spec, ok in zip(pool.models, ready, strict=True)}


async def server_ready(backend: InferenceBackend, pool: ModelPool) -> bool:
    """The backend answers and has every pool model ready (``/readyz``, and the protocol's server readiness)."""
    reachable, ready = await readiness(backend, pool)
    return reachable and all(ready.values())


async def weights(backend: InferenceBackend, pool: ModelPool) -> dict[str, str]:
    """Which weights each model was built with, as its config records ("unknown" if it says not)."""
    found: dict[str, str] = {}
    for spec in pool.models:
        try:
            signature = await backend.signature(spec.backend_name, spec.triton_version)
        except TritonError:  # reported as unknown; readiness says why
            found[spec.name] = "unknown"
            continue
        found[spec.name] = signature.parameters.get("weights", "unknown")
    return found
