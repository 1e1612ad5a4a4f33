"""The gateway's core: choose a model for the carbon intensity now, run it on Triton, account for it.

Framework-free: the HTTP layer (``gateway.api``) and tests drive it directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np

from .carbon import CarbonMonitor, CarbonState
from . import metrics
from .energy import EnergyReading, SpanRecorder, co2_grams, estimate
from .imaging import image_to_tensor
from .pool import ModelPool, ModelSpec
from .selection import Constraints, NoEligibleModel, OnlineBudgetPolicy, SelectionPolicy
from .triton import ModelNotReady, TritonClient

logger = logging.getLogger(__name__)


class UnknownModel(LookupError):
    """A client named a model that is not in the pool."""

    status = 404


class Unsatisfiable(LookupError):
    """No model of the pool meets the request's constraints."""

    status = 422


@dataclass(frozen=True)
class Selector:
    """A pool and the policy built for it: replaced as one, so a request never mixes two pools."""

    pool: ModelPool
    policy: SelectionPolicy


@dataclass(frozen=True)
class Decision:
    model: ModelSpec
    carbon: CarbonState
    pinned: bool  # the client named the model; the policy did not choose
    fallback_from: str | None = None  # the policy's choice, when it was not ready and this model stood in


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    outputs: np.ndarray
    energy: EnergyReading
    co2_g: float | None  # None when the intensity is not in gCO2/kWh (WattTime's percentile)
    compute_seconds: float


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    score: float


