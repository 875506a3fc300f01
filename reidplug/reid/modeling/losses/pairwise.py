"""Pairwise circle and CosFace losses over the cosine similarities within a batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reidplug.reid.modeling.losses.triplet import pair_masks
from reidplug.reid.modeling.precision import full_precision

# Stands for -inf in masked logits: finite, so rows without any pair stay NaN-free.
_NEG = -1e9


def _cosine_and_masks(features: torch.Tensor, targets: torch.Tensor):
    x = F.normalize(features.float(), dim=1)
    return x @ x.t(), *pair_masks(targets)


def _pair_loss(logit_p: torch.Tensor, logit_n: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    lse_p = torch.logsumexp(logit_p.masked_fill(~pos, _NEG), dim=1)
    lse_n = torch.logsumexp(logit_n.masked_fill(~neg, _NEG), dim=1)
    return F.softplus(lse_p + lse_n).mean()


def pairwise_circle_loss(
    features: torch.Tensor, targets: torch.Tensor, margin: float = 0.25, gamma: float = 128.0
) -> torch.Tensor:
    """Circle loss (Sun et al. 2020) on normalised embeddings, in fp32.

    alpha_p = relu(1+m-s_p), alpha_n = relu(s_n+m) (detached);
    loss = mean_i softplus(LSE_p(-gamma alpha_p (s_p-(1-m))) + LSE_n(gamma alpha_n (s_n-m))).
    """
    with full_precision(features):
        sim, pos, neg = _cosine_and_masks(features, targets)
        alpha_p = (1.0 + margin - sim.detach()).clamp(min=0.0)
        alpha_n = (sim.detach() + margin).clamp(min=0.0)
        logit_p = -gamma * alpha_p * (sim - (1.0 - margin))
        logit_n = gamma * alpha_n * (sim - margin)
        return _pair_loss(logit_p, logit_n, pos, neg)


def pairwise_cosface_loss(
    features: torch.Tensor, targets: torch.Tensor, margin: float = 0.25, gamma: float = 128.0
) -> torch.Tensor:
    """Pairwise CosFace on normalised embeddings, in fp32.

    loss = mean_i softplus(LSE_p(-gamma s_p) + LSE_n(gamma (s_n + m))).
    """
    with full_precision(features):
        sim, pos, neg = _cosine_and_masks(features, targets)
        return _pair_loss(-gamma * sim, gamma * (sim + margin), pos, neg)
