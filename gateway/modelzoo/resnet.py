"""ResNet architectures (He et al., 2016), parameter-for-parameter compatible with torchvision.

torchvision does not import beside every torch build, so the pool's architectures live here.
Module and parameter names match ``torchvision.models.resnet`` exactly, so torchvision's
ImageNet state dicts load with ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

BlockKind = Literal["basic", "bottleneck"]


@dataclass(frozen=True)
class ResNetSpec:
    name: str
    block: BlockKind
    layers: tuple[int, int, int, int]
    #: torchvision's IMAGENET1K_V1 weights, the ones the paper's Table 1 error rates belong to.
    weights_url: str
    #: torchvision's published ImageNet-1k validation accuracies for those weights (%).
    acc1: float
    acc5: float
    gflops: float


RESNETS: dict[str, ResNetSpec] = {
    spec.name: spec
    for spec in (
        ResNetSpec("resnet18", "basic", (2, 2, 2, 2),
                   "https://download.pytorch.org/models/resnet18-f37072fd.pth", 69.758, 89.078, 1.81),
        ResNetSpec("resnet34", "basic", (3, 4, 6, 3),
                   "https://download.pytorch.org/models/resnet34-b627a593.pth", 73.314, 91.420, 3.66),
        ResNetSpec("resnet50", "bottleneck", (3, 4, 6, 3),
                   "https://download.pytorch.org/models/resnet50-0676ba61.pth", 76.130, 92.862, 4.09),
        ResNetSpec("resnet101", "bottleneck", (3, 4, 23, 3),
                   "https://download.pytorch.org/models/resnet101-63fe2227.pth", 77.374, 93.546, 7.80),
        ResNetSpec("resnet152", "bottleneck", (3, 8, 36, 3),
                   "https://download.pytorch.org/models/resnet152-394f9c45.pth", 78.312, 94.046, 11.51),
    )
}


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, int, int, int],
                 num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._init_weights()

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
                    stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # torchvision's initialisation, so random-weight models behave numerically like real ones.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_resnet(name: str) -> ResNet:
    """A randomly initialised ResNet of the named depth (``resnet18`` … ``resnet152``)."""
    spec = RESNETS[name]
    block = BasicBlock if spec.block == "basic" else Bottleneck
    return ResNet(block, spec.layers)
