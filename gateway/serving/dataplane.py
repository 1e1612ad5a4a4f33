"""The data plane: what both front doors call, so that each only converts between its wire and these terms.

MLServer's ``handlers/dataplane.py`` is the model. The REST app (``gateway.rest``) and the gRPC servicer
(``gateway.grpc``) are peers in front of one ``DataPlane`` per process, which owns:

- **admission**: one limit on the inference requests in flight, whichever door they came through
  (``admit``: ``Overloaded``, 429 / RESOURCE_EXHAUSTED, past it);
- **timing and metrics per request** (``track``): one ``carbon_gateway_requests_total`` and latency
  observation per inference request, errors included, labelled by route, model and outcome;
- **inference** on a protocol model name (a pool model, or ``auto``): the pool it is resolved against is
  the one the request runs on, and the ``Outcome`` is complete (model, weights, who selected it,
  fallback, energy, CO2, carbon), so a door never asks the core again after the call;
- **the protocol's response parameters** (``response_parameters``), one dictionary for REST's JSON and
  gRPC's ``InferParameter`` alike;
- **metadata, readiness and statistics** of the current pool (``gateway.serving.metadata``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..arrays import Float32Array
from ..errors import Overloaded
from ..imagenet.predictions import Prediction
from ..policy import Constraints
from ..pool import ModelSpec
from ..protocol.signature import TensorSignature
from . import health, metadata
from .service import GatewayService, Outcome, Selector

#: What a response parameter may hold (the protocol's bool, int64, double and string parameters).
ParameterValue = bool | int | float | str


def request_outcome(status: int) -> str:
    """The ``outcome`` label of an answered inference request, from its HTTP status (gRPC's is mapped to one)."""
    if status < 400:
        return "success"
    if status == 429:
        return "throttled"
    if status == 499:
        return "disconnected"
    if status == 503:
        return "unavailable"
    return "rejected" if status < 500 else "error"


def response_parameters(outcome: Outcome) -> dict[str, ParameterValue]:
    """The carbon, model and energy facts of an inference response, as the protocol's ``parameters``.

    ``co2_grams`` is left out when the intensity is not in gCO2/kWh (an index), ``fallback_from`` when the
    chosen model served.
    """
    decision, energy = outcome.decision, outcome.energy
    parameters: dict[str, ParameterValue] = {
        "model": decision.model.name,
        "selected_by": outcome.selected_by,
        "carbon_intensity": decision.carbon.intensity,
        "expected_error_rate": decision.model.error_rate,
        "energy_joules": energy.joules,
        "energy_source": energy.source,
        "energy_measured": energy.measured,
    }
    if outcome.co2_g is not None:
        parameters["co2_grams"] = outcome.co2_g
    if decision.fallback_from:
        parameters["fallback_from"] = decision.fallback_from
    return parameters


class Admission:
    """The in-flight limit of every inference request of this process, whichever door it came through."""

    def __init__(self, limit: int):
        self.limit = limit
        self.in_flight = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the ``limit`` slots for the block; ``Overloaded`` when none is free."""
        if self.in_flight >= self.limit:
            raise Overloaded(f"{self.in_flight} requests in flight, the limit is {self.limit}; retry later")
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


@dataclass(frozen=True)
class Target:
    """A request's model as the protocol named it, resolved once against the pool it will run on."""

    selector: Selector
    pinned: ModelSpec | None  # None: ``auto``, the policy chooses
    version: str | None


@dataclass
class RequestRecord:
    """What ``track`` reports when the request is answered: the door fills in the model and the status."""

    route: str
    model: str = "none"
    status: int = 500


class DataPlane:
    """The one entry to the core for every front door of this process."""

    def __init__(self, service: GatewayService, *, max_in_flight: int, max_batch: int):
        self.service = service
        self.admission = Admission(max_in_flight)
        self.max_batch = max_batch

    @contextmanager
    def admit(self) -> Iterator[None]:
        """An inference request's slot; ``Overloaded`` (429) when every one is taken."""
        with self.admission.slot():
            yield

    @contextmanager
    def track(self, route: str) -> Iterator[RequestRecord]:
        """Time an inference request and count it when it is answered, whatever the answer."""
        record, started = RequestRecord(route), time.perf_counter()
        try:
            yield record
        finally:
            self.service.sink.request(route, record.model, request_outcome(record.status),
                                      time.perf_counter() - started)

    async def signature(self) -> TensorSignature:
        """The tensors every request must carry: the current pool's shared signature (``auto``'s)."""
        return await self.service.shared_signature()

    def target(self, model: str, version: str | None = None) -> Target:
        """The protocol model ``model`` (a pool model, or ``auto``) in the current pool; ``UnknownModel`` (404)."""
        selector = self.service.selector
        return Target(selector, metadata.resolve(selector.pool, model, version), version)

    async def infer(self, target: Target, batch: Float32Array, constraints: Constraints | None = None,
                    receipt: bool = False) -> Outcome:
        """Run ``batch`` on ``target`` and account for it."""
        return await self.service.run(batch, target.pinned, constraints, receipt, version=target.version,
                                      selector=target.selector)

    async def classify(self, image: bytes, k: int, constraints: Constraints | None = None,
                       receipt: bool = False) -> tuple[Outcome, list[Prediction]]:
        """An upload's ``k`` likeliest classes on the model the policy chooses."""
        return await self.service.classify(image, k, constraints, receipt)

    # --- metadata, readiness, statistics -----------------------------------------------------------

    @staticmethod
    def server_metadata() -> dict[str, Any]:
        return metadata.server_metadata()

    async def server_ready(self) -> bool:
        return await health.server_ready(self.service.backend, self.service.pool)

    async def model_ready(self, name: str, version: str | None = None) -> bool:
        return await metadata.model_ready(self.service.backend, self.service.pool, name, version)

    async def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        return await metadata.model_metadata(self.service.backend, self.service.pool, name, version)

    async def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        return await metadata.model_config(self.service.backend, self.service.pool, name, version)

    async def model_statistics(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        return await metadata.model_statistics(self.service.backend, self.service.pool, name, version)

    async def repository_index(self) -> list[dict[str, str]]:
        return await metadata.repository_index(self.service.backend, self.service.pool)
