"""Small dataset trees in the published folder layouts of Market-1501, DukeMTMC-reID, MSMT17, VeRi,
VehicleID and VeRi-Wild.

The images are the synthetic generator's pedestrians, so a model trained on
them learns something; only the folder layout and file naming follow each
dataset, which is what its loader reads. Built once per session and copied.
"""

from __future__ import annotations

import os
import shutil
from functools import lru_cache
from pathlib import Path

# Enough identities for the shipped spaces' largest PK batch: 128 images of 2 instances needs 64 training
# identities, and the generator puts half of them in the training split.
IDS, CAMS, HEIGHT, WIDTH = 140, 3, 32, 16


@lru_cache(maxsize=None)
def _market_source(cache: str, ids: int = IDS, cams: int = CAMS, height: int = HEIGHT, width: int = WIDTH) -> Path:
    from reidplug.reid.data import synthetic

    out = Path(cache) / "layouts" / f"market-{ids}-{cams}-{height}x{width}"
    synthetic.generate(out, ids=ids, cams=cams, seed=0, height=height, width=width, progress=False)
    return out


TEST_IDS = 20  # identities kept in query and gallery: enough to rank, few enough to evaluate in seconds


@lru_cache(maxsize=None)
def _trimmed(cache: str, ids: int = IDS, cams: int = CAMS, height: int = HEIGHT, width: int = WIDTH,
             test_ids: int = TEST_IDS) -> Path:
    """The source with its query and gallery cut to `test_ids` identities (and as many junk/distractor images)."""
    full = _market_source(cache, ids, cams, height, width)
    out = full.with_name(full.name + f"-test{test_ids}")
    if not out.exists():
        # pytest workers share the cache: each builds its own copy and the first rename wins.
        tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(full / "bounding_box_train", tmp / "bounding_box_train")
        names = sorted(p.name for split in ("query", "bounding_box_test") for p in (full / split).glob("*.jpg"))
        keep = sorted({int(n.split("_")[0]) for n in names if int(n.split("_")[0]) > 0})[:test_ids]
        for split in ("query", "bounding_box_test"):
            (tmp / split).mkdir()
            others = 0
            for src in sorted((full / split).glob("*.jpg")):
                pid = int(src.name.split("_")[0])
                if pid in keep or (pid <= 0 and others < test_ids):
                    others += pid <= 0
                    shutil.copy(src, tmp / split / src.name)
        try:
            tmp.rename(out)
        except OSError:  # another worker's copy is in place
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def synthetic_source(*, ids: int = IDS, cams: int = CAMS, height: int = HEIGHT, width: int = WIDTH,
                     test_ids: int = TEST_IDS) -> Path:
    """A Market-layout synthetic set (generated once per session) for the tree builders' `source`."""
    return _trimmed(os.environ["REIDPLUG_TEST_CACHE"], ids, cams, height, width, test_ids)


def _source() -> Path:
    return synthetic_source()


def _images(source: Path | None, split: str) -> list[tuple[Path, int, int]]:
    """(image, pid, camera from 1) of one Market split of the source, in name order."""
    out = []
    for src in sorted(((source or _source()) / split).glob("*.jpg")):
        pid_text, cam = src.name.split("_")[:2]
        out.append((src, int(pid_text), int(cam[1])))
    return out


def market_tree(root: Path, source: Path | None = None) -> Path:
    """`root/Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}` with Market names."""
    folder = root / "Market-1501-v15.09.15"
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        shutil.copytree((source or _source()) / split, folder / split)
    return root


def duke_tree(root: Path, source: Path | None = None) -> Path:
    """`root/DukeMTMC-reID/...` with Duke names (`0001_c2_f0046182.jpg`)."""
    folder = root / "DukeMTMC-reID"
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (folder / split).mkdir(parents=True)
        for i, src in enumerate(sorted(((source or _source()) / split).glob("*.jpg"))):
            pid, cam = src.name.split("_")[:2]  # "0001", "c2s3"
            shutil.copy(src, folder / split / f"{pid}_{cam[:2]}_f{i:07d}.jpg")
    return root


