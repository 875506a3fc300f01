"""The vision transformer of FastReID's `build_vit_backbone` (TransReID-style, Dosovitskiy et al. 2021).

16x16 patches taken every MODEL.BACKBONE.STRIDE_SIZE pixels (a stride below 16
overlaps them), a class token and learned position embeddings for the grid of
INPUT.SIZE_TRAIN, pre-norm blocks with stochastic depth (DROP_PATH_RATIO, linear
in depth), dropout (DROP_RATIO) and attention dropout (ATT_DROP_RATE). The
output is the normalised class token as a [B, C, 1, 1] map, which the heads pool
like any other feature map.

Module names are timm's, so timm's ImageNet state dicts and FastReID's
checkpoints load as they are (`adapt_pretrained` resizes the position grid).

SIE_COE scales FastReID's camera embedding, which its builder never creates (it
passes no camera count), so it has no effect there and none here.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reidplug.core.errors import ConfigError

PATCH = 16
# DEPTH -> FastReID's settings. FastReID keeps the width at 768 for both; "small"
# also has no qkv bias and scales attention by 768^-0.5 instead of head_dim^-0.5.
DEPTHS = {
    "base": dict(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, qkv_bias=True, qk_scale=None),
    "small": dict(embed_dim=768, depth=8, num_heads=8, mlp_ratio=3.0, qkv_bias=False, qk_scale=768**-0.5),
}
DEFAULT_INPUT = (256, 128)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero whole samples of a residual branch with probability p, scaling survivors by 1/(1-p)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool, qk_scale: float | None, attn_drop: float, drop):
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
        )
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)), each branch with drop path."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, *, drop_path: float, drop: float, **attn_kw):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, drop=drop, **attn_kw)
        self.drop_path = drop_path
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class PatchEmbed(nn.Module):
    """Patches of 16x16 pixels every `stride` pixels, projected to `dim`: [B, 3, H, W] -> [B, N, dim]."""

    def __init__(self, dim: int, stride: tuple[int, int]):
        super().__init__()
        self.stride = stride
        self.proj = nn.Conv2d(3, dim, PATCH, stride=stride)
        n = PATCH * PATCH * dim
        nn.init.normal_(self.proj.weight, 0.0, math.sqrt(2.0 / n))

    def grid(self, height: int, width: int) -> tuple[int, int]:
        return (height - PATCH) // self.stride[0] + 1, (width - PATCH) // self.stride[1] + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """ViT trunk: images -> normalised class token [B, embed_dim, 1, 1]."""

    def __init__(
        self,
        *,
        input_size: Sequence[int] = DEFAULT_INPUT,
        stride: Sequence[int] = (PATCH, PATCH),
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.patch_embed = PatchEmbed(embed_dim, (int(stride[0]), int(stride[1])))
        self.grid = self.patch_embed.grid(int(input_size[0]), int(input_size[1]))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1] + 1, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        # Stochastic depth grows linearly from 0 at the first block to drop_path_rate at the last.
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(
                embed_dim, num_heads, mlp_ratio, drop_path=rate, drop=drop_rate,
                qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop_rate,
            )
            for rate in rates
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.out_channels = embed_dim
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.patch_embed.grid(x.shape[2], x.shape[3])
        if min(grid) < 1:
            raise ValueError(f"input {tuple(x.shape[2:])} is smaller than one {PATCH}x{PATCH} patch")
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), tokens), dim=1)
        # An input of another size than INPUT.SIZE_TRAIN (e.g. INPUT.SIZE_TEST) gets the grid interpolated.
        pos = self.pos_embed if grid == self.grid else resize_pos_embed(self.pos_embed, self.grid, grid)
        x = self.pos_drop(tokens + pos)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, 0].reshape(x.shape[0], -1, 1, 1)

    def adapt_pretrained(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A timm/DeiT/FastReID ViT state dict in this model's shapes: classifier and distillation token
        dropped, a linear patch projection reshaped to a convolution, the position grid resized."""
        state = {k: v for k, v in state.items() if not k.startswith(("head.", "head_dist.", "pre_logits.", "fc_norm."))}
        distilled = state.pop("dist_token", None) is not None
        weight = state.get("patch_embed.proj.weight")
        own = self.patch_embed.proj.weight
        if weight is not None and weight.ndim == 2 and weight.numel() == own.numel():
            state["patch_embed.proj.weight"] = weight.reshape(own.shape)
        pos = state.get("pos_embed")
        if pos is not None and pos.ndim == 3 and pos.shape != self.pos_embed.shape:
            extra = 2 if distilled else 1
            cells = pos.shape[1] - extra
            side = math.isqrt(cells)
            if side * side == cells and pos.shape[2] == self.pos_embed.shape[2]:
                pos = torch.cat((pos[:, :1], pos[:, extra:]), dim=1)
                state["pos_embed"] = resize_pos_embed(pos, (side, side), self.grid)
        return state


def resize_pos_embed(pos: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """Class token kept, the grid of position embeddings resized bilinearly (FastReID's and timm's rule)."""
    cls, grid = pos[:, :1], pos[:, 1:]
    grid = grid.reshape(1, old[0], old[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new, mode="bilinear", align_corners=False)
    return torch.cat((cls, grid.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], -1)), dim=1)


def build_vit_backbone(bcfg, input_size: Sequence[int] = DEFAULT_INPUT) -> VisionTransformer:
    """FastReID's ViT (MODEL.BACKBONE.DEPTH "base" or "small") for images of `input_size` (INPUT.SIZE_TRAIN)."""
    if bcfg.DEPTH not in DEPTHS:
        raise ConfigError(
            f"build_vit_backbone needs a depth among {', '.join(DEPTHS)}, got {bcfg.DEPTH!r}",
            key="MODEL.BACKBONE.DEPTH",
        )
    stride = list(bcfg.STRIDE_SIZE)
    if len(stride) != 2 or not all(isinstance(s, int) and 1 <= s for s in stride):
        raise ConfigError(f"needs two positive integers (height, width), got {bcfg.STRIDE_SIZE!r}",
                          key="MODEL.BACKBONE.STRIDE_SIZE")
    for key in ("DROP_PATH_RATIO", "DROP_RATIO", "ATT_DROP_RATE"):
        value = getattr(bcfg, key)
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"must be in [0, 1), got {value!r}", key=f"MODEL.BACKBONE.{key}")
    # ResNet options have no meaning for a transformer: refuse rather than ignore.
    if bcfg.LAST_STRIDE != 1:
        raise ConfigError(f"build_vit_backbone has no last stride; must be 1, got {bcfg.LAST_STRIDE!r}",
                          key="MODEL.BACKBONE.LAST_STRIDE")
    for key in ("WITH_IBN", "WITH_NL"):
        if getattr(bcfg, key):
            raise ConfigError("build_vit_backbone has no such variant; set it to false", key=f"MODEL.BACKBONE.{key}")
    if min(input_size) < PATCH:
        raise ConfigError(f"build_vit_backbone needs images of at least {PATCH}x{PATCH}, got {list(input_size)}",
                          key="INPUT.SIZE_TRAIN")
    return VisionTransformer(
        input_size=input_size,
        stride=stride,
        drop_rate=bcfg.DROP_RATIO,
        attn_drop_rate=bcfg.ATT_DROP_RATE,
        drop_path_rate=bcfg.DROP_PATH_RATIO,
        **DEPTHS[bcfg.DEPTH],
    )
