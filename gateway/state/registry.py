"""The stores ``state.url`` can name, by scheme: one line each, scheme -> the store's class.

Each class checks a URL of its scheme (``check_url``, a ``ValueError`` saying what is wrong) and opens one
(``from_url``); the literal URL ``none`` is the scheme ``none``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Protocol, cast

from .base import PolicyStore


class StoreKind(Protocol):
    """What the registry holds: a store class, by its URL."""

    def check_url(self, url: str) -> None: ...

    def from_url(self, url: str) -> PolicyStore: ...


#: Scheme -> ``module:class``, imported when a URL of that scheme is used (the Redis client is not imported
#: by a gateway that keeps its state in a file).
STORES: Mapping[str, str] = {
    "file": "gateway.state.file:FileStore",
    "redis": "gateway.state.redis:RedisStore",
    "rediss": "gateway.state.redis:RedisStore",
    "none": "gateway.state.null:NullStore",
}
DEFAULT_URL = "file://var/state/policy-state.json"


def scheme_of(url: str) -> str:
    """``url``'s scheme (``none`` for the literal ``none``); a ``ValueError`` naming the choices for any other."""
    scheme = "none" if url == "none" else url.partition("://")[0] if "://" in url else ""
    if scheme not in STORES or (scheme == "none" and url != "none"):
        choices = ", ".join(f"{s}://" for s in STORES if s != "none")
        raise ValueError(f"unknown state store {url!r}: use a URL starting with one of {choices}, or `none` "
                         f"(default {DEFAULT_URL})")
    return scheme


def store_kind(url: str) -> StoreKind:
    """The store class for ``url``'s scheme; a ``ValueError`` naming the choices for an unknown one."""
    module, _, name = STORES[scheme_of(url)].partition(":")
    return cast(StoreKind, getattr(importlib.import_module(module), name))
