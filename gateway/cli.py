"""``carbon-gateway``: build the model pool, serve it carbon-aware."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .settings import ConfigError, GatewaySettings, load_settings

app = typer.Typer(help="Carbon-intensity-aware inference gateway in front of Triton.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
logger = logging.getLogger("gateway")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _set(target: dict[str, Any], dotted: str, value: Any) -> None:
    if value is None:
        return
    *parents, leaf = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


@app.command()
def serve(
    config: Annotated[Optional[Path], typer.Option(help="YAML config file (see README).")] = None,
    triton: Annotated[Optional[str], typer.Option(help="host:port of a running Triton's gRPC endpoint; "
                                                  "without it a local CPU Triton is started.")] = None,
    repository: Annotated[Optional[Path], typer.Option(help="Model repository (local Triton, pool, labels).")] = None,
    pool: Annotated[Optional[Path], typer.Option(help="Pool file; default <repository>/pool.yaml.")] = None,
    host: Annotated[Optional[str], typer.Option()] = None,
    port: Annotated[Optional[int], typer.Option()] = None,
    carbon_intensity: Annotated[Optional[float], typer.Option(help="Static carbon intensity, gCO2/kWh.")] = None,
    carbon_trace: Annotated[Optional[Path], typer.Option(help="Replay this CSV trace as live intensity.")] = None,
    speedup: Annotated[Optional[float], typer.Option(help="Trace replay: trace seconds per wall second.")] = None,
    c_low: Annotated[Optional[float], typer.Option(help="Selector window low end, gCO2/kWh.")] = None,
    c_high: Annotated[Optional[float], typer.Option(help="Selector window high end, gCO2/kWh.")] = None,
    log_level: Annotated[Optional[str], typer.Option()] = None,
    workers: Annotated[Optional[int], typer.Option(help="uvicorn worker processes.")] = None,
) -> None:
    """Serve the gateway (starting a local CPU Triton unless --triton is given)."""
    overrides: dict[str, Any] = {}
    for dotted, value in (("triton.url", triton), ("triton.model_repository", repository), ("pool_file", pool),
                          ("host", host), ("port", port), ("carbon.intensity", carbon_intensity),
                          ("carbon.trace_path", carbon_trace), ("carbon.speedup", speedup),
                          ("carbon.c_low", c_low), ("carbon.c_high", c_high), ("log_level", log_level),
                          ("workers", workers)):
        _set(overrides, dotted, value)
    if carbon_trace is not None:
        _set(overrides, "carbon.source", "trace")
    try:
        settings = load_settings(config, overrides)
    except ConfigError as exc:
        _fail(str(exc))
    _setup_logging(settings.log_level)
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Before anything imports prometheus_client: it picks per-process or shared values at import.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="carbon-gateway-metrics-")
    from .runtime import CONFIG_ERRORS, check_meter, load_parts

    try:
        parts = load_parts(settings)
        check_meter(settings)
    except CONFIG_ERRORS as exc:
        _fail(str(exc))
    models = [m.backend_name for m in parts.pool.models]
    try:
        if settings.workers == 1:
            asyncio.run(_serve_one(settings, models))
        else:
            _serve_workers(settings, models)
    except KeyboardInterrupt:
        pass


def _model_control_args(settings: GatewaySettings, models: list[str]) -> list[str]:
    """Explicit model control: Triton loads only the pool's models; reloads load and unload the rest."""
    if settings.triton.model_control != "explicit":
        return []
    return ["--model-control-mode=explicit", *(f"--load-model={m}" for m in models)]


async def _start_local_triton(settings: GatewaySettings, models: list[str]):
    from .tritonserver import LocalTritonServer, TritonServerError

    log_file = Path("var/log/tritonserver.log")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    local = LocalTritonServer(settings.triton.model_repository, grpc_port=settings.triton.grpc_port,
                              http_port=settings.triton.http_port, metrics_port=settings.triton.metrics_port,
                              model_config_name=settings.triton.model_config_name, log_file=log_file,
                              extra_args=_model_control_args(settings, models))
    try:
        local.start()
        logger.info("waiting for the local Triton to load %s (log: %s)", ", ".join(models), log_file)
        await local.wait_ready(models, settings.triton.startup_timeout_s)
    except (TritonServerError, asyncio.CancelledError) as exc:
        local.stop()
        if isinstance(exc, TritonServerError):
            _fail(str(exc))
        raise
    logger.info("local Triton ready at %s", local.grpc_url)
    return local


