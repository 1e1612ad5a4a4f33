"""The ``energy`` section of the configuration: one registered meter's options, told apart by ``meter``.

A pydantic discriminated union over ``registry.METERS``; a section that names none is ``auto``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Discriminator, Tag, TypeAdapter

from .base import EnergyCounter
from .options import EnergyOptions, MeterContext
from .registry import DEFAULT_METER, METERS


def _named(value: Any) -> str:
    name = value.get("meter", DEFAULT_METER) if isinstance(value, dict) else getattr(value, "meter", None)
    return str(name)


if TYPE_CHECKING:
    EnergySettings = EnergyOptions
else:
    EnergySettings = Annotated[
        Union[tuple(Annotated[options, Tag(name)] for name, options in METERS.items())],  # noqa: UP007
        Discriminator(_named, custom_error_type="unknown_energy_meter",
                      custom_error_message=f"unknown energy meter; choose one of {', '.join(METERS)}"),
    ]

_ADAPTER: TypeAdapter[EnergyOptions] = TypeAdapter(EnergySettings)


def energy_settings(**values: Any) -> EnergyOptions:
    """The options of the meter ``values`` name (``auto`` by default), validated as the settings do."""
    return _ADAPTER.validate_python(values)


def make_counter(meter: str | EnergyOptions, context: MeterContext = MeterContext()) -> EnergyCounter | None:
    """The counter of ``meter`` (a name, or its options); None: the pool's estimates. Raises ``MeterError``."""
    options = energy_settings(meter=meter) if isinstance(meter, str) else meter
    return options.counter(context)
