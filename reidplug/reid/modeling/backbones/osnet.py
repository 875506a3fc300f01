"""OSNet (Zhou et al. 2019), the omni-scale network of torchreid and FastReID's `build_osnet_backbone`.

Each block mixes four streams of 1 to 4 lightweight 3x3 convolutions through a
shared channel gate. Widths follow MODEL.BACKBONE.DEPTH ("x1_0", "x0_75",
"x0_5", "x0_25"); WITH_IBN gives OSNet-IBN (instance norm in the stem and after
the first stage's blocks). Module names are torchreid's, so its ImageNet weights
and FastReID's checkpoints load as they are; torchreid's `fc` and `classifier`
are not part of the backbone (the head pools and embeds).
"""

from __future__ import annotations

import torch
from torch import nn

from reidplug.core.errors import ConfigError

# DEPTH -> channels of the stem and the three stages.
WIDTHS = {
    "x1_0": (64, 256, 384, 512),
    "x0_75": (48, 192, 288, 384),
    "x0_5": (32, 128, 192, 256),
    "x0_25": (16, 64, 96, 128),
}
BLOCKS_PER_STAGE = 2


class ConvLayer(nn.Module):
    """Convolution, batch (or instance) norm, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, padding: int = 0, instance=False):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.InstanceNorm2d(out_ch, affine=True) if instance else nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def conv1x1(in_ch: int, out_ch: int) -> ConvLayer:
    return ConvLayer(in_ch, out_ch, 1)


class Conv1x1Linear(nn.Module):
    """1x1 convolution and batch norm, no activation."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class LightConv3x3(nn.Module):
    """1x1 convolution, depth-wise 3x3 convolution, batch norm, ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False, groups=out_ch)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv2(self.conv1(x))))


class ChannelGate(nn.Module):
    """Per-channel sigmoid gates from the globally pooled input (a squeeze-excitation of ratio 16)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.fc2(self.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(gates)


def light_stream(channels: int, depth: int) -> nn.Sequential:
    return nn.Sequential(*(LightConv3x3(channels, channels) for _ in range(depth)))


class OSBlock(nn.Module):
    """Bottleneck whose middle is four streams of 1..4 light 3x3 convolutions, gated and summed."""

    def __init__(self, in_ch: int, out_ch: int, *, instance_norm: bool = False, bottleneck_reduction: int = 4):
        super().__init__()
        mid = out_ch // bottleneck_reduction
        self.conv1 = conv1x1(in_ch, mid)
        # A single light conv is stored bare (conv2a), the deeper streams as sequences: torchreid's layout.
        self.conv2a = LightConv3x3(mid, mid)
        self.conv2b = light_stream(mid, 2)
        self.conv2c = light_stream(mid, 3)
        self.conv2d = light_stream(mid, 4)
        self.gate = ChannelGate(mid)
        self.conv3 = Conv1x1Linear(mid, out_ch)
        self.downsample = Conv1x1Linear(in_ch, out_ch) if in_ch != out_ch else None
        self.IN = nn.InstanceNorm2d(out_ch, affine=True) if instance_norm else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        mixed = sum(self.gate(stream(x1)) for stream in (self.conv2a, self.conv2b, self.conv2c, self.conv2d))
        out = self.conv3(mixed) + (x if self.downsample is None else self.downsample(x))
        if self.IN is not None:
            out = self.IN(out)
        return self.relu(out)


class OSNet(nn.Module):
    """The OSNet trunk without pooling and classifier: images -> [B, widths[-1], H/16, W/16]."""

    def __init__(self, widths: tuple[int, int, int, int], *, with_ibn: bool = False):
        super().__init__()
        c0, c1, c2, c3 = widths
        self.conv1 = ConvLayer(3, c0, 7, stride=2, padding=3, instance=with_ibn)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = self._stage(c0, c1, reduce=True, instance_norm=with_ibn)
        self.conv3 = self._stage(c1, c2, reduce=True)
        self.conv4 = self._stage(c2, c3, reduce=False)
        self.conv5 = conv1x1(c3, c3)
        self.out_channels = c3
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @staticmethod
    def _stage(in_ch: int, out_ch: int, *, reduce: bool, instance_norm: bool = False) -> nn.Sequential:
        layers: list[nn.Module] = [OSBlock(in_ch, out_ch, instance_norm=instance_norm)]
        layers += [OSBlock(out_ch, out_ch, instance_norm=instance_norm) for _ in range(BLOCKS_PER_STAGE - 1)]
        if reduce:
            # Transition: 1x1 convolution, then halve the resolution.
            layers.append(nn.Sequential(conv1x1(out_ch, out_ch), nn.AvgPool2d(2, stride=2)))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        return self.conv5(self.conv4(self.conv3(self.conv2(x))))


def build_osnet_backbone(bcfg) -> OSNet:
    """OSNet of width MODEL.BACKBONE.DEPTH (x1_0 ... x0_25), OSNet-IBN with WITH_IBN, randomly initialised."""
    if bcfg.DEPTH not in WIDTHS:
        raise ConfigError(
            f"build_osnet_backbone needs a width among {', '.join(WIDTHS)}, got {bcfg.DEPTH!r}",
            key="MODEL.BACKBONE.DEPTH",
        )
    # OSNet's last stage is not strided and it has no non-local variant: refuse rather than ignore.
    if bcfg.LAST_STRIDE != 1:
        raise ConfigError(
            f"build_osnet_backbone has no strided last stage; must be 1, got {bcfg.LAST_STRIDE!r}",
            key="MODEL.BACKBONE.LAST_STRIDE",
        )
    if bcfg.WITH_NL:
        raise ConfigError("build_osnet_backbone has no non-local variant; set it to false",
                          key="MODEL.BACKBONE.WITH_NL")
    return OSNet(WIDTHS[bcfg.DEPTH], with_ibn=bcfg.WITH_IBN)