def msmt_tree(root: Path, source: Path | None = None) -> Path:
    """`root/MSMT17_V2/` with mask_train_v2/, mask_test_v2/ and the four list files (`relpath pid`)."""
    folder = root / "MSMT17_V2"
    lists = {"train": [], "val": [], "query": [], "gallery": []}
    splits = {"bounding_box_train": ("mask_train_v2", "train"), "query": ("mask_test_v2", "query"),
              "bounding_box_test": ("mask_test_v2", "gallery")}
    for split, (images, listed) in splits.items():
        for i, src in enumerate(sorted(((source or _source()) / split).glob("*.jpg"))):
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


def veri_tree(root: Path, source: Path | None = None) -> Path:
    """`root/veri/{image_train,image_query,image_test}` with VeRi names (`0001_c001_00016450_0.jpg`)."""
    folder = root / "veri"
    for split, target in (("bounding_box_train", "image_train"), ("query", "image_query"),
                          ("bounding_box_test", "image_test")):
        (folder / target).mkdir(parents=True)
        for i, (src, pid, cam) in enumerate(_images(source, split)):
            if pid > 0:  # VeRi has neither junk nor distractors
                shutil.copy(src, folder / target / f"{pid:04d}_c{cam:03d}_{i:08d}_0.jpg")
    return root


def _test_subsets(records: list[tuple[int, str]], sizes: tuple[int, ...]) -> dict[int, list[tuple[int, str]]]:
    """Nested test sets, as published: the smaller lists hold the first identities of the larger ones."""
    pids = sorted({pid for pid, _ in records})
    out = {}
    for rank, size in enumerate(sizes, 1):
        keep = set(pids[: max(2, len(pids) * rank // len(sizes))])
        out[size] = [r for r in records if r[0] in keep]
    return out


def vehicleid_tree(root: Path, source: Path | None = None) -> Path:
    """`root/vehicleid/image/<imgid>.jpg` and `train_test_split/{train_list,test_list_<N>}.txt` (`imgid vid`)."""
    folder = root / "vehicleid"
    (folder / "image").mkdir(parents=True)
    (folder / "train_test_split").mkdir()
    train, test = [], []
    imgid = 0
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        for src, pid, _ in _images(source, split):
            if pid > 0:
                imgid += 1
                shutil.copy(src, folder / "image" / f"{imgid:07d}.jpg")
                (train if split == "bounding_box_train" else test).append((pid, f"{imgid:07d}"))
    lists = {"train_list.txt": train}
    for size, records in _test_subsets(test, (800, 1600, 2400, 13164)).items():
        lists[f"test_list_{size}.txt"] = records
    for name, records in lists.items():
        (folder / "train_test_split" / name).write_text("".join(f"{img} {pid}\n" for pid, img in records))
    return root


def veriwild_tree(root: Path, source: Path | None = None) -> Path:
    """`root/VERI-Wild/images/<vid>/<imgid>.jpg`, `train_test_split/` lists (`vid/imgid`) and vehicle_info.txt."""
    folder = root / "VERI-Wild"
    (folder / "train_test_split").mkdir(parents=True)
    info = ["id/image;Camera ID;Time;Model;Type;Color"]
    lists: dict[str, list[tuple[int, str]]] = {"train_list.txt": [], "query": [], "gallery": []}
    imgid = 0
    for split, listed in (("bounding_box_train", "train_list.txt"), ("query", "query"), ("bounding_box_test", "gallery")):
        for src, pid, cam in _images(source, split):
            if pid <= 0:
                continue
            imgid += 1
            vid, img = f"{pid:05d}", f"{imgid:06d}"
            (folder / "images" / vid).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, folder / "images" / vid / f"{img}.jpg")
            info.append(f"{vid}/{img};{cam};2018-03-11 11:40:{imgid % 60:02d};Audi;SUV;white")
            lists[listed].append((pid, f"{vid}/{img}"))
    for kind, suffix in (("query", "_query"), ("gallery", "")):
        for size, records in _test_subsets(lists.pop(kind), (3000, 5000, 10000)).items():
            lists[f"test_{size}{suffix}.txt"] = records
    for name, records in lists.items():
        (folder / "train_test_split" / name).write_text("".join(f"{line}\n" for _, line in records))
    (folder / "train_test_split" / "vehicle_info.txt").write_text("\n".join(info) + "\n")
    return root


TREES = {"Market1501": market_tree, "DukeMTMC": duke_tree, "MSMT17": msmt_tree}
VEHICLE_TREES = {"VeRi": veri_tree, "VehicleID": vehicleid_tree, "VeRiWild": veriwild_tree}
