"""ResNeSt backbones (Zhang et al. 2020): split-attention bottlenecks, deep stem, average-pool shortcuts.

The layout is FastReID's `build_resnest_backbone` (radix 2, one group, 64-wide
bottlenecks, deep stem, avg-down shortcuts, anti-aliased strides), and module
names follow the ResNeSt repository so that its ImageNet weights and FastReID's
checkpoints load as they are.

LAST_STRIDE 1 keeps layer4 at stride 1 and dilates its later 3x3 convolutions
by 2, as FastReID does, instead of only dropping the stride.

FastReID's current ResNeSt reads WITH_IBN and WITH_NL and then builds the plain
network. Its earlier ResNeSt (the one its S50 AGW/SBS results were trained with)
honoured both: IBN-a in the first norm of every bottleneck, and non-local blocks
after the last 2 blocks of layer2 and the last 3 of layer3. reidplug builds that
layout rather than accept the keys and ignore them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from reidplug.core.errors import ConfigError
from reidplug.reid.modeling.backbones.ibn import IBN
from reidplug.reid.modeling.backbones.non_local import NonLocal, inner_channels, run_stages

# DEPTH -> (blocks per stage, stem width), FastReID's table.
DEPTHS = {
    "50x": ((3, 4, 6, 3), 32),
    "101x": ((3, 4, 23, 3), 64),
    "200x": ((3, 24, 36, 3), 64),
    "269x": ((3, 30, 48, 8), 64),
}
# Non-local blocks after the last N blocks of layer1..layer4 (WITH_NL).
NL_BLOCKS = (0, 2, 3, 0)
RADIX = 2
EXPANSION = 4


class SplitAttentionConv(nn.Module):
    """A 3x3 convolution into `radix` branches, mixed by a softmax attention over the branches per channel."""

    def __init__(self, channels: int, *, stride: int = 1, dilation: int = 1, radix: int = RADIX, reduction: int = 4):
        super().__init__()
        self.radix = radix
        inner = max(channels * radix // reduction, 32)
        # Names (conv, bn0, fc1, bn1, fc2) are the ResNeSt repository's.
        self.conv = nn.Conv2d(
            channels, channels * radix, 3, stride, padding=dilation, dilation=dilation, groups=radix, bias=False
        )
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.fc1 = nn.Conv2d(channels, inner, 1)
        self.bn1 = nn.BatchNorm2d(inner)
        self.fc2 = nn.Conv2d(inner, channels * radix, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.conv(x)), inplace=True)
        b, rc = x.shape[:2]
        branches = torch.split(x, rc // self.radix, dim=1)
        gap = F.adaptive_avg_pool2d(sum(branches), 1)
        attention = self.fc2(F.relu(self.bn1(self.fc1(gap)), inplace=True))
        # One softmax per channel across the branches (a single group).
        attention = attention.view(b, self.radix, -1).softmax(dim=1).reshape(b, -1, 1, 1)
        weights = torch.split(attention, rc // self.radix, dim=1)
        return sum(w * branch for w, branch in zip(weights, branches)).contiguous()


class Bottleneck(nn.Module):
    """1x1 -> split-attention 3x3 -> 1x1 with a residual; a strided block averages (3x3, stride) after the 3x3."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        smooth: bool = False,
        with_ibn: bool = False,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = IBN(planes) if with_ibn else nn.BatchNorm2d(planes)
        # The stride moves from the convolution to an average pool (ResNeSt's "avd"); the first
        # block of a stage also gets the pool at stride 1, as ResNeSt builds it.
        self.avd_layer = nn.AvgPool2d(3, stride, padding=1) if (stride > 1 or smooth) else None
        self.conv2 = SplitAttentionConv(planes, dilation=dilation)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.conv2(out)
        if self.avd_layer is not None:
            out = self.avd_layer(out)
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def shortcut(inplanes: int, outplanes: int, stride: int) -> nn.Sequential:
    """Average pool (ceil mode, padding not counted), then a 1x1 convolution and batch norm."""
    return nn.Sequential(
        nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
        nn.Conv2d(inplanes, outplanes, 1, bias=False),
        nn.BatchNorm2d(outplanes),
    )


