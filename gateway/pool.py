"""The model pool: which Triton models the gateway may route to, and what each costs.

A pool file (YAML) lists each model's per-inference energy and error rate; the selection
policies read only these figures, so swapping the pool is a configuration change.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import PoolError

__all__ = ["ModelPool", "ModelSpec", "PoolError", "dump_pool", "load_pool"]


class ModelSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="Name clients and metrics use for this model.")
    triton_name: str | None = Field(default=None, description="Model name in Triton; defaults to `name`.")
    triton_version: str = Field(default="", description="Model version in Triton; empty = latest.")
    energy_mj: float = Field(gt=0, description="Energy per inference, millijoules.")
    error_rate: float = Field(ge=0, le=100, description="Expected error rate, percent.")
    latency_ms: float | None = Field(default=None, gt=0)
    energy_source: str = Field(default="", description="Where energy_mj comes from (measured, paper, estimate).")
    notes: str = ""

    @property
    def backend_name(self) -> str:
        return self.triton_name or self.name


class ModelPool(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "pool"
    hardware: str = Field(default="", description="Where the energy figures were measured.")
    error_metric: Literal["top1", "top5"] = "top5"
    models: tuple[ModelSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_unique(self) -> ModelPool:
        seen: set[str] = set()
        for spec in self.models:
            if spec.name in seen:
                raise ValueError(f"duplicate model name {spec.name!r}")
            seen.add(spec.name)
        return self

    @cached_property
    def by_name(self) -> dict[str, ModelSpec]:
        return {spec.name: spec for spec in self.models}

    @cached_property
    def by_energy(self) -> tuple[ModelSpec, ...]:
        """Models from the least to the most energy per inference; equal energy: most accurate first."""
        return tuple(sorted(self.models, key=lambda spec: (spec.energy_mj, spec.error_rate)))

    def get(self, name: str) -> ModelSpec | None:
        return self.by_name.get(name)


#: A pool file lists a handful of models (about 100 bytes each): a larger file than hundreds would make is a
#: mistake (or an attack), refused unread. YAML parses at about 1 MB in
#: 10 s of pure Python; in a reload thread that still takes the interpreter from the event loop in 5 ms slices,
#: which a busy machine stretches into a second's stall (measured beside stress-ng at a 1 MiB cap).
MAX_POOL_FILE_BYTES = 64 << 10


def _load_mapping(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """The mapping at the top of a YAML file; ``error(message)`` for unreadable, oversized, invalid or
    non-mapping files."""
    try:
        with open(path, "rb") as file:
            text = file.read(MAX_POOL_FILE_BYTES + 1)
        if len(text) > MAX_POOL_FILE_BYTES:
            raise error(f"{what} {path} is over {MAX_POOL_FILE_BYTES} bytes; a pool file lists a few models")
        loaded = yaml.safe_load(text)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise error(f"{what} {path} must hold a mapping")
    return loaded


def load_pool(path: Path) -> ModelPool:
    """Read and validate a pool file, with messages that name the model and field at fault."""
    raw = _load_mapping(path, "pool file", PoolError)
    try:
        return ModelPool.model_validate(raw)
    except ValidationError as exc:
        raise PoolError(f"pool file {path} is invalid:\n{_describe(exc, raw)}") from exc


def _describe(exc: ValidationError, raw: dict) -> str:
    lines = []
    models = raw.get("models")
    if not isinstance(models, list):
        models = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = ".".join(str(part) for part in loc) or "pool"
        if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int) and loc[1] < len(models):
            entry = models[loc[1]]
            name = entry.get("name") if isinstance(entry, dict) else None
            if name:
                where = f"model {name!r} field {'.'.join(str(p) for p in loc[2:]) or '(entry)'}"
        lines.append(f"  - {where}: {error['msg']}")
    return "\n".join(lines)


def dump_pool(pool: ModelPool, path: Path) -> None:
    data = pool.model_dump(mode="json", exclude_defaults=True)
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
