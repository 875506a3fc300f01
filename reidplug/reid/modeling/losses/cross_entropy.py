"""Cross-entropy with label smoothing in FastReID's form, fixed or adaptive."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reidplug.reid.modeling.precision import full_precision


def smoothed_targets(targets: torch.Tensor, num_classes: int, epsilon) -> torch.Tensor:
    """Target distributions: 1-eps on the label and eps/(C-1) on each other class.

    `epsilon` is a number or a [B, 1] tensor (one value per sample, adaptive smoothing).
    """
    if num_classes < 2:
        return torch.ones(targets.size(0), num_classes, device=targets.device)
    eps = torch.as_tensor(epsilon, dtype=torch.float32, device=targets.device).expand(targets.size(0), 1)
    dist = (eps / (num_classes - 1)).expand(targets.size(0), num_classes).clone()
    return dist.scatter_(1, targets.long().view(-1, 1), 1.0 - eps)


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 0.1,
                       alpha: float = 0.2) -> torch.Tensor:
    """-sum_c q_c log p_c with the smoothed targets q, in fp32, averaged as FastReID does.

    epsilon >= 0 smooths by epsilon. epsilon < 0 is FastReID's adaptive smoothing: each
    sample's epsilon is alpha times the predicted probability of its true class (MODEL.LOSSES.CE.ALPHA),
    taken without gradient. The sum over samples is divided by the number of non-zero
    terms (at least 1), FastReID's mean.
    """
    with full_precision(logits):
        log_probs = F.log_softmax(logits.float(), dim=1)
        with torch.no_grad():
            if epsilon >= 0:
                smooth = epsilon
            else:
                true_prob = log_probs.exp().gather(1, targets.long().view(-1, 1))
                smooth = alpha * true_prob
            q = smoothed_targets(targets, logits.size(1), smooth)
        per_sample = -(q * log_probs).sum(dim=1)
        with torch.no_grad():
            count = max(int(torch.count_nonzero(per_sample)), 1)
        return per_sample.sum() / count
