"""Weights saved in FastReID's format and parameter names: evaluated, trained from, or refused in one line.

FastReID's Checkpointer writes `{"model": state_dict, "optimizer": ..., "scheduler": ...,
"iteration": N}`. Its parameter names are checked against FastReID's own model in
test_fastreid_models.py (the layout digests); here a model of the same layout is saved
that way and read back through reidplug's entry points.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from conftest import cli_in_process

from reidplug.core.config import load_config
from reidplug.core.errors import CheckpointError
from reidplug.reid.engine.checkpoint import initial_model
from reidplug.reid.evaluate_checkpoint import load_model
from reidplug.reid.modeling import build_model

X = torch.rand(2, 3, 64, 32) * 255


def cfg_of(*overrides):
    return load_config({}, ["MODEL.DEVICE=cpu", *overrides])


def trained_like(cfg, num_classes: int, seed: int = 0):
    """A random model with non-trivial batch-norm statistics and non-local output norms, as a trained one has."""
    torch.manual_seed(seed)
    model = build_model(cfg, num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    return model.eval()


def save_fastreid(model, path: Path) -> Path:
    """The file FastReID's Checkpointer writes at the end of a training: the model, the optimizer,
    its schedulers (torch's MultiStepLR keeps its milestones in a Counter) and the epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=3.5e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[40, 90])
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "lr_sched": sched.state_dict(),
                "epoch": 119}, path)
    return path


def features(model, x=X):
    with torch.no_grad():
        return model.eval()(x.clone())


# SBS's head on FastReID's ResNet-18 with IBN and a 1x1 reduction: every kind of FastReID
# head and IBN parameter name (its non-local names: below, on the tiny ResNet).
SBS_R18 = ["MODEL.BACKBONE.NAME=build_resnet_backbone", "MODEL.BACKBONE.DEPTH=18x", "MODEL.BACKBONE.WITH_IBN=true",
           "MODEL.HEADS.WITH_BNNECK=true", "MODEL.HEADS.NECK_FEAT=after", "MODEL.HEADS.EMBEDDING_DIM=64",
           "MODEL.HEADS.POOL_LAYER=GeneralizedMeanPoolingP", "MODEL.HEADS.CLS_LAYER=CircleSoftmax",
           "MODEL.HEADS.SCALE=64", "MODEL.HEADS.MARGIN=0.35"]


@pytest.mark.slow
def test_fastreid_checkpoint_loads_every_key_and_gives_the_same_features(tmp_path):
    cfg = cfg_of(*SBS_R18)
    source = trained_like(cfg, num_classes=13)
    state = source.state_dict()
    # FastReID's names, which the layout digests of test_fastreid_models.py pin down.
    assert {"backbone.layer1.0.bn1.IN.weight", "backbone.layer4.0.downsample.1.running_mean", "heads.pool_layer.p",
            "heads.bottleneck.0.weight", "heads.bottleneck.1.running_var", "heads.weight"} <= set(state)
    path = save_fastreid(source, tmp_path / "model_final.pth")
    # PRETRAIN true without a path, as FastReID's recipes: the checkpoint holds every weight.
    model, found = load_model(cfg_of(*SBS_R18, "MODEL.BACKBONE.PRETRAIN=true"), torch.device("cpu"), path)
    assert found == path
    assert model.heads.weight.shape == (13, 64)  # NUM_CLASSES read off heads.weight
    assert model.state_dict().keys() == state.keys()
    torch.testing.assert_close(features(model), features(source), rtol=0, atol=0)


