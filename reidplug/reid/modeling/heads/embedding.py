"""The embedding head: pooling, optional 1x1 reduction, BNNeck and identity classifier (FastReID's layout)."""

from __future__ import annotations

import torch
from torch import nn

from reidplug.reid.modeling.heads.classifiers import LinearClassifier


def bnneck(channels: int) -> nn.BatchNorm2d:
    """A batch norm whose shift is fixed at zero (Luo et al. 2019: the classifier then sees a centred feature)."""
    bn = nn.BatchNorm2d(channels)
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)
    bn.bias.requires_grad_(False)
    return bn


def reduction(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A bias-free 1x1 convolution to the embedding size (no norm or activation of its own: the BNNeck follows)."""
    conv = nn.Conv2d(in_channels, out_channels, 1, 1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    return conv


class EmbeddingHead(nn.Module):
    """Feature map -> embedding; in training also the identity logits.

    Parameter names are FastReID's: `pool_layer`, `bottleneck` (the optional 1x1
    reduction, then the BNNeck), `weight` (the class centres) and `cls_layer` (the
    margin, no parameters), so a FastReID state dict loads as it is.

    Training returns a dict:
      - `features`: for the metric losses, the pooled feature (NECK_FEAT "before",
        taken before the reduction as FastReID does) or the bottleneck output ("after");
      - `logits`: the plain classifier scores, before scale and margin;
      - `pred_class_logits`: scale x logits, detached, for accuracy;
      - `cls_outputs`: the margin-applied logits of the classification loss, present
        when targets were given or the classifier has no margin.
    Evaluation returns the bottleneck output [B, D]: the test feature.
    """

    def __init__(
        self,
        pool: nn.Module,
        in_channels: int,
        classifier_cls: type[LinearClassifier],
        num_classes: int,
        *,
        embedding_dim: int = 0,
        with_bnneck: bool = True,
        neck_feat: str = "before",
        scale: float = 1.0,
        margin: float = 0.0,
    ):
        super().__init__()
        self.pool_layer = pool
        self.out_channels = embedding_dim if embedding_dim > 0 else in_channels
        neck: list[nn.Module] = []
        if embedding_dim > 0:
            neck.append(reduction(in_channels, embedding_dim))
        if with_bnneck:
            neck.append(bnneck(self.out_channels))
        self.bottleneck = nn.Sequential(*neck)
        self.neck_feat = neck_feat
        self.weight = nn.Parameter(torch.empty(num_classes, self.out_channels))
        nn.init.normal_(self.weight, std=0.01)
        self.cls_layer = classifier_cls(num_classes, scale=scale, margin=margin)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def forward(self, features: torch.Tensor, targets: torch.Tensor | None = None):
        pooled = self.pool_layer(features)
        # The reduction is a convolution and the BNNeck a 2-d norm, on [B, C, 1, 1], as in FastReID.
        neck = self.bottleneck(pooled[..., None, None]).flatten(1)
        if not self.training:
            return neck
        logits = self.cls_layer.logits(neck, self.weight)
        outputs = {
            "features": pooled if self.neck_feat == "before" else neck,
            "logits": logits,
            "pred_class_logits": (logits * self.cls_layer.scale).detach(),
        }
        if targets is not None or not self.cls_layer.needs_targets:
            outputs["cls_outputs"] = self.cls_layer.apply_margin(logits, targets)
        return outputs

    def classification_outputs(self, outputs: dict, targets: torch.Tensor) -> torch.Tensor:
        """The margin-applied logits of `outputs`, applying the margin now if forward had no targets."""
        if "cls_outputs" in outputs:
            return outputs["cls_outputs"]
        return self.cls_layer.apply_margin(outputs["logits"], targets)