async def _check_remote_triton(url: str, models: list[str]) -> None:
    """Refuse to start on a pool naming models the Triton lacks; a Triton that is down is only a warning."""
    from .triton import TritonClient, TritonError

    client = TritonClient(url)
    try:
        index = await client.repository_index()
    except TritonError as exc:
        logger.warning("Triton at %s is not answering yet (%s); /readyz will say when it is", url, exc)
        return
    finally:
        await client.close()
    missing = [m for m in models if m not in index]
    if missing:
        _fail(f"model(s) {missing} of the pool are not in the repository of the Triton at {url} "
              f"(it has {sorted(index)})")


async def _serve_one(settings: GatewaySettings, models: list[str]) -> None:
    import uvicorn

    from .api import create_app

    class Server(uvicorn.Server):
        # uvicorn re-raises SIGTERM after its shutdown, which would skip stopping the local Triton.
        @contextlib.contextmanager
        def capture_signals(self):
            yield

    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    server: Server | None = None

    def on_signal() -> None:
        if server is not None:
            server.should_exit = True
        elif main is not None:
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    local = None
    try:
        if settings.triton.url is None:
            local = await _start_local_triton(settings, models)
        else:
            await _check_remote_triton(settings.triton.url, models)
        url = settings.triton.url or local.grpc_url
        server = Server(uvicorn.Config(create_app(settings, url), host=settings.host, port=settings.port,
                                       log_level=settings.log_level, access_log=False))
        logger.info("gateway on http://%s:%d (docs: /docs)", settings.host, settings.port)
        await server.serve()
    except asyncio.CancelledError:
        logger.info("interrupted before the gateway started")
    finally:
        if local is not None:
            local.stop()


def _reveal(value: Any) -> Any:
    from datetime import datetime

    from pydantic import SecretStr

    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _serve_workers(settings: GatewaySettings, models: list[str]) -> None:
    """Several uvicorn worker processes; metrics are shared through PROMETHEUS_MULTIPROC_DIR (set by ``serve``)."""
    import json

    import uvicorn

    from .api.app import SETTINGS_ENV
    from .runtime import shared_meter

    local = None
    try:
        if settings.triton.url is None:
            local = asyncio.run(_start_local_triton(settings, models))
        else:
            asyncio.run(_check_remote_triton(settings.triton.url, models))
        url = settings.triton.url or local.grpc_url
        # One GPU, one energy counter: this process reads it, the workers report their requests to it.
        with shared_meter(settings) as meter:
            # Secrets travel to the workers in clear (they are the parent's own settings), not as "**********".
            os.environ[SETTINGS_ENV] = json.dumps({"settings": settings.model_dump(), "triton_url": url,
                                                   "meter": meter.model_dump() if meter else None}, default=_reveal)
            logger.info("gateway on http://%s:%d with %d workers (docs: /docs)", settings.host, settings.port,
                        settings.workers)
            uvicorn.run("gateway.api.app:app_from_environment", factory=True, host=settings.host,
                        port=settings.port, workers=settings.workers, log_level=settings.log_level, access_log=False)
    finally:
        if local is not None:
            local.stop()


