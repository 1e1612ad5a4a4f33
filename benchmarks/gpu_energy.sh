#!/usr/bin/env bash
# The GPU checks, ready for a session that has an NVIDIA GPU (not run yet: no session so far had one).
# Measures real NVML energy and latency per inference for each ResNet through Triton on the GPU
# (the nvidia-pytriton wheel's tritonserver, python backend + onnxruntime's CUDA provider:
# configs/python-gpu.pbtxt), i.e. the paper's Table 1 on that GPU, and writes the pool file and a JSON
# report; then serves that pool with two gateway workers and compares the energy the gateway measured
# and attributed with NVML read independently (benchmarks/energy_attribution.py); last, the gateway's own
# cost against a GPU Triton: the null-model overhead benchmark, then the same behind resnet18.
# Needs: this repository's venv deps + onnxruntime-gpu (instead of onnxruntime) + nvidia-ml-py.
#   bash benchmarks/gpu_energy.sh OUT_DIR
set -euo pipefail
out=${1:-var/gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv | tee "$out/gpu.txt"
carbon-gateway build-models --labels "${LABELS:-../shared/data/imagenet_classes.txt}"
carbon-gateway profile --triton-config python-gpu --meter nvml --requests "${REQUESTS:-200}" --warmup 20 \
  --output "$out/pool-gpu.yaml" --report "$out/profile-gpu.json" | tee "$out/profile.txt"
# The gateway's own measurement on the GPU: two workers, NVML read once by the parent's sampler,
# against NVML read independently by the benchmark over the same interval.
python benchmarks/energy_attribution.py --meter nvml --triton-config python-gpu --pool "$out/pool-gpu.yaml" \
  --workers 2 --seconds "${SECONDS_LOAD:-60}" --concurrency 8 --json "$out/attribution-gpu.json" \
  | tee "$out/attribution.txt"
# The gateway's own cost when inference is GPU-fast: the null model, and resnet18, on the GPU Triton.
python benchmarks/overhead.py --triton-config python-gpu --workers 1 2 --concurrency 1 8 32 \
  --json "$out/overhead-null-gpu.json" | tee "$out/overhead-null.txt"
python benchmarks/overhead.py --triton-config python-gpu --model resnet18 --workers 1 2 --concurrency 1 8 32 \
  --json "$out/overhead-resnet18-gpu.json" | tee "$out/overhead-resnet18.txt"
