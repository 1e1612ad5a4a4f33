"""The null model: the pool's exact signature with nearly free inference, to measure the gateway's own cost.

[N, 3, 224, 224] FP32 in, [N, 1000] FP32 logits out, like every ResNet of the pool, but only a mean over
each channel and a fixed 3x1000 linear layer in between: about 0.05 ms on a CPU. In front of it, what a
request costs is what the gateway and the transport cost, as in front of a GPU that runs a ResNet in a
millisecond (``benchmarks/overhead.py``).
"""

from __future__ import annotations

import torch
from torch import nn

NAME = "null"
#: Not a classifier: its top-5 error is chance's.
TOP5_ERROR = 99.5


class NullNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 1000)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(1000, 3, generator=generator))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))
