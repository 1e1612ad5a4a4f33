"""Durable, fleet-wide state of a selection policy: its account of the current period and the history it observed.

A budget or error-target policy promises a mean over a month. Each worker process and each replica serves a
share of the requests, and any of them may restart; the promise holds only if they all add to one account that
outlives them. So every process exchanges what it served with a store every ``state.flush_interval_s``
(``PolicyStore.exchange``: its ``StateDelta`` in, the fleet's ``StateSnapshot`` out) and reads the account and
history back when it starts (``load``).

- ``models``: the data contract (``StateDelta``, ``StateSnapshot``), 15-minute history buckets, 35 days' retention;
- ``base``: the ``PolicyStore`` protocol;
- ``file``: a JSON file under ``flock``, for the workers of one host (the default);
- ``redis``: Redis, one MULTI/EXEC per exchange, for every replica of a deployment;
- ``null``: nothing kept (``state.url: none``);
- ``memory``: the file store's document in memory, for a replay that simulates a fleet;
- ``registry`` (URL scheme -> store class) and ``settings`` (the ``state`` section, ``make_store``).

Every failure of a store is a ``gateway.errors.StateStoreError``.

Imports: pydantic, redis, ``gateway.errors``; never the policies (which know nothing of where their state is
kept), serving, HTTP, gRPC or metrics.
"""

from .models import BUCKET_S, RETENTION_S, StateDelta, StateSnapshot, bucket_of, period_id

#: The rest, imported on first use: a policy needs the data contract only, and a gateway that keeps its state
#: in a file never loads the Redis client.
_LAZY = {"PolicyStore": "base", "StateStoreError": "base", "redacted": "base", "FileStore": "file",
         "NullStore": "null", "MemoryStore": "memory", "RedisStore": "redis", "DEFAULT_URL": "registry",
         "STORES": "registry",
         "scheme_of": "registry", "StateSettings": "settings", "make_store": "settings"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BUCKET_S",
    "DEFAULT_URL",
    "RETENTION_S",
    "STORES",
    "FileStore",
    "MemoryStore",
    "NullStore",
    "PolicyStore",
    "RedisStore",
    "StateDelta",
    "StateSettings",
    "StateSnapshot",
    "StateStoreError",
    "bucket_of",
    "make_store",
    "period_id",
    "redacted",
    "scheme_of",
]
