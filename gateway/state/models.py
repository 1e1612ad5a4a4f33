"""The data contract between a selection policy and its store: what one process sends, what the fleet answers.

A process keeps what it served since its last exchange in a ``StateDelta`` and hands it to the store every
``state.flush_interval_s``; the ``StateSnapshot`` it gets back is the whole fleet's account of the period and
the fleet's values of the history buckets it named. Counts are increments, so any number of processes may
send them in any order; a bucket's intensity is a value to set, since every replica sees the same grid.

A delta counts once. A reply can be lost after the store applied the delta (a timeout), and a hung store can
hold several copies of one delta in its sockets and apply them all when it wakes; so each process names itself
(``writer``) and numbers its deltas (``sequence``), sends the next only once the last is acknowledged, and a
store applies a writer's delta only if its number is above the last one it applied from that writer.

History is kept in buckets of ``BUCKET_S`` seconds aligned to the epoch (``bucket_of``), and for
``RETENTION_S`` (35 days: a month of history and a margin); an account is kept for as long after its period
ends. Everything is epoch seconds, UTC.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["BUCKET_S", "KEY_PATTERN", "RETENTION_S", "WRITER_PATTERN", "StateDelta", "StateSnapshot", "bucket_of",
           "period_id"]

BUCKET_S = 900  # history buckets are 15 minutes, aligned to the epoch
#: How long history buckets, and accounts after their period ends, are kept.
RETENTION_S = 35 * 86400
#: A deployment's namespace in the store: plain characters, so that it reads the same as a file key and in
#: a Redis key (``carbon-gateway:account:...``).
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
#: A process's name in a store (``PolicySync`` uses a random UUID's hex).
WRITER_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


def bucket_of(epoch: float) -> int:
    """The start of the history bucket that holds ``epoch``."""
    return int(epoch // BUCKET_S) * BUCKET_S


def period_id(period_start: float) -> str:
    """How an account's period is named in a store: whole seconds as an integer (``1719792000``)."""
    return str(int(period_start)) if float(period_start).is_integer() else repr(float(period_start))


def _aligned(buckets: dict[int, float]) -> dict[int, float]:
    stray = [b for b in buckets if b % BUCKET_S]
    if stray:
        raise ValueError(f"history buckets start at multiples of {BUCKET_S} s; {stray[0]} does not")
    return buckets


def _counts(values: dict[str, float] | dict[int, float]) -> None:
    negative = [k for k, v in values.items() if v < 0]
    if negative:
        raise ValueError(f"counts cannot be negative ({negative[0]})")


class StateDelta(BaseModel):
    """What one process observed and served since its last exchange with the store."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    key: str = Field(pattern=KEY_PATTERN)  # the deployment's namespace, e.g. "carbon-gateway" (settings: state.key)
    period_start: float      # epoch s of the policy's accounting period (e.g. a UTC month) these counts belong to
    period_end: float
    served: float = Field(default=0.0, ge=0)     # requests served (increments)
    error_sum: float = Field(default=0.0, ge=0)  # sum of error rates (%) of the models that served them (increment)
    co2_g: float = Field(default=0.0, ge=0)      # grams of CO2 (increment)
    by_model: dict[str, float] = {}   # requests per model (increments)
    intensity: dict[int, float] = {}  # bucket start (epoch s, multiple of BUCKET_S) -> mean intensity observed in
    # it (a value to SET, not add: every replica sees the same grid)
    requests: dict[int, float] = {}   # bucket start -> requests served in it (increments)
    writer: str | None = Field(default=None, pattern=WRITER_PATTERN)  # the sending process; None: no dedup
    sequence: int = Field(default=0, ge=0)  # the writer's deltas, numbered in order from 1: each applies once

    @field_validator("intensity", "requests")
    @classmethod
    def _buckets(cls, buckets: dict[int, float]) -> dict[int, float]:
        _counts(buckets)
        return _aligned(buckets)

    @field_validator("by_model")
    @classmethod
    def _models(cls, by_model: dict[str, float]) -> dict[str, float]:
        _counts(by_model)
        if "" in by_model:
            raise ValueError("a model needs a name")
        return by_model

    @model_validator(mode="after")
    def _period(self) -> StateDelta:
        if not math.isfinite(self.period_start) or not self.period_end > self.period_start:
            raise ValueError(f"period_end ({self.period_end}) must come after period_start ({self.period_start})")
        return self


class StateSnapshot(BaseModel):
    """The fleet's view: the account of one period and the history buckets asked for."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    period_start: float
    served: float = 0.0
    error_sum: float = 0.0
    co2_g: float = 0.0
    by_model: dict[str, float] = {}
    intensity: dict[int, float] = {}
    requests: dict[int, float] = {}

    @field_validator("intensity", "requests")
    @classmethod
    def _buckets(cls, buckets: dict[int, float]) -> dict[int, float]:
        return _aligned(buckets)