@app.command("profile")
def profile(
    triton: Annotated[Optional[str], typer.Option(help="host:port of a running Triton; without it a local "
                                                  "CPU Triton is started on --repository.")] = None,
    repository: Annotated[Path, typer.Option(help="Model repository (local Triton).")] = Path("model_repository"),
    pool: Annotated[Optional[Path], typer.Option(help="Pool to profile; default <repository>/pool.yaml.")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Pool file to write; default: update --pool in place.")] = None,
    requests: Annotated[int, typer.Option(min=1, help="Timed inferences per model.")] = 50,
    warmup: Annotated[int, typer.Option(min=0)] = 5,
    meter: Annotated[str, typer.Option(help="auto | nvml | triton | cpu-time | none")] = "auto",
    triton_metrics_url: Annotated[Optional[str], typer.Option(help="meter=triton: Triton's /metrics URL.")] = None,
    cpu_watts_per_core: Annotated[float, typer.Option(help="meter=cpu-time: watts per busy core.")] = 5.0,
    idle_power_w: Annotated[float, typer.Option(help="Subtract this idle power (W) from the energy.")] = 0.0,
    report: Annotated[Optional[Path], typer.Option(help="Also write the results as JSON here.")] = None,
    triton_config: Annotated[str, typer.Option(help="Local Triton: cpu, or python-gpu (GPU host with "
                                               "onnxruntime-gpu).")] = "cpu",
) -> None:
    """Measure each pool model's latency and energy per inference (the paper's Table 1) and update the pool."""
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from .energy import MeterError, make_counter
    from .pool import PoolError, dump_pool, load_pool
    from .profiling import ProcessCpuEnergyCounter, profile_model, profiled_pool
    from .settings import TritonSettings
    from .triton import TritonClient, TritonError

    _setup_logging("warning")
    if meter not in ("auto", "nvml", "triton", "cpu-time", "none"):
        _fail("--meter must be auto, nvml, triton, cpu-time or none")
    pool_file = pool or repository / "pool.yaml"
    try:
        the_pool = load_pool(pool_file)
    except PoolError as exc:
        _fail(str(exc))
    console = Console()

    async def run() -> list:
        local = None
        if triton is None:
            settings = GatewaySettings.model_validate(
                {"triton": TritonSettings(model_repository=repository, model_config_name=triton_config)})
            local = await _start_local_triton(settings, [m.backend_name for m in the_pool.models])
        try:
            counter = None
            if meter in ("auto", "nvml", "triton"):
                try:
                    counter = make_counter(meter, triton_metrics_url)
                except MeterError as exc:
                    _fail(str(exc))
            if counter is None and local is not None and meter in ("auto", "cpu-time"):
                counter = ProcessCpuEnergyCounter(local.process.pid, cpu_watts_per_core)
            if counter is None and meter == "cpu-time":
                _fail("--meter cpu-time needs the local Triton (omit --triton)")
            console.print(f"energy: {counter.name if counter else 'not measured (no counter)'}")
            client = TritonClient(triton or local.grpc_url)
            results = []
            try:
                with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TimeRemainingColumn(), console=console) as progress:
                    for spec in the_pool.models:
                        task = progress.add_task(f"{spec.name:>10}", total=requests)
                        results.append(await profile_model(client, spec, counter, requests=requests, warmup=warmup,
                                                           idle_power_w=idle_power_w,
                                                           step=lambda task=task: progress.advance(task)))
            finally:
                await client.close()
                if counter is not None:
                    counter.close()
            return results
        finally:
            if local is not None:
                local.stop()

    try:
        results = asyncio.run(run())
    except TritonError as exc:
        _fail(str(exc))
    table = Table(title=f"Pool {the_pool.name}: energy and latency per inference (batch 1)")
    for column in ("model", "energy mJ/inference", f"error % ({the_pool.error_metric})", "p50 ms", "p95 ms"):
        table.add_column(column, justify="right")
    for spec, result in zip(the_pool.models, results, strict=True):
        energy = f"{result.energy_mj:.1f}" if result.energy_mj is not None else "-"
        table.add_row(spec.name, energy, f"{spec.error_rate:.3f}", f"{result.latency_p50_ms:.1f}",
                      f"{result.latency_p95_ms:.1f}")
    console.print(table)
    console.print(f"energy source: {results[0].energy_source}")
    hardware = _hardware_description(triton is None)
    target = output or pool_file
    dump_pool(profiled_pool(the_pool, results, hardware), target)
    console.print(f"wrote {target}")
    if report is not None:
        report.write_text(json.dumps({"hardware": hardware, "results": [r.model_dump() for r in results]}, indent=2))


def _hardware_description(local: bool) -> str:
    import platform

    try:
        import pynvml

        pynvml.nvmlInit()
        names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
                 for i in range(pynvml.nvmlDeviceGetCount())]
        pynvml.nvmlShutdown()
        return "GPU: " + ", ".join(str(n) for n in names)
    except Exception:  # noqa: BLE001 - no NVIDIA driver: describe the CPU
        pass
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU: {cpu}, {os.cpu_count()} cores" + (" (local CPU Triton)" if local else "")


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
) -> None:
    """Export the ResNet pool to ONNX and write a Triton model repository (GPU and CPU configs)."""
    _setup_logging("warning")
    if weights not in ("auto", "pretrained", "random"):
        _fail("--weights must be auto, pretrained or random")
    from .labels import LabelsError
    from .modelzoo.build import BuildError, build_repository

    try:
        manifest = build_repository(output, [m.strip() for m in models.split(",") if m.strip()], weights,  # type: ignore[arg-type]
                                    labels, force=force, progress=typer.echo)
    except (BuildError, LabelsError) as exc:
        _fail(str(exc))
    kinds = sorted({entry["weights"] for entry in manifest["models"].values()})
    typer.echo(f"built {len(manifest['models'])} models in {output} with {' and '.join(kinds)} weights")
    if "random" in kinds:
        typer.secho("note: random weights classify at chance; on a connected machine "
                    "`carbon-gateway build-models --weights pretrained --force` gets ImageNet weights",
                    fg=typer.colors.YELLOW)


