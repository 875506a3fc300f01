"""Pooling layers, the BNNeck embedding head and the identity classifiers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reidplug.core.config import load_config
from reidplug.core.errors import ConfigError
from reidplug.reid.modeling.heads import build_heads
from reidplug.reid.modeling.heads.classifiers import ArcSoftmax, CircleSoftmax, CosSoftmax, LinearClassifier
from reidplug.reid.modeling.pooling import (
    GeneralizedMeanPooling,
    GeneralizedMeanPoolingP,
    GlobalAvgPool,
    GlobalMaxPool,
    build_pooling,
)

# Two images, two channels, 2x2 maps.
FMAP = torch.tensor(
    [
        [[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 8.0]]],
        [[[2.0, 2.0], [2.0, 2.0]], [[1.0, 3.0], [5.0, 7.0]]],
    ]
)


def heads_cfg(**keys):
    keys.setdefault("WITH_BNNECK", True)  # FastReID's default is False; these tests are about the neck
    return load_config({"MODEL": {"HEADS": keys}}).MODEL.HEADS


def head(in_channels=2, num_classes=3, **keys):
    return build_heads(heads_cfg(**keys), in_channels, num_classes)


# ------------------------------------------------------------------ pooling


def test_average_and_max_pooling_values():
    torch.testing.assert_close(GlobalAvgPool()(FMAP), torch.tensor([[2.5, 2.0], [2.0, 4.0]]))
    torch.testing.assert_close(GlobalMaxPool()(FMAP), torch.tensor([[4.0, 8.0], [2.0, 7.0]]))


def test_gem_p1_is_the_average_and_p3_the_cubic_mean():
    torch.testing.assert_close(GeneralizedMeanPooling(p=1.0)(FMAP), GlobalAvgPool()(FMAP))
    gem3 = GeneralizedMeanPooling(p=3.0)(FMAP)
    assert gem3[0, 0].item() == pytest.approx(((1 + 8 + 27 + 64) / 4) ** (1 / 3), rel=1e-6)
    assert gem3[1, 1].item() == pytest.approx(((1 + 27 + 125 + 343) / 4) ** (1 / 3), rel=1e-6)
    # Zeros are clamped to eps, not taken as they are (x^p of negatives would be undefined).
    assert gem3[0, 1].item() == pytest.approx((512 / 4) ** (1 / 3), rel=1e-5)


def test_gem_large_p_approaches_the_maximum():
    gem = GeneralizedMeanPooling(p=200.0)(FMAP)
    maxed = GlobalMaxPool()(FMAP)
    assert torch.allclose(gem, maxed, rtol=0.01)
    assert (gem <= maxed + 1e-5).all()


def test_learnable_gem_starts_at_gem_p_and_learns_p():
    pool = build_pooling(heads_cfg(POOL_LAYER="GeneralizedMeanPoolingP", GEM_P=2.0))
    assert isinstance(pool, GeneralizedMeanPoolingP)
    assert pool.p.requires_grad and pool.p.item() == 2.0
    out = pool(FMAP)
    assert out[0, 0].item() == pytest.approx(math.sqrt((1 + 4 + 9 + 16) / 4), rel=1e-6)
    out.sum().backward()
    assert pool.p.grad is not None and pool.p.grad.abs().item() > 0


def test_fixed_gem_reads_gem_p_and_has_no_parameter():
    pool = build_pooling(heads_cfg(POOL_LAYER="GeneralizedMeanPooling", GEM_P=4.0))
    assert pool.p == 4.0 and not list(pool.parameters())


def test_gem_under_bf16_autocast_keeps_input_dtype():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = GeneralizedMeanPoolingP(3.0)(FMAP.bfloat16())
    assert out.dtype == torch.bfloat16


def test_unknown_pooling_lists_known_ones():
    with pytest.raises(ConfigError, match="MODEL.HEADS.POOL_LAYER") as info:
        build_pooling(heads_cfg(POOL_LAYER="GemPool"))
    for known in ("GlobalAvgPool", "GlobalMaxPool", "GeneralizedMeanPooling", "GeneralizedMeanPoolingP"):
        assert known in str(info.value)


def test_non_positive_gem_p_is_a_config_error():
    with pytest.raises(ConfigError, match="MODEL.HEADS.GEM_P"):
        build_pooling(heads_cfg(POOL_LAYER="GeneralizedMeanPooling", GEM_P=0.0))


# ------------------------------------------------------------------ head


def test_bnneck_bias_frozen_at_zero_and_weight_one():
    h = head()
    assert not h.bottleneck[0].bias.requires_grad
    assert torch.equal(h.bottleneck[0].bias, torch.zeros(2)) and torch.equal(h.bottleneck[0].weight, torch.ones(2))
    opt = torch.optim.SGD([p for p in h.parameters() if p.requires_grad], lr=1.0)
    out = h.train()(FMAP)
    out["cls_outputs"].sum().backward()
    opt.step()
    assert torch.equal(h.bottleneck[0].bias, torch.zeros(2))


def test_eval_returns_post_bnneck_features():
    h = head().eval()
    h.bottleneck[0].running_mean.copy_(torch.tensor([1.0, 2.0]))
    h.bottleneck[0].running_var.copy_(torch.tensor([4.0, 9.0]))
    with torch.no_grad():
        h.bottleneck[0].weight.copy_(torch.tensor([2.0, 0.5]))
    pooled = torch.tensor([[2.5, 2.0], [2.0, 4.0]])
    std = torch.sqrt(torch.tensor([4.0, 9.0]) + 1e-5)
    expected = (pooled - torch.tensor([1.0, 2.0])) / std * torch.tensor([2.0, 0.5])
    torch.testing.assert_close(h(FMAP), expected)


def test_training_features_before_and_after_the_neck():
    pooled = torch.tensor([[2.5, 2.0], [2.0, 4.0]])
    # Batch statistics of two samples: each channel becomes -1 and +1 (up to eps).
    normalised = (pooled - pooled.mean(0)) / torch.sqrt(pooled.var(0, unbiased=False) + 1e-5)
    before_head = head(NECK_FEAT="before").train()
    before = before_head(FMAP)
    after = head(NECK_FEAT="after").train()(FMAP)
    torch.testing.assert_close(before["features"], pooled)
    torch.testing.assert_close(after["features"], normalised)
    # The classifier always sees the post-neck feature.
    torch.testing.assert_close(before["logits"], F.linear(normalised, before_head.weight))


def test_without_bnneck_eval_features_are_the_pooled_ones():
    h = head(WITH_BNNECK=False).eval()
    torch.testing.assert_close(h(FMAP), torch.tensor([[2.5, 2.0], [2.0, 4.0]]))


def test_embedding_reduction_sets_the_feature_size():
    h = head(in_channels=2, EMBEDDING_DIM=5, WITH_BNNECK=True)
    out = h.train()(torch.rand(4, 2, 3, 3))
    # NECK_FEAT "before": the metric losses get the pooled feature, from before the reduction.
    assert out["features"].shape == (4, 2) and out["logits"].shape == (4, 3)
    assert h.eval()(torch.rand(4, 2, 3, 3)).shape == (4, 5)


def test_linear_classifier_init_and_no_bias():
    torch.manual_seed(0)
    h = head(in_channels=256, num_classes=200)
    w = h.weight
    assert w.shape == (200, 256)
    assert w.std().item() == pytest.approx(0.01, rel=0.03)
    assert abs(w.mean().item()) < 5e-4
    assert not list(h.cls_layer.parameters())


def test_unknown_classifier_lists_known_ones():
    with pytest.raises(ConfigError, match="MODEL.HEADS.CLS_LAYER") as info:
        head(CLS_LAYER="AMSoftmax")
    assert "CircleSoftmax" in str(info.value) and "ArcSoftmax" in str(info.value)


# ------------------------------------------------------------------ classifiers

X = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
W = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])
TARGETS = torch.tensor([1, 0])
# cos(x, w) by hand: x0 = (0.6, 0.8), x1 = (1, 0); class directions (1,0), (0,1), (-1,0).
COS = torch.tensor([[0.6, 0.8, -0.6], [1.0, 0.0, -1.0]])


def classifier(cls, scale, margin):
    return cls(3, scale=scale, margin=margin)


def test_linear_classifier_logits_and_scale():
    c = classifier(LinearClassifier, 2.0, 0.0)
    torch.testing.assert_close(c.logits(X, W), torch.tensor([[3.0, 8.0, -3.0], [1.0, 0.0, -1.0]]))
    torch.testing.assert_close(c.apply_margin(c.logits(X, W), TARGETS), 2.0 * c.logits(X, W))


def test_cosface_logits():
    c = classifier(CosSoftmax, 10.0, 0.3)
    torch.testing.assert_close(c.logits(X, W), COS)
    expected = 10.0 * torch.tensor([[0.6, 0.5, -0.6], [0.7, 0.0, -1.0]])
    torch.testing.assert_close(c.apply_margin(c.logits(X, W), TARGETS), expected)


def test_arcface_logits():
    c = classifier(ArcSoftmax, 10.0, 0.5)
    out = c.apply_margin(c.logits(X, W), TARGETS)
    # Target of sample 0: theta = acos(0.8); of sample 1: theta = 0.
    expected = 10.0 * torch.tensor([[0.6, math.cos(math.acos(0.8) + 0.5), -0.6], [math.cos(0.5), 0.0, -1.0]])
    torch.testing.assert_close(out, expected)


def test_arcface_beyond_pi_minus_m_stays_decreasing():
    c = classifier(ArcSoftmax, 1.0, 0.5)
    cos = torch.tensor([[-0.95, 0.0, 0.0]])
    out = c.apply_margin(cos, torch.tensor([0]))
    # theta = acos(-0.95) > pi - 0.5: the linear continuation cos - m sin(m).
    assert out[0, 0].item() == pytest.approx(-0.95 - 0.5 * math.sin(0.5), rel=1e-6)


def test_circle_softmax_logits():
    s, m = 4.0, 0.25
    c = classifier(CircleSoftmax, s, m)
    out = c.apply_margin(c.logits(X, W), TARGETS)

    def pos(cos):
        return s * max(1 + m - cos, 0.0) * (cos - (1 - m))

    def neg(cos):
        return s * max(cos + m, 0.0) * (cos - m)

    expected = torch.tensor([[neg(0.6), pos(0.8), neg(-0.6)], [pos(1.0), neg(0.0), neg(-1.0)]])
    torch.testing.assert_close(out, expected)


def test_margin_heads_need_targets_for_cls_outputs():
    h = head(CLS_LAYER="CircleSoftmax", SCALE=8.0, MARGIN=0.25).train()
    without = h(FMAP)
    assert "cls_outputs" not in without
    with_targets = h(FMAP, torch.tensor([0, 2]))
    torch.testing.assert_close(with_targets["cls_outputs"], h.classification_outputs(without, torch.tensor([0, 2])))
    torch.testing.assert_close(with_targets["pred_class_logits"], 8.0 * with_targets["logits"])
    assert not with_targets["pred_class_logits"].requires_grad
