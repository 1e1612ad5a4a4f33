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


def _die_with_parent() -> None:
    """In the child, before exec: have Linux send SIGTERM when the gateway dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


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
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        logger.info("starting tritonserver on grpc :%d (repository %s)", self.grpc_port, self.model_repository)
        self.process = subprocess.Popen(self.command(backends), env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True, preexec_fn=_die_with_parent)

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
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None


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
