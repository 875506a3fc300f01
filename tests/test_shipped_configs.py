"""Every config under configs/, run as shipped: the installed `reidplug` command, the config file as
it is, against a dataset tree in that dataset's real folder layout, with DATALOADER.NUM_WORKERS
(and every other setting) as shipped. Only sizes shrink: identities, image size, epochs, trials.

Changes that are not sizes, because this machine has 2 CPUs and no GPU:
- MODEL.BACKBONE.NAME=resnet_tiny: a ResNet-50 epoch does not fit the suite's time on 2 CPUs;
- TUNE.RESOURCES_PER_TRIAL={CPU: 1, GPU: 0} and TUNE.MAX_CONCURRENT=2 for the Market-1501 searches,
  which ask for one GPU per trial and run 4 at a time;
- SOLVER.AMP.ENABLED=false in those searches: on a CPU, AMP is bf16 autocast, about 15 times
  slower than fp32 here, and made each search take minutes. The training-recipe tier keeps AMP
  as shipped, so the AMP trainer runs there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from layouts import HEIGHT, TREES, WIDTH
from zoo import ZOO_TWINS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
REIDPLUG = str(Path(sys.executable).with_name("reidplug"))

# The model-zoo recipes (AGW, SBS, MGN, the -ibn/R101/S50 variants) have their own tier,
# tests/test_fastreid_tier.py, which trains their FastReID twins.
ALL = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yml") if
             p.relative_to(CONFIGS).as_posix() not in ZOO_TWINS)
RECIPES = {  # training recipe -> the dataset it reads
    "Base-bagtricks.yml": "Market1501",  # the base of the others; trains on the default dataset
    "market1501/bagtricks_R50.yml": "Market1501",
    "dukemtmc/bagtricks_R50.yml": "DukeMTMC",
    "msmt17/bagtricks_R50.yml": "MSMT17",
    "synthetic/quick.yml": "SyntheticMarket",
}
SEARCHES = {name: "Market1501" for name in ALL if name.startswith("tune/")}
SEARCHES["quickstart.yml"] = "SyntheticMarket"

# 64x32 rather than the trees' 32x16: at 32x16, CPU bf16 convolutions (the recipes' AMP on a CPU)
# return NaN on layer3's 4x2 maps with this PyTorch build, a kernel fault that larger inputs avoid.
SIZES = [
    "MODEL.BACKBONE.NAME=resnet_tiny", "INPUT.SIZE_TRAIN=[64,32]", "INPUT.SIZE_TEST=[64,32]",
    "INPUT.PADDING.SIZE=4", "SOLVER.WARMUP_ITERS=5", "SOLVER.CHECKPOINT_PERIOD=1", "TEST.EVAL_PERIOD=1",
    "DATASETS.SYNTH.IDS=80", "DATASETS.SYNTH.CAMS=3", f"DATASETS.SYNTH.HEIGHT={HEIGHT}",
    f"DATASETS.SYNTH.WIDTH={WIDTH}",
]


def test_every_config_file_is_covered_here():
    """A config added to configs/ must be added to a tier below (or this test says which one is missing)."""
    assert set(ALL) == set(RECIPES) | set(SEARCHES), sorted(set(ALL) - set(RECIPES) - set(SEARCHES))


def test_validates_through_the_command_line():
    done = subprocess.run([REIDPLUG, "config", "validate", str(CONFIGS / "quickstart.yml")], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and ": ok" in done.stdout, done.stdout + done.stderr


# The command is a thin wrapper of validate(): the rest call it in this process, which saves
# a PyTorch start per file and runs the same checks.
@pytest.mark.parametrize("name", ALL)
def test_validates(name, monkeypatch):
    from reidplug.core.validate import validate

    monkeypatch.chdir(ROOT)
    notes = validate(CONFIGS / name)
    assert any(n.startswith("searcher ") for n in notes), notes


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    for build in TREES.values():
        build(root)
    return root


def _run(args, root: Path, cache: str):
    env = dict(os.environ, REIDPLUG_CACHE=cache, PYTHONUNBUFFERED="1")
    done = subprocess.run([REIDPLUG, *args, f"DATASETS.ROOT={root}"], env=env, capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-4000:]
    assert "Traceback" not in text and " failed" not in text, text[-4000:]
    return text


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_training_recipe_trains_one_epoch(name, datasets_root, tmp_path):
    out = tmp_path / "out"
    _run(["train", str(CONFIGS / name), *SIZES, "SOLVER.IMS_PER_BATCH=32", "SOLVER.MAX_EPOCH=1", "SOLVER.STEPS=[1]",
          f"OUTPUT_DIR={out}"], datasets_root, os.environ["REIDPLUG_CACHE"])
    assert (out / "model_final.pth").is_file()
    assert "rank1" in (out / "metrics.jsonl").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_search_config_runs_a_short_search(name, datasets_root, tmp_path):
    extra = ["SOLVER.MAX_EPOCH=1", "SOLVER.STEPS=[1]", "TUNE.STEP_EPOCHS=1", "TUNE.NUM_TRIALS=2",
             f"OUTPUT_DIR={tmp_path}"]
    if SEARCHES[name] != "SyntheticMarket":
        extra += ["TUNE.RESOURCES_PER_TRIAL.GPU=0", "TUNE.RESOURCES_PER_TRIAL.CPU=1", "TUNE.MAX_CONCURRENT=2",
                  "SOLVER.AMP.ENABLED=false"]
    _run(["run", str(CONFIGS / name), *SIZES, *extra, "--no-report"], datasets_root, os.environ["REIDPLUG_CACHE"])
    assert list(tmp_path.glob("*/best_config.yaml")), "no best_config.yaml written"
