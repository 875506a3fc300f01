"""The Baseline model: normalisation, outputs, losses, parameter groups, freezing, precision, learning."""

from __future__ import annotations

import pytest
import torch

from reidplug.core.config import load_config
from reidplug.core.errors import ConfigError
from reidplug.reid.modeling import Baseline, build_model

LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def config(**model):
    model.setdefault("BACKBONE", {"NAME": "resnet_tiny"})
    # The bag-of-tricks model over FastReID's defaults (no neck, cross-entropy only).
    model["HEADS"] = {"WITH_BNNECK": True, **model.get("HEADS", {})}
    model.setdefault("LOSSES", {"NAME": ["CrossEntropyLoss", "TripletLoss"], "TRI": {"HARD_MINING": True}})
    return load_config({"MODEL": model})


def images(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 64, 32, generator=g) * 255


def test_build_model_sizes_and_num_classes_override():
    model = build_model(config(), num_classes=7)
    assert isinstance(model, Baseline)
    assert model.heads.weight.shape == (7, 128)
    override = build_model(config(HEADS={"NUM_CLASSES": 11}), num_classes=7)
    assert override.heads.weight.shape == (11, 128)
    with pytest.raises(ConfigError, match="MODEL.HEADS.NUM_CLASSES"):
        build_model(config(), num_classes=0)


def test_model_normalises_its_input():
    torch.manual_seed(0)
    mean, std = [100.0, 110.0, 120.0], [50.0, 60.0, 70.0]
    model = build_model(config(PIXEL_MEAN=mean, PIXEL_STD=std), num_classes=4).eval()
    assert model.pixel_mean.flatten().tolist() == mean and model.pixel_std.flatten().tolist() == std
    x = images(2)
    by_hand = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.heads(model.backbone(by_hand)))
        # uint8 images work as the same values.
        torch.testing.assert_close(model(x.round().to(torch.uint8)), model(x.round()))


def test_training_outputs_and_default_losses():
    model = build_model(config(), num_classes=4).train()
    out = model(images())
    assert set(out) >= {"cls_outputs", "pred_class_logits", "features"}
    assert out["features"].shape == (8, 128) and out["cls_outputs"].shape == (8, 4)
    losses = model.losses(out, LABELS)
    assert list(losses) == ["loss_cls", "loss_triplet"]
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        assert model(images()).shape == (8, 128)


def test_margin_classifier_losses_without_targets_in_forward():
    cfg = config(
        HEADS={"CLS_LAYER": "CircleSoftmax", "SCALE": 16.0, "MARGIN": 0.35, "POOL_LAYER": "GeneralizedMeanPoolingP"},
        LOSSES={"NAME": ["CrossEntropyLoss", "TripletLoss", "CircleLoss", "Cosface"], "TRI": {"MARGIN": 0.0}},
    )
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=4).train()
    x = images()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    late = model.losses(model(x), LABELS)
    model.load_state_dict(state)  # undo the BN statistics update of the first pass
    early = model.losses(model(x, LABELS), LABELS)
    assert list(late) == ["loss_cls", "loss_triplet", "loss_circle", "loss_cosface"]
    for key in late:
        torch.testing.assert_close(late[key], early[key])


def test_parameter_groups_split_heads_from_backbone():
    model = build_model(config(), num_classes=4)
    groups = model.parameter_groups()
    heads = {name for name, _ in groups["heads"]}
    backbone = {name for name, _ in groups["backbone"]}
    assert "heads.weight" in heads and "heads.bottleneck.0.weight" in heads
    assert "backbone.conv1.weight" in backbone
    assert heads | backbone == {name for name, _ in model.named_parameters()} and not heads & backbone


def test_freeze_and_unfreeze_backbone():
    model = build_model(config(FREEZE_LAYERS=["backbone"]), num_classes=4)
    model.freeze(["backbone"])
    model.train()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not model.backbone.training and model.heads.training
    before = model.backbone.bn1.running_mean.clone()
    out = model(images())
    sum(model.losses(out, LABELS).values()).backward()
    assert torch.equal(model.backbone.bn1.running_mean, before)
    assert model.backbone.conv1.weight.grad is None and model.heads.weight.grad is not None
    model.unfreeze()
    assert all(p.requires_grad for p in model.backbone.parameters()) and model.backbone.training
    assert not model.heads.bottleneck[0].bias.requires_grad


