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
from .energy import EnergyAccountant, EnergyReading, co2_grams, estimate
from .imaging import image_to_tensor
from .pool import ModelPool, ModelSpec
from .selection import SelectionPolicy
from .triton import TritonClient

logger = logging.getLogger(__name__)


class UnknownModel(LookupError):
    """A client named a model that is not in the pool."""

    status = 404


@dataclass(frozen=True)
class Decision:
    model: ModelSpec
    carbon: CarbonState
    pinned: bool  # the client named the model; the policy did not choose


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    outputs: np.ndarray
    energy: EnergyReading
    co2_g: float
    compute_seconds: float


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    score: float


class GatewayService:
    def __init__(self, *, pool: ModelPool, policy: SelectionPolicy, carbon: CarbonMonitor,
                 triton: TritonClient, labels: tuple[str, ...], accountant: EnergyAccountant | None = None,
                 pue: float = 1.0, max_image_pixels: int = 40_000_000):
        self.pool = pool
        self.policy = policy
        self.carbon = carbon
        self.triton = triton
        self.accountant = accountant
        self.labels = labels
        self.pue = pue
        self.max_image_pixels = max_image_pixels

    @property
    def meter_name(self) -> str:
        return self.accountant.name if self.accountant is not None else "pool-estimate"

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
        chosen = self.policy.select(state.intensity, state.window)
        for spec in self.pool.models:
            metrics.SELECTED_MODEL.labels(spec.name).set(1 if spec.name == chosen.name else 0)
        metrics.EXPECTED_ERROR.set(chosen.error_rate / 100.0)
        measured = "true" if self.accountant is not None else "false"
        metrics.METER_INFO.labels(self.meter_name, measured).set(1)

    def decide(self, model_name: str | None = None) -> Decision:
        """Pick the model for a request now; a named model is honoured if it is in the pool."""
        state = self.carbon.state
        if model_name is not None:
            spec = self.pool.get(model_name)
            if spec is None:
                raise UnknownModel(f"model {model_name!r} is not in the pool; known: {sorted(self.pool.by_name)}")
            return Decision(spec, state, pinned=True)
        return Decision(self.policy.select(state.intensity, state.window), state, pinned=False)

    async def run(self, batch: np.ndarray, model_name: str | None = None) -> Outcome:
        """Infer a batch (N, ...) on the chosen model and account its energy and CO2."""
        decision = self.decide(model_name)
        model, items = decision.model, len(batch)
        token = self.accountant.begin(model, items, decision.carbon.intensity) if self.accountant else None
        started = time.perf_counter()
        try:
            outputs = await self.triton.infer(model.backend_name, batch, model.triton_version)
        finally:
            if token is not None:
                self.accountant.end(token)
        compute_seconds = time.perf_counter() - started
        energy = estimate(model, items)
        co2 = co2_grams(energy.joules, decision.carbon.intensity, self.pue)
        metrics.INFERENCES.labels(model.name).inc(items)
        metrics.REQUEST_ENERGY.labels(model.name).observe(energy.joules)
        if token is None:  # measured energy and its CO2 are counted by the accountant, window by window
            metrics.ENERGY.labels(model.name, energy.source).inc(energy.joules)
            metrics.CO2.labels(model.name).inc(co2)
        return Outcome(decision, outputs, energy, co2, compute_seconds)

    async def classify(self, image: bytes, top_k: int) -> tuple[Outcome, list[Prediction]]:
        tensor = await asyncio.to_thread(image_to_tensor, image, self.max_image_pixels)
        outcome = await self.run(tensor[np.newaxis])
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

    async def readiness(self) -> dict[str, bool]:
        """Per pool model, whether Triton has it ready (all False when Triton is unreachable)."""
        if not await self.triton.server_ready():
            return {spec.name: False for spec in self.pool.models}
        ready = await asyncio.gather(*(self.triton.model_ready(s.backend_name, s.triton_version)
                                       for s in self.pool.models))
        return {spec.name: bool(ok) for spec, ok in zip(self.pool.models, ready)}

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