class ResNeSt(nn.Module):
    """A ResNeSt trunk without pooling and classifier: images -> [B, 2048, h, w]."""

    def __init__(
        self,
        blocks: tuple[int, ...],
        stem_width: int,
        *,
        last_stride: int = 1,
        with_ibn: bool = False,
        with_nl: bool = False,
        nl_reduction: int = 0,
    ):
        super().__init__()
        if last_stride not in (1, 2):
            raise ConfigError(f"must be 1 or 2, got {last_stride!r}", key="MODEL.BACKBONE.LAST_STRIDE")
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, stem_width, 3, 2, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_width, stem_width, 3, 1, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_width, stem_width * 2, 3, 1, padding=1, bias=False),
        )
        self.bn1 = nn.BatchNorm2d(stem_width * 2)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        self.inplanes = stem_width * 2
        dilated = last_stride == 1
        self.layer1 = self._stage(64, blocks[0], 1, with_ibn=with_ibn, first_smooth=False)
        self.layer2 = self._stage(128, blocks[1], 2, with_ibn=with_ibn)
        self.layer3 = self._stage(256, blocks[2], 2, with_ibn=with_ibn)
        self.layer4 = self._stage(512, blocks[3], 1 if dilated else 2, dilation=2 if dilated else 1, with_ibn=with_ibn)
        self.out_channels = 512 * EXPANSION
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # ResNeSt's init: normal with std sqrt(2 / fan_out), biases left at PyTorch's default.
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
        self.nl_after: dict[str, tuple[int, ...]] = {}
        for i, count in enumerate(NL_BLOCKS if with_nl else (0, 0, 0, 0), start=1):
            layer = getattr(self, f"layer{i}")
            # FastReID's names NL_1..NL_4, kept outside the stages so block indices stay the ResNeSt repository's.
            channels = self.stage_channels(i)
            inner = inner_channels(channels, nl_reduction)
            setattr(self, f"NL_{i}", nn.ModuleList(NonLocal(channels, inner) for _ in range(count)))
            self.nl_after[f"layer{i}"] = tuple(range(len(layer) - count, len(layer)))
        del self.inplanes

    @staticmethod
    def stage_channels(i: int) -> int:
        return 64 * 2 ** (i - 1) * EXPANSION

    def _stage(
        self, planes: int, count: int, stride: int, *, dilation: int = 1, with_ibn: bool, first_smooth: bool = True
    ) -> nn.Sequential:
        out = planes * EXPANSION
        downsample = shortcut(self.inplanes, out, stride) if stride != 1 or self.inplanes != out else None
        # The first block of a dilated stage keeps dilation 1; the later ones take it.
        layers = [
            Bottleneck(
                self.inplanes, planes, stride=stride, downsample=downsample, smooth=first_smooth, with_ibn=with_ibn
            )
        ]
        layers += [Bottleneck(out, planes, dilation=dilation, with_ibn=with_ibn) for _ in range(count - 1)]
        self.inplanes = out
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return run_stages(self, x, ("layer1", "layer2", "layer3", "layer4"))


def build_resnest_backbone(bcfg) -> ResNeSt:
    """ResNeSt-50/101/200/269 (MODEL.BACKBONE.DEPTH "50x" ...), randomly initialised."""
    depth = str(bcfg.DEPTH).strip().lower()
    depth = depth if depth.endswith("x") else f"{depth}x"
    if depth not in DEPTHS:
        raise ConfigError(
            f"build_resnest_backbone needs a depth among {', '.join(DEPTHS)}, got {bcfg.DEPTH!r}",
            key="MODEL.BACKBONE.DEPTH",
        )
    blocks, stem_width = DEPTHS[depth]
    return ResNeSt(
        blocks,
        stem_width,
        last_stride=bcfg.LAST_STRIDE,
        with_ibn=bcfg.WITH_IBN,
        with_nl=bcfg.WITH_NL,
        nl_reduction=bcfg.NL_REDUCTION,
    )
