"""The models of FastReID's recipes, and FastReID's semantics where reidplug used to differ.

FASTREID holds numbers measured on FastReID's own code: the `fastreid` 1.4.0 wheel
from PyPI (its modeling package is the one at the head of JDAI-CV/fast-reid: same
resnet.py, Non_local, EmbeddingHead, MGN), imported with this project's torch, each
model built by `fastreid.modeling.build_model` from `get_cfg()` plus the model keys of
the recipe (below) and MODEL.HEADS.NUM_CLASSES 751 (Market-1501's training
identities). For each: the number of parameters, the test feature size, and a digest
of the state dict's layout (every key with its shape, sorted; see `layout`).
"""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F

from reidplug.core.config import load_config
from reidplug.core.errors import ConfigError
from reidplug.reid.modeling import MGN, build_model
from reidplug.reid.modeling.backbones import build_backbone
from reidplug.reid.modeling.heads import build_heads
from reidplug.reid.modeling.losses import cross_entropy_loss, triplet_loss

# The model keys of FastReID's configs/Base-bagtricks.yml, Base-AGW.yml, Base-SBS.yml and Base-MGN.yml.
BOT = ["MODEL.BACKBONE.NAME=build_resnet_backbone", "MODEL.BACKBONE.DEPTH=50x", "MODEL.BACKBONE.LAST_STRIDE=1",
       "MODEL.HEADS.WITH_BNNECK=true", "MODEL.HEADS.POOL_LAYER=GlobalAvgPool", "MODEL.HEADS.NECK_FEAT=before",
       "MODEL.HEADS.CLS_LAYER=Linear"]
AGW = [*BOT, "MODEL.BACKBONE.WITH_NL=true", "MODEL.HEADS.POOL_LAYER=GeneralizedMeanPooling"]
SBS = [*BOT, "MODEL.BACKBONE.WITH_NL=true", "MODEL.HEADS.NECK_FEAT=after",
       "MODEL.HEADS.POOL_LAYER=GeneralizedMeanPoolingP", "MODEL.HEADS.CLS_LAYER=CircleSoftmax",
       "MODEL.HEADS.SCALE=64", "MODEL.HEADS.MARGIN=0.35"]
MGN_KEYS = [*SBS, "MODEL.META_ARCHITECTURE=MGN", "MODEL.BACKBONE.WITH_NL=false", "MODEL.HEADS.EMBEDDING_DIM=256"]
IBN = ["MODEL.BACKBONE.WITH_IBN=true"]
R101 = ["MODEL.BACKBONE.DEPTH=101x"]

# recipe -> (model keys, FastReID's parameter count, test feature size, layout digest, state-dict entries)
FASTREID = {
    "bagtricks_R50": (BOT, 25_050_176, 2048, "a1dc5a36a4d1ec56", 324),
    "bagtricks_R50-ibn": (BOT + IBN, 25_050_176, 2048, "1f620369c29cacf5", 350),
    "bagtricks_R101-ibn": (BOT + IBN + R101, 44_042_304, 2048, "a56f60544464889c", 690),
    "AGW_R50": (AGW, 25_078_863, 2048, "3ceb30a8b9cd7025", 389),
    "sbs_R50-ibn": (SBS + IBN, 25_078_864, 2048, "1678ae7aa46be8ed", 416),
    "sbs_R101-ibn": (SBS + IBN + R101, 44_114_018, 2048, "10b37a4a1eb8ef38", 834),
    "mgn_R50-ibn": (MGN_KEYS + IBN, 70_345_800, 2048, "c35243c6d700dfdb", 728),
}


def layout(state: dict) -> tuple[str, int]:
    """(first 16 hex digits of sha256 over "key:shape" lines, sorted by key; number of entries)."""
    text = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(state.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16], len(state)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(FASTREID))
