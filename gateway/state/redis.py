"""``state.url: redis://HOST:PORT/DB`` (or ``rediss://`` for TLS): the fleet's state in Redis, shared by every
worker of every replica.

Keys, for ``state.key`` K:

- ``K:account:P``: a hash per accounting period (``P`` its start, ``models.period_id``): ``served``,
  ``error_sum``, ``co2_g``, ``model:NAME`` per model (all added with HINCRBYFLOAT), and ``period_start`` and
  ``period_end``; it expires ``RETENTION_S`` after its period ends;
- ``K:intensity``: a hash of bucket start -> mean intensity (HSET: every replica sees the same grid);
- ``K:requests``: a hash of bucket start -> requests served (HINCRBYFLOAT).

An exchange is one MULTI/EXEC transaction, so the fleet's totals it returns include its own delta and no half
of anyone else's. Buckets older than ``RETENTION_S`` are deleted about once an hour by each process (the two
history hashes themselves expire when nothing writes for that long).

A store that is down must not hold up requests: connects and replies time out after ``timeout_s`` (1 s), and
so does every call as a whole; nothing is retried behind the caller's back, since a transaction sent again
after its reply was lost would count its delta twice. A failed exchange raises ``StateStoreError`` and the
caller keeps its delta for the next one. The same holds for any reply lost after Redis applied the
transaction: the caller's retry counts that delta twice, a window of one round trip.

A single Redis (or a primary with replicas) is assumed: the keys of one exchange are not in one Redis Cluster
hash slot.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .base import StateStoreError, redacted
from .models import BUCKET_S, RETENTION_S, StateDelta, StateSnapshot, period_id

logger = logging.getLogger(__name__)

SCHEMES = ("redis", "rediss")
#: How often each process deletes expired buckets from the history hashes.
PRUNE_INTERVAL_S = 3600.0
_TOTALS = ("served", "error_sum", "co2_g")
_MODEL = "model:"


def check_redis_url(url: str) -> None:
    """Refuse what cannot name a Redis database: another scheme, no host, a database that is not a number."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"a Redis store's URL starts with redis:// or rediss://, not {redacted(url)!r}")
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError as exc:
        raise ValueError(f"{redacted(url)!r}: {exc}") from None
    if not parts.hostname:
        raise ValueError(f"{redacted(url)!r} names no host: redis://HOST:6379/0")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError(f"{redacted(url)!r}: the database is a number (redis://HOST:6379/0), not {database!r}")


