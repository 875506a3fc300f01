"""The embedding head: pooling, optional reduction, BNNeck and identity classifier."""

from __future__ import annotations

import torch
from torch import nn

from reidplug.reid.modeling.heads.classifiers import LinearClassifier


def bnneck(channels: int) -> nn.BatchNorm1d:
    """A batch norm whose shift is fixed at zero (Luo et al. 2019: the classifier then sees a centred feature)."""
    bn = nn.BatchNorm1d(channels)
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)
    bn.bias.requires_grad_(False)
    return bn


def reduction(in_channels: int, out_channels: int) -> nn.Sequential:
    """Linear projection to the embedding size, batch norm and ReLU."""
    linear = nn.Linear(in_channels, out_channels, bias=False)
    nn.init.kaiming_normal_(linear.weight, mode="fan_out", nonlinearity="relu")
    return nn.Sequential(linear, nn.BatchNorm1d(out_channels), nn.ReLU(inplace=True))


class EmbeddingHead(nn.Module):
    """Feature map -> embedding; in training also the identity logits.

    Training returns a dict:
      - `features`: the embedding before the BNNeck (NECK_FEAT "before") or after it,
        for the metric losses;
      - `logits`: the plain classifier scores, before scale and margin;
      - `pred_class_logits`: scale x logits, detached, for accuracy;
      - `cls_outputs`: the margin-applied logits of the classification loss, present
        when targets were given or the classifier has no margin.
    Evaluation returns the post-BNNeck embedding [B, D]: the test feature.
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
        self.pool = pool
        self.embedding = reduction(in_channels, embedding_dim) if embedding_dim > 0 else nn.Identity()
        self.out_channels = embedding_dim if embedding_dim > 0 else in_channels
        self.bnneck = bnneck(self.out_channels) if with_bnneck else nn.Identity()
        self.neck_feat = neck_feat
        self.classifier = classifier_cls(self.out_channels, num_classes, scale=scale, margin=margin)

    def forward(self, features: torch.Tensor, targets: torch.Tensor | None = None):
        embedding = self.embedding(self.pool(features))
        neck = self.bnneck(embedding)
        if not self.training:
            return neck
        logits = self.classifier.logits(neck)
        outputs = {
            "features": embedding if self.neck_feat == "before" else neck,
            "logits": logits,
            "pred_class_logits": (logits * self.classifier.scale).detach(),
        }
        if targets is not None or not self.classifier.needs_targets:
            outputs["cls_outputs"] = self.classifier.apply_margin(logits, targets)
        return outputs

    def classification_outputs(self, outputs: dict, targets: torch.Tensor) -> torch.Tensor:
        """The margin-applied logits of `outputs`, applying the margin now if forward had no targets."""
        if "cls_outputs" in outputs:
            return outputs["cls_outputs"]
        return self.classifier.apply_margin(outputs["logits"], targets)
