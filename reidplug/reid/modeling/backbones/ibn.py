"""The IBN-a normalisation: instance norm on half the channels, batch norm on the rest."""

from __future__ import annotations

import torch
from torch import nn


class IBN(nn.Module):
    """Instance-normalises the first `ratio` of the channels and batch-normalises the others."""

    def __init__(self, channels: int, ratio: float = 0.5):
        super().__init__()
        self.half = int(channels * ratio)
        # Attribute names IN/BN match the released IBN-Net weights, so they load without renaming.
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(channels - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, rest = torch.split(x, [self.half, x.size(1) - self.half], dim=1)
        return torch.cat((self.IN(first.contiguous()), self.BN(rest.contiguous())), dim=1)
