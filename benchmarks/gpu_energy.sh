#!/usr/bin/env bash
# The GPU checks: real NVML energy and latency per inference for each ResNet through Triton on the GPU
# (the nvidia-pytriton wheel's tritonserver, python backend), i.e. the paper's Table 1 on that GPU, written
# as a pool file and a JSON report; then that pool served by two gateway workers, the energy the gateway
# measured and attributed against NVML read independently (benchmarks/energy_attribution.py); last, the
# gateway's own cost against a GPU Triton: the null-model overhead benchmark, then the same behind resnet18.
# benchmarks/gpu_direct.py gives the floor: the models in PyTorch alone on the same GPU.
#
#   bash benchmarks/gpu_energy.sh OUT_DIR
#
# TRITON_CONFIG picks the flavour: python-gpu (onnxruntime's CUDA provider: needs onnxruntime-gpu) or
# torch-gpu (PyTorch on the GPU: a CUDA torch and the gateway package in Triton's python; the weights are
# saved as model.pt by build-models --torch-weights). Needs this repository's deps and nvidia-ml-py.
# Each step runs even when one before it failed; the script's status is the first failure's.
set -uo pipefail
out=${1:-var/gpu}
config=${TRITON_CONFIG:-python-gpu}
mkdir -p "$out"
status=0
step() {  # step NAME COMMAND...: run it, its output to the terminal and to OUT/NAME.txt
  local name=$1; shift
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$out/$name.txt"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then echo "=== $name failed with status $rc"; [ "$status" -ne 0 ] || status=$rc; fi
}
torch_weights=()
[ "$config" != torch-gpu ] || torch_weights=(--torch-weights)

step gpu nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv
step build carbon-gateway build-models --labels "${LABELS:-../shared/data/imagenet_classes.txt}" "${torch_weights[@]}"
step profile carbon-gateway profile --triton-config "$config" --meter nvml --requests "${REQUESTS:-200}" \
  --warmup 20 --output "$out/pool-gpu.yaml" --report "$out/profile-gpu.json"
# The floor under that table: PyTorch alone on the GPU, no Triton, batch 1 and 8.
step direct python3 benchmarks/gpu_direct.py --json "$out/direct-torch.json"
# The gateway's own measurement on the GPU: two workers, NVML read once by the parent's sampler,
# against NVML read independently by the benchmark over the same interval.
pool=("$out/pool-gpu.yaml"); [ -f "$out/pool-gpu.yaml" ] || pool=(model_repository/pool.yaml)
step attribution python3 benchmarks/energy_attribution.py --meter nvml --triton-config "$config" --pool "${pool[0]}" \
  --workers 2 --seconds "${SECONDS_LOAD:-60}" --concurrency 8 --json "$out/attribution-gpu.json"
# The gateway's own cost when inference is GPU-fast: the null model, and resnet18, on the GPU Triton.
targets=(); [ -z "${TARGETS:-}" ] || read -r -a targets <<< "--targets $TARGETS"
step overhead-null python3 benchmarks/overhead.py --triton-config "$config" --workers 1 2 --concurrency 1 8 32 \
  --seconds "${SECONDS_CELL:-3}" "${targets[@]}" --json "$out/overhead-null-gpu.json"
step overhead-resnet18 python3 benchmarks/overhead.py --triton-config "$config" --model resnet18 --workers 1 2 \
  --concurrency 1 8 32 --seconds "${SECONDS_CELL:-3}" "${targets[@]}" --json "$out/overhead-resnet18-gpu.json"
exit $status
