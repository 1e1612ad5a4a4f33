"""What a store of the policy's fleet-wide state is: ``PolicyStore``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import StateStoreError
from .models import StateDelta, StateSnapshot

__all__ = ["PolicyStore", "StateStoreError", "redacted"]


@runtime_checkable
class PolicyStore(Protocol):
    """Durable storage of a selection policy's account and observed history, shared by every process of a
    deployment. Implementations never block the event loop, and every failure is a ``StateStoreError``.

    ``name`` says which kind of store it is and ``url`` where it is, without credentials: both are for logs.
    Stores drop history buckets older than ``models.RETENTION_S`` and accounts whose period ended longer ago
    than that, when it costs them little (on an exchange, say): what they return may hold older values
    until then, and callers ignore what they did not ask for.
    """

    name: str
    url: str

    async def exchange(self, delta: StateDelta) -> StateSnapshot:
        """Atomically add the delta's increments to the account of ``delta.period_start`` (creating it) and to
        its buckets' request counts, set its buckets' intensities; return the fleet's totals of that account
        and the fleet's values of exactly the buckets the delta names."""
        ...

    async def load(self, key: str, period_start: float, since: float) -> StateSnapshot:
        """The account of ``period_start`` (zeros if there is none) and every bucket that starts at or after
        ``since``."""
        ...

    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


def redacted(url: str) -> str:
    """``url`` without its password, for logs and messages: ``redis://:***@host:6379/0``."""
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if ":" in userinfo:
        parts = parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hostport}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(name == "password" for name, _ in query):
        hidden = [(name, "***" if name == "password" else value) for name, value in query]
        parts = parts._replace(query=urlencode(hidden, safe="*"))
    return urlunsplit(parts)
