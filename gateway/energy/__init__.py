"""Energy per request, measured where a meter exists, and the CO2 it implies.

Two pieces:

- an **energy counter** reads cumulative joules: the GPU's NVML total-energy counter (Volta and
  newer; older GPUs fall back to integrating sampled power), or Triton's ``nv_energy_consumption``
  metric for a Triton on another host;
- the **accountant** samples the counter on a thread (never on the event loop) and splits each
  sampling window's energy between the requests that were computing during it, in proportion to
  their overlap with the window weighted by their model's profiled energy per inference. The share
  of a window when no request was computing, and the configured idle power while one was, is idle
  energy. So the energy attributed to requests plus idle energy equals what the counter measured.

Without a counter (no GPU, as in CI) the pool's profiled energy per inference is charged instead and
labelled ``pool-estimate``. A request's measured share is only known once the window after it closes,
so responses carry the estimate unless the client asks for a *receipt*: then the request waits for its
last window (about one sampling interval) and answers with its measured share.

One GPU has one counter, so several uvicorn workers must not each read it: the parent process runs the
only accountant, and each worker streams its requests' spans to it over a Unix socket connection
(``SpanReporter`` → ``SpanListener``). Spans are timed with ``time.monotonic``, one clock for every
process of the machine.


Modules: ``base`` (readings, the CO2 formula, the ``EnergyCounter`` and ``SpanRecorder`` protocols),
``meters`` (the counters), ``options`` (each meter's options model, which makes its counter),
``registry`` (meter name -> options), ``accounting`` (the accountant), ``shared`` (the workers' reporters
and the parent's listener) and ``settings`` (the ``energy`` section: a discriminated union over the
registry). Configuration flows one way: settings -> registry -> options -> meters.

Imports: ``gateway.pool``, ``gateway.errors``, ``gateway.metrics.sink``; never serving, HTTP or
prometheus_client (metrics go through the ``MetricsSink`` the accountant is given).
"""

from .accounting import EnergyAccountant, Span, WindowSplit, split_window
from ..errors import MeterError
from .base import JOULES_PER_KWH, EnergyCounter, EnergyReading, SpanRecorder, co2_grams, estimate
from .meters import NvmlEnergyCounter, ProcessCpuEnergyCounter, TritonMetricsEnergyCounter
from .options import EnergyOptions, MeterContext
from .registry import DEFAULT_METER, METERS
from .settings import EnergySettings, energy_settings, make_counter
from .shared import SpanListener, SpanReporter

__all__ = [
    "DEFAULT_METER",
    "JOULES_PER_KWH",
    "METERS",
    "EnergyAccountant",
    "EnergyCounter",
    "EnergyOptions",
    "EnergyReading",
    "EnergySettings",
    "MeterContext",
    "MeterError",
    "NvmlEnergyCounter",
    "ProcessCpuEnergyCounter",
    "Span",
    "SpanListener",
    "SpanRecorder",
    "SpanReporter",
    "TritonMetricsEnergyCounter",
    "WindowSplit",
    "co2_grams",
    "energy_settings",
    "estimate",
    "make_counter",
    "split_window",
]
