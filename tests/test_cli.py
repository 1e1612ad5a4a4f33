"""The ``carbon-gateway`` command as a user runs it: real processes, real ports."""

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway.testing.processes import GatewayProcess
from gateway.triton import TritonClient

from gateway.testing.processes import free_port
from tests.support.data import IMAGES, LABELS_FILE, PROJECT

CLI = [sys.executable, "-m", "gateway.cli"]


def test_serve_against_a_running_triton(triton, model_repository):
    gateway = GatewayProcess("--triton", triton.grpc_url, "--repository", str(model_repository),
                             "--carbon-intensity", "100", "--c-low", "100", "--c-high", "300", cwd=PROJECT)
    with gateway:
        assert httpx.get(f"{gateway.url}/readyz").json()["triton_url"] == triton.grpc_url
        response = httpx.post(f"{gateway.url}/v1/classify", content=IMAGES[0].read_bytes(),
                              headers={"content-type": "image/jpeg"}, timeout=60)
        assert response.status_code == 200 and response.headers["x-model"] == "resnet152"
    assert gateway.process.returncode == 0, gateway.output()
    assert "starting tritonserver" not in gateway.output()  # --triton: no local server


@pytest.mark.integration  # starts a tritonserver of its own
def test_serve_embedded_default_starts_and_stops_its_own_triton(model_repository, tmp_path):
    grpc = free_port()
    env = {"CARBON_GATEWAY_TRITON__GRPC_PORT": str(grpc), "CARBON_GATEWAY_TRITON__HTTP_PORT": str(free_port()),
           "CARBON_GATEWAY_TRITON__METRICS_PORT": str(free_port())}
    gateway = GatewayProcess("--repository", str(model_repository), cwd=tmp_path, env=env)
    with gateway:
        assert httpx.get(f"{gateway.url}/readyz").json()["triton_url"] == f"127.0.0.1:{grpc}"
        pgrep = subprocess.run(["pgrep", "-f", f"grpc-port={grpc}"], capture_output=True, text=True)
        triton_pids = pgrep.stdout.split()
        assert triton_pids
    assert gateway.process.returncode == 0, gateway.output()
    time.sleep(0.5)
    assert subprocess.run(["pgrep", "-f", f"grpc-port={grpc}"], capture_output=True).returncode == 1, \
        "the local tritonserver outlived the gateway"


@pytest.mark.parametrize("config, message", [
    ("carbon:\n  source: trace\n", "carbon.trace_path: Field required (carbon.source=trace)"),
    ("port: [\n", "not valid YAML"),
    ("policy:\n  name: fixed\n  model: vgg16\n", "not in the pool"),
    ("pool_file: /nonexistent/pool.yaml\n", "cannot read pool file"),
    ("energy:\n  meter: triton\n", "energy.triton_metrics_url: Field required (energy.meter=triton)"),
])
def test_broken_config_exits_with_a_message_not_a_traceback(tmp_path, model_repository, config, message):
    path = tmp_path / "gateway.yaml"
    path.write_text(config)
    result = subprocess.run([*CLI, "serve", "--config", str(path), "--repository", str(model_repository),
                             "--port", str(free_port())], capture_output=True, text=True, timeout=60, cwd=PROJECT)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("token", ["", "hunter2"])
