"""Cross-entropy with label smoothing in FastReID's form."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reidplug.reid.modeling.precision import full_precision


def smoothed_targets(targets: torch.Tensor, num_classes: int, epsilon: float) -> torch.Tensor:
    """Target distributions: 1-eps on the label and eps/(C-1) on each other class."""
    if num_classes < 2:
        return torch.ones(targets.size(0), num_classes, device=targets.device)
    dist = torch.full((targets.size(0), num_classes), epsilon / (num_classes - 1), device=targets.device)
    return dist.scatter_(1, targets.long().view(-1, 1), 1.0 - epsilon)


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """Mean over the batch of -sum_c q_c log p_c with the smoothed targets q, in fp32."""
    with full_precision(logits):
        log_probs = F.log_softmax(logits.float(), dim=1)
        q = smoothed_targets(targets, logits.size(1), epsilon)
        return -(q * log_probs).sum(dim=1).mean()
