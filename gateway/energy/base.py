"""What the rest of the gateway sees of energy: readings, the CO2 formula, and the two interfaces."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from ..pool import ModelSpec

JOULES_PER_KWH = 3.6e6


def co2_grams(joules: float, intensity_g_per_kwh: float, pue: float = 1.0) -> float:
    """CO2eq = energy x carbon intensity x PUE."""
    return joules / JOULES_PER_KWH * intensity_g_per_kwh * pue


class EnergyReading(BaseModel):
    model_config = ConfigDict(frozen=True)

    joules: float
    source: str
    measured: bool


def estimate(model: ModelSpec, items: int) -> EnergyReading:
    """The pool's profiled energy per inference x the number of inferences."""
    return EnergyReading(joules=model.energy_mj * 1e-3 * items, source="pool-estimate", measured=False)


@runtime_checkable
class EnergyCounter(Protocol):
    """Cumulative energy in joules; ``read_joules`` may block, so it is only called off the event loop."""

    name: str

    def read_joules(self) -> float: ...

    def close(self) -> None: ...


class SpanRecorder(Protocol):
    """What the request path tells about each inference: when it began and ended on the accelerator.

    ``EnergyAccountant`` is one (it owns the meter: one worker); ``SpanReporter`` is the other (a
    worker of several, reporting to the accountant in the parent process).
    """

    @property
    def name(self) -> str:
        """The meter that turns these spans into joules."""
        ...

    @property
    def healthy(self) -> bool:
        """Whether the spans reach a meter that answers."""
        ...

    def begin(self, model: ModelSpec, items: int, intensity: float | None, receipt: bool = False) -> int: ...

    def end(self, token: int) -> None: ...

    async def receipt(self, token: int, timeout_s: float) -> float | None:
        """The measured joules of a span begun with ``receipt=True``, once its last window has closed.

        None if the meter missed part of the span, or ``timeout_s`` passes first. Await it right after
        ``end``.
        """
        ...

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...
