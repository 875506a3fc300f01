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


def cosine_distances(x: torch.Tensor) -> torch.Tensor:
    """FastReID's cosine distance of the rows of x: 2 - 2 cos, the squared Euclidean distance of
    the normalised rows (no square root)."""
    x = F.normalize(x, dim=1)
    return 2.0 - 2.0 * (x @ x.t())


def pair_masks(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) pair masks; an anchor is not its own positive."""
    same = targets.view(-1, 1) == targets.view(1, -1)
    eye = torch.eye(len(targets), dtype=torch.bool, device=targets.device)
    return same & ~eye, ~same


def masked_softmax(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """FastReID's row-wise softmax over the masked entries: shifted by max(x * mask) (masked-out
    entries count as 0 there), 1e-6 added to the normaliser; rows without any entry are all zero."""
    m = mask.to(x.dtype)
    top = (x * m).amax(dim=1, keepdim=True)
    e = (x - top).exp() * m
    return e / (e.sum(dim=1, keepdim=True) + 1e-6)


def triplet_loss(
    features: torch.Tensor,
    targets: torch.Tensor,
    margin: float = 0.3,
    norm_feat: bool = False,
    hard_mining: bool = True,
) -> torch.Tensor:
    """Triplet loss over each anchor's hardest (or softmax-weighted) positive and negative, in fp32.

    margin > 0: mean(relu(d_ap - d_an + margin)); margin 0: mean(softplus(d_ap - d_an)).
    Distances are Euclidean, or with `norm_feat` FastReID's cosine distance 2 - 2cos.
    Weighted mining, as FastReID's, counts the anchor among its own positives (at
    distance ~0). Anchors without a negative in the batch are left out.
    """
    with full_precision(features):
        x = features.float()
        dist = cosine_distances(x) if norm_feat else euclidean_distances(x)
        pos, neg = pair_masks(targets)
        if hard_mining:
            # An anchor without another positive gets d_ap = 0, the distance to itself.
            d_ap = dist.masked_fill(~pos, 0.0).amax(dim=1)
            d_an = dist.masked_fill(~neg, float("inf")).amin(dim=1)
        else:
            with_self = pos | torch.eye(len(targets), dtype=torch.bool, device=targets.device)
            d_ap = (masked_softmax(dist, with_self) * dist).sum(dim=1)
            d_an = (masked_softmax(-dist, neg) * dist).sum(dim=1)
        valid = neg.any(dim=1)
        if not valid.any():
            return x.sum() * 0.0
        diff = d_ap[valid] - d_an[valid]
        if margin > 0:
            return F.relu(diff + margin).mean()
        return F.softplus(diff).mean()
