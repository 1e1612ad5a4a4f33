"""``state.url: redis://HOST:PORT/DB`` (or ``rediss://`` for TLS): the fleet's state in Redis, shared by every
worker of every replica.

Keys, for ``state.key`` K:

- ``K:account:P``: a hash per accounting period (``P`` its start, ``models.period_id``): ``served``,
  ``error_sum``, ``co2_g``, ``model:NAME`` per model (all added with HINCRBYFLOAT), and ``period_start`` and
  ``period_end``; it expires ``RETENTION_S`` after its period ends;
- ``K:intensity``: a hash of bucket start -> mean intensity (HSET: every replica sees the same grid);
- ``K:requests``: a hash of bucket start -> requests served (HINCRBYFLOAT);
- ``K:writers``: a hash of writer -> ``SEQUENCE:EPOCH``, the last delta applied from each process and when.

An exchange is one MULTI/EXEC transaction, so the fleet's totals it returns include its own delta and no half
of anyone else's. The delta itself is applied by a Lua script (``APPLY``) that first checks the writer's last
sequence number, so a delta sent twice counts once (``models``). Buckets older than ``RETENTION_S``, and
writers silent for as long, are deleted about once an hour by each process (the history hashes themselves
expire when nothing writes for that long).

A store that is down must not hold up requests: connects and replies time out after ``timeout_s`` (1 s), and
so does every call as a whole; nothing is retried here. A failed exchange raises ``StateStoreError`` and the
caller sends the same delta again later: if Redis applied it after all (a lost reply, or a frozen server that
wakes with copies in its sockets), the copies are dropped.

A single Redis (or a primary with replicas) is assumed: the keys of one exchange are not in one Redis Cluster
hash slot.
"""

from __future__ import annotations

import asyncio
import json
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

#: Apply one delta unless its writer's last applied delta has its sequence number or a later one.
#: KEYS: account, intensity, requests, writers. ARGV: writer ('' for none), sequence, now, the account's
#: expiry (epoch s), the retention (s), and the delta as JSON whose numbers are strings (``repr``), so that
#: they reach HINCRBYFLOAT unrounded. Returns 1 if applied, 0 if it was a copy.
APPLY = """
if ARGV[1] ~= '' then
  local last = redis.call('HGET', KEYS[4], ARGV[1])
  if last and tonumber(string.match(last, '^(%d+)')) >= tonumber(ARGV[2]) then return 0 end
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
  redis.call('EXPIRE', KEYS[4], ARGV[5])
end
local delta = cjson.decode(ARGV[6])
for field, amount in pairs(delta.account) do redis.call('HINCRBYFLOAT', KEYS[1], field, amount) end
redis.call('HSET', KEYS[1], 'period_start', delta.period_start, 'period_end', delta.period_end)
redis.call('EXPIREAT', KEYS[1], ARGV[4])
for bucket, value in pairs(delta.intensity) do redis.call('HSET', KEYS[2], bucket, value) end
for bucket, amount in pairs(delta.requests) do redis.call('HINCRBYFLOAT', KEYS[3], bucket, amount) end
return 1
"""


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
        account, intensity, requests, writers = _keys(delta.key, delta.period_start)
        now = self._clock()
        prune = now - self._pruned_at >= self.prune_interval_s
        stale = [await self._stale(history, now) for history in (intensity, requests)] if prune else [[], []]
        silent = await self._silent(writers, now) if prune else []
        buckets = [str(b) for b in sorted({*delta.intensity, *delta.requests})]
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.eval(APPLY, 4, account, intensity, requests, writers, delta.writer or "", str(delta.sequence),
                      repr(now), str(math.ceil(delta.period_end + RETENTION_S)), str(RETENTION_S), _payload(delta))
            for history, fields in zip((intensity, requests, writers), [*stale, silent], strict=True):
                if fields:
                    pipe.hdel(history, *fields)
            for history in (intensity, requests):
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
        account, intensity, requests, _ = _keys(key, period_start)
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

    async def _silent(self, writers: str, now: float) -> list[str]:
        """The writers that sent nothing for the retention (or whose entry is not ``SEQUENCE:EPOCH``)."""
        horizon = now - RETENTION_S
        silent: list[str] = []
        for writer, last in (await self._client.hgetall(writers)).items():
            _, _, at = str(last).partition(":")
            try:
                if float(at) >= horizon:
                    continue
            except ValueError:
                pass
            silent.append(str(writer))
        return silent


def _keys(key: str, period_start: float) -> tuple[str, str, str, str]:
    return f"{key}:account:{period_id(period_start)}", f"{key}:intensity", f"{key}:requests", f"{key}:writers"


def _payload(delta: StateDelta) -> str:
    """The delta for ``APPLY``: every number a string, so that Lua's doubles never round it."""
    amounts = {field: getattr(delta, field) for field in _TOTALS}
    amounts.update({_MODEL + model: count for model, count in delta.by_model.items()})
    return json.dumps({
        "account": {field: repr(amount) for field, amount in amounts.items() if amount},
        "period_start": repr(delta.period_start), "period_end": repr(delta.period_end),
        "intensity": {str(b): repr(v) for b, v in delta.intensity.items()},
        "requests": {str(b): repr(count) for b, count in delta.requests.items() if count},
    })


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
