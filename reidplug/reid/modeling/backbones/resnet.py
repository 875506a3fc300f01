"""ResNet backbones: FastReID's build_resnet_backbone, torchvision ResNet-18/34/50/101, a narrow ResNet."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchvision.models import resnet as tv

from reidplug.core.errors import ConfigError
from reidplug.reid.modeling.backbones.ibn import IBN
from reidplug.reid.modeling.backbones.non_local import NonLocal, inner_channels, run_stages

# Non-local blocks after the last N blocks of (layer2, layer3): FastReID's layout for
# 50 and 101. FastReID adds none to 18x/34x; the resnetNN names (not FastReID's) give
# 34 the 50 layout (same stage lengths) and 18 and tiny one per stage, so that
# WITH_NL does something there.
NL_BLOCKS = {18: (1, 1), 34: (2, 3), 50: (2, 3), 101: (2, 9), "tiny": (1, 1)}
FASTREID_NL_BLOCKS = {18: (0, 0), 34: (0, 0), 50: (2, 3), 101: (2, 9)}
TORCHVISION = {18: tv.resnet18, 34: tv.resnet34, 50: tv.resnet50, 101: tv.resnet101}

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
        nl_reduction: int = 0,
    ):
        super().__init__()
        if last_stride not in (1, 2):
            raise ConfigError(f"must be 1 or 2, got {last_stride!r}", key="MODEL.BACKBONE.LAST_STRIDE")
        # Attribute names follow torchvision and FastReID (the same ones), so that both
        # publishers' state dicts load as they are.
        self.conv1 = conv1
        self.bn1 = bn1
        self.relu = nn.ReLU(inplace=True)
        # FastReID's stem pool: no padding, ceil mode. torchvision pads by 1, which shifts
        # every window by a pixel; the feature map sizes agree for even inputs, the features do not.
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        set_stride(self.layer4[0], last_stride)
        if with_ibn:
            # IBN-a: layer4 keeps plain batch norm, its features must stay discriminative.
            for layer in (self.layer1, self.layer2, self.layer3):
                for block in layer:
                    block.bn1 = IBN(block.bn1.num_features)
        self.nl_after: dict[str, tuple[int, ...]] = {}
        for stage, count in zip((2, 3), nl_blocks):
            layer = getattr(self, f"layer{stage}")
            count = min(count, len(layer))
            if count == 0:
                continue
            channels = block_channels(layer[-1])
            inner = inner_channels(channels, nl_reduction)
            # FastReID's names (NL_2, NL_3), kept outside the Sequential so that block
            # indices (and state-dict keys) stay torchvision's.
            setattr(self, f"NL_{stage}", nn.ModuleList(NonLocal(channels, inner) for _ in range(count)))
            self.nl_after[f"layer{stage}"] = tuple(range(len(layer) - count, len(layer)))
        self.out_channels = block_channels(self.layer4[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return run_stages(self, x, ("layer1", "layer2", "layer3", "layer4"))


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


def from_torchvision(net: tv.ResNet, bcfg, nl_blocks: tuple[int, int]) -> ResNet:
    return ResNet(
        net.conv1,
        net.bn1,
        [net.layer1, net.layer2, net.layer3, net.layer4],
        last_stride=bcfg.LAST_STRIDE,
        with_ibn=bcfg.WITH_IBN,
        nl_blocks=nl_blocks if bcfg.WITH_NL else (0, 0),
        nl_reduction=bcfg.NL_REDUCTION,
    )


def parse_depth(depth) -> int:
    """FastReID's DEPTH ("50x"; older files write 50 or "50") as a number of layers."""
    text = str(depth).strip().lower().removesuffix("x")
    if text.isdigit() and int(text) in TORCHVISION:
        return int(text)
    raise ConfigError(
        f"build_resnet_backbone needs a depth among {', '.join(f'{d}x' for d in TORCHVISION)}, got {depth!r}",
        key="MODEL.BACKBONE.DEPTH",
    )


def build_resnet_backbone(bcfg) -> ResNet:
    """FastReID's ResNet: DEPTH 18x/34x/50x/101x, WITH_IBN, WITH_NL at FastReID's places, LAST_STRIDE."""
    depth = parse_depth(bcfg.DEPTH)
    if bcfg.WITH_NL and not any(FASTREID_NL_BLOCKS[depth]):
        # FastReID builds no non-local block into 18x and 34x and says nothing about it.
        raise ConfigError(
            f"build_resnet_backbone has non-local blocks only at depths 50x and 101x, not {bcfg.DEPTH!r}; "
            f"set WITH_NL false (FastReID's model), or use NAME resnet{depth}",
            key="MODEL.BACKBONE.WITH_NL",
        )
    return from_torchvision(TORCHVISION[depth](weights=None), bcfg, FASTREID_NL_BLOCKS[depth])


def build_resnet18(bcfg) -> ResNet:
    """torchvision ResNet-18, randomly initialised."""
    return from_torchvision(tv.resnet18(weights=None), bcfg, NL_BLOCKS[18])


def build_resnet34(bcfg) -> ResNet:
    """torchvision ResNet-34, randomly initialised."""
    return from_torchvision(tv.resnet34(weights=None), bcfg, NL_BLOCKS[34])


def build_resnet50(bcfg) -> ResNet:
    """torchvision ResNet-50, randomly initialised."""
    return from_torchvision(tv.resnet50(weights=None), bcfg, NL_BLOCKS[50])


def build_resnet101(bcfg) -> ResNet:
    """torchvision ResNet-101, randomly initialised."""
    return from_torchvision(tv.resnet101(weights=None), bcfg, NL_BLOCKS[101])


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
        nl_reduction=bcfg.NL_REDUCTION,
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
