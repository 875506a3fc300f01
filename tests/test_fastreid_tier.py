"""FastReID's own config files, as published (tests/fastreid_configs/), and the project's model-zoo recipes.

Every FastReID file must validate (one through the `reidplug` command, the rest through the API),
build its model (parameters > 0, the test feature as wide as FastReID's), and the person recipes
train one epoch on a synthetic tree in their dataset's folder layout.

Budget: the recipes do not all train in the suite's time on 2 CPUs (a ResNet-50 epoch on even a
tiny tree takes several seconds, a ResNet-101, ResNeSt or MGN one much more: the 14 recipes take
about 5 minutes). So the suite trains two files, and CI trains every recipe (family and backbone:
13, and the ViT) once after the suite, with `make test-recipes`; every file is validated and built
in the suite, and files describing the same model share one build. REIDPLUG_FASTREID_TRAIN=all
trains all 40 person files.
Only sizes shrink in training: identities, image size, batch size, warmup and freeze iterations,
one short epoch, and DATALOADER.NUM_WORKERS (at most 2). Not a size: MODEL.BACKBONE.PRETRAIN=False,
because the ImageNet weights the files point at are not on this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from layouts import TREES, VEHICLE_TREES, synthetic_source
from zoo import ZOO_TWINS as ZOO

ROOT = Path(__file__).resolve().parents[1]
TIER = ROOT / "tests" / "fastreid_configs"
CONFIGS = ROOT / "configs"
REIDPLUG = str(Path(sys.executable).with_name("reidplug"))

FILES = sorted(p.relative_to(TIER).as_posix() for p in TIER.rglob("*.yml"))
PERSON_FOLDERS = ("Market1501", "DukeMTMC", "MSMT17")
PERSON = [f for f in FILES if f.split("/")[0] in PERSON_FOLDERS]
FAMILIES = ("bagtricks", "AGW", "sbs", "mgn")

# FastReID's HEAD configs/ tree: 4 bases, 13 recipes for each person dataset (+ the ViT on Market),
# one recipe for each vehicle dataset.
RECIPES = [f"{family}_{backbone}" for family in ("bagtricks", "AGW", "sbs")
           for backbone in ("R50", "R50-ibn", "R101-ibn", "S50")] + ["mgn_R50-ibn"]
EXPECTED = sorted(
    ["Base-bagtricks.yml", "Base-AGW.yml", "Base-SBS.yml", "Base-MGN.yml", "Market1501/bagtricks_vit.yml",
     "VeRi/sbs_R50-ibn.yml", "VehicleID/bagtricks_R50-ibn.yml", "VERIWild/bagtricks_R50-ibn.yml"]
    + [f"{folder}/{name}.yml" for folder in PERSON_FOLDERS for name in RECIPES]
)

# The test feature FastReID's model gives for each file: the backbone's FEAT_DIM after the BNNeck,
# except MGN (8 branch features of HEADS.EMBEDDING_DIM = 256, concatenated) and the ViT (768).
def feature_dim(name: str) -> int:
    return 768 if "vit" in name else 2048


# In the suite, two files train: the MGN meta-architecture on the Market layout and AGW (IBN,
# non-local, GeM) on the Duke layout. REIDPLUG_FASTREID_TRAIN=recipes (`make test-recipes`, which CI
# runs after the suite) trains each of the 13 person recipes and the ViT once, the three person
# layouts in turn; the same recipe on another dataset differs only in DATASETS.NAMES, which validation
# and the model build cover. REIDPLUG_FASTREID_TRAIN=all trains all 40 person files.
TRAINED = ["DukeMTMC/AGW_R50-ibn.yml", "Market1501/mgn_R50-ibn.yml"]
if os.environ.get("REIDPLUG_FASTREID_TRAIN") == "recipes":
    TRAINED = [f"{PERSON_FOLDERS[i % len(PERSON_FOLDERS)]}/{name}.yml" for i, name in enumerate(RECIPES)]
    TRAINED.append("Market1501/bagtricks_vit.yml")
elif os.environ.get("REIDPLUG_FASTREID_TRAIN") == "all":
    TRAINED = PERSON

# The project's own recipes in configs/ -> the FastReID file each must resolve to. configs/Base-bagtricks.yml
# and configs/*/bagtricks_R50.yml are there too, but with the shipped-configs tier's comments and choices.
ZOO_TWINS = {
    **ZOO, "Base-bagtricks.yml": "Base-bagtricks.yml", "market1501/bagtricks_R50.yml": "Market1501/bagtricks_R50.yml",
    "dukemtmc/bagtricks_R50.yml": "DukeMTMC/bagtricks_R50.yml", "msmt17/bagtricks_R50.yml": "MSMT17/bagtricks_R50.yml",
}

NO_WEIGHTS = ["MODEL.BACKBONE.PRETRAIN=False", "MODEL.DEVICE=cpu"]


def test_the_tier_holds_fastreid_configs_tree():
    """The 47 files of FastReID's configs/ at its HEAD, no more, no fewer."""
    assert FILES == EXPECTED, sorted(set(FILES) ^ set(EXPECTED))
    assert len(FILES) == 47
    assert set(TRAINED) <= set(PERSON)


