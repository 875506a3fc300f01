"""Small dataset trees in the published folder layouts of Market-1501, DukeMTMC-reID and MSMT17.

The images are the synthetic generator's pedestrians, so a model trained on
them learns something; only the folder layout and file naming follow each
dataset, which is what its loader reads. Built once per session and copied.
"""

from __future__ import annotations

import shutil
from functools import lru_cache
from pathlib import Path

# Enough identities for the shipped spaces' largest PK batch: 128 images of 2 instances needs 64 training
# identities, and the generator puts half of them in the training split.
IDS, CAMS, HEIGHT, WIDTH = 140, 3, 32, 16


@lru_cache(maxsize=None)
def _market_source(cache: str) -> Path:
    from reidplug.reid.data import synthetic

    out = Path(cache) / "layouts" / f"market-{IDS}-{CAMS}-{HEIGHT}x{WIDTH}"
    synthetic.generate(out, ids=IDS, cams=CAMS, seed=0, height=HEIGHT, width=WIDTH, progress=False)
    return out


TEST_IDS = 20  # identities kept in query and gallery: enough to rank, few enough to evaluate in seconds


@lru_cache(maxsize=None)
def _trimmed(cache: str) -> Path:
    """The source with its query and gallery cut to TEST_IDS identities (and as many junk/distractor images)."""
    full = _market_source(cache)
    out = full.with_name(full.name + f"-test{TEST_IDS}")
    if not out.exists():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(full / "bounding_box_train", tmp / "bounding_box_train")
        names = sorted(p.name for split in ("query", "bounding_box_test") for p in (full / split).glob("*.jpg"))
        keep = sorted({int(n.split("_")[0]) for n in names if int(n.split("_")[0]) > 0})[:TEST_IDS]
        for split in ("query", "bounding_box_test"):
            (tmp / split).mkdir()
            others = 0
            for src in sorted((full / split).glob("*.jpg")):
                pid = int(src.name.split("_")[0])
                if pid in keep or (pid <= 0 and others < TEST_IDS):
                    others += pid <= 0
                    shutil.copy(src, tmp / split / src.name)
        tmp.rename(out)
    return out


def _source() -> Path:
    import os

    return _trimmed(os.environ["REIDPLUG_TEST_CACHE"])


def market_tree(root: Path) -> Path:
    """`root/Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}` with Market names."""
    folder = root / "Market-1501-v15.09.15"
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        shutil.copytree(_source() / split, folder / split)
    return root


def duke_tree(root: Path) -> Path:
    """`root/DukeMTMC-reID/...` with Duke names (`0001_c2_f0046182.jpg`)."""
    folder = root / "DukeMTMC-reID"
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (folder / split).mkdir(parents=True)
        for i, src in enumerate(sorted((_source() / split).glob("*.jpg"))):
            pid, cam = src.name.split("_")[:2]  # "0001", "c2s3"
            shutil.copy(src, folder / split / f"{pid}_{cam[:2]}_f{i:07d}.jpg")
    return root


def msmt_tree(root: Path) -> Path:
    """`root/MSMT17_V2/` with mask_train_v2/, mask_test_v2/ and the four list files (`relpath pid`)."""
    folder = root / "MSMT17_V2"
    lists = {"train": [], "val": [], "query": [], "gallery": []}
    splits = {"bounding_box_train": ("mask_train_v2", "train"), "query": ("mask_test_v2", "query"),
              "bounding_box_test": ("mask_test_v2", "gallery")}
    for split, (images, listed) in splits.items():
        for i, src in enumerate(sorted((_source() / split).glob("*.jpg"))):
            pid_text, cam = src.name.split("_")[:2]
            pid = int(pid_text)
            if pid <= 0:
                continue  # MSMT17 has neither junk nor distractors
            rel = f"{pid:04d}/{pid:04d}_{i:03d}_{int(cam[1]):02d}_0303morning_{i:04d}_0.jpg"
            (folder / images / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, folder / images / rel)
            # a few training images go to the val list, as in the published split
            lists["val" if listed == "train" and i % 7 == 6 else listed].append(f"{rel} {pid}")
    for name, lines in lists.items():
        (folder / f"list_{name}.txt").write_text("\n".join(lines) + "\n")
    return root


TREES = {"Market1501": market_tree, "DukeMTMC": duke_tree, "MSMT17": msmt_tree}
