"""The policy's account and history, kept in the fleet's store: one promise for every worker and replica.

A policy that meets a target over a month (``error-target``) must count every request the deployment serves,
across restarts, deploys, workers and replicas. ``PolicySync`` keeps it so:

- at start (``start``), before the first plan, it loads the current period's account and ``history_days`` of
  observed history from the store (``gateway.state``); if the store holds less than half of that, it fills
  the history from the carbon provider's own past (``CarbonSource.past``: the UK API's ``/intensity/{from}/{to}``,
  Electricity Maps' past range, the trace) and writes it back, so the next process finds it in the store;
- every ``flush_interval_s`` (``run_forever``) it hands the store what this process served and observed
  since the last exchange and takes the fleet's totals back. That is off the request path: a request only
  adds to the policy's account in memory;
- when the store is down, the gateway serves on: the policy plans with its own account; the delta that got
  no answer is sent again, unchanged, until the store takes it (its ``writer`` and ``sequence`` make it count
  once, even if the store had applied it: ``gateway.state.models``), and what is served meanwhile goes with
  the next one, so the store reconciles when it returns. One log line says so when it goes and when it comes
  back, and ``carbon_gateway_policy_state_store_up`` is 0 meanwhile (the ``PolicyStateStoreDown`` alert).
  A SIGKILL loses what was served since the last exchange; a store that loses its data (Redis without
  persistence, restarted) loses the fleet's account with it, and the gateways carry on from the store's.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from ..carbon import CarbonMonitor
from ..errors import CarbonSourceError, StateStoreError
from ..metrics.sink import MetricsSink
from ..state.base import PolicyStore
from ..state.models import StateDelta, StateSnapshot
from ..state.settings import StateSettings

logger = logging.getLogger(__name__)


@runtime_checkable
class StatefulPolicy(Protocol):
    """A policy whose account and history a store can keep (``ErrorTargetPolicy``)."""

    target_error: float

    @property
    def period_start(self) -> float: ...

    @property
    def period_end(self) -> float: ...

    @property
    def history_hours(self) -> float: ...

    @property
    def served(self) -> float: ...

    @property
    def mean_error(self) -> float | None: ...

    def advance(self, now: float) -> None: ...

    def take_delta(self, key: str) -> StateDelta: ...

    def apply(self, snapshot: StateSnapshot) -> None: ...

    def restore(self, snapshot: StateSnapshot) -> None: ...

    def learn(self, start: float, seconds: float, intensity: float) -> None: ...


class PolicySync:
    """Exchanges the service's policy's account and history with ``store`` (see the module's docstring).

    ``policy``: a callable giving the current policy, which a pool reload replaces (it inherits the account).
    """

    def __init__(self, policy: Callable[[], object], store: PolicyStore, settings: StateSettings,
                 carbon: CarbonMonitor, sink: MetricsSink, clock: Callable[[], float] = time.time):
        self._policy = policy
        self.store = store
        self.settings = settings
        self.carbon = carbon
        self.sink = sink
        self._clock = clock
        self.up: bool | None = None  # None: not tried yet
        self.last_exchange: float | None = None
        self.last_error: str | None = None
        self.learned_hours = 0.0  # history filled in from the provider's past at start
        self.writer = uuid.uuid4().hex  # this process, to the store
        self._sequence = 0
        self._unanswered: StateDelta | None = None  # sent, no answer yet: sent again as it is

    @property
    def policy(self) -> StatefulPolicy | None:
        policy = self._policy()
        return policy if isinstance(policy, StatefulPolicy) else None

    async def start(self) -> None:
        """Load the fleet's account and history (or the provider's past), before the first plan."""
        policy = self.policy
        if policy is None:
            return
        now = self._clock()
        policy.advance(now)
        want_s = self.settings.history_days * 86400.0
        try:
            snapshot = await self.store.load(self.settings.key, policy.period_start, now - want_s)
        except StateStoreError as exc:
            self._down(exc)
        else:
            self._up()
            policy.restore(snapshot)
        if policy.history_hours * 3600.0 < want_s / 2:
            await self._learn_past(policy, now - want_s, now)
        self._report(policy, self.up is not False)
        logger.info("policy starts with %.0f h of history and %.0f requests served this period (state: %s)",
                    policy.history_hours, policy.served, self.store.url)

    async def _learn_past(self, policy: StatefulPolicy, start: float, end: float) -> None:
        source = self.carbon.source
        try:
            readings = await source.past(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
        except CarbonSourceError as exc:
            logger.warning("no past intensities from %s to start the policy's history: %s", source.name, exc)
            return
        times = [reading.timestamp.timestamp() for reading in readings]
        if not times:
            return
        steps = [later - earlier for earlier, later in itertools.pairwise(times) if later > earlier]
        step = sorted(steps)[len(steps) // 2] if steps else 1800.0
        before = policy.history_hours
        for moment, reading, following in zip(times, readings, [*times[1:], math.inf], strict=True):
            policy.learn(moment, min(step, following - moment, end - moment), reading.intensity)
        self.learned_hours = policy.history_hours - before
        logger.info("learned %.0f h of history from %s's past", self.learned_hours, source.name)

    async def exchange(self) -> bool:
        """One exchange with the store; whether it succeeded."""
        policy = self.policy
        if policy is None:
            return True
        delta = self._unanswered
        if delta is None:
            self._sequence += 1
            delta = policy.take_delta(self.settings.key).model_copy(
                update={"writer": self.writer, "sequence": self._sequence})
            self._unanswered = delta
        try:
            snapshot = await self.store.exchange(delta)
        except StateStoreError as exc:
            self._down(exc)
            ok = False
        else:
            self._unanswered = None
            policy.apply(snapshot)
            self.last_exchange = self._clock()
            self._up()
            ok = True
        self._report(policy, ok)
        return ok

    def _report(self, policy: StatefulPolicy, up: bool) -> None:
        self.sink.policy_state(up, policy.history_hours, policy.served, policy.mean_error, policy.target_error)

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_interval_s)
            await self.exchange()

    async def close(self) -> None:
        """A last exchange (what was served since the last one), then the store's connection."""
        try:
            await self.exchange()
        finally:
            await self.store.close()

    def _down(self, exc: StateStoreError) -> None:
        self.last_error = str(exc)
        if self.up is not False:
            logger.warning("policy state store is down, serving on this process's own account: %s", exc)
        self.up = False

    def _up(self) -> None:
        if self.up is False:
            logger.warning("policy state store is back: the account and history are the fleet's again")
        self.up, self.last_error = True, None

    def status(self) -> str:
        return "unknown" if self.up is None else "up" if self.up else "down"
