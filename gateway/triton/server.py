"""Start and stop a local CPU ``tritonserver``: the one the ``nvidia-pytriton`` wheel ships.

The wheel carries Triton 2.x with the python backend only. The backend directory it needs is
assembled from the wheel: ``python/libtriton_python.so`` plus the ``triton_python_backend_stub``
built for this interpreter. The stub imports numpy and onnxruntime from this environment, so its
``bin`` goes first on ``PATH``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import TritonError, TritonServerError
from ..lifecycle import die_with_parent
from .client import TritonClient
from ..settings import TritonSettings

logger = logging.getLogger(__name__)


def pytriton_root() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonServerError(
            "no local tritonserver: install the local-triton extra (pip install 'carbon-gateway[local-triton]') "
            "or point the gateway at a running Triton with --triton host:port"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _backend_directory(root: Path, into: Path) -> Path:
    server = root / "tritonserver"
    stub = server / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / \
        "triton_python_backend_stub"
    if not stub.exists():
        raise TritonServerError(f"the pytriton wheel has no python backend stub for Python "
                                f"{sys.version_info.major}.{sys.version_info.minor} ({stub})")
    python_backend = into / "python"
    python_backend.mkdir(parents=True, exist_ok=True)
    for source in (*(server / "backends" / "python").iterdir(), stub):
        target = python_backend / source.name
        if not target.exists():
            target.symlink_to(source)
    return into


class LocalTritonServer:
    """A ``tritonserver`` child process on this machine, on the CPU."""

    def __init__(self, model_repository: Path, *, grpc_port: int = 8001, http_port: int = 8000,
                 metrics_port: int = 8002, model_config_name: str = "cpu", log_file: Path | None = None,
                 extra_args: Sequence[str] = ()):
        self.model_repository = Path(model_repository).resolve()
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.model_config_name = model_config_name
        self.log_file = log_file
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None
        self.shm_prefix = f"carbon-gateway-{os.getpid()}-{grpc_port}-"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self, backend_directory: Path) -> list[str]:
        return [
            str(pytriton_root() / "tritonserver" / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_directory}",
            f"--model-config-name={self.model_config_name}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            "--allow-cpu-metrics=true",
            "--exit-on-error=false",
            "--strict-readiness=true",
            # Named per server, so that its python-backend shared memory can be found and removed after a crash.
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            *self.extra_args,
        ]

    def start(self) -> None:
        if not self.model_repository.is_dir():
            raise TritonServerError(f"model repository {self.model_repository} does not exist: "
                                    "run `carbon-gateway build-models` first")
        root = pytriton_root()
        self._workdir = tempfile.TemporaryDirectory(prefix="carbon-gateway-triton-")
        backends = _backend_directory(root, Path(self._workdir.name) / "backends")
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(root.parent / "nvidia_pytriton.libs"), env.get("LD_LIBRARY_PATH", "")) if p)
        env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
        logger.info("starting tritonserver on grpc :%d (repository %s)", self.grpc_port, self.model_repository)
        with open(self.log_file or os.devnull, "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(self.command(backends), env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, preexec_fn=die_with_parent)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def wait_ready(self, models: Sequence[str], timeout_s: float = 300.0) -> None:
        """Wait until the server and each named model are ready; raise if Triton exits or time runs out."""
        client = TritonClient(self.grpc_url)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if not self.running():
                    assert self.process is not None  # wait_ready follows start()
                    raise TritonServerError(f"tritonserver exited with status {self.process.returncode}"
                                            + (f"; see {self.log_file}" if self.log_file else ""))
                if await client.server_ready():
                    ready = await asyncio.gather(*(client.model_ready(m) for m in models))
                    if all(ready):
                        return
                await self._fail_fast(client, models)
                if time.monotonic() > deadline:
                    raise TritonServerError(f"Triton not ready with models {list(models)} after {timeout_s:.0f}s")
                await asyncio.sleep(0.5)
        finally:
            await client.close()

    async def _fail_fast(self, client: TritonClient, models: Sequence[str]) -> None:
        """Give up at once on a model the repository lacks or that failed to load, rather than time out."""
        try:
            index = await client.repository_index()
        except TritonError:
            return  # not answering yet
        missing = [m for m in models if m not in index]
        if missing:
            raise TritonServerError(f"model(s) {missing} are not in the repository {self.model_repository} "
                                    f"(it has {sorted(index)}): rebuild it or fix the pool file")
        failed = {m: index[m][1] for m in models if index[m][0] == "UNAVAILABLE" and index[m][1]
                  and "unloaded" not in index[m][1]}
        if failed:
            where = f"; see {self.log_file}" if self.log_file else ""
            raise TritonServerError(f"Triton failed to load {failed}{where}")

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self.reap()

    def reap(self) -> int | None:
        """After the server exited (or to make sure it has): kill what is left of its process group (the python
        backend's stubs), reap it, remove its shared memory and work directory; its exit status."""
        status = None
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # the whole group is gone already
            status = self.process.wait()
        for leftover in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
            leftover.unlink(missing_ok=True)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        return status


def model_control_args(settings: TritonSettings, models: Sequence[str]) -> list[str]:
    """Explicit model control: Triton loads only the pool's models; reloads load and unload the rest."""
    if settings.model_control != "explicit":
        return []
    return ["--model-control-mode=explicit", *(f"--load-model={m}" for m in models)]


async def start_local_triton(settings: TritonSettings, models: Sequence[str],
                             log_file: Path = Path("var/log/tritonserver.log")) -> LocalTritonServer:
    """Start the local Triton on ``settings`` and wait until ``models`` are ready; stopped again on failure."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    local = LocalTritonServer(settings.model_repository, grpc_port=settings.grpc_port, http_port=settings.http_port,
                              metrics_port=settings.metrics_port, model_config_name=settings.model_config_name,
                              log_file=log_file, extra_args=model_control_args(settings, models))
    try:
        local.start()
        logger.info("waiting for the local Triton to load %s (log: %s)", ", ".join(models), log_file)
        await local.wait_ready(models, settings.startup_timeout_s)
    except BaseException:
        local.stop()
        raise
    logger.info("local Triton ready at %s", local.grpc_url)
    return local


class TritonSupervisor:
    """Keeps a local tritonserver serving: when it dies it is reaped and started again, with backoff.

    ``healthy`` turns False once ``max_restarts`` restarts within ``window_s`` have not kept it up: the
    gateway cannot recover by itself, and its liveness probe says so (``/healthz``).
    """

    def __init__(self, server: LocalTritonServer, models: Sequence[str], *, ready_timeout_s: float = 300.0,
                 max_restarts: int = 5, window_s: float = 600.0, backoff_s: float = 1.0, backoff_max_s: float = 30.0,
                 gave_up_file: Path | None = None):
        self.server = server
        self.models = list(models)
        self.ready_timeout_s = ready_timeout_s
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.healthy = True
        self.restarts: list[float] = []
        self._stopped = False
        #: Written when the supervisor gives up, for processes that cannot ask it (uvicorn's workers).
        self.gave_up_file = gave_up_file

    def stop(self) -> None:
        """Supervise no more (the gateway is stopping the server itself)."""
        self._stopped = True

    def is_healthy(self) -> bool:
        return self.healthy

    async def run(self, interval_s: float = 0.5) -> None:
        delay = self.backoff_s
        while self.healthy:
            await asyncio.sleep(interval_s)
            if self._stopped:
                return
            if self.server.running():
                continue
            status = self.server.reap()
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < self.window_s]
            if len(self.restarts) >= self.max_restarts:
                self.healthy = False
                if self.gave_up_file is not None:
                    self.gave_up_file.write_text(f"tritonserver exited {len(self.restarts)} times\n")
                logger.critical("tritonserver exited (status %s) %d times within %.0f s: giving up; /healthz now "
                                "fails so that the gateway is restarted", status, len(self.restarts), self.window_s)
                return
            logger.error("tritonserver exited (status %s): restarting it in %.1f s", status, delay)
            await asyncio.sleep(delay)
            self.restarts.append(time.monotonic())
            try:
                self.server.start()
                await self.server.wait_ready(self.models, self.ready_timeout_s)
            except TritonServerError as exc:
                logger.error("tritonserver did not come back: %s", exc)
                delay = min(delay * 2, self.backoff_max_s)
                continue
            logger.info("tritonserver is back at %s", self.server.grpc_url)
            delay = self.backoff_s
