"""Energy counters: NVML where a GPU is, Triton's nv_energy_consumption, and what happens without either."""

import pytest

from gateway.energy import MeterError, NvmlEnergyCounter, TritonMetricsEnergyCounter, make_counter
from gateway.testing.http import MetricsEndpoint


def nvml_available() -> bool:
    try:
        NvmlEnergyCounter().close()
    except MeterError:
        return False
    return True


def test_auto_meter_uses_nvml_when_present_else_estimates():
    counter = make_counter("auto")
    if nvml_available():
        assert isinstance(counter, NvmlEnergyCounter) and counter.read_joules() > 0
        counter.close()
    else:  # CI: no NVIDIA driver, so pool estimates, and asking for NVML explicitly is an error
        assert counter is None
        with pytest.raises(MeterError, match="NVML"):
            make_counter("nvml")


TRITON_GPU_METRICS = """# HELP nv_energy_consumption GPU energy consumption in joules since the Triton Server started
# TYPE nv_energy_consumption counter
nv_energy_consumption{gpu_uuid="GPU-0"} 1234.5
nv_energy_consumption{gpu_uuid="GPU-1"} 100.25
# HELP nv_gpu_power_usage GPU power usage in watts
# TYPE nv_gpu_power_usage gauge
nv_gpu_power_usage{gpu_uuid="GPU-0"} 71.3
"""


@pytest.fixture
def metrics_server():
    endpoint = MetricsEndpoint(lambda: TRITON_GPU_METRICS)
    yield endpoint.url
    endpoint.close()


def test_triton_metrics_counter_sums_gpu_energy(metrics_server):
    counter = TritonMetricsEnergyCounter(metrics_server)
    try:
        assert counter.read_joules() == pytest.approx(1334.75)
    finally:
        counter.close()


def test_triton_metrics_counter_on_a_cpu_triton_says_there_is_no_energy(triton):
    counter = TritonMetricsEnergyCounter(triton.metrics_url)
    try:
        with pytest.raises(MeterError, match="no nv_energy_consumption"):
            counter.read_joules()
    finally:
        counter.close()
