"""What every Re-ID meta-architecture shares: input normalisation, freezing, parameter groups."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from reidplug.core.errors import ConfigError


class ReidModel(nn.Module):
    """images in 0..255 [B, 3, H, W] -> training: outputs for `losses`; eval: features [B, D].

    A subclass builds itself with `from_config(cfg, num_classes)`, normalises its input
    with `normalise`, and computes its loss dict in `losses(outputs, targets)`.
    """

    def __init__(self, *, pixel_mean, pixel_std):
        super().__init__()
        # Not persistent, as in FastReID: its state dicts hold no pixel statistics.
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.frozen: tuple[str, ...] = ()
        self._frozen_params: list[nn.Parameter] = []

    @classmethod
    def from_config(cls, cfg, num_classes: int) -> "ReidModel":
        raise NotImplementedError

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std

    def losses(self, outputs, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # ---------------------------------------------------------- optimisation helpers

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Named parameters split into "backbone" and "heads" (the latter get HEADS_LR_FACTOR)."""
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {"backbone": [], "heads": []}
        for name, param in self.named_parameters():
            groups["heads" if self.is_head_parameter(name) else "backbone"].append((name, param))
        return groups

    @staticmethod
    def is_head_parameter(name: str) -> bool:
        # FastReID's rule: the module named `heads`, so MGN's b1_head... are not heads here either.
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
