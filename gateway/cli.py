"""``carbon-gateway``: build the model pool, profile it, serve it carbon-aware, replay traces.

Each command parses its options and hands over to ``gateway.server``, ``gateway.offline`` or
``gateway.modelzoo``; a ``GatewayError`` from them becomes one red line and exit status 2.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer

from .energy.registry import METERS
from .errors import GatewayError
from .settings import load_settings

if TYPE_CHECKING:
    from .policy import ErrorTargetOptions

app = typer.Typer(help="Carbon-intensity-aware inference gateway in front of Triton.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@contextmanager
def _errors_fail(*also: type[Exception]) -> Iterator[None]:
    """A ``GatewayError`` (or one of ``also``) ends the command with its message and exit status 2."""
    caught: tuple[type[Exception], ...] = (GatewayError, *also)
    try:
        yield
    except caught as exc:
        _fail(str(exc))


def _dotted(pairs: dict[str, Any]) -> dict[str, Any]:
    """``{"carbon.intensity": 120}`` as nested settings, leaving out what was not given."""
    nested: dict[str, Any] = {}
    for dotted, value in pairs.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        target = nested
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return nested


@app.command()
def serve(
    config: Annotated[Optional[Path], typer.Option(help="YAML config file (see README).")] = None,
    triton: Annotated[Optional[str], typer.Option(help="host:port of a running Triton's gRPC endpoint; "
                                                  "without it a local CPU Triton is started.")] = None,
    repository: Annotated[Optional[Path], typer.Option(help="Model repository (local Triton, pool, labels).")] = None,
    pool: Annotated[Optional[Path], typer.Option(help="Pool file; default <repository>/pool.yaml.")] = None,
    host: Annotated[Optional[str], typer.Option(help="Address to listen on (default 127.0.0.1; 0.0.0.0 for every "
                                                "interface).")] = None,
    port: Annotated[Optional[int], typer.Option(help="HTTP port (default 8080).")] = None,
    grpc_port: Annotated[Optional[int], typer.Option(help="Also serve KServe v2 / Triton gRPC on this port.")] = None,
    carbon_intensity: Annotated[Optional[float], typer.Option(help="Static carbon intensity, gCO2/kWh.")] = None,
    carbon_trace: Annotated[Optional[Path], typer.Option(help="Replay this CSV trace as live intensity.")] = None,
    speedup: Annotated[Optional[float], typer.Option(help="Trace replay: trace seconds per wall second.")] = None,
    c_low: Annotated[Optional[float], typer.Option(help="Selector window low end, gCO2/kWh.")] = None,
    c_high: Annotated[Optional[float], typer.Option(help="Selector window high end, gCO2/kWh.")] = None,
    log_level: Annotated[Optional[str], typer.Option(help="debug, info (the default), warning or error.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="uvicorn worker processes.")] = None,
) -> None:
    """Serve the gateway (starting a local CPU Triton unless --triton is given)."""
    overrides = _dotted({"triton.url": triton, "triton.model_repository": repository, "pool_file": pool,
                         "host": host, "port": port, "grpc_port": grpc_port, "carbon.intensity": carbon_intensity,
                         "carbon.trace_path": carbon_trace, "carbon.source": "trace" if carbon_trace else None,
                         "carbon.speedup": speedup, "carbon.c_low": c_low, "carbon.c_high": c_high,
                         "log_level": log_level, "workers": workers})
    with _errors_fail():
        settings = load_settings(config, overrides)
    _setup_logging(settings.log_level)
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Before anything imports prometheus_client: it picks per-process or shared values at import.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="carbon-gateway-metrics-")
    # Before grpc is imported: its core logs a line per connection a client ends oddly, at its default level.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from .server import serve as run_server

    with _errors_fail():
        run_server(settings)


@app.command("profile")
def profile(
    triton: Annotated[Optional[str], typer.Option(help="host:port of a running Triton; without it a local "
                                                  "CPU Triton is started on --repository.")] = None,
    repository: Annotated[Path, typer.Option(help="Model repository (local Triton).")] = Path("model_repository"),
    pool: Annotated[Optional[Path], typer.Option(help="Pool to profile; default <repository>/pool.yaml.")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Pool file to write; default: update --pool in place.")] = None,
    requests: Annotated[int, typer.Option(min=1, help="Timed inferences per model.")] = 50,
    warmup: Annotated[int, typer.Option(min=0)] = 5,
    meter: Annotated[str, typer.Option(help=" | ".join(METERS) + " (none: estimate)")] = "auto",
    triton_metrics_url: Annotated[Optional[str], typer.Option(help="meter=triton: Triton's /metrics URL.")] = None,
    cpu_watts_per_core: Annotated[float, typer.Option(help="meter=cpu-time: watts per busy core.")] = 5.0,
    idle_power_w: Annotated[float, typer.Option(help="Subtract this idle power (W) from the energy.")] = 0.0,
    report: Annotated[Optional[Path], typer.Option(help="Also write the results as JSON here.")] = None,
    triton_config: Annotated[str, typer.Option(help="Local Triton: cpu; on a GPU host python-gpu "
                                               "(onnxruntime-gpu) or torch-gpu (CUDA torch, "
                                               "build-models --torch-weights).")] = "cpu",
) -> None:
    """Measure each pool model's latency and energy per inference (the paper's Table 1) and update the pool."""
    from .offline.profiling import write_profile

    _setup_logging("warning")
    with _errors_fail():
        write_profile(pool or repository / "pool.yaml", output=output, triton_url=triton, repository=repository,
                      triton_config=triton_config, meter="estimate" if meter == "none" else meter,
                      triton_metrics_url=triton_metrics_url, cpu_watts_per_core=cpu_watts_per_core,
                      requests=requests, warmup=warmup, idle_power_w=idle_power_w, report=report)


@app.command("build-models")
def build_models(
    output: Annotated[Path, typer.Option(help="Repository to write.")] = Path("model_repository"),
    models: Annotated[str, typer.Option(help="Comma-separated ResNets.")] = (
        "resnet18,resnet34,resnet50,resnet101,resnet152"),
    weights: Annotated[str, typer.Option(help="auto: ImageNet weights if they can be fetched, else random; "
                                         "pretrained: fail without them; random.")] = "auto",
    labels: Annotated[Optional[Path], typer.Option(help="ImageNet class names, one per line "
                                                   "(default: torchvision's, when it imports).")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild models already in the repository.")] = False,
    image_model: Annotated[bool, typer.Option(help="Also write the `image` model, which decodes uploads inside "
                                              "Triton (triton.image_model: image; needs the gateway package in "
                                              "Triton's python, so not for the NGC container).")] = False,
    torch_weights: Annotated[bool, typer.Option(help="Also save each model's weights as model.pt, for the "
                                                "torch-gpu flavour (PyTorch on the GPU in Triton's python "
                                                "backend; needs the gateway package there).")] = False,
) -> None:
    """Export the ResNet pool to ONNX and write a Triton model repository (GPU and CPU configs)."""
    from .modelzoo.build import build_and_report

    _setup_logging("warning")
    with _errors_fail():
        build_and_report(output, [m.strip() for m in models.split(",") if m.strip()], weights, labels, force=force,
                         image_model=image_model, torch_weights=torch_weights)


@app.command("replay")
def replay(
    carbon_trace: Annotated[Path, typer.Option(help="Carbon-intensity trace, CSV or JSON.")],
    requests: Annotated[Path, typer.Option(help="Request trace: CSV or whitespace table with a header row; "
                                           "counts per time, or one row per request (see --request-count-column).")],
    pool: Annotated[Path, typer.Option(help="Pool file (energy and error per model).")],
    out: Annotated[Path, typer.Option(help="Directory for results.csv/json, periods.csv and the plots.")] = Path(
        "var/replay"),
    start: Annotated[Optional[str], typer.Option(help="First period, ISO date/time (UTC).")] = None,
    end: Annotated[Optional[str], typer.Option(help="End, exclusive, ISO date/time (UTC).")] = None,
    time_column: Annotated[str, typer.Option(help="Carbon trace: time column.")] = "Time",
    value_column: Annotated[str, typer.Option(help="Carbon trace: intensity column.")] = "Carbon Intensity",
    max_hold_periods: Annotated[int, typer.Option(help="Hold a carbon value across a gap for at most this many "
                                                  "typical periods; longer gaps are left out and reported.")] = 4,
    request_time_column: Annotated[str, typer.Option(help="Request trace: time column (unix s or ISO).")] = (
        "timestamp"),
    request_count_column: Annotated[str, typer.Option(help="Request trace: count column; '' for an arrival log "
                                                      "(one row per request).")] = "sum_req",
    total_requests: Annotated[float, typer.Option(help="Requests over the replayed range.")] = 100e6,
    pue: Annotated[float, typer.Option(help="Power usage effectiveness the energy is multiplied by.")] = 1.0,
    window_hours: Annotated[float, typer.Option(
        help="Heuristic's trailing C_low/C_high window; 0: whole range.")] = 24.0,
    baseline: Annotated[str, typer.Option(help="Model the carbon-emission efficiency compares against.")] = "resnet50",
    hysteresis: Annotated[float, typer.Option(help="g/kWh; > 0 adds an interpolation+hysteresis run.")] = 0.0,
    target_error: Annotated[Optional[float], typer.Option(help="error-target: mean error % to meet.")] = None,
    target_model: Annotated[Optional[str], typer.Option(help="error-target: as accurate on average as this "
                                                        "model (default: the pool's second most accurate).")] = None,
    target_period: Annotated[Optional[str], typer.Option(help="error-target: day, week or month.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="The gateway's YAML config file: its error-target `policy` "
                                                   "settings are replayed, as `serve` would run them (the "
                                                   "CARBON_GATEWAY_* environment too); the target flags win.")] = None,
    forecast: Annotated[Optional[list[str]], typer.Option(
        help="What the planning policies are told of the future: none, perfect (repeat for both).")] = None,
    forecast_hours: Annotated[float, typer.Option(help="How far a perfect forecast reaches.")] = 48.0,
    budget_g: Annotated[Optional[float], typer.Option(help="Also run online-budget with this CO2 budget (g) per "
                                                      "budget period.")] = None,
    budget_period_hours: Annotated[float, typer.Option(help="online-budget: budget period.")] = 24.0,
    by_month: Annotated[bool, typer.Option(help="Also score every calendar month on its own.")] = False,
    replicas: Annotated[int, typer.Option(help="Also replay error-target as this many processes sharing the "
                                          "requests.")] = 1,
    restart_every: Annotated[Optional[float], typer.Option(help="Also replay error-target with each process "
                                                           "restarted every this many hours (staggered).")] = None,
    state_store: Annotated[str, typer.Option(help="The simulated fleet's state: memory (one shared store, as "
                                             "state.url gives the gateway) or none.")] = "memory",
    plots: Annotated[bool, typer.Option(help="Draw timeline.png and pareto.png.")] = True,
) -> None:
    """Replay a carbon trace and a request trace through every policy; print and write the results."""
    from pydantic import ValidationError

    from .offline.report import replay_and_report
    from .offline.replay import ReplayConfig

    with _errors_fail(ValidationError, ValueError, OSError):
        target = _replayed_target(config, target_error, target_model, target_period)
        study = ReplayConfig(carbon_trace=carbon_trace, requests=requests, pool=pool, start=start, end=end,
                             time_column=time_column, value_column=value_column,
                             max_hold_periods=max_hold_periods, request_time_column=request_time_column,
                             request_count_column=request_count_column or None, total_requests=total_requests,
                             pue=pue, window_hours=window_hours, baseline=baseline, hysteresis=hysteresis,
                             target=target, forecasts=tuple(forecast or ("none", "perfect")),
                             forecast_hours=forecast_hours,
                             budget_g=budget_g, budget_period_hours=budget_period_hours, by_month=by_month,
                             replicas=replicas, restart_every_hours=restart_every, state_store=state_store)
        try:
            replay_and_report(study, out, plots)
        except ImportError as exc:
            _fail(f"{exc}; install the plots extra (pip install -e '.[plots]') or pass --no-plots")


def _replayed_target(config: Path | None, target_error: float | None, target_model: str | None,
                     target_period: str | None) -> ErrorTargetOptions:
    """The gateway's ``error-target`` settings, as ``serve`` would load them, the CLI's target flags over
    them (a flag naming the target replaces the file's way of naming it)."""
    from .policy import ErrorTargetOptions

    settings = load_settings(config)
    base = settings.policy if isinstance(settings.policy, ErrorTargetOptions) else ErrorTargetOptions()
    given = base.model_dump(exclude_unset=True)
    if target_error is not None or target_model is not None:
        given.pop("target_error", None)
        given.pop("target_model", None)
    flags = {"target_error": target_error, "target_model": target_model, "target_period": target_period}
    return ErrorTargetOptions.model_validate({**given, **{k: v for k, v in flags.items() if v is not None}})


if __name__ == "__main__":
    app()
