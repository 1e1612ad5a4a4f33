"""``state.url: none``: nothing is kept, nothing is shared."""

from __future__ import annotations

from .models import StateDelta, StateSnapshot


class NullStore:
    """Keeps nothing: each exchange answers with the delta's own values, as if this process were the whole
    fleet, and ``load`` finds nothing. A policy behind it knows only what its process saw since it started
    (tests, a laptop, a deployment that accepts forgetting its account on restart)."""

    name = "none"
    url = "none"

    @classmethod
    def check_url(cls, url: str) -> None:
        if url != "none":
            raise ValueError(f"the null store is named `none`, not {url!r}")

    @classmethod
    def from_url(cls, url: str) -> NullStore:
        cls.check_url(url)
        return cls()

    def __repr__(self) -> str:
        return "NullStore()"

    async def exchange(self, delta: StateDelta) -> StateSnapshot:
        return StateSnapshot(period_start=delta.period_start, served=delta.served, error_sum=delta.error_sum,
                             co2_g=delta.co2_g, by_model=dict(delta.by_model), intensity=dict(delta.intensity),
                             requests=dict(delta.requests))

    async def load(self, key: str, period_start: float, since: float) -> StateSnapshot:
        return StateSnapshot(period_start=period_start)

    async def close(self) -> None:
        return None