class GatewayService:
    def __init__(self, *, pool: ModelPool, policy: SelectionPolicy, carbon: CarbonMonitor,
                 triton: TritonClient, labels: tuple[str, ...], recorder: SpanRecorder | None = None,
                 pue: float = 1.0, max_image_pixels: int = 40_000_000, receipt_timeout_s: float = 2.0):
        self.selector = Selector(pool, policy)
        self.carbon = carbon
        self.triton = triton
        self.recorder = recorder  # None: no meter, requests are charged the pool's estimate
        self.labels = labels
        self.pue = pue
        self.max_image_pixels = max_image_pixels
        self.receipt_timeout_s = receipt_timeout_s
        self.in_flight: dict[str, int] = {}
        self._served_since_plan = 0

    @property
    def pool(self) -> ModelPool:
        return self.selector.pool

    @property
    def policy(self) -> SelectionPolicy:
        return self.selector.policy

    def swap(self, selector: Selector) -> Selector:
        """Serve new requests from ``selector``; in-flight ones finish on the model they chose."""
        previous, self.selector = self.selector, selector
        return previous

    @property
    def meter_name(self) -> str:
        return self.recorder.name if self.recorder is not None else "pool-estimate"

    @property
    def meter_up(self) -> bool:
        return self.recorder.healthy if self.recorder is not None else True

    def publish_state(self) -> None:
        """Set the gauges that describe the decision the gateway would make now."""
        state = self.carbon.state
        metrics.CARBON_INTENSITY.set(state.intensity)
        metrics.CARBON_WINDOW_LOW.set(state.window.low)
        metrics.CARBON_WINDOW_HIGH.set(state.window.high)
        metrics.CARBON_AGE.set(state.age_seconds())
        metrics.CARBON_SOURCE_UP.labels(self.carbon.source.name).set(1 if state.source_up else 0)
        for status in ("live", "stale", "forecast", "default"):
            metrics.CARBON_STATUS.labels(status).set(1 if state.status == status else 0)
        chosen = self.policy.preview(state.intensity, state.window)  # a scrape must not move the hysteresis
        for spec in self.pool.models:
            metrics.SELECTED_MODEL.labels(spec.name).set(1 if spec.name == chosen.name else 0)
            metrics.PROFILED_ENERGY.labels(spec.name).set(spec.energy_mj / 1000.0)
        metrics.EXPECTED_ERROR.set(chosen.error_rate / 100.0)
        measured = "true" if self.recorder is not None else "false"
        metrics.METER_INFO.labels(self.meter_name, measured).set(1)
        if self.recorder is None:  # a meter's own sampler reports whether it answers
            metrics.METER_UP.labels(self.meter_name).set(1)

    def decide(self, model_name: str | None = None, constraints: Constraints | None = None,
               selector: Selector | None = None) -> Decision:
        """Pick the model for a request now; a named model is honoured if it is in the pool."""
        selector = selector or self.selector
        state = self.carbon.state
        if model_name is not None:
            spec = selector.pool.get(model_name)
            if spec is None:
                raise UnknownModel(f"model {model_name!r} is not in the pool; known: {sorted(selector.pool.by_name)}")
            return Decision(spec, state, pinned=True)
        if isinstance(selector.policy, OnlineBudgetPolicy):
            selector.policy.advance(time.time())
        try:
            return Decision(selector.policy.select(state.intensity, state.window, constraints), state, pinned=False)
        except NoEligibleModel as exc:
            raise Unsatisfiable(f"{exc}; the pool offers accuracies "
                                f"{sorted(round(100 - m.error_rate, 3) for m in selector.pool.models)} %") from exc

    def _stand_in(self, selector: Selector, failed: set[str], chosen: ModelSpec,
                  constraints: Constraints | None) -> ModelSpec | None:
        """The pool model nearest in energy to ``chosen`` that has not failed (ties: the more accurate)."""
        options = [m for m in selector.pool.models if m.name not in failed
                   and (constraints is None or constraints.allows(m))]
        if not options:
            return None
        return min(options, key=lambda m: (abs(m.energy_mj - chosen.energy_mj), m.error_rate))

    async def run(self, batch: np.ndarray, model_name: str | None = None,
                  constraints: Constraints | None = None, receipt: bool = False) -> Outcome:
        """Infer a batch (N, ...) on the chosen model and account its energy and CO2.

        If the policy's model is not ready in Triton, the nearest ready model in energy serves the
        request instead and the outcome says so (``decision.fallback_from``); a pinned model does not
        fall back. With ``receipt`` and a meter, the outcome carries the request's measured energy,
        which takes waiting for its last sampling window to close (the estimate after
        ``receipt_timeout_s``).
        """
        selector = self.selector
        decision = self.decide(model_name, constraints, selector)
        failed: set[str] = set()
        while True:
            try:
                outputs, compute_seconds, token = await self._infer(decision, batch, receipt)
                break
            except ModelNotReady:
                if decision.pinned:
                    raise
                failed.add(decision.model.name)
                chosen = selector.pool.get(decision.fallback_from or "") or decision.model
                stand_in = self._stand_in(selector, failed, chosen, constraints)
                if stand_in is None:
                    raise
                logger.warning("model %s not ready: %s serves instead", decision.model.name, stand_in.name)
                metrics.FALLBACKS.labels(chosen.name, stand_in.name).inc()
                decision = Decision(stand_in, decision.carbon, pinned=False, fallback_from=chosen.name)
        model, items = decision.model, len(batch)
        energy = await self._measured(token) if token is not None else None
        energy = energy or estimate(model, items)
        grams_per_kwh = decision.carbon.grams_per_kwh
        co2 = co2_grams(energy.joules, grams_per_kwh, self.pue) if grams_per_kwh is not None else None
        metrics.INFERENCES.labels(model.name).inc(items)
        if self.recorder is None:  # measured energy and its CO2 are counted by the meter's sampler, per window
            metrics.REQUEST_ENERGY.labels(model.name).observe(energy.joules)
            metrics.ENERGY.labels(model.name, energy.source).inc(energy.joules)
            if co2 is not None:
                metrics.CO2.labels(model.name).inc(co2)
        if isinstance(selector.policy, OnlineBudgetPolicy):
            selector.policy.observe(decision.carbon.intensity, model, items)
        self._served_since_plan += items
        return Outcome(decision, outputs, energy, co2, compute_seconds)

    async def _infer(self, decision: Decision, batch: np.ndarray,
                     receipt: bool) -> tuple[np.ndarray, float, int | None]:
        """Outputs, seconds, and the recorder's token when a receipt was asked for and a meter records."""
        model = decision.model
        self.in_flight[model.name] = self.in_flight.get(model.name, 0) + 1
        recorder = self.recorder
        token = (recorder.begin(model, len(batch), decision.carbon.grams_per_kwh, receipt=receipt)
                 if recorder is not None else None)
        started = time.perf_counter()
        try:
            outputs = await self.triton.infer(model.backend_name, batch, model.triton_version)
        finally:
            if recorder is not None:
                recorder.end(token)
            self.in_flight[model.name] -= 1
        return outputs, time.perf_counter() - started, token if receipt else None

    async def _measured(self, token: int) -> EnergyReading | None:
        joules = await self.recorder.receipt(token, self.receipt_timeout_s)
        if joules is None:
            logger.info("no measured energy for this request (the meter missed its window, or %.1f s passed): "
                        "answering with the estimate", self.receipt_timeout_s)
            return None
        return EnergyReading(joules=joules, source=self.recorder.name, measured=True)

    async def drain(self, model_name: str, timeout_s: float = 60.0) -> bool:
        """Wait until no request is running on ``model_name``; False if that took longer than ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight.get(model_name, 0) > 0:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def plan_budget(self, elapsed_s: float) -> float | None:
        """Re-plan an online-budget policy for the rest of its period (a no-op for other policies).

        The forecast comes from the carbon source when it has one (else the current value persists);
        expected requests per step are the rate served since the last plan.
        """
        policy = self.policy
        if not isinstance(policy, OnlineBudgetPolicy):
            return None
        now = time.time()
        policy.advance(now)
        rate = self._served_since_plan / max(elapsed_s, 1e-9)
        self._served_since_plan = 0
        end = policy.period_end(now)
        points = [p for p in self.carbon.forecast if now <= p.timestamp.timestamp() < end]
        if points:
            starts = [now] + [p.timestamp.timestamp() for p in points[1:]]
            intensities = [self.carbon.state.intensity] + [p.intensity for p in points[1:]]
        else:
            starts, intensities = [now], [self.carbon.state.intensity]
        edges = np.array([*starts, end])
        counts = np.maximum(np.diff(edges), 0.0) * rate
        return policy.plan(np.array(intensities), counts)

    async def classify(self, image: bytes, top_k: int, constraints: Constraints | None = None,
                       receipt: bool = False) -> tuple[Outcome, list[Prediction]]:
        tensor = await asyncio.to_thread(image_to_tensor, image, self.max_image_pixels)
        outcome = await self.run(tensor[np.newaxis], constraints=constraints, receipt=receipt)
        return outcome, self.top_k(outcome.outputs[0], top_k)

    def top_k(self, logits: np.ndarray, k: int) -> list[Prediction]:
        logits = logits.astype(np.float64)
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        k = min(k, len(probabilities))
        best = np.argpartition(-probabilities, k - 1)[:k]
        best = best[np.argsort(-probabilities[best])]
        return [Prediction(int(i), self.labels[i] if i < len(self.labels) else str(i), float(probabilities[i]))
                for i in best]

    async def readiness(self) -> tuple[bool, dict[str, bool]]:
        """Whether Triton answers, and per pool model whether Triton has it ready."""
        pool = self.pool
        if not await self.triton.server_live():
            return False, {spec.name: False for spec in pool.models}
        ready = await asyncio.gather(*(self.triton.model_ready(s.backend_name, s.triton_version) for s in pool.models))
        return True, {spec.name: bool(ok) for spec, ok in zip(pool.models, ready, strict=True)}

    async def weights(self) -> dict[str, str]:
        """Which weights each model was built with, as its Triton config records ("unknown" if it says not)."""
        found: dict[str, str] = {}
        for spec in self.pool.models:
            try:
                signature = await self.triton.signature(spec.backend_name, spec.triton_version)
            except Exception:  # noqa: BLE001 - reported as unknown, readiness says why
                found[spec.name] = "unknown"
                continue
            found[spec.name] = signature.parameters.get("weights", "unknown")
        return found
