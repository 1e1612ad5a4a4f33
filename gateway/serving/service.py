"""The gateway's core: choose a model for the carbon intensity now, run it on the backend, account for it.

Framework-free: the HTTP layer (``gateway.rest``) and tests drive it directly, and metrics leave it only
through the ``MetricsSink`` it is given.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np

from ..arrays import Float32Array, OutputArray
from ..carbon import CarbonMonitor, CarbonState
from ..energy import EnergyReading, SpanRecorder, co2_grams, estimate
from ..errors import ModelNotReady, NoEligibleModel
from ..imagenet.decode import image_to_tensor
from ..policy import Constraints, SelectionPolicy
from ..pool import ModelPool, ModelSpec
from ..metrics.sink import GatewaySnapshot, MetricsSink, NullSink
from .backend import EncodedImage, Inference, InferenceBackend, TensorSignature
from .cpu import CpuPool
from .metadata import shared_signature
from ..imagenet.predictions import Prediction, top_k

logger = logging.getLogger(__name__)


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
    """Everything a front door answers with: no door asks the core anything more after ``run``."""

    decision: Decision
    outputs: OutputArray
    model_version: str  # as the backend ran it
    energy: EnergyReading
    co2_g: float | None  # None when the intensity is not in gCO2/kWh (WattTime's percentile)
    compute_seconds: float
    selected_by: str  # client (pinned), the policy's name, or fallback:<policy>
    weights: str  # what the model's configuration says it was built with ("unknown" if it does not say)


def stand_in(pool: ModelPool, failed: set[str], chosen: ModelSpec, constraints: Constraints | None) -> ModelSpec | None:
    """The pool model nearest in energy to ``chosen`` that has not failed (ties: the more accurate)."""
    options = [m for m in pool.models if m.name not in failed and (constraints is None or constraints.allows(m))]
    if not options:
        return None
    return min(options, key=lambda m: (abs(m.energy_mj - chosen.energy_mj), m.error_rate))


class GatewayService:
    """Decides, infers (falling back to a ready model when the chosen one is not), and charges energy."""

    def __init__(self, *, pool: ModelPool, policy: SelectionPolicy, carbon: CarbonMonitor,
                 backend: InferenceBackend, labels: tuple[str, ...], recorder: SpanRecorder | None = None,
                 sink: MetricsSink | None = None, pue: float = 1.0, max_image_pixels: int = 40_000_000,
                 receipt_timeout_s: float = 2.0, cpu: CpuPool | None = None, backend_decodes: bool = False):
        self.selector = Selector(pool, policy)
        self.cpu = cpu or CpuPool()  # decoding and preprocessing, off the event loop
        self.carbon = carbon
        self.backend = backend
        self.recorder = recorder  # None: no meter, requests are charged the pool's estimate
        self.sink: MetricsSink = sink or NullSink()
        self.labels = labels
        self.pue = pue
        self.max_image_pixels = max_image_pixels
        self.backend_decodes = backend_decodes  # uploads go to the backend as they came (``infer_image``)
        self.receipt_timeout_s = receipt_timeout_s
        self.in_flight: dict[str, int] = {}
        self.served = 0  # images inferred since start, for the request rate
        self._io: tuple[Selector, TensorSignature] | None = None

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

    async def shared_signature(self) -> TensorSignature:
        """The inputs and outputs every model of the current pool has (read once per pool)."""
        selector = self.selector
        if self._io is None or self._io[0] is not selector:
            self._io = (selector, await shared_signature(self.backend, selector.pool))
        return self._io[1]

    @property
    def meter_name(self) -> str:
        return self.recorder.name if self.recorder is not None else "pool-estimate"

    @property
    def meter_up(self) -> bool:
        return self.recorder.healthy if self.recorder is not None else True

    def snapshot(self) -> GatewaySnapshot:
        """The decision the gateway would make now, and on what basis; a scrape must not move the hysteresis."""
        state = self.carbon.state
        chosen = self.policy.preview(state.intensity, state.window)
        return GatewaySnapshot(
            intensity=state.intensity, window_low=float(state.window.low), window_high=float(state.window.high),
            carbon_age_s=state.age_seconds(), carbon_source=self.carbon.source.name,
            carbon_source_up=state.source_up, carbon_status=state.status, selected_model=chosen.name,
            expected_error_ratio=chosen.error_rate / 100.0,
            profiled_joules={spec.name: spec.energy_mj / 1000.0 for spec in self.pool.models},
            meter=self.meter_name, measured=self.recorder is not None)

    @staticmethod
    def selected_by(decision: Decision, policy: SelectionPolicy) -> str:
        """Who chose the model: ``client`` (pinned), the policy, or ``fallback:<policy>`` (a stand-in served)."""
        if decision.pinned:
            return "client"
        return f"fallback:{policy.name}" if decision.fallback_from else policy.name

    def weights(self, model: ModelSpec) -> str:
        """The weights the model's configuration names, as read when it was first called."""
        signature = self.backend.cached_signature(model.backend_name, model.triton_version)
        return signature.parameters.get("weights", "unknown") if signature else "unknown"

    def publish_state(self) -> None:
        self.sink.snapshot(self.snapshot())

    def decide(self, pinned: ModelSpec | None = None, constraints: Constraints | None = None,
               selector: Selector | None = None) -> Decision:
        """Pick the model for a request now; a pinned one (a model of ``selector``'s pool) is honoured."""
        selector = selector or self.selector
        state = self.carbon.state
        if pinned is not None:
            return Decision(pinned, state, pinned=True)
        selector.policy.advance(time.time())
        try:
            return Decision(selector.policy.select(state.intensity, state.window, constraints), state, pinned=False)
        except NoEligibleModel as exc:
            raise NoEligibleModel(f"{exc}; the pool offers accuracies "
                                  f"{sorted(round(100 - m.error_rate, 3) for m in selector.pool.models)} %") from exc

    async def run(self, batch: Float32Array | EncodedImage, pinned: ModelSpec | None = None,
                  constraints: Constraints | None = None, receipt: bool = False,
                  version: str | None = None, selector: Selector | None = None) -> Outcome:
        """Infer a batch (N, ...), or one upload the backend decodes, on the chosen model; account its energy
        and CO2.

        ``pinned``: the model of ``selector``'s pool (the current one by default) the client named, at
        ``version``; otherwise the policy chooses. If the policy's model is not ready, the nearest ready model
        in energy serves the request instead and the outcome says so (``decision.fallback_from``); a pinned
        model does not fall back. With
        ``receipt`` and a meter, the outcome carries the request's measured energy, which takes waiting
        for its last sampling window to close (the estimate after ``receipt_timeout_s``).
        """
        selector = selector or self.selector
        decision = self.decide(pinned, constraints, selector)
        failed: set[str] = set()
        while True:
            try:
                inference, compute_seconds, token = await self._infer(
                    decision, batch, receipt, version if decision.pinned else None)
                break
            except ModelNotReady:
                if decision.pinned:
                    raise
                failed.add(decision.model.name)
                chosen = selector.pool.get(decision.fallback_from or "") or decision.model
                substitute = stand_in(selector.pool, failed, chosen, constraints)
                if substitute is None:
                    raise
                logger.warning("model %s not ready: %s serves instead", decision.model.name, substitute.name)
                self.sink.fallback(chosen.name, substitute.name)
                decision = Decision(substitute, decision.carbon, pinned=False, fallback_from=chosen.name)
        model, items = decision.model, len(batch)
        energy = await self._measured(token) if token is not None else None
        energy = energy or estimate(model, items)
        grams_per_kwh = decision.carbon.grams_per_kwh
        co2 = co2_grams(energy.joules, grams_per_kwh, self.pue) if grams_per_kwh is not None else None
        self.sink.inferences(model.name, items)
        if self.recorder is None:  # measured energy and its CO2 are counted by the meter's sampler, per window
            self.sink.request_energy(model.name, energy.joules)
            self.sink.energy(model.name, energy.source, energy.joules, co2)
        # The current policy, which a pool reload during the inference may have replaced: it keeps the account.
        self.selector.policy.observe(decision.carbon.intensity, model, items)
        self.served += items
        return Outcome(decision, inference.outputs, inference.model_version, energy, co2, compute_seconds,
                       self.selected_by(decision, selector.policy), self.weights(model))

    async def _infer(self, decision: Decision, batch: Float32Array | EncodedImage, receipt: bool,
                     version: str | None = None) -> tuple[Inference, float, int | None]:
        """The inference, its seconds, and the recorder's token when a receipt was asked for and a meter records."""
        model = decision.model
        self.in_flight[model.name] = self.in_flight.get(model.name, 0) + 1
        recorder = self.recorder
        token = (recorder.begin(model, len(batch), decision.carbon.grams_per_kwh, receipt=receipt)
                 if recorder is not None else None)
        started = time.perf_counter()
        version = model.triton_version if version is None else version
        try:
            if isinstance(batch, EncodedImage):
                inference = await self.backend.infer_image(model.backend_name, batch, version)
            else:
                inference = await self.backend.infer(model.backend_name, batch, version)
        finally:
            if recorder is not None and token is not None:
                recorder.end(token)
            self.in_flight[model.name] -= 1
        return inference, time.perf_counter() - started, token if receipt else None

    async def _measured(self, token: int) -> EnergyReading | None:
        assert self.recorder is not None  # a token comes from the recorder
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

    async def classify(self, image: bytes, k: int, constraints: Constraints | None = None,
                       receipt: bool = False) -> tuple[Outcome, list[Prediction]]:
        """Decode and preprocess an upload (off the event loop, or in the backend), infer it, and its ``k``
        likeliest classes."""
        batch: Float32Array | EncodedImage
        if self.backend_decodes:
            batch = EncodedImage(image, self.max_image_pixels)
        else:
            batch = (await self.cpu.run(image_to_tensor, image, self.max_image_pixels))[np.newaxis]
        outcome = await self.run(batch, constraints=constraints, receipt=receipt)
        return outcome, top_k(outcome.outputs[0], k, self.labels)