def test_recipe_model_equals_fastreids(recipe):
    keys, params, dim, digest, entries = FASTREID[recipe]
    cfg = load_config({}, [*keys, "MODEL.DEVICE=cpu"])
    # On the meta device: the structure and shapes without the cost of initialising 25-70M weights.
    with torch.device("meta"):
        model = build_model(cfg, 751).eval()
        features = model(torch.zeros(2, 3, 96, 48))
    assert sum(p.numel() for p in model.parameters()) == params
    assert features.shape == (2, dim)
    # The same parameter names and shapes as FastReID's model: its checkpoints load key for key.
    assert layout(model.state_dict()) == (digest, entries)


def small_cfg(*overrides):
    return load_config({}, ["MODEL.DEVICE=cpu", *overrides])


# ------------------------------------------------------------------ losses


def test_triplet_norm_feat_is_fastreids_squared_cosine_distance():
    # Angles 0 and 60 degrees (identity 0), 180 (identity 1): 2 - 2cos is 1 at 60 and 4 at 180 degrees.
    feats = torch.tensor([[3.0, 0.0], [0.5, math.sqrt(3) / 2], [-2.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    # anchor 0: ap 1, an 4; anchor 1: ap 1, an 2 - 2cos(120) = 3; anchor 2: ap 0 (alone), an 3.
    expected = (max(1 - 4 + 2.5, 0) + max(1 - 3 + 2.5, 0) + max(0 - 3 + 2.5, 0)) / 3
    assert expected == pytest.approx(0.5 / 3)
    # The square-rooted distances (1, 2, sqrt 3) would give (1.5 + 1.77 + 0.77) / 3 instead.
    assert triplet_loss(feats, labels, margin=2.5, norm_feat=True).item() == pytest.approx(expected, rel=1e-5)


def test_adaptive_label_smoothing_uses_alpha_times_the_true_class_probability():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 1.0]], requires_grad=True)
    targets = torch.tensor([0, 2])
    alpha = 0.4
    total = 0.0
    for row, t in zip(logits.tolist(), targets.tolist()):
        z = sum(math.exp(v) for v in row)
        log_p = [v - math.log(z) for v in row]
        eps = alpha * math.exp(log_p[t])  # FastReID: smooth = alpha * softmax(true class)
        q = [1 - eps if c == t else eps / 2 for c in range(3)]
        total += -sum(qc * lp for qc, lp in zip(q, log_p))
    loss = cross_entropy_loss(logits, targets, epsilon=-1.0, alpha=alpha)
    assert loss.item() == pytest.approx(total / 2, rel=1e-6)
    # The smoothing weight is taken without gradient, as FastReID's targets are.
    loss.backward()
    p = F.softmax(logits.detach(), dim=1)
    eps = alpha * p[torch.arange(2), targets].view(-1, 1)
    q = torch.full((2, 3), 0.0) + eps / 2
    q[torch.arange(2), targets] = (1 - eps).flatten()
    torch.testing.assert_close(logits.grad, (p - q) / 2)


def test_ce_alpha_reaches_the_model_losses():
    cfg = small_cfg("MODEL.BACKBONE.NAME=resnet_tiny", "MODEL.LOSSES.CE.EPSILON=-1", "MODEL.LOSSES.CE.ALPHA=0.9")
    torch.manual_seed(0)
    model = build_model(cfg, 3).train()
    targets = torch.tensor([0, 1, 2, 0])
    out = model(torch.rand(4, 3, 64, 32) * 255, targets)
    expected = cross_entropy_loss(out["cls_outputs"], targets, -1.0, 0.9)
    torch.testing.assert_close(model.losses(out, targets)["loss_cls"], expected)
    assert expected.item() != pytest.approx(cross_entropy_loss(out["cls_outputs"], targets, -1.0, 0.2).item())


# ------------------------------------------------------------------ head


