"""Swap the model pool while serving: by file change, SIGHUP or the admin API.

A new pool file is read, validated and checked against Triton before anything changes; a bad one
is refused and the running pool keeps serving. A good one replaces pool and policy in one
assignment (``GatewayService.swap``): requests already running finish on the model they chose,
new ones see the new pool. With Triton in explicit model-control mode, models the new pool adds
are loaded (and ready) before the swap, and models it drops are unloaded only after the requests
still running on them have finished, so no request is ever without a ready model.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, ReloadRejected, TritonError
from ..policy import PolicySettings, SelectionPolicy, make_policy
from ..pool import ModelPool, load_pool
from .metadata import shared_signature
from .service import GatewayService, Selector

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadResult:
    pool: str
    models: list[str]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    unloaded: list[str] = field(default_factory=list)


class PoolReloader:
    def __init__(self, service: GatewayService, pool_file: Path, policy: PolicySettings, *, pue: float = 1.0,
                 explicit_model_control: bool = False, ready_timeout_s: float = 300.0,
                 drain_timeout_s: float = 60.0):
        self.service = service
        self.pool_file = Path(pool_file)
        self.policy_settings = policy
        self.pue = pue
        self.explicit = explicit_model_control
        self.ready_timeout_s = ready_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self._lock = asyncio.Lock()

    async def reload(self, trigger: str) -> ReloadResult:
        """Load the pool file and swap it in; raises ``ReloadRejected`` leaving the old pool serving."""
        async with self._lock:
            try:
                result = await self._reload()
            except ReloadRejected as exc:
                self.service.sink.pool_reload(trigger, "rejected")
                logger.warning("pool reload (%s) rejected, the running pool stays: %s", trigger, exc)
                raise
            self.service.sink.pool_reload(trigger, "applied")
            logger.info("pool reload (%s): now %s %s (added %s, removed %s)", trigger, result.pool, result.models,
                        result.added or "none", result.removed or "none")
            return result

    async def _reload(self) -> ReloadResult:
        try:
            # Off the event loop: parsing YAML and building a policy over a large pool are CPU work that
            # would stall every request meanwhile.
            pool, policy = await asyncio.to_thread(self._read)
        except ConfigError as exc:
            raise ReloadRejected(str(exc)) from exc
        old = self.service.pool
        added = [m.backend_name for m in pool.models if m.backend_name not in {o.backend_name for o in old.models}]
        removed = [m.backend_name for m in old.models if m.backend_name not in {n.backend_name for n in pool.models}]
        await self._check_known(pool)
        loaded = await self._load(added) if self.explicit else []
        await self._check_ready(pool)
        try:
            await shared_signature(self.service.backend, pool)
        except (ConfigError, TritonError) as exc:
            raise ReloadRejected(str(exc)) from exc
        policy.inherit(self.service.policy)  # no await from here to the swap: nothing is observed in between
        self.service.swap(Selector(pool, policy))
        unloaded = await self._unload(removed) if self.explicit else []
        return ReloadResult(pool.name, [m.name for m in pool.models], added, removed, loaded, unloaded)

    def _read(self) -> tuple[ModelPool, SelectionPolicy]:
        pool = load_pool(self.pool_file)
        return pool, make_policy(pool, self.policy_settings, pue=self.pue)

    async def _check_known(self, pool: ModelPool) -> None:
        try:
            index = await self.service.backend.repository_index()
        except TritonError as exc:
            raise ReloadRejected(f"cannot check the pool against Triton: {exc}") from exc
        unknown = sorted(m.backend_name for m in pool.models if m.backend_name not in index)
        if unknown:
            raise ReloadRejected(f"pool file {self.pool_file}: Triton's repository has no model(s) "
                                 f"{_some(unknown)}; it has {_some(sorted(index))}")

    async def _load(self, names: list[str]) -> list[str]:
        for name in names:
            try:
                await self.service.backend.load_model(name)
            except TritonError as exc:
                raise ReloadRejected(f"Triton could not load {name}: {exc}") from exc
        return names

    async def _check_ready(self, pool: ModelPool) -> None:
        deadline = asyncio.get_running_loop().time() + (self.ready_timeout_s if self.explicit else 0.0)
        while True:
            ready = await asyncio.gather(*(self.service.backend.model_ready(m.backend_name, m.triton_version)
                                           for m in pool.models))
            missing = [m.name for m, ok in zip(pool.models, ready, strict=True) if not ok]
            if not missing:
                return
            if asyncio.get_running_loop().time() >= deadline:
                raise ReloadRejected(f"model(s) {missing} of the new pool are not ready in Triton")
            await asyncio.sleep(0.2)

    async def _unload(self, names: list[str]) -> list[str]:
        done = []
        for name in names:
            if not await self.service.drain(name, self.drain_timeout_s):
                logger.warning("model %s still has requests after %.0fs; unloading anyway", name, self.drain_timeout_s)
            try:
                await self.service.backend.unload_model(name)
                done.append(name)
            except TritonError as exc:
                logger.warning("could not unload %s: %s", name, exc)
        return done

    async def watch(self, debounce_ms: int = 200) -> None:
        """Reload whenever the pool file changes (editors that replace the file are handled too)."""
        from watchfiles import awatch

        target = self.pool_file.resolve()
        async for _ in awatch(target.parent, debounce=debounce_ms,
                              watch_filter=lambda _change, path: Path(path).resolve() == target):
            try:
                await self.reload("file")
            except ReloadRejected:
                pass  # logged and counted by reload()


def _some(names: list[str], shown: int = 10) -> str:
    """A list of names for one log line: the first ``shown``, and how many more (a pool file may be huge)."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{names[:shown]}{more}"
