"""The ``state`` section of the configuration: where the selection policy keeps its account and history.

``url`` picks the store by scheme (``registry.STORES``):

- ``file://PATH`` (the default, ``file://var/state/policy-state.json``): a JSON file shared by the workers of
  one host; a relative path resolves against the working directory of the process, so
  ``file://var/state/x.json`` is ``./var/state/x.json`` and ``file:///var/lib/x.json`` is absolute;
- ``redis://HOST:PORT/DB`` or ``rediss://...`` (TLS): Redis, shared by every replica of a deployment;
- ``none``: nothing is kept or shared; each process starts from zero.

``key`` separates deployments that share a store. ``make_store`` opens the configured store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .base import PolicyStore, redacted
from .models import KEY_PATTERN, RETENTION_S
from .registry import DEFAULT_URL, store_kind


class StateSettings(BaseModel):
    """Where a selection policy's account and observed history live, and how often a process syncs with them."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(default=DEFAULT_URL, description="The store: file://PATH (one host's workers; a relative "
                     "path resolves against the working directory), redis://HOST:PORT/DB or rediss:// (every "
                     "replica), or `none` (nothing kept).")
    key: str = Field(default="carbon-gateway", pattern=KEY_PATTERN, description="The deployment's namespace in "
                     "the store: deployments that share a store and a key share one account.")
    flush_interval_s: float = Field(default=1.0, gt=0, description="How often each process sends what it served "
                                    "to the store and reads back the fleet's totals.")
    history_days: float = Field(default=30.0, gt=0, le=RETENTION_S / 86400, description="How much observed "
                                "history a process loads when it starts (the store keeps 35 days).")

    @field_validator("url")
    @classmethod
    def _known_store(cls, url: str) -> str:
        url = url.strip()
        store_kind(url).check_url(url)
        return url

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """The URL in reprs (and so in the settings' repr) without its password."""
        for name, value in super().__repr_args__():
            yield name, (redacted(value) if name == "url" and isinstance(value, str) else value)


def make_store(settings: StateSettings) -> PolicyStore:
    """The configured store, not yet connected (Redis connects on first use)."""
    return store_kind(settings.url).from_url(settings.url)