def write_market(root: Path) -> Path:
    """A tiny Market-1501 tree: 4 training ids, 2 query ids seen by camera 1, found by camera 2."""
    g = torch.Generator().manual_seed(0)
    folder = root / "Market-1501-v15.09.15"
    files = {"bounding_box_train": [(p, c) for p in (1, 2, 3, 4) for c in (1, 2)],
             "query": [(5, 1), (6, 1)], "bounding_box_test": [(5, 2), (6, 2), (7, 2), (5, 3)]}
    for split, items in files.items():
        (folder / split).mkdir(parents=True)
        for i, (pid, cam) in enumerate(items):
            pixels = (torch.rand(32, 16, 3, generator=g) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(folder / split / f"{pid:04d}_c{cam}s1_{i:06d}_00.jpg")
    return root


def write_config(path: Path, data_root: Path, **backbone) -> Path:
    """A config written as FastReID users write theirs (FastReID's keys; PRETRAIN on, no local path)."""
    cfg = {
        "MODEL": {"META_ARCHITECTURE": "Baseline",
                  "BACKBONE": {"NAME": "build_resnet_backbone", "DEPTH": "18x", "FEAT_DIM": 512, "PRETRAIN": True,
                               **backbone},
                  "HEADS": {"NAME": "EmbeddingHead", "WITH_BNNECK": True, "POOL_LAYER": "GlobalAvgPool"},
                  "LOSSES": {"NAME": ["CrossEntropyLoss", "TripletLoss"]}},
        "INPUT": {"SIZE_TRAIN": [64, 32], "SIZE_TEST": [64, 32]},
        "DATASETS": {"NAMES": ["Market1501"], "TESTS": ["Market1501"], "ROOT": str(data_root)},
        "DATALOADER": {"NUM_WORKERS": 0, "NUM_INSTANCE": 2},
        "SOLVER": {"IMS_PER_BATCH": 4},
        "TEST": {"IMS_PER_BATCH": 8},
        "OUTPUT_DIR": str(path.parent / "logs"),
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


run_cli = cli_in_process


@pytest.mark.slow
def test_eval_cli_on_fastreid_weights_and_the_one_line_mismatch(tmp_path, capsys):
    data = write_market(tmp_path / "data")
    config = write_config(tmp_path / "bagtricks_R18.yml", data)
    weights = save_fastreid(trained_like(load_config(config, ["MODEL.BACKBONE.PRETRAIN=false"]), 751),
                            tmp_path / "model_final.pth")
    code, out, err = run_cli(capsys, "eval", config, f"MODEL.WEIGHTS={weights}")
    assert code == 0, err
    assert "mAP" in out and "Rank-1" in out

    # The same weights under an IBN config: one line naming the keys that differ.
    ibn = write_config(tmp_path / "bagtricks_R18-ibn.yml", data, WITH_IBN=True)
    code, out, err = run_cli(capsys, "eval", ibn, f"MODEL.WEIGHTS={weights}")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: MODEL.WEIGHTS: ")
    assert "missing backbone.layer1.0.bn1.IN.weight" in lines[0]
    assert "unexpected backbone.layer1.0.bn1.weight" in lines[0]


def tiny(*overrides):
    return cfg_of("MODEL.BACKBONE.NAME=resnet_tiny", "MODEL.BACKBONE.WITH_NL=true", "MODEL.HEADS.WITH_BNNECK=true",
                  "MODEL.HEADS.POOL_LAYER=GeneralizedMeanPoolingP", *overrides)


def test_mis_shaped_weights_are_named_with_both_shapes(tmp_path):
    # Non-local blocks of the paper's width (C/2) do not fit FastReID's one-channel ones.
    path = save_fastreid(trained_like(tiny("MODEL.BACKBONE.NL_REDUCTION=2"), 4), tmp_path / "wide.pth")
    with pytest.raises(CheckpointError) as info:
        load_model(tiny(), torch.device("cpu"), path)
    message = str(info.value)
    assert "\n" not in message and f"MODEL.WEIGHTS: {path} does not fit" in message
    assert "mis-shaped backbone.NL_2.0.g.weight (file 16x32x1x1, model 1x32x1x1)" in message
    assert "missing" not in message and "unexpected" not in message
    assert "MODEL.BACKBONE.NL_REDUCTION" in message


def test_training_starts_from_fastreid_weights_and_drops_a_classifier_of_another_size(tmp_path):
    source = trained_like(tiny(), 7)
    path = save_fastreid(source, tmp_path / "model_final.pth")
    same = initial_model(tiny(f"MODEL.WEIGHTS={path}", "MODEL.BACKBONE.PRETRAIN=true"), 7)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(same.state_dict()[key], value, rtol=0, atol=0)
    torch.manual_seed(5)
    other = initial_model(tiny(f"MODEL.WEIGHTS={path}"), 5)
    assert other.heads.weight.shape == (5, 128)
    torch.testing.assert_close(other.backbone.NL_3[0].W[1].running_var, source.backbone.NL_3[0].W[1].running_var)
    torch.testing.assert_close(other.heads.pool_layer.p, source.heads.pool_layer.p)
    # Without MODEL.WEIGHTS the model is a fresh one.
    assert not torch.equal(initial_model(tiny(), 7).backbone.conv1.weight, source.backbone.conv1.weight)


@pytest.mark.slow
def test_reidplug_train_reads_model_weights(tmp_path):
    from reidplug.reid.engine.training import ReIDTraining

    data = write_market(tmp_path / "data")
    config = write_config(tmp_path / "cfg.yml", data)
    source = trained_like(load_config(config, ["MODEL.BACKBONE.PRETRAIN=false"]), 4)
    path = save_fastreid(source, tmp_path / "model_final.pth")
    training = ReIDTraining(load_config(config, [f"MODEL.WEIGHTS={path}"]), tmp_path / "out", echo=False)
    assert training.num_classes == 4
    torch.testing.assert_close(training.model.backbone.layer4[1].bn2.running_mean,
                               source.backbone.layer4[1].bn2.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(training.model.heads.weight, source.heads.weight, rtol=0, atol=0)


def test_reidplug_checkpoints_with_the_former_parameter_names_still_load(tmp_path):
    source = trained_like(tiny(), 4)
    former = {"heads.pool_layer.": "heads.pool.", "heads.bottleneck.0.": "heads.bnneck.",
              "heads.weight": "heads.classifier.weight", "backbone.NL_2.": "backbone.nl_layer2.",
              "backbone.NL_3.": "backbone.nl_layer3."}
    state = {}
    for key, value in source.state_dict().items():
        for new, old in former.items():
            if key.startswith(new):
                key = key.replace(new, old, 1)
                break
        state[key] = value
    assert "heads.classifier.weight" in state and "backbone.nl_layer2.0.g.weight" in state
    path = tmp_path / "model_best.pth"
    torch.save({"model": state, "num_classes": 4, "epoch": 3}, path)
    model, _ = load_model(tiny(), torch.device("cpu"), path)
    torch.testing.assert_close(features(model), features(source), rtol=0, atol=0)


def test_data_parallel_prefix_and_non_weights_files(tmp_path):
    source = trained_like(tiny(), 4)
    path = tmp_path / "ddp.pth"
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    model, _ = load_model(tiny(), torch.device("cpu"), path)
    torch.testing.assert_close(features(model), features(source), rtol=0, atol=0)
    torch.save({"iteration": 3}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="holds no model weights"):
        load_model(tiny(), torch.device("cpu"), tmp_path / "empty.pth")