def test_the_files_keep_fastreids_syntax():
    """Tuple strings and Python booleans as published: the point of the tier is that they load unchanged."""
    text = (TIER / "Base-bagtricks.yml").read_text()
    assert 'NAME: ("CrossEntropyLoss", "TripletLoss",)' in text and "WITH_IBN: False" in text
    assert 'NAMES: ("Market1501",)' in (TIER / "Market1501/bagtricks_R50.yml").read_text()
    assert "STRIDE_SIZE: (16, 16)" in (TIER / "Market1501/bagtricks_vit.yml").read_text()


def test_validates_through_the_command_line():
    name = str(TIER / "Market1501/sbs_R101-ibn.yml")
    done = subprocess.run([REIDPLUG, "config", "validate", name, *NO_WEIGHTS], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0 and ": ok" in done.stdout, done.stdout + done.stderr
    # As published, the files ask for ImageNet weights (FastReID downloads them; reidplug never does).
    done = subprocess.run([REIDPLUG, "config", "validate", name], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "MODEL.BACKBONE.PRETRAIN_PATH: empty while MODEL.BACKBONE.PRETRAIN is true" in done.stderr


@pytest.mark.parametrize("name", FILES)
def test_validates(name):
    from reidplug.core.validate import validate

    validate(TIER / name, NO_WEIGHTS)


@pytest.mark.parametrize("name", sorted(ZOO_TWINS))
def test_project_recipe_validates(name):
    from reidplug.core.validate import validate

    validate(CONFIGS / name)


def test_validate_resolves_the_tuple_values():
    """The tuple strings become lists, as FastReID's loader makes them."""
    from reidplug.core.config import load_config

    cfg = load_config(TIER / "VehicleID/bagtricks_R50-ibn.yml")
    assert list(cfg.DATASETS.TESTS) == ["SmallVehicleID", "MediumVehicleID", "LargeVehicleID"]
    assert list(cfg.MODEL.LOSSES.NAME) == ["CrossEntropyLoss", "TripletLoss"]
    assert list(load_config(TIER / "Market1501/bagtricks_vit.yml").MODEL.BACKBONE.STRIDE_SIZE) == [16, 16]


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _resolved(path: Path) -> dict:
    """Every key of the loaded config, the ResNet spelled as FastReID spells it (resnet50 = build_resnet_backbone 50x)."""
    import yaml

    from reidplug.core.config import load_config, to_yaml

    flat = _flat(yaml.safe_load(to_yaml(load_config(path))))
    name = flat["MODEL.BACKBONE.NAME"]
    if name.startswith("resnet") and name[6:].isdigit():
        flat["MODEL.BACKBONE.NAME"], flat["MODEL.BACKBONE.DEPTH"] = "build_resnet_backbone", f"{name[6:]}x"
    return flat


# Where the project's recipes may differ from FastReID's files, and why: nothing is downloaded here,
# so ImageNet weights are off unless a local file is named; and each recipe writes its own logs.
ALLOWED_DIFFERENCES = {"MODEL.BACKBONE.PRETRAIN", "MODEL.BACKBONE.PRETRAIN_PATH", "OUTPUT_DIR"}


@pytest.mark.parametrize("name", sorted(ZOO_TWINS))
def test_project_recipe_is_fastreids_recipe(name):
    """configs/<recipe> (YAML lists, project style) resolves to FastReID's file of the same name, key for key."""
    ours, theirs = _resolved(CONFIGS / name), _resolved(TIER / ZOO_TWINS[name])
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k) and k not in ALLOWED_DIFFERENCES)
    assert not differ, [f"{k}: ours {ours.get(k)!r}, FastReID {theirs.get(k)!r}" for k in differ]


