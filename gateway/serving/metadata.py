"""What the Open Inference Protocol (KServe v2) says about the gateway and its models, for both front doors.

The pool's models are described as their backend describes them, under their pool names. ``auto``, the
model the gateway chooses per request, is described by the signature every pool model shares: a pool
whose models' inputs or outputs differ is refused (``shared_signature``), at start and on reload.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from .. import __version__
from ..errors import ConfigError, InvalidVersion, TritonError, UnknownModel, shorten
from ..pool import ModelPool, ModelSpec
from ..protocol.signature import TensorSignature
from .backend import InferenceBackend

T = TypeVar("T")

AUTO_MODEL = "auto"
AUTO_VERSION = "1"
SERVER_NAME = "carbon-gateway"
EXTENSIONS = ("binary_tensor_data", "model_configuration", "model_repository", "statistics", "carbon_aware")


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}


async def shared_signature(backend: InferenceBackend, pool: ModelPool) -> TensorSignature:
    """The pool's common signature, from the models the backend can describe now (a model that is down does not
    stop the others); ``ConfigError`` naming the models that differ, ``TritonError`` if none answers."""
    described = await asyncio.gather(*(backend.model_metadata(m.backend_name, m.triton_version) for m in pool.models),
                                     return_exceptions=True)
    _some_answered(described)
    signatures = {spec.name: (meta.get("inputs", []), meta.get("outputs", []))
                  for spec, meta in zip(pool.models, described, strict=True) if not isinstance(meta, BaseException)}
    first, (inputs, outputs) = next(iter(signatures.items()))
    differ = sorted(name for name, signature in signatures.items() if signature != (inputs, outputs))
    if differ:
        raise ConfigError(f"pool {pool.name!r}: model(s) {differ} have other inputs or outputs than {first!r} "
                          f"({signatures[differ[0]]} against {(inputs, outputs)}); `auto` needs one signature")
    if len(inputs) != 1 or len(outputs) != 1:
        raise ConfigError(f"pool {pool.name!r}: the gateway serves models of one input and one output, "
                          f"{first!r} has {len(inputs)} and {len(outputs)}")
    return TensorSignature.from_metadata(inputs, outputs)


def _some_answered(results: list[T | BaseException]) -> list[T]:
    """The answers among ``results``; the first failure, if nothing answered."""
    answers = [r for r in results if not isinstance(r, BaseException)]
    if not answers:
        failure = next(r for r in results if isinstance(r, BaseException))
        raise failure if isinstance(failure, TritonError) else TritonError(str(failure))
    return answers


async def _answered(calls: Iterable[Awaitable[T]]) -> list[T]:
    """What the backend answered of ``calls``, in order; a model that is down is left out, unless all are."""
    return _some_answered(await asyncio.gather(*calls, return_exceptions=True))


#: The longest model name the gateway reads before refusing it; pool names are short.
MAX_NAME_LENGTH = 256
#: A version is a plain decimal number (Triton's are 64-bit): anything else is refused, not passed on.
_VERSION = re.compile(r"[0-9]{1,19}")


def resolve(pool: ModelPool, name: str, version: str | None) -> ModelSpec | None:
    """The pool model a protocol request names (None: ``auto``); ``InvalidVersion`` for a version that is not a
    plain number (Triton would read ``"1abc"`` as 1), ``UnknownModel`` for any other name.

    What the client sent is quoted shortened, so a huge name costs one short log line and error."""
    if version and not _VERSION.fullmatch(version):
        raise InvalidVersion(f"model version {shorten(version)!r} is not a plain decimal number")
    if name == AUTO_MODEL:
        if version not in (None, "", AUTO_VERSION):
            raise UnknownModel(f"model {AUTO_MODEL!r} has only version {AUTO_VERSION}, not {version!r}")
        return None
    spec = pool.get(name) if len(name) <= MAX_NAME_LENGTH else None
    if spec is None:
        raise UnknownModel(f"model {shorten(name)!r} is not in the pool; known: {sorted(pool.by_name)} and "
                           f"{AUTO_MODEL!r}")
    return spec


def _version(spec: ModelSpec, version: str | None) -> str:
    return spec.triton_version if version is None else version


async def model_metadata(backend: InferenceBackend, pool: ModelPool, name: str,
                         version: str | None = None) -> dict[str, Any]:
    spec = resolve(pool, name, version)
    if spec is None:
        inputs, outputs = (await shared_signature(backend, pool)).metadata()
        return {"name": AUTO_MODEL, "versions": [AUTO_VERSION], "platform": SERVER_NAME,
                "inputs": inputs, "outputs": outputs}
    return {**await backend.model_metadata(spec.backend_name, _version(spec, version)), "name": name}


async def model_config(backend: InferenceBackend, pool: ModelPool, name: str,
                       version: str | None = None) -> dict[str, Any]:
    spec = resolve(pool, name, version)
    if spec is not None:
        return {**await backend.model_config(spec.backend_name, _version(spec, version)), "name": name}
    configs = await _answered(backend.model_config(m.backend_name, m.triton_version) for m in pool.models)
    first = configs[0]
    return {"name": AUTO_MODEL, "platform": SERVER_NAME,
            "max_batch_size": min(int(c.get("max_batch_size", 0)) for c in configs),
            "input": first.get("input", []), "output": first.get("output", []),
            "parameters": {"pool": {"string_value": ",".join(m.name for m in pool.models)},
                           "selected_by": {"string_value": "the gateway's carbon-aware policy"}}}


async def model_ready(backend: InferenceBackend, pool: ModelPool, name: str, version: str | None = None) -> bool:
    """A pool model: whether the backend has it ready; ``auto``: whether any pool model can serve."""
    spec = resolve(pool, name, version)
    models = [(spec, _version(spec, version))] if spec is not None else [(m, m.triton_version) for m in pool.models]
    ready = await asyncio.gather(*(backend.model_ready(m.backend_name, v) for m, v in models))
    return any(ready)


async def model_statistics(backend: InferenceBackend, pool: ModelPool, name: str | None = None,
                           version: str | None = None) -> dict[str, Any]:
    """Triton's statistics of one pool model, or of every pool model when ``name`` is None (``auto`` has none)."""
    specs = [m for m in pool.models] if name is None else [s for s in [resolve(pool, name, version)] if s]
    found: list[dict[str, Any]] = []
    for spec in specs:
        try:
            stats = await backend.model_statistics(spec.backend_name, _version(spec, version))
        except TritonError:
            if name is not None:
                raise
            continue  # the whole-pool listing leaves out a model the backend cannot describe now
        found += [{**entry, "name": spec.name} for entry in stats.get("model_stats", [])]
    return {"model_stats": found}


async def repository_index(backend: InferenceBackend, pool: ModelPool) -> list[dict[str, str]]:
    """The pool's models and ``auto``, with the backend's state for each."""
    index = await backend.repository_index()
    entries = [{"name": spec.name, "version": spec.triton_version or "1",
                "state": index.get(spec.backend_name, ("UNAVAILABLE", "not in the backend's repository"))[0],
                "reason": index.get(spec.backend_name, ("", "not in the backend's repository"))[1]}
               for spec in pool.models]
    ready = any(entry["state"] == "READY" for entry in entries)
    return [*entries, {"name": AUTO_MODEL, "version": AUTO_VERSION, "state": "READY" if ready else "UNAVAILABLE",
                       "reason": "" if ready else "no pool model is ready"}]
