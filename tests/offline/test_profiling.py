"""`carbon-gateway profile` and the profiler, end to end on the real CPU tritonserver."""

import json
import subprocess

import yaml

from gateway.pool import load_pool
from gateway.energy import ProcessCpuEnergyCounter
from gateway.offline.profiling import profile_model, profiled_pool
from gateway.triton import TritonClient

from ..test_cli import CLI

POOL = {"name": "two", "models": [{"name": "resnet18", "energy_mj": 1.0, "error_rate": 10.9},
                                  {"name": "resnet50", "energy_mj": 2.0, "error_rate": 7.1}]}


async def test_profile_model_measures_latency_and_cpu_energy(triton, tmp_path):
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(POOL))
    pool = load_pool(path)
    counter = ProcessCpuEnergyCounter(triton.process.pid, watts_per_core=5.0)
    client = TritonClient(triton.grpc_url)
    steps = []
    try:
        results = [await profile_model(client, spec, counter, requests=4, warmup=1, step=lambda: steps.append(1))
                   for spec in pool.models]
    finally:
        await client.close()
    assert len(steps) == 8
    small, large = results
    for result in results:
        assert result.inferences == 4 and 0 < result.latency_p50_ms <= result.latency_p95_ms
        assert result.energy_mj > 0 and result.energy_source.startswith("estimate: Triton CPU time")
    assert large.energy_mj > small.energy_mj  # ResNet50 needs ~2.3x ResNet18's FLOPs
    updated = profiled_pool(pool, results, "CPU: test")
    assert updated.hardware == "CPU: test"
    assert [m.energy_mj for m in updated.models] == [round(r.energy_mj, 4) for r in results]
    assert updated.by_energy[0].name == "resnet18"  # derived views follow the new figures
    assert all(m.energy_source.startswith("profiled: estimate") for m in updated.models)


def test_profile_command_updates_the_pool_file(triton, tmp_path):
    pool_file, report = tmp_path / "pool.yaml", tmp_path / "report.json"
    pool_file.write_text(yaml.safe_dump(POOL))
    result = subprocess.run([*CLI, "profile", "--triton", triton.grpc_url, "--pool", str(pool_file),
                             "--requests", "3", "--warmup", "1", "--report", str(report)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "resnet50" in result.stdout and "not measured (no counter)" in result.stdout
    profiled = load_pool(pool_file)
    # A remote CPU Triton has no energy counter: latency is measured, energy figures stay as they were.
    assert [m.energy_mj for m in profiled.models] == [1.0, 2.0]
    assert all(m.latency_ms and m.latency_ms > 0 for m in profiled.models)
    assert profiled.hardware.startswith("CPU:")
    assert {r["model"] for r in json.loads(report.read_text())["results"]} == {"resnet18", "resnet50"}


def test_profile_refuses_a_broken_pool(tmp_path):
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text("models: []\n")
    result = subprocess.run([*CLI, "profile", "--triton", "127.0.0.1:1", "--pool", str(pool_file)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "invalid" in result.stderr and "Traceback" not in result.stderr
