"""The stores ``state.url`` can name, by scheme: one line each, scheme -> the store's class.

Each class checks a URL of its scheme (``check_url``, a ``ValueError`` saying what is wrong) and opens one
(``from_url``); the literal URL ``none`` is the scheme ``none``.
"""

from __future__ import annotations

from typing import Protocol

from .base import PolicyStore
from .file import FileStore
from .null import NullStore
from .redis import RedisStore


class StoreKind(Protocol):
    """What the registry holds: a store class, by its URL."""

    def check_url(self, url: str) -> None: ...

    def from_url(self, url: str) -> PolicyStore: ...


STORES: dict[str, StoreKind] = {
    "file": FileStore,
    "redis": RedisStore,
    "rediss": RedisStore,
    "none": NullStore,
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
