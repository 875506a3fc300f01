"""The Baseline Re-ID model: input normalisation, backbone, embedding head and losses."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from reidplug.core.errors import ConfigError
from reidplug.reid.modeling.heads.embedding import EmbeddingHead
from reidplug.reid.modeling.losses import check_loss_names, compute_losses


class Baseline(nn.Module):
    """images in 0..255 [B, 3, H, W] -> head outputs (training: dict; eval: features [B, D])."""

    def __init__(self, backbone: nn.Module, heads: EmbeddingHead, *, pixel_mean, pixel_std, losses_cfg):
        super().__init__()
        self.backbone = backbone
        self.heads = heads
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(1, -1, 1, 1), False)
        check_loss_names(losses_cfg.NAME)
        self.losses_cfg = losses_cfg
        self.frozen: tuple[str, ...] = ()
        self._frozen_params: list[nn.Parameter] = []

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None):
        x = (images.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std
        return self.heads(self.backbone(x), targets)

    def losses(self, outputs: dict, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The configured losses (`loss_cls`, `loss_triplet`, `loss_circle`, `loss_cosface`), each scaled."""
        cls_outputs = None
        if "CrossEntropyLoss" in self.losses_cfg.NAME:
            cls_outputs = self.heads.classification_outputs(outputs, targets)
        return compute_losses(cls_outputs, outputs["features"], targets, self.losses_cfg)

    # ---------------------------------------------------------- optimisation helpers

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Named parameters split into "backbone" and "heads" (the latter get HEADS_LR_FACTOR)."""
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {"backbone": [], "heads": []}
        for name, param in self.named_parameters():
            groups["heads" if self.is_head_parameter(name) else "backbone"].append((name, param))
        return groups

    @staticmethod
    def is_head_parameter(name: str) -> bool:
        return name.startswith("heads.")

    def freeze(self, names: Iterable[str]) -> None:
        """Freeze the named children (MODEL.FREEZE_LAYERS): no gradients, batch norms keep their statistics."""
        children = dict(self.named_children())
        for name in names:
            if name not in children:
                raise ConfigError(f"unknown layer {name!r}; known: {', '.join(children)}", key="MODEL.FREEZE_LAYERS")
        for name in names:
            for param in children[name].parameters():
                # Parameters frozen by design (the BNNeck shift) are left alone, so unfreeze keeps them frozen.
                if param.requires_grad:
                    param.requires_grad_(False)
                    self._frozen_params.append(param)
        self.frozen = tuple(dict.fromkeys((*self.frozen, *names)))
        self.train(self.training)

    def unfreeze(self) -> None:
        """Release everything `freeze` froze."""
        for param in self._frozen_params:
            param.requires_grad_(True)
        self._frozen_params = []
        self.frozen = ()
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.frozen:
            getattr(self, name).eval()
        return self
