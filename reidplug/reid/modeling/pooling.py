"""Global pooling of a feature map into one vector per image: average, max, generalized mean."""

from __future__ import annotations

import torch
from torch import nn

from reidplug.core.errors import ConfigError
from reidplug.reid.modeling.choices import choose
from reidplug.reid.modeling.precision import full_precision


class GlobalAvgPool(nn.Module):
    """[B, C, H, W] -> [B, C] by averaging."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class GlobalMaxPool(nn.Module):
    """[B, C, H, W] -> [B, C] by the maximum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3))


class IdentityPool(nn.Module):
    """FastReID's `Identity` pool, for backbones that already return one vector as [B, C, 1, 1]
    (the ViT's class token): the top-left cell, which is the whole map there."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, 0, 0]


class GeneralizedMeanPooling(nn.Module):
    """[B, C, H, W] -> [B, C] by (mean x^p)^(1/p) with a fixed p: p=1 is average, p->inf is max."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = float(p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In fp32 and relative to the per-channel maximum M, since (mean x^p)^(1/p) =
        # M (mean (x/M)^p)^(1/p): x^p itself overflows even fp32 for large p.
        with full_precision(x):
            x32 = x.float().clamp(min=self.eps)
            top = x32.detach().amax(dim=(2, 3), keepdim=True)
            pooled = (x32 / top).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p) * top.flatten(1)
        return pooled.to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={float(self.p):g}, eps={self.eps:g}"


class GeneralizedMeanPoolingP(GeneralizedMeanPooling):
    """Generalized mean pooling with a learnable p (initialised at `p`)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__(p, eps)
        self.p = nn.Parameter(torch.tensor([float(p)]))


POOLS = {
    "GlobalAvgPool": GlobalAvgPool,
    # FastReID's fast average pool computes the same thing.
    "FastGlobalAvgPool": GlobalAvgPool,
    "GlobalMaxPool": GlobalMaxPool,
    "GeneralizedMeanPooling": GeneralizedMeanPooling,
    "GeneralizedMeanPoolingP": GeneralizedMeanPoolingP,
    "Identity": IdentityPool,
}


def build_pooling(hcfg) -> nn.Module:
    """The pooling layer named by MODEL.HEADS.POOL_LAYER."""
    cls = choose(POOLS, hcfg.POOL_LAYER, "MODEL.HEADS.POOL_LAYER")
    if issubclass(cls, GeneralizedMeanPooling):
        if not hcfg.GEM_P > 0:
            raise ConfigError(f"must be positive, got {hcfg.GEM_P!r}", key="MODEL.HEADS.GEM_P")
        return cls(hcfg.GEM_P)
    return cls()
