"""Keeps a policy's plan current: every interval, ``replan`` it from the forecast and the request rate.

Only policies that say ``needs_planning`` (``error-target``, ``online-budget``) are driven; the rate is what the
service served since the last plan.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .service import GatewayService

logger = logging.getLogger(__name__)


class Planner:
    def __init__(self, service: GatewayService) -> None:
        self.service = service
        self._served_at_last_plan = service.served

    def plan(self, elapsed_s: float, now: float | None = None) -> float | None:
        """Re-plan the service's policy for the rest of its period; the parameter it set, or None."""
        service = self.service
        now = time.time() if now is None else now
        rate = (service.served - self._served_at_last_plan) / max(elapsed_s, 1e-9)
        self._served_at_last_plan = service.served
        forecast = [(point.timestamp.timestamp(), point.intensity) for point in service.carbon.forecast]
        return service.policy.replan(now, service.carbon.state.intensity, forecast, rate)

    async def run_forever(self, interval_s: float) -> None:
        """Re-plan every ``interval_s``; the first plan is the caller's, made before the first request."""
        while True:
            await asyncio.sleep(interval_s)
            price = self.plan(interval_s)
            if price is not None:
                logger.debug("policy %s re-planned: %.4g", self.service.policy.name, price)
