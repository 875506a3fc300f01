"""The non-local block (dot-product form) of Wang et al. 2018, at FastReID's width by default."""

from __future__ import annotations

import torch
from torch import nn

from reidplug.core.errors import ConfigError


def inner_channels(channels: int, reduction: int) -> int:
    """Width of the block's embeddings for MODEL.BACKBONE.NL_REDUCTION.

    FastReID computes its inner width as `reduc_ratio // reduc_ratio`, which is 1 for
    any ratio: its blocks embed every position into a single channel. That reads as a
    slip for `in_channels // reduc_ratio` (the paper's C/2), but every AGW and SBS
    model FastReID has trained and published holds 1-channel blocks, so 0 (the default)
    keeps that width and such weights load; r > 0 gives channels // r.
    """
    if reduction < 0:
        raise ConfigError(f"must be 0 (FastReID's one channel) or positive, got {reduction}",
                          key="MODEL.BACKBONE.NL_REDUCTION")
    return 1 if reduction == 0 else max(channels // reduction, 1)


class NonLocal(nn.Module):
    """Adds to each position a mix of all positions weighted by their dot-product affinity."""

    def __init__(self, channels: int, inner: int = 1):
        super().__init__()
        self.inner = inner
        self.g = nn.Conv2d(channels, inner, 1)
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.W = nn.Sequential(nn.Conv2d(inner, channels, 1), nn.BatchNorm2d(channels))
        # A zero output norm makes the block start as the identity, so it can be
        # inserted into a pretrained network without disturbing it.
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        n = h * w
        g = self.g(x).flatten(2).transpose(1, 2)  # [b, n, inner]
        theta = self.theta(x).flatten(2).transpose(1, 2)  # [b, n, inner]
        phi = self.phi(x).flatten(2)  # [b, inner, n]
        affinity = torch.bmm(theta, phi) / n
        y = torch.bmm(affinity, g).transpose(1, 2).reshape(b, -1, h, w)
        return x + self.W(y)


def run_stages(net: nn.Module, x: torch.Tensor, names) -> torch.Tensor:
    """`x` through the residual stages `names` of `net`, each followed where `net.nl_after` says
    (block indices per stage) by the non-local blocks in `net.NL_<stage number>`."""
    for name in names:
        after = net.nl_after.get(name, ())
        stage = getattr(net, name)
        if not after:
            x = stage(x)
            continue
        nl = getattr(net, f"NL_{name[-1]}")
        for i, block in enumerate(stage):
            x = block(x)
            if i in after:
                x = nl[after.index(i)](x)
    return x