@app.command("replay")
def replay(
    carbon_trace: Annotated[Path, typer.Option(help="Carbon-intensity CSV trace.")],
    requests: Annotated[Path, typer.Option(help="Request trace: whitespace table with timestamp and count columns.")],
    pool: Annotated[Path, typer.Option(help="Pool file (energy and error per model).")],
    out: Annotated[Path, typer.Option(help="Directory for results.csv/json, periods.csv and the plots.")] = Path(
        "var/replay"),
    start: Annotated[Optional[str], typer.Option(help="First period, ISO date/time (UTC).")] = None,
    end: Annotated[Optional[str], typer.Option(help="End, exclusive, ISO date/time (UTC).")] = None,
    time_column: Annotated[str, typer.Option()] = "Time",
    value_column: Annotated[str, typer.Option()] = "Carbon Intensity",
    total_requests: Annotated[float, typer.Option(help="Requests over the replayed range.")] = 100e6,
    pue: Annotated[float, typer.Option()] = 1.0,
    window_hours: Annotated[float, typer.Option(
        help="Heuristic's trailing C_low/C_high window; 0: whole range.")] = 24.0,
    baseline: Annotated[str, typer.Option(help="Model the carbon-emission efficiency compares against.")] = "resnet50",
    hysteresis: Annotated[float, typer.Option(help="g/kWh; > 0 adds an interpolation+hysteresis run.")] = 0.0,
    forecast: Annotated[Optional[list[str]], typer.Option(
        help="Online policy forecasts: perfect, persistence.")] = None,
    frontier_points: Annotated[int, typer.Option(help="Budgets swept for the online frontier.")] = 6,
    plots: Annotated[bool, typer.Option(help="Draw timeline.png and pareto.png.")] = True,
) -> None:
    """Replay a carbon trace and a request trace through every policy; print and write the results."""
    import sys

    from pydantic import ValidationError
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from .carbon import CarbonSourceError
    from .pool import PoolError
    from .replay import ReplayConfig, run_study, write_outputs

    try:
        config = ReplayConfig(carbon_trace=carbon_trace, requests=requests, pool=pool, start=start, end=end,
                              time_column=time_column, value_column=value_column, total_requests=total_requests,
                              pue=pue, window_hours=window_hours, baseline=baseline, hysteresis=hysteresis,
                              forecasts=tuple(forecast or ("perfect", "persistence")),
                              frontier_points=frontier_points)
        with Progress(transient=True) as bar:
            def progress(total: int):
                task = bar.add_task("online policy: calibrating budgets", total=total)
                return lambda: bar.advance(task)

            study = run_study(config, progress)
        written = write_outputs(study, out, plots)
    except (ValidationError, PoolError, CarbonSourceError, ValueError, OSError) as exc:
        _fail(str(exc))
    except ImportError as exc:
        _fail(f"{exc}; install the plots extra (pip install -e '.[plots]') or pass --no-plots")
    report = study.report
    table = Table(title=f"{report.periods} periods {report.first_period:%Y-%m-%d} .. {report.last_period:%Y-%m-%d}, "
                        f"{report.requests:,.0f} requests; efficiency vs {config.baseline}")
    for column in ("policy", "CO2 g", "energy kWh", "mean error %", "acc. gain %", "extra CO2 g", "efficiency",
                   "switches"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for r in report.results:
        table.add_row(r.policy, f"{r.co2_g:,.0f}", f"{r.energy_kwh:,.1f}", f"{r.mean_error:.3f}",
                      f"{r.accuracy_gain_pct:.2f}", f"{r.extra_co2_g:,.0f}",
                      "-" if r.efficiency is None else f"{r.efficiency:.5f}", str(r.switches))
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(table)
    for c in report.comparisons:
        console.print(f"{c.policy}: at the heuristic's CO2, error -{c.error_saved_points:.3f} points "
                      f"({c.error_saved_pct:.1f}%); at its mean error, CO2 -{c.co2_saved_g:,.0f} g "
                      f"({c.co2_saved_pct:.1f}%)")
    console.print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    app()
