"""Losses on small hand-checked inputs, their selection by name, and fp32 under autocast."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reidplug.core.config import load_config
from reidplug.core.errors import ConfigError
from reidplug.reid.modeling.losses import (
    check_loss_names,
    compute_losses,
    cross_entropy_loss,
    pairwise_circle_loss,
    pairwise_cosface_loss,
    smoothed_targets,
    triplet_loss,
)


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def lse(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


# ------------------------------------------------------------------ cross-entropy


def test_label_smoothing_distribution():
    q = smoothed_targets(torch.tensor([2, 0]), num_classes=5, epsilon=0.2)
    expected = torch.tensor([[0.05, 0.05, 0.8, 0.05, 0.05], [0.8, 0.05, 0.05, 0.05, 0.05]])
    torch.testing.assert_close(q, expected)
    torch.testing.assert_close(q.sum(1), torch.ones(2))


def test_cross_entropy_with_smoothing_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    targets = torch.tensor([0, 1])
    eps = 0.1
    total = 0.0
    for row, t in zip(logits.tolist(), targets.tolist()):
        log_z = math.log(sum(math.exp(v) for v in row))
        q = [1 - eps if c == t else eps / 2 for c in range(3)]
        total += -sum(qc * (v - log_z) for qc, v in zip(q, row))
    assert cross_entropy_loss(logits, targets, eps).item() == pytest.approx(total / 2, rel=1e-6)


def test_cross_entropy_without_smoothing_is_the_plain_one():
    torch.manual_seed(0)
    logits, targets = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    torch.testing.assert_close(cross_entropy_loss(logits, targets, 0.0), F.cross_entropy(logits, targets))


# ------------------------------------------------------------------ triplet

# 1-D features: identity 0 at 0, 1, 3; identity 1 at 6, 10.
FEATS = torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]])
LABELS = torch.tensor([0, 0, 0, 1, 1])
# Hardest positive / negative distance of each anchor, read off the line by hand.
HARD_AP = [3.0, 2.0, 3.0, 4.0, 4.0]
HARD_AN = [6.0, 5.0, 3.0, 3.0, 7.0]


def test_triplet_hard_mining_with_margin():
    expected = sum(max(ap - an + 0.3, 0.0) for ap, an in zip(HARD_AP, HARD_AN)) / 5
    assert expected == pytest.approx((0.3 + 1.3) / 5)
    assert triplet_loss(FEATS, LABELS, margin=0.3).item() == pytest.approx(expected, rel=1e-5)


def test_triplet_soft_margin():
    expected = sum(softplus(ap - an) for ap, an in zip(HARD_AP, HARD_AN)) / 5
    assert triplet_loss(FEATS, LABELS, margin=0.0).item() == pytest.approx(expected, rel=1e-5)


def test_triplet_weighted_mining():
    points, labels = FEATS[:, 0].tolist(), LABELS.tolist()
    total = 0.0
    for i, x in enumerate(points):
        # FastReID counts the anchor among its positives (distance 0).
        pos = [abs(x - y) for j, y in enumerate(points) if labels[j] == labels[i]]
        neg = [abs(x - y) for j, y in enumerate(points) if labels[j] != labels[i]]
        # FastReID's softmax: shifted by the row maximum (0 for the negatives' -d, whose masked
        # entries count as 0) and 1e-6 added to the normaliser.
        top = max(pos)
        d_ap = sum(d * math.exp(d - top) for d in pos) / (sum(math.exp(d - top) for d in pos) + 1e-6)
        d_an = sum(d * math.exp(-d) for d in neg) / (sum(math.exp(-d) for d in neg) + 1e-6)
        total += max(d_ap - d_an + 0.3, 0.0)
    got = triplet_loss(FEATS, LABELS, margin=0.3, hard_mining=False).item()
    assert got == pytest.approx(total / 5, rel=1e-5)
    assert got != pytest.approx(triplet_loss(FEATS, LABELS, margin=0.3).item(), rel=1e-3)


def test_triplet_on_normalised_features():
    # Unit vectors at angles 0 and 90 degrees (identity 0) and 180 degrees (identity 1), at other lengths.
    feats = torch.tensor([[2.0, 0.0], [0.0, 5.0], [-3.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    # FastReID's cosine distance 2 - 2cos (squared, no root): 2 at 90 degrees, 4 at 180.
    # anchor 0: ap = 2, an = 4; anchor 1: ap = 2, an = 2; anchor 2: ap = 0 (alone), an = 2.
    expected = (max(2 - 4 + 0.3, 0) + 0.3 + max(0 - 2 + 0.3, 0)) / 3
    assert expected == pytest.approx(0.1)
    assert triplet_loss(feats, labels, margin=0.3, norm_feat=True).item() == pytest.approx(expected, rel=1e-5)
    assert triplet_loss(feats, labels, margin=0.3).item() != pytest.approx(expected, rel=1e-2)


def test_triplet_gradient_reaches_only_mined_samples():
    feats = FEATS.clone().requires_grad_(True)
    triplet_loss(feats, LABELS, margin=0.3).backward()
    # Only anchors 2 (ap to 0, an to 6) and 3 (ap to 10, an to 3) violate the margin; neither mines sample 1.
    assert feats.grad[1].item() == 0.0
    assert (feats.grad[[0, 2, 3, 4]] != 0).all()


def test_triplet_without_negatives_is_zero_with_a_gradient():
    feats = torch.randn(4, 3, requires_grad=True)
    loss = triplet_loss(feats, torch.zeros(4, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert feats.grad is not None


# ------------------------------------------------------------------ pairwise losses

PAIR_FEATS = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 2.0], [-1.0, 1.0]])
PAIR_LABELS = torch.tensor([0, 0, 1, 1])


def cosines():
    x = [[v / math.hypot(*row) for v in row] for row in PAIR_FEATS.tolist()]
    return [[sum(a * b for a, b in zip(u, v)) for v in x] for u in x]


def pairwise_by_hand(logit_p, logit_n) -> float:
    s, labels = cosines(), PAIR_LABELS.tolist()
    total = 0.0
    for i in range(4):
        lp = [logit_p(s[i][j]) for j in range(4) if j != i and labels[j] == labels[i]]
        ln = [logit_n(s[i][j]) for j in range(4) if labels[j] != labels[i]]
        total += softplus(lse(lp) + lse(ln))
    return total / 4


def test_pairwise_circle_loss_by_hand():
    m, gamma = 0.25, 4.0
    expected = pairwise_by_hand(
        lambda sp: -gamma * max(1 + m - sp, 0.0) * (sp - (1 - m)),
        lambda sn: gamma * max(sn + m, 0.0) * (sn - m),
    )
    got = pairwise_circle_loss(PAIR_FEATS, PAIR_LABELS, margin=m, gamma=gamma).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_pairwise_cosface_loss_by_hand():
    m, gamma = 0.35, 4.0
    expected = pairwise_by_hand(lambda sp: -gamma * sp, lambda sn: gamma * (sn + m))
    got = pairwise_cosface_loss(PAIR_FEATS, PAIR_LABELS, margin=m, gamma=gamma).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_pairwise_losses_at_default_gamma_stay_finite():
    feats = PAIR_FEATS.clone().requires_grad_(True)
    for fn in (pairwise_circle_loss, pairwise_cosface_loss):
        loss = fn(feats, PAIR_LABELS, margin=0.25, gamma=128.0)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(feats.grad).all()
        feats.grad = None


def circle_per_anchor(feats, labels, m, gamma, detach_weights):
    """Circle loss written anchor by anchor, as an independent reference."""
    x = F.normalize(feats, dim=1)
    s = x @ x.t()
    terms = []
    for i in range(len(labels)):
        others = torch.arange(len(labels)) != i
        sp = s[i][(labels == labels[i]) & others]
        sn = s[i][labels != labels[i]]
        wp, wn = (sp.detach(), sn.detach()) if detach_weights else (sp, sn)
        logit_p = -gamma * (1 + m - wp).clamp(min=0) * (sp - (1 - m))
        logit_n = gamma * (wn + m).clamp(min=0) * (sn - m)
        terms.append(F.softplus(torch.logsumexp(logit_p, 0) + torch.logsumexp(logit_n, 0)))
    return torch.stack(terms).mean()


def test_circle_weights_are_detached():
    m, gamma = 0.25, 2.0
    feats = PAIR_FEATS.clone().requires_grad_(True)
    (got,) = torch.autograd.grad(pairwise_circle_loss(feats, PAIR_LABELS, m, gamma), feats)
    (detached,) = torch.autograd.grad(circle_per_anchor(feats, PAIR_LABELS, m, gamma, True), feats)
    (live,) = torch.autograd.grad(circle_per_anchor(feats, PAIR_LABELS, m, gamma, False), feats)
    torch.testing.assert_close(got, detached)
    assert not torch.allclose(got, live, rtol=1e-3, atol=1e-5)


# ------------------------------------------------------------------ fp32 under autocast


@pytest.mark.parametrize(
    "fn, args",
    [
        (triplet_loss, {"margin": 0.3}),
        (triplet_loss, {"margin": 0.0, "hard_mining": False, "norm_feat": True}),
        (pairwise_circle_loss, {}),
        (pairwise_cosface_loss, {}),
    ],
)
def test_metric_losses_run_in_fp32_under_bf16_autocast(fn, args):
    torch.manual_seed(0)
    feats = torch.randn(8, 64).bfloat16()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    reference = fn(feats.float(), labels, **args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fn(feats, labels, **args)
    assert got.dtype == torch.float32
    # A bf16 distance matrix would be off by ~1e-2 relative; fp32 agrees to rounding.
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-5)


def test_cross_entropy_runs_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    logits = (torch.randn(8, 50) * 10).bfloat16()
    labels = torch.arange(8)
    reference = cross_entropy_loss(logits.float(), labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = cross_entropy_loss(logits, labels)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, reference, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ selection by name


def losses_cfg(**keys):
    return load_config({"MODEL": {"LOSSES": keys}}).MODEL.LOSSES


def test_compute_losses_names_and_scales():
    torch.manual_seed(0)
    logits, feats = torch.randn(4, 3), torch.randn(4, 5)
    labels = torch.tensor([0, 0, 1, 1])
    lcfg = losses_cfg(
        NAME=["CrossEntropyLoss", "TripletLoss", "CircleLoss", "Cosface"],
        CE={"EPSILON": 0.1, "SCALE": 2.0},
        TRI={"MARGIN": 0.0, "SCALE": 0.5, "HARD_MINING": True},
        CIRCLE={"MARGIN": 0.25, "GAMMA": 8.0, "SCALE": 3.0},
        COSFACE={"MARGIN": 0.35, "GAMMA": 16.0, "SCALE": 0.25},
    )
    got = compute_losses(logits, feats, labels, lcfg)
    assert list(got) == ["loss_cls", "loss_triplet", "loss_circle", "loss_cosface"]
    torch.testing.assert_close(got["loss_cls"], 2.0 * cross_entropy_loss(logits, labels, 0.1))
    torch.testing.assert_close(got["loss_triplet"], 0.5 * triplet_loss(feats, labels, margin=0.0))
    torch.testing.assert_close(got["loss_circle"], 3.0 * pairwise_circle_loss(feats, labels, 0.25, 8.0))
    torch.testing.assert_close(got["loss_cosface"], 0.25 * pairwise_cosface_loss(feats, labels, 0.35, 16.0))


def test_unknown_loss_name_lists_known_ones():
    with pytest.raises(ConfigError, match="MODEL.LOSSES.NAME") as info:
        check_loss_names(["CrossEntropyLoss", "CenterLoss"])
    for known in ("CrossEntropyLoss", "TripletLoss", "CircleLoss", "Cosface"):
        assert known in str(info.value)
    with pytest.raises(ConfigError, match="MODEL.LOSSES.NAME"):
        check_loss_names([])
