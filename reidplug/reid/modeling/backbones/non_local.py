"""The non-local block (dot-product form) of Wang et al. 2018."""

from __future__ import annotations

import torch
from torch import nn


class NonLocal(nn.Module):
    """Adds to each position a mix of all positions weighted by their dot-product affinity."""

    def __init__(self, channels: int, reduction: int = 2):
        super().__init__()
        inner = max(channels // reduction, 1)
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
