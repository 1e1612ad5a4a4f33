"""The ``carbon`` section of the configuration: one registered provider's options, told apart by ``source``.

A pydantic discriminated union over ``registry.PROVIDERS``, so a provider added there is configurable by
name; a section that names none is ``static``'s. ``make_monitor`` turns the section into the running parts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Discriminator, Tag

from .monitor import CarbonMonitor
from .options import CarbonSourceOptions
from .registry import DEFAULT_PROVIDER, PROVIDERS


def _named(value: Any) -> str:
    name = value.get("source", DEFAULT_PROVIDER) if isinstance(value, dict) else getattr(value, "source", None)
    return str(name)


if TYPE_CHECKING:
    CarbonSettings = CarbonSourceOptions
else:
    CarbonSettings = Annotated[
        Union[tuple(Annotated[options, Tag(name)] for name, options in PROVIDERS.items())],  # noqa: UP007
        Discriminator(_named, custom_error_type="unknown_carbon_source",
                      custom_error_message=f"unknown carbon source; choose one of {', '.join(PROVIDERS)}"),
    ]


def make_monitor(settings: CarbonSourceOptions) -> CarbonMonitor:
    """The monitor of the configured source, with its window and outage settings."""
    c_low, c_high = settings.c_low, settings.c_high
    if settings.percentile:  # a 0-100 percentile, whatever the observed range
        c_low, c_high = (0.0 if c_low is None else c_low), (100.0 if c_high is None else c_high)
    source = settings.build()
    poll_interval = settings.poll_interval_s
    changes_every = getattr(source, "change_interval_s", None)
    if changes_every is not None:  # e.g. a replayed trace: poll at least as often as it changes
        poll_interval = min(poll_interval, max(0.5, changes_every))
    return CarbonMonitor(source, poll_interval=poll_interval,
                         window_hours=settings.window_hours, c_low=c_low, c_high=c_high,
                         default_intensity=settings.default_intensity, max_age=settings.max_age_s,
                         window_basis=settings.window_basis, forecast_interval=settings.forecast_interval_s,
                         startup_timeout=settings.startup_timeout_s)