def _number(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise StateStoreError(f"redis store: {what} holds {value!r}, not a number") from None
    if not math.isfinite(number):
        raise StateStoreError(f"redis store: {what} holds {value!r}, not a finite number")
    return number


class RedisStore:
    """The fleet's state in one Redis database (see the module's docstring)."""

    name = "redis"

    def __init__(self, url: str, *, timeout_s: float = 1.0, clock: Callable[[], float] = time.time,
                 prune_interval_s: float = PRUNE_INTERVAL_S):
        check_redis_url(url)
        self.url = redacted(url)
        self.timeout_s = timeout_s
        self.prune_interval_s = prune_interval_s
        self._clock = clock
        self._pruned_at = -math.inf
        self._client = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0),
            decode_responses=True, client_name="carbon-gateway")

    @classmethod
    def check_url(cls, url: str) -> None:
        check_redis_url(url)

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        return cls(url)

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r})"

    async def exchange(self, delta: StateDelta) -> StateSnapshot:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._exchange(delta)
        except (RedisError, OSError) as exc:  # TimeoutError included
            raise self._error("exchange", exc) from exc

    async def load(self, key: str, period_start: float, since: float) -> StateSnapshot:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._load(key, period_start, since)
        except (RedisError, OSError) as exc:
            raise self._error("load", exc) from exc

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except (RedisError, OSError) as exc:
            logger.debug("closing %s: %s", self.url, exc)

    def _error(self, doing: str, exc: BaseException) -> StateStoreError:
        problem = f"no answer within {self.timeout_s:g} s" if isinstance(exc, TimeoutError) else (
            f"{type(exc).__name__}: {exc}")
        return StateStoreError(f"redis store {self.url}: cannot {doing}: {problem}")

    async def _exchange(self, delta: StateDelta) -> StateSnapshot:
        account, intensity, requests = _keys(delta.key, delta.period_start)
        now = self._clock()
        prune = now - self._pruned_at >= self.prune_interval_s
        stale = [await self._stale(history, now) for history in (intensity, requests)] if prune else [[], []]
        buckets = [str(b) for b in sorted({*delta.intensity, *delta.requests})]
        async with self._client.pipeline(transaction=True) as pipe:
            for field in _TOTALS:
                if amount := getattr(delta, field):
                    pipe.hincrbyfloat(account, field, amount)
            for model, amount in delta.by_model.items():
                if amount:
                    pipe.hincrbyfloat(account, _MODEL + model, amount)
            pipe.hset(account, mapping={"period_start": repr(delta.period_start),
                                        "period_end": repr(delta.period_end)})
            pipe.expireat(account, math.ceil(delta.period_end + RETENTION_S))
            if delta.intensity:
                pipe.hset(intensity, mapping={str(b): repr(v) for b, v in delta.intensity.items()})
            for bucket, count in delta.requests.items():
                if count:
                    pipe.hincrbyfloat(requests, str(bucket), count)
            for history, fields in zip((intensity, requests), stale, strict=True):
                if fields:
                    pipe.hdel(history, *fields)
                pipe.expire(history, RETENTION_S)
            pipe.hgetall(account)
            if buckets:
                pipe.hmget(intensity, buckets)
                pipe.hmget(requests, buckets)
            replies = await pipe.execute()
        if prune:
            self._pruned_at = now
        if not buckets:
            return _snapshot(delta.period_start, replies[-1], {}, {})
        return _snapshot(delta.period_start, replies[-3], _values(buckets, replies[-2], intensity),
                         _values(buckets, replies[-1], requests))

    async def _load(self, key: str, period_start: float, since: float) -> StateSnapshot:
        account, intensity, requests = _keys(key, period_start)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hgetall(account)
            pipe.hgetall(intensity)
            pipe.hgetall(requests)
            totals, intensities, counts = await pipe.execute()
        return _snapshot(period_start, totals, _since(intensities, since, intensity), _since(counts, since, requests))

    async def _stale(self, history: str, now: float) -> list[str]:
        """The fields of a history hash older than the retention (or not bucket starts at all)."""
        horizon = now - RETENTION_S
        names = [name if isinstance(name, str) else name.decode() for name in await self._client.hkeys(history)]
        fields = [(field, _bucket(field)) for field in names]
        return [field for field, bucket in fields if bucket is None or bucket < horizon]


def _keys(key: str, period_start: float) -> tuple[str, str, str]:
    return f"{key}:account:{period_id(period_start)}", f"{key}:intensity", f"{key}:requests"


def _bucket(field: str) -> int | None:
    """The bucket a history field names, or None for anything else."""
    if not field.lstrip("-").isdigit() or int(field) % BUCKET_S:
        return None
    return int(field)


def _snapshot(period_start: float, fields: Mapping[str, str], intensity: dict[int, float],
              requests: dict[int, float]) -> StateSnapshot:
    served, error_sum, co2_g = (_number(fields.get(field, 0.0), field) for field in _TOTALS)
    by_model = {name[len(_MODEL):]: _number(value, name) for name, value in fields.items() if name.startswith(_MODEL)}
    return StateSnapshot(period_start=period_start, served=served, error_sum=error_sum, co2_g=co2_g,
                         by_model=by_model, intensity=intensity, requests=requests)


def _values(buckets: list[str], values: Iterable[str | None], where: str) -> dict[int, float]:
    return {int(b): _number(v, f"{where}[{b}]") for b, v in zip(buckets, values, strict=True) if v is not None}


def _since(history: Mapping[str, str], since: float, where: str) -> dict[int, float]:
    found = {}
    for field, value in history.items():
        bucket = _bucket(field)
        if bucket is not None and bucket >= since:
            found[bucket] = _number(value, f"{where}[{field}]")
    return found