def test_embedding_dim_is_a_1x1_conv_then_the_bnneck_and_before_is_the_pooled_feature():
    hcfg = small_cfg("MODEL.HEADS.EMBEDDING_DIM=3", "MODEL.HEADS.WITH_BNNECK=true").MODEL.HEADS
    head = build_heads(hcfg, 2, 4)
    conv, bn = head.bottleneck
    assert isinstance(conv, torch.nn.Conv2d) and conv.weight.shape == (3, 2, 1, 1) and conv.bias is None
    assert isinstance(bn, torch.nn.BatchNorm2d) and not bn.bias.requires_grad
    fmap = torch.tensor([[[[1.0, 3.0]], [[2.0, 2.0]]], [[[0.0, 4.0]], [[6.0, 0.0]]]])  # [2, 2, 1, 2]
    pooled = torch.tensor([[2.0, 2.0], [2.0, 3.0]])
    out = head.train()(fmap)
    torch.testing.assert_close(out["features"], pooled)
    reduced = pooled @ conv.weight.detach().view(3, 2).t()
    normalised = (reduced - reduced.mean(0)) / torch.sqrt(reduced.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(out["logits"], normalised @ head.weight.detach().t(), rtol=1e-4, atol=1e-5)
    after = build_heads(small_cfg("MODEL.HEADS.EMBEDDING_DIM=3", "MODEL.HEADS.NECK_FEAT=after").MODEL.HEADS, 2, 4)
    assert after.train()(fmap)["features"].shape == (2, 3)


# ------------------------------------------------------------------ backbone


def test_stem_max_pool_is_fastreids_unpadded_ceil_mode():
    backbone = build_backbone(small_cfg("MODEL.BACKBONE.DEPTH=18x"))
    pool = backbone.maxpool
    x = torch.arange(1.0, 37.0).view(1, 1, 6, 6)  # x[r, c] = 6r + c + 1
    # Windows start at rows/cols 0, 2 and, in ceil mode, 4 (clipped to 4..5).
    expected = torch.tensor([[15.0, 17.0, 18.0], [27.0, 29.0, 30.0], [33.0, 35.0, 36.0]])
    torch.testing.assert_close(pool(x)[0, 0], expected)
    # torchvision's padded pool puts its first window at -1..1: 8 where FastReID's gives 15.
    assert torch.nn.MaxPool2d(3, 2, padding=1)(x)[0, 0, 0, 0].item() == 8.0


def test_non_local_width_is_fastreids_one_channel_unless_asked():
    with torch.device("meta"):
        default = build_backbone(small_cfg("MODEL.BACKBONE.WITH_NL=true"))
        paper = build_backbone(small_cfg("MODEL.BACKBONE.WITH_NL=true", "MODEL.BACKBONE.NL_REDUCTION=2"))
    assert default.NL_2[0].g.weight.shape == (1, 512, 1, 1) and default.NL_3[2].W[0].weight.shape == (1024, 1, 1, 1)
    assert paper.NL_2[0].g.weight.shape == (256, 512, 1, 1) and paper.NL_3[0].theta.out_channels == 512
    with pytest.raises(ConfigError, match="MODEL.BACKBONE.NL_REDUCTION"):
        build_backbone(small_cfg("MODEL.BACKBONE.NAME=resnet_tiny", "MODEL.BACKBONE.WITH_NL=true",
                                 "MODEL.BACKBONE.NL_REDUCTION=-1"))


@pytest.mark.parametrize("depth, nl2, nl3", [("50x", (2, 3), (3, 4, 5)), ("101x", (2, 3), tuple(range(14, 23)))])
def test_build_resnet_backbone_places_non_local_blocks_as_fastreid(depth, nl2, nl3):
    with torch.device("meta"):
        backbone = build_backbone(small_cfg(f"MODEL.BACKBONE.DEPTH={depth}", "MODEL.BACKBONE.WITH_NL=true",
                                            "MODEL.BACKBONE.WITH_IBN=true", "MODEL.BACKBONE.LAST_STRIDE=2"))
    assert backbone.nl_after == {"layer2": nl2, "layer3": nl3}
    assert len(backbone.NL_2) == len(nl2) and len(backbone.NL_3) == len(nl3)
    assert not hasattr(backbone, "NL_1") and not hasattr(backbone, "NL_4")
    assert backbone.layer4[0].conv2.stride == (2, 2)


@pytest.mark.parametrize("depth", ["18x", "34x"])
def test_build_resnet_backbone_refuses_non_local_where_fastreid_builds_none(depth):
    with pytest.raises(ConfigError, match="MODEL.BACKBONE.WITH_NL.*50x and 101x"):
        build_backbone(small_cfg(f"MODEL.BACKBONE.DEPTH={depth}", "MODEL.BACKBONE.WITH_NL=true"))


# ------------------------------------------------------------------ MGN


def tiny_mgn(*overrides):
    cfg = small_cfg("MODEL.META_ARCHITECTURE=MGN", "MODEL.BACKBONE.NAME=resnet_tiny", "MODEL.HEADS.WITH_BNNECK=true",
                    "MODEL.HEADS.EMBEDDING_DIM=8", "MODEL.LOSSES.NAME=[CrossEntropyLoss, TripletLoss]",
                    "MODEL.LOSSES.TRI.HARD_MINING=true", *overrides)
    torch.manual_seed(0)
    return build_model(cfg, 3)


@pytest.fixture(scope="module")
def mgn():
    return tiny_mgn("MODEL.LOSSES.CE.SCALE=2.0", "MODEL.LOSSES.TRI.SCALE=3.0")


def test_mgn_branches_share_the_trunk_and_concatenate_eight_features(mgn):
    model = mgn.eval()
    assert isinstance(model, MGN)
    assert [name for name, _ in model.named_children()] == [
        "backbone", "b1", "b1_head", "b2", "b2_head", "b21_head", "b22_head",
        "b3", "b3_head", "b31_head", "b32_head", "b33_head"]
    # The part branches run layer4 at stride 1; the global one as built (LAST_STRIDE 1 here: same).
    assert model.b2[1][0].conv1.stride == model.b3[1][0].conv1.stride == (1, 1)
    x = torch.rand(2, 3, 96, 32) * 255
    with torch.no_grad():
        feats = model(x)
        shared = model.backbone(model.normalise(x))
        b2 = model.b2(shared)  # [2, 128, 6, 2]: stripes of 3 rows, and of 2
        parts = [model.b1_head(model.b1(shared)), model.b2_head(b2), model.b3_head(model.b3(shared)),
                 model.b21_head(b2[:, :, :3]), model.b22_head(b2[:, :, 3:])]
    assert feats.shape == (2, 8 * 8)
    torch.testing.assert_close(feats[:, :40], torch.cat(parts, dim=1))


def test_mgn_losses_are_fastreids_part_losses(mgn):
    model = mgn.train()
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    out = model(torch.rand(6, 3, 96, 32) * 255, targets)
    losses = model.losses(out, targets)
    assert list(losses) == [f"loss_cls_{b}" for b in ("b1", "b2", "b21", "b22", "b3", "b31", "b32", "b33")] + [
        f"loss_triplet_{b}" for b in ("b1", "b2", "b3", "b22", "b33")]
    ce = cross_entropy_loss(out["b31_head"]["cls_outputs"], targets, 0.0)
    torch.testing.assert_close(losses["loss_cls_b31"], ce * 2.0 * 0.125)
    stripes = torch.cat([out[f"b3{i}_head"]["features"] for i in (1, 2, 3)], dim=1)
    assert stripes.shape == (6, 3 * 128)  # NECK_FEAT before: the pooled features, before the 8-d reduction
    torch.testing.assert_close(losses["loss_triplet_b33"], triplet_loss(stripes, targets, 0.3, False, True) * 3.0 * 0.2)


def test_mgn_refuses_what_fastreid_would_ignore():
    with pytest.raises(ConfigError, match="MODEL.LOSSES.NAME.*CircleLoss"):
        tiny_mgn("MODEL.LOSSES.NAME=[CrossEntropyLoss, CircleLoss]")
    with pytest.raises(ConfigError, match="MODEL.BACKBONE.WITH_NL"):
        tiny_mgn("MODEL.BACKBONE.WITH_NL=true")


def test_mgn_small_feature_maps_still_give_three_stripes(mgn):
    model = mgn.eval()
    with torch.no_grad():
        # 64x32 images: 4 rows at layer4, which torch.chunk would cut into 2 pieces only.
        assert model(torch.rand(2, 3, 64, 32) * 255).shape == (2, 64)
        with pytest.raises(ConfigError, match="INPUT.SIZE_TRAIN"):
            model(torch.rand(2, 3, 16, 16) * 255)