def test_an_empty_or_short_admin_token_stops_serve(model_repository, token):
    result = subprocess.run([*CLI, "serve", "--repository", str(model_repository), "--port", str(free_port())],
                            capture_output=True, text=True, timeout=60, cwd=PROJECT,
                            env={**os.environ, "CARBON_GATEWAY_ADMIN_TOKEN": token})
    assert result.returncode == 2 and "admin_token must be at least 16 characters" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_build_models_reports_its_weights(tmp_path):
    result = subprocess.run([*CLI, "build-models", "--output", str(tmp_path / "repo"), "--models", "resnet18",
                             "--weights", "random",
                             "--labels", str(LABELS_FILE)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "built 1 models" in result.stdout and "random weights" in result.stdout
    assert (Path(tmp_path) / "repo" / "resnet18" / "1" / "model.onnx").exists()


def test_sighup_reloads_the_pool(triton, model_repository, tmp_path):
    pool = tmp_path / "pool.yaml"
    pool.write_text("models: [{name: resnet18, energy_mj: 178, error_rate: 10.9}]\n")
    gateway = GatewayProcess("--triton", triton.grpc_url, "--repository", str(model_repository), "--pool", str(pool),
                             cwd=tmp_path, env={"CARBON_GATEWAY_WATCH_POOL": "false"})
    url = gateway.url
    with gateway:
        pool.write_text("models: [{name: resnet34, energy_mj: 360, error_rate: 8.6}]\n")
        time.sleep(0.5)
        assert [m["name"] for m in httpx.get(f"{url}/v1/models").json()] == ["resnet18"]  # no watcher
        gateway.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while [m["name"] for m in httpx.get(f"{url}/v1/models").json()] != ["resnet34"]:
            assert time.monotonic() < deadline, "SIGHUP did not reload the pool"
            time.sleep(0.2)
    assert "pool reload (sighup)" in gateway.output()


@pytest.mark.integration  # starts a tritonserver of its own
def test_serve_fails_fast_when_the_pool_names_a_model_triton_lacks(model_repository, tmp_path):
    pool = tmp_path / "pool.yaml"
    pool.write_text("models: [{name: resnet18, energy_mj: 1, error_rate: 9}, "
                    "{name: vgg16, energy_mj: 2, error_rate: 8}]\n")
    env = {**os.environ, "CARBON_GATEWAY_TRITON__GRPC_PORT": str(free_port()),
           "CARBON_GATEWAY_TRITON__HTTP_PORT": str(free_port()),
           "CARBON_GATEWAY_TRITON__METRICS_PORT": str(free_port())}
    started = time.monotonic()
    result = subprocess.run([*CLI, "serve", "--repository", str(model_repository), "--pool", str(pool),
                             "--port", str(free_port())], capture_output=True, text=True, timeout=240, cwd=tmp_path,
                            env=env)
    assert result.returncode == 2, result.stderr
    assert "['vgg16'] are not in the repository" in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 120  # well before the 300 s startup timeout


def test_serve_refuses_a_pool_the_remote_triton_cannot_serve(triton, model_repository, tmp_path):
    pool = tmp_path / "pool.yaml"
    pool.write_text("models: [{name: vgg16, energy_mj: 2, error_rate: 8}]\n")
    result = subprocess.run([*CLI, "serve", "--triton", triton.grpc_url, "--repository", str(model_repository),
                             "--pool", str(pool), "--port", str(free_port())],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2 and "['vgg16'] the gateway serves from are not in the repository" in result.stderr


def test_serve_refuses_an_image_model_the_remote_triton_lacks(triton, model_repository, tmp_path):
    env = {**os.environ, "CARBON_GATEWAY_TRITON__IMAGE_MODEL": "ghost"}
    result = subprocess.run([*CLI, "serve", "--triton", triton.grpc_url, "--repository", str(model_repository),
                             "--port", str(free_port())], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env=env)
    assert result.returncode == 2 and "['ghost'] the gateway serves from are not in the repository" in result.stderr


@pytest.mark.integration  # starts a tritonserver of its own
def test_serve_reports_models_triton_failed_to_load(model_repository, tmp_path):
    # The python-gpu flavour asks for GPU instances: on a machine without one Triton refuses every model.
    env = {**os.environ, "CARBON_GATEWAY_TRITON__MODEL_CONFIG_NAME": "python-gpu",
           "CARBON_GATEWAY_TRITON__GRPC_PORT": str(free_port()), "CARBON_GATEWAY_TRITON__HTTP_PORT": str(free_port()),
           "CARBON_GATEWAY_TRITON__METRICS_PORT": str(free_port())}
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA driver: the python-gpu flavour may load here")
    result = subprocess.run([*CLI, "serve", "--repository", str(model_repository), "--port", str(free_port())],
                            capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "Triton failed to load" in result.stderr and "no GPUs are available" in result.stderr


@pytest.mark.integration  # starts a tritonserver of its own
def test_embedded_triton_in_explicit_mode_loads_only_the_pool(model_repository, tmp_path):
    pool = tmp_path / "pool.yaml"
    pool.write_text("models: [{name: resnet18, energy_mj: 178, error_rate: 10.9}]\n")
    grpc = free_port()
    env = {"CARBON_GATEWAY_TRITON__MODEL_CONTROL": "explicit", "CARBON_GATEWAY_TRITON__GRPC_PORT": str(grpc),
           "CARBON_GATEWAY_TRITON__HTTP_PORT": str(free_port()),
           "CARBON_GATEWAY_TRITON__METRICS_PORT": str(free_port())}
    with GatewayProcess("--repository", str(model_repository), "--pool", str(pool), cwd=tmp_path, env=env):
        async def states() -> dict:
            client = TritonClient(f"127.0.0.1:{grpc}")
            try:
                return await client.repository_index()
            finally:
                await client.close()

        index = asyncio.run(states())
    assert index["resnet18"][0] == "READY"
    assert all(state != "READY" for name, (state, _) in index.items() if name != "resnet18")


def test_help_is_whole_at_any_width_and_every_serve_option_says_what_it_is():
    env = {**os.environ, "COLUMNS": "80"}
    replay = subprocess.run([*CLI, "replay", "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert "--request-count-column" in replay.stdout and "…" not in replay.stdout
    serve = subprocess.run([*CLI, "serve", "--help"], capture_output=True, text=True, timeout=60, env=env).stdout
    for option in ("--host", "--port", "--log-level"):
        described = serve[serve.index(option):].split("\n  --", 1)[0]
        assert len(described.split()) > 2, f"{option} has no help: {described!r}"