def test_unknown_freeze_layer_and_architecture():
    with pytest.raises(ConfigError, match="MODEL.FREEZE_LAYERS") as info:
        build_model(config(FREEZE_LAYERS=["layer9"]), num_classes=4)
    assert "backbone" in str(info.value) and "heads" in str(info.value)
    with pytest.raises(ConfigError, match="MODEL.META_ARCHITECTURE") as info:
        build_model(config(META_ARCHITECTURE="PCB"), num_classes=4)
    assert "Baseline" in str(info.value) and "MGN" in str(info.value)


def test_config_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("MODEL:\n  BACKBONE: {NAME: resnet_tiny}\n  LOSSES: {NAME: [CrossEntropyLoss, FocalLoss]}\n")
    with pytest.raises(ConfigError) as info:
        build_model(load_config(path), num_classes=4)
    assert str(info.value).startswith(f"{path}: MODEL.LOSSES.NAME: ")
    assert "\n" not in str(info.value)


def test_channels_last_gives_the_same_features():
    torch.manual_seed(0)
    model = build_model(config(), num_classes=4).eval()
    x = images()
    with torch.no_grad():
        plain = model(x)
        model.to(memory_format=torch.channels_last)
        last = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(last, plain, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_training_step_has_fp32_losses():
    torch.manual_seed(0)
    cfg = config(LOSSES={"NAME": ["CrossEntropyLoss", "TripletLoss", "CircleLoss"]})
    model = build_model(cfg, num_classes=4).train().to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images().contiguous(memory_format=torch.channels_last))
        losses = model.losses(out, LABELS)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = build_model(config(), num_classes=4).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    x = images()
    totals = []
    for _ in range(6):
        loss = sum(model.losses(model(x), LABELS).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(loss.item())
    assert totals[-1] < 0.8 * totals[0], totals


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SBS_LIKE = {
    "HEADS": {"POOL_LAYER": "GeneralizedMeanPoolingP", "CLS_LAYER": "CircleSoftmax", "SCALE": 64.0, "MARGIN": 0.35},
    "LOSSES": {"NAME": ["CrossEntropyLoss", "TripletLoss", "CircleLoss", "Cosface"], "TRI": {"MARGIN": 0.0}},
}


@needs_cuda
@pytest.mark.parametrize(
    "backbone",
    [{"NAME": "resnet_tiny"}, {"NAME": "build_resnet_backbone", "DEPTH": "50x", "WITH_IBN": True, "WITH_NL": True}],
)
def test_cuda_fp16_autocast_training_steps(backbone):
    torch.manual_seed(0)
    model = build_model(config(BACKBONE=backbone, **SBS_LIKE), num_classes=4).cuda().train()
    model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**16, growth_interval=2000)
    x = images().cuda().contiguous(memory_format=torch.channels_last)
    labels = LABELS.cuda()
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.float16):
            losses = model.losses(model(x), labels)
        assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values()), losses
        opt.zero_grad()
        scaler.scale(sum(losses.values())).backward()
        scaler.step(opt)
        scaler.update()
    model.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        feats = model(x)
    assert feats.shape == (8, model.heads.out_channels) and torch.isfinite(feats).all()


@needs_cuda
def test_cuda_and_cpu_agree_in_fp32():
    torch.manual_seed(0)
    model = build_model(config(**SBS_LIKE), num_classes=4).eval()
    x = images()
    with torch.no_grad():
        on_cpu = model(x)
        on_cuda = model.cuda()(x.cuda()).cpu()
    # cuDNN may use TF32 for convolutions, hence the loose tolerance.
    torch.testing.assert_close(on_cuda, on_cpu, rtol=2e-2, atol=2e-2)
