"""The batch triplet loss with hard or softmax-weighted mining."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reidplug.reid.modeling.precision import full_precision


def euclidean_distances(x: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances of the rows of x."""
    sq = x.pow(2).sum(dim=1, keepdim=True)
    d2 = sq + sq.t() - 2.0 * (x @ x.t())
    # The clamp keeps sqrt's gradient finite at (numerically) zero distances.
    return d2.clamp(min=1e-12).sqrt()


def pair_masks(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) pair masks; an anchor is not its own positive."""
    same = targets.view(-1, 1) == targets.view(1, -1)
    eye = torch.eye(len(targets), dtype=torch.bool, device=targets.device)
    return same & ~eye, ~same


def masked_softmax(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax over the masked entries; rows without any are all zero."""
    z = x.masked_fill(~mask, float("-inf"))
    top = z.amax(dim=1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    e = (z - top).exp()
    return e / e.sum(dim=1, keepdim=True).clamp(min=1e-12)


def triplet_loss(
    features: torch.Tensor,
    targets: torch.Tensor,
    margin: float = 0.3,
    norm_feat: bool = False,
    hard_mining: bool = True,
) -> torch.Tensor:
    """Triplet loss over each anchor's hardest (or softmax-weighted) positive and negative, in fp32.

    margin > 0: mean(relu(d_ap - d_an + margin)); margin 0: mean(softplus(d_ap - d_an)).
    Anchors without a negative in the batch are left out.
    """
    with full_precision(features):
        x = features.float()
        if norm_feat:
            x = F.normalize(x, dim=1)
        dist = euclidean_distances(x)
        pos, neg = pair_masks(targets)
        if hard_mining:
            # An anchor without another positive gets d_ap = 0, the distance to itself.
            d_ap = dist.masked_fill(~pos, 0.0).amax(dim=1)
            d_an = dist.masked_fill(~neg, float("inf")).amin(dim=1)
        else:
            d_ap = (masked_softmax(dist, pos) * dist).sum(dim=1)
            d_an = (masked_softmax(-dist, neg) * dist).sum(dim=1)
        valid = neg.any(dim=1)
        if not valid.any():
            return x.sum() * 0.0
        diff = d_ap[valid] - d_an[valid]
        if margin > 0:
            return F.relu(diff + margin).mean()
        return F.softplus(diff).mean()
