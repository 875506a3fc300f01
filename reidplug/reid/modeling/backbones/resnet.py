"""ResNet backbones: torchvision ResNet-18/34/50/101 and a narrow ResNet for CPU runs."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchvision.models import resnet as tv

from reidplug.core.errors import ConfigError
from reidplug.reid.modeling.backbones.ibn import IBN
from reidplug.reid.modeling.backbones.non_local import NonLocal

# Non-local blocks after the last N blocks of (layer2, layer3). 50x and 101x follow
# FastReID. FastReID adds none to 18x/34x, which would make WITH_NL a silent no-op
# there, so 34 takes the 50x layout (same stage lengths) and 18 and tiny one per stage.
NL_BLOCKS = {18: (1, 1), 34: (2, 3), 50: (2, 3), 101: (2, 9), "tiny": (1, 1)}

# A quarter-width ResNet-18: about 16x fewer FLOPs, and still a four-stage residual net.
TINY_WIDTHS = (16, 32, 64, 128)
TINY_BLOCKS = (2, 2, 2, 2)


class ResNet(nn.Module):
    """A ResNet trunk without pooling and classifier: images -> [B, out_channels, h, w]."""

    def __init__(
        self,
        conv1: nn.Module,
        bn1: nn.Module,
        layers: Sequence[nn.Sequential],
        *,
        last_stride: int = 1,
        with_ibn: bool = False,
        nl_blocks: tuple[int, int] = (0, 0),
    ):
        super().__init__()
        if last_stride not in (1, 2):
            raise ConfigError(f"must be 1 or 2, got {last_stride!r}", key="MODEL.BACKBONE.LAST_STRIDE")
        # Attribute names follow torchvision so that its state dicts load as they are.
        self.conv1 = conv1
        self.bn1 = bn1
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        set_stride(self.layer4[0], last_stride)
        if with_ibn:
            # IBN-a: layer4 keeps plain batch norm, its features must stay discriminative.
            for layer in (self.layer1, self.layer2, self.layer3):
                for block in layer:
                    block.bn1 = IBN(block.bn1.num_features)
        self.nl_after: dict[str, tuple[int, ...]] = {}
        for name, count in zip(("layer2", "layer3"), nl_blocks):
            layer = getattr(self, name)
            count = min(count, len(layer))
            # Kept outside the Sequential so that block indices (and state-dict keys) stay torchvision's.
            setattr(self, f"nl_{name}", nn.ModuleList(NonLocal(block_channels(layer[-1])) for _ in range(count)))
            self.nl_after[name] = tuple(range(len(layer) - count, len(layer)))
        self.out_channels = block_channels(self.layer4[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in ("layer1", "layer2", "layer3", "layer4"):
            after = self.nl_after.get(name, ())
            if not after:
                x = getattr(self, name)(x)
                continue
            nl = getattr(self, f"nl_{name}")
            for i, block in enumerate(getattr(self, name)):
                x = block(x)
                if i in after:
                    x = nl[after.index(i)](x)
        return x


def set_stride(block: nn.Module, stride: int) -> None:
    """Set the spatial stride of a torchvision residual block (its strided conv and shortcut)."""
    strided = block.conv2 if isinstance(block, tv.Bottleneck) else block.conv1
    strided.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


def block_channels(block: nn.Module) -> int:
    """Output channels of a torchvision residual block."""
    last_bn = block.bn3 if isinstance(block, tv.Bottleneck) else block.bn2
    return last_bn.num_features


def from_torchvision(net: tv.ResNet, bcfg, nl_key) -> ResNet:
    return ResNet(
        net.conv1,
        net.bn1,
        [net.layer1, net.layer2, net.layer3, net.layer4],
        last_stride=bcfg.LAST_STRIDE,
        with_ibn=bcfg.WITH_IBN,
        nl_blocks=NL_BLOCKS[nl_key] if bcfg.WITH_NL else (0, 0),
    )


def build_resnet18(bcfg) -> ResNet:
    """torchvision ResNet-18, randomly initialised."""
    return from_torchvision(tv.resnet18(weights=None), bcfg, 18)


def build_resnet34(bcfg) -> ResNet:
    """torchvision ResNet-34, randomly initialised."""
    return from_torchvision(tv.resnet34(weights=None), bcfg, 34)


def build_resnet50(bcfg) -> ResNet:
    """torchvision ResNet-50, randomly initialised."""
    return from_torchvision(tv.resnet50(weights=None), bcfg, 50)


def build_resnet101(bcfg) -> ResNet:
    """torchvision ResNet-101, randomly initialised."""
    return from_torchvision(tv.resnet101(weights=None), bcfg, 101)


def build_resnet_tiny(bcfg, widths: Sequence[int] = TINY_WIDTHS, blocks: Sequence[int] = TINY_BLOCKS) -> ResNet:
    """A narrow ResNet of basic blocks, for CPU runs and tests."""
    conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
    bn1 = nn.BatchNorm2d(widths[0])
    layers, inplanes = [], widths[0]
    for i, (planes, count) in enumerate(zip(widths, blocks)):
        layers.append(basic_stage(inplanes, planes, count, stride=1 if i == 0 else 2))
        inplanes = planes
    for module in (conv1, bn1, *layers):
        init_like_torchvision(module)
    return ResNet(
        conv1,
        bn1,
        layers,
        last_stride=bcfg.LAST_STRIDE,
        with_ibn=bcfg.WITH_IBN,
        nl_blocks=NL_BLOCKS["tiny"] if bcfg.WITH_NL else (0, 0),
    )


def basic_stage(inplanes: int, planes: int, count: int, stride: int) -> nn.Sequential:
    """`count` torchvision basic blocks, the first one strided."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
        )
    blocks = [tv.BasicBlock(inplanes, planes, stride, downsample)]
    blocks += [tv.BasicBlock(planes, planes) for _ in range(count - 1)]
    return nn.Sequential(*blocks)


def init_like_torchvision(module: nn.Module) -> None:
    """He-normal convolutions (fan out), batch norms at weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
