"""Identity classifiers: a plain linear layer and cosine layers with CosFace, ArcFace or Circle margins.

Each has `logits(x, W)` (the plain scores: W x, or cos(x, W) for the cosine layers),
`scale` (s) and `apply_margin(logits, targets)`, the training logits of the loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from reidplug.reid.modeling.precision import full_precision


class LinearClassifier(nn.Module):
    """Plain scores W x, scaled by s. Holds no parameter: the head owns the class centres W
    (FastReID's `heads.weight`), so that its state dicts load as they are."""

    needs_targets = False

    def __init__(self, num_classes: int, scale: float = 1.0, margin: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        self.scale = float(scale)
        self.margin = float(margin)

    def logits(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight)

    def apply_margin(self, logits: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        return logits * self.scale

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, scale={self.scale:g}, margin={self.margin:g}"


class CosineClassifier(LinearClassifier):
    """Cosine similarity to each class centre, in fp32 (s times a low-precision error is large)."""

    needs_targets = True

    def logits(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        with full_precision(x):
            return F.linear(F.normalize(x.float(), dim=1), F.normalize(weight.float(), dim=1))

    def target_mask(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.one_hot(targets.long(), logits.size(1)).bool()


class CosSoftmax(CosineClassifier):
    """CosFace: s * (cos - m) for the target class, s * cos elsewhere."""

    def apply_margin(self, logits, targets):
        return self.scale * (logits - self.margin * self.target_mask(logits, targets).to(logits.dtype))


class ArcSoftmax(CosineClassifier):
    """ArcFace: s * cos(theta + m) for the target class, s * cos elsewhere."""

    def apply_margin(self, logits, targets):
        cos = logits.clamp(-1.0, 1.0)
        sin = (1.0 - cos * cos).clamp(min=0.0).sqrt()
        cos_plus_m = cos * math.cos(self.margin) - sin * math.sin(self.margin)
        # Past theta = pi - m, cos(theta + m) would rise again; continue it linearly instead.
        linear_tail = cos - math.sin(math.pi - self.margin) * self.margin
        falling = torch.where(cos > math.cos(math.pi - self.margin), cos_plus_m, linear_tail)
        return self.scale * torch.where(self.target_mask(logits, targets), falling, cos)


class CircleSoftmax(CosineClassifier):
    """Circle loss logits: self-paced weights around the optima 1+m (target) and -m (others)."""

    def apply_margin(self, logits, targets):
        m = self.margin
        alpha_p = (1.0 + m - logits.detach()).clamp(min=0.0)
        alpha_n = (logits.detach() + m).clamp(min=0.0)
        positive = self.scale * alpha_p * (logits - (1.0 - m))
        negative = self.scale * alpha_n * (logits - m)
        return torch.where(self.target_mask(logits, targets), positive, negative)


CLASSIFIERS = {
    "Linear": LinearClassifier,
    "CosSoftmax": CosSoftmax,
    "ArcSoftmax": ArcSoftmax,
    "CircleSoftmax": CircleSoftmax,
}
