"""The Baseline Re-ID model: input normalisation, backbone, embedding head and losses."""

from __future__ import annotations

import torch
from torch import nn

from reidplug.reid.modeling.backbones import build_backbone
from reidplug.reid.modeling.heads import build_heads
from reidplug.reid.modeling.heads.embedding import EmbeddingHead
from reidplug.reid.modeling.losses import check_loss_names, compute_losses
from reidplug.reid.modeling.meta_arch.base import ReidModel


class Baseline(ReidModel):
    """images in 0..255 [B, 3, H, W] -> head outputs (training: dict; eval: features [B, D])."""

    def __init__(self, backbone: nn.Module, heads: EmbeddingHead, *, pixel_mean, pixel_std, losses_cfg):
        super().__init__(pixel_mean=pixel_mean, pixel_std=pixel_std)
        self.backbone = backbone
        self.heads = heads
        check_loss_names(losses_cfg.NAME)
        self.losses_cfg = losses_cfg

    @classmethod
    def from_config(cls, cfg, num_classes: int) -> "Baseline":
        backbone = build_backbone(cfg)
        heads = build_heads(cfg.MODEL.HEADS, backbone.out_channels, num_classes)
        m = cfg.MODEL
        return cls(backbone, heads, pixel_mean=m.PIXEL_MEAN, pixel_std=m.PIXEL_STD, losses_cfg=m.LOSSES)

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None):
        return self.heads(self.backbone(self.normalise(images)), targets)

    def losses(self, outputs: dict, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The configured losses (`loss_cls`, `loss_triplet`, `loss_circle`, `loss_cosface`), each scaled."""
        cls_outputs = None
        if "CrossEntropyLoss" in self.losses_cfg.NAME:
            cls_outputs = self.heads.classification_outputs(outputs, targets)
        return compute_losses(cls_outputs, outputs["features"], targets, self.losses_cfg)
