"""Choosing an extension by name from its registry (policies, carbon providers, energy meters)."""

from __future__ import annotations

from collections.abc import Iterable


def one_of(name: str, choices: Iterable[str], what: str, error: type[Exception] = ValueError) -> str:
    """``name`` if it is among ``choices``; else ``error`` naming them (pydantic reports a ValueError per setting)."""
    known = list(choices)
    if name not in known:
        raise error(f"unknown {what} {name!r}; choose one of {', '.join(known)}")
    return name
