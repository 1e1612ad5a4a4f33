"""The floor under Table 1: each ResNet in PyTorch on the GPU, no Triton and no gateway, NVML energy.

    python benchmarks/gpu_direct.py --json var/gpu/direct-torch.json

For batch 1 and batch 8, runs each model back to back after a warm-up and reads NVML's energy counter
(``nvmlDeviceGetTotalEnergyConsumption``) around the timed loop: energy per image and time per batch of the
GPU doing nothing but this model. ``carbon-gateway profile`` measures the same models one request at a time
through Triton, where the GPU also draws power while a request crosses the server and the python backend.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def measure(name: str, batch: int, iterations: int, handle) -> dict[str, float | int | str]:
    import pynvml
    import torch

    from gateway.modelzoo.resnet import build_resnet

    net = build_resnet(name).cuda().eval()
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    with torch.inference_mode():
        for _ in range(20):
            net(x)
        torch.cuda.synchronize()
        before_mj, started = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle), time.perf_counter()
        for _ in range(iterations):
            net(x)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        millijoules = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) - before_mj
    return {"model": name, "batch": batch, "ms_per_batch": seconds / iterations * 1e3,
            "mj_per_image": millijoules / (iterations * batch), "mean_w": millijoules / 1e3 / seconds}


def main() -> None:
    import pynvml

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=Path("var/gpu/direct-torch.json"))
    parser.add_argument("--iterations", type=int, default=400, help="timed batches of 1; a quarter for batch 8")
    args = parser.parse_args()
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    result = {"gpu": pynvml.nvmlDeviceGetName(handle), "idle_w_before": pynvml.nvmlDeviceGetPowerUsage(handle) / 1e3,
              "rows": []}
    print("| model | batch | ms per batch | mJ per image | mean W |\n|---|---:|---:|---:|---:|")
    for name in MODELS:
        for batch, iterations in ((1, args.iterations), (8, max(1, args.iterations // 4))):
            row = measure(name, batch, iterations, handle)
            result["rows"].append(row)
            print(f"| {name} | {batch} | {row['ms_per_batch']:.2f} | {row['mj_per_image']:.1f} | {row['mean_w']:.0f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