@lru_cache(maxsize=None)
def _built(model_yaml: str, height: int, width: int, num_classes: int):
    """(parameters, test feature width, state-dict shapes) of the model a MODEL section describes.

    Files that describe the same model (one recipe on three datasets) share one build, to keep the
    tier within its time.
    """
    import torch
    import yaml

    from reidplug.core.config import load_config
    from reidplug.reid.modeling.build import build_model

    size = [height, width]
    cfg = load_config({"MODEL": yaml.safe_load(model_yaml), "INPUT": {"SIZE_TRAIN": size, "SIZE_TEST": size}})
    model = build_model(cfg, num_classes).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, height, width) * 255)
    feats = out["features"] if isinstance(out, dict) else out
    assert feats.dim() == 2 and feats.shape[0] == 2, tuple(feats.shape)
    shapes = tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())
    return sum(p.numel() for p in model.parameters()), feats.shape[1], shapes


def small_height(cfg) -> int:
    # MGN cuts layer4's map into 2 and 3 stripes: 96 rows give it 6 (at stride 16), which both divide.
    return 96 if cfg.MODEL.META_ARCHITECTURE == "MGN" else 64


def _build(path: Path, num_classes: int = 751):
    """The file's model, fed 64x32 images (96x32 for MGN): the feature width does not depend on the size."""
    from reidplug.core.config import load_config, to_yaml

    cfg = load_config(path, NO_WEIGHTS)
    return _built(to_yaml(cfg.MODEL), small_height(cfg), 32, num_classes)


@pytest.mark.slow
@pytest.mark.parametrize("name", FILES)
def test_builds_the_model(name):
    params, dim, _ = _build(TIER / name)
    assert params > 0
    assert dim == feature_dim(name), f"{name}: test feature of {dim} channels, FastReID's is {feature_dim(name)}"


@pytest.mark.slow
def test_depth_and_ibn_reach_the_model():
    """A recipe's backbone is the one its name says: R101 is deeper than R50, -ibn changes the norms."""
    r50, r50_ibn, r101_ibn = (_build(TIER / f"Market1501/bagtricks_{b}.yml") for b in ("R50", "R50-ibn", "R101-ibn"))
    assert r50[0] < r101_ibn[0]
    assert r50[2] != r50_ibn[2], "WITH_IBN: True built the same model as WITH_IBN: False"


# ---------------------------------------------------------------- one epoch on a synthetic tree


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory):
    """One tree per layout (Market-1501, DukeMTMC-reID, MSMT17, VeRi, VehicleID, VeRi-Wild), shared by the module."""
    root = tmp_path_factory.mktemp("fastreid-datasets")
    source = synthetic_source(ids=8, cams=3, height=64, width=32, test_ids=4)
    for build in (*TREES.values(), *VEHICLE_TREES.values()):
        build(root, source)
    return root


def training_sizes(name: str) -> list[str]:
    from reidplug.core.config import load_config

    cfg = load_config(TIER / name)
    height = small_height(cfg)
    batch = 2 * cfg.DATALOADER.NUM_INSTANCE  # two identities per batch
    return [
        f"INPUT.SIZE_TRAIN=[{height},32]", f"INPUT.SIZE_TEST=[{height},32]", "INPUT.PADDING.SIZE=4",
        f"SOLVER.IMS_PER_BATCH={batch}", "SOLVER.MAX_EPOCH=1", "SOLVER.WARMUP_ITERS=1", "SOLVER.FREEZE_ITERS=1",
        f"DATALOADER.NUM_WORKERS={min(cfg.DATALOADER.NUM_WORKERS, 2)}", "TEST.IMS_PER_BATCH=64",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINED)
def test_person_recipe_trains_one_epoch(name, datasets_root, tmp_path):
    from reidplug.reid.api import train

    out = tmp_path / "out"
    results = train(TIER / name, [*NO_WEIGHTS, *training_sizes(name), f"DATASETS.ROOT={datasets_root}",
                                  f"OUTPUT_DIR={out}"], echo=False)
    assert (out / "model_final.pth").is_file()
    assert 0.0 <= results["rank1"] <= 100.0 and results["epoch"] == 1, results
