"""FastTune's configs/search_trial.yml, unchanged (tests/fasttune_configs/), run with FastTune's command line.

The file predates FastReID's HEAD: INPUT.DO_AUTOAUG, INPUT.DO_PAD, DATALOADER.PK_SAMPLER and
NAIVE_WAY, SOLVER.FP16_ENABLED and WARMUP_EPOCHS, CLS_LAYER circleSoftmax, POOL_LAYER gempool.
Its search space lives in FastTune's tune_net.py (batch size and instances per identity).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import run_cli
from layouts import TREES, synthetic_source

from reidplug.core.config import load_config
from reidplug.fastreid_argv import rewrite

FILE = Path(__file__).parent / "fasttune_configs" / "search_trial.yml"


def test_the_older_keys_read_as_the_ones_they_became():
    cfg = load_config(FILE, ["MODEL.BACKBONE.PRETRAIN=False"])
    assert cfg.INPUT.AUTOAUG.ENABLED is True and cfg.INPUT.PADDING.ENABLED is True
    # PK_SAMPLER true with NAIVE_WAY false was FastReID 1.x's balanced identity sampler.
    assert cfg.DATALOADER.SAMPLER_TRAIN == "BalancedIdentitySampler"
    assert cfg.SOLVER.AMP.ENABLED is False and cfg.SOLVER.WARMUP_EPOCHS == 5
    assert cfg.MODEL.HEADS.CLS_LAYER == "CircleSoftmax" and cfg.MODEL.HEADS.POOL_LAYER == "GeneralizedMeanPooling"
    assert cfg.MODEL.LOSSES.NAME == ["CrossEntropyLoss", "TripletLoss"] and cfg.DATASETS.NAMES == ["DukeMTMC"]
    # The file's own name for the key is blamed for its value.
    assert cfg.origins.of("INPUT.AUTOAUG.ENABLED") == str(FILE)


def test_old_keys_on_the_command_line_too(tmp_path):
    cfg = load_config(FILE, ["MODEL.BACKBONE.PRETRAIN=False", "INPUT.DO_AUTOAUG=False", "SOLVER.FP16_ENABLED=True"])
    assert cfg.INPUT.AUTOAUG.ENABLED is False and cfg.SOLVER.AMP.ENABLED is True


def test_a_new_key_beside_its_old_name_wins(tmp_path):
    path = tmp_path / "both.yml"
    path.write_text("INPUT:\n  DO_AUTOAUG: True\n  AUTOAUG:\n    ENABLED: False\n")
    assert load_config(path).INPUT.AUTOAUG.ENABLED is False


def test_warmup_epochs_count_iterations_of_the_epoch():
    from reidplug.reid.engine.lr_schedule import LRSchedule

    solver = load_config(FILE, ["MODEL.BACKBONE.PRETRAIN=False"]).SOLVER
    assert LRSchedule(solver, iters_per_epoch=10).warmup_iters == 50
    assert LRSchedule(load_config(None).SOLVER, iters_per_epoch=10).warmup_iters == 1000


def test_validate_names_the_missing_imagenet_file():
    proc = run_cli("config", "validate", FILE)
    assert proc.returncode == 2, proc.stderr
    assert "MODEL.BACKBONE.PRETRAIN_PATH: no such file: /export/home/lxy" in proc.stderr
    proc = run_cli("config", "validate", FILE, "MODEL.BACKBONE.PRETRAIN=False")
    assert proc.returncode == 0 and "build_resnet_backbone" in proc.stdout, proc.stderr


def test_fasttune_command_line_brings_fasttunes_search():
    argv = rewrite(["run", "--config-file", str(FILE), "--num-trials", "20", "--srch-algo", "hyperopt"])
    cfg = load_config(argv[1], argv[2:] + ["MODEL.BACKBONE.PRETRAIN=False"])
    space = cfg.TUNE.SPACE
    assert space["SOLVER.IMS_PER_BATCH"] == {"choice": [64, 96, 128, 160, 224, 256]}
    assert space["DATALOADER.NUM_INSTANCE"] == {"choice": [2, 4, 8, 16, 32]}
    assert (cfg.TUNE.NUM_TRIALS, cfg.TUNE.SEARCHER, cfg.TUNE.SCHEDULER) == (20, "hyperopt", "asha")
    pbt = rewrite(["run", "--config-file", str(FILE), "--srch-algo", "hyperopt", "--pbt"])
    assert "TUNE.SCHEDULER=pbt" in pbt and "TUNE.PBT.PERTURBATION_INTERVAL=2" in pbt
    # A config with its own space keeps it.
    own = rewrite(["run", "--config-file", "configs/tune/hyperopt.yml", "--srch-algo", "hyperopt"])
    assert not any(a.startswith("TUNE.SPACE") for a in own)


def test_a_search_without_the_imagenet_file_stops_before_it_starts(tmp_path):
    root = tmp_path / "datasets"
    TREES["DukeMTMC"](root, synthetic_source())
    out = tmp_path / "out"
    proc = run_cli("run", "--config-file", FILE, "--num-trials", "20", "--srch-algo", "hyperopt",
                   "DATASETS.ROOT", root, "OUTPUT_DIR", out)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr
    assert errors[0].startswith(f"error: {FILE}: MODEL.BACKBONE.PRETRAIN_PATH: no such file: /export/home/lxy")
    assert not out.exists(), "a refused search wrote its folder"


@pytest.mark.slow
def test_fasttune_search_runs_on_a_duke_tree(tmp_path):
    root = tmp_path / "datasets"
    TREES["DukeMTMC"](root, synthetic_source())
    out = tmp_path / "out"
    # FastTune's own command line; only sizes shrink: image size, epochs, loader workers, the depth of
    # the same ResNet-IBN builder (18x for 34x), no ImageNet file.
    proc = run_cli("run", "--config-file", FILE, "--num-trials", "2", "--srch-algo", "hyperopt",
                   "MODEL.BACKBONE.PRETRAIN", "False", "MODEL.BACKBONE.DEPTH", "18x", "DATASETS.ROOT", root,
                   "OUTPUT_DIR", out,
                   "INPUT.SIZE_TRAIN", "[32,16]", "INPUT.SIZE_TEST", "[32,16]", "INPUT.PADDING.SIZE", "2",
                   "SOLVER.MAX_EPOCH", "2", "SOLVER.FREEZE_ITERS", "1", "DATALOADER.NUM_WORKERS", "2",
                   "--quiet", "--no-report", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((out / "search_trial" / "results.csv").open()))
    assert len(rows) == 2 and all(r["status"] == "TERMINATED" for r in rows), rows
    assert {int(r["param:SOLVER.IMS_PER_BATCH"]) for r in rows} <= {64, 96, 128, 160, 224, 256}
    assert (out / "search_trial" / "best_config.yaml").is_file()
