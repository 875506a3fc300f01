"""Dataset folders (Market-1501, DukeMTMC, MSMT17, plain folders), their errors, and the loaders built from a config."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from reidplug.core import manager
from reidplug.core.config import load_config
from reidplug.core.errors import DataError, UnknownComponentError
from reidplug.core.hookspecs import hookimpl
from reidplug.reid.data.build import (
    build_test_loader,
    build_train_loader,
    build_train_set,
    dataset_root,
)
from reidplug.reid.data.datasets import (
    MSMT17,
    DukeMTMC,
    Market1501,
    PlainFolder,
    ReIDDataset,
)
from reidplug.reid.data.image_dataset import ImageDataset


def jpeg(colour=(120, 60, 30), size=(8, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="JPEG")
    return buf.getvalue()


def write(folder: Path, names, data: bytes | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (folder / name).write_bytes(data if data is not None else jpeg((20 * i % 255, 80, 160)))


def market_tree(root: Path, *, cams=6) -> Path:
    """A tiny Market-1501 tree with junk (-1) and distractors (0000) in every split."""
    write(root / "bounding_box_train", [
        "0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s1_000101_01.jpg",
        f"0007_c{cams}s2_000201_02.jpg", "-1_c1s1_000401_03.jpg", "0000_c1s1_000001_01.jpg",
    ])
    write(root / "query", ["0003_c1s1_000001_01.jpg", "0005_c4s1_000002_01.jpg", "-1_c2s1_000003_01.jpg"])
    write(root / "bounding_box_test", [
        "0003_c2s1_000011_01.jpg", "0005_c5s1_000012_01.jpg", "0000_c3s1_000013_01.jpg", "-1_c1s1_000014_01.jpg",
    ])
    return root


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


# ---------------------------------------------------------------- Market-1501 and DukeMTMC


def test_market_drops_junk_keeps_distractors_in_gallery_and_maps_cameras(tmp_path):
    d = Market1501(market_tree(tmp_path))
    assert sorted((Path(p).name, pid, cam) for p, pid, cam in d.train) == [
        ("0002_c1s1_000451_03.jpg", 2, 0), ("0002_c2s1_000551_01.jpg", 2, 1),
        ("0007_c3s1_000101_01.jpg", 7, 2), ("0007_c6s2_000201_02.jpg", 7, 5),
    ]
    assert {pid for _, pid, _ in d.query} == {3, 5}
    assert sorted(pid for _, pid, _ in d.gallery) == [0, 3, 5], "distractor kept, junk dropped"
    assert {cam for _, _, cam in d.gallery} == {1, 4, 2}
    assert all(Path(p).is_file() for p, _, _ in d.train + d.query + d.gallery)


def test_market_finds_its_folder_under_the_datasets_root(tmp_path):
    market_tree(tmp_path / "Market-1501-v15.09.15")
    d = Market1501(tmp_path)
    assert d.root == str(tmp_path / "Market-1501-v15.09.15") and len(d.train) == 4


def test_summary_table(tmp_path):
    d = Market1501(market_tree(tmp_path))
    lines = d.summary().splitlines()
    assert lines[0].startswith("Market1501")
    assert lines[1].split() == ["split", "|", "identities", "|", "images", "|", "cameras"]
    assert lines[3].split() == ["train", "|", "2", "|", "4", "|", "4"]
    assert lines[5].split() == ["gallery", "|", "3", "|", "3", "|", "3"]
    shown = []
    d.show_summary(shown.append)
    assert shown == [d.summary()]


def test_camera_range_depends_on_the_dataset(tmp_path):
    market_tree(tmp_path / "DukeMTMC-reID", cams=8)
    duke = DukeMTMC(tmp_path)
    assert max(cam for _, _, cam in duke.train) == 7
    with pytest.raises(DataError, match=r"0007_c8s2_000201_02.jpg: camera 8 is outside 1..6") as err:
        Market1501(tmp_path / "DukeMTMC-reID")
    one_line(err.value)


def test_unparsable_file_name(tmp_path):
    root = market_tree(tmp_path)
    write(root / "query", ["IMG_0001.jpg"])
    with pytest.raises(DataError) as err:
        Market1501(root)
    assert str(root / "query" / "IMG_0001.jpg") in one_line(err.value)
    assert "does not match" in str(err.value)


def test_missing_root_names_the_path_and_the_key(tmp_path):
    with pytest.raises(DataError) as err:
        Market1501(tmp_path / "nowhere")
    msg = one_line(err.value)
    assert str(tmp_path / "nowhere") in msg and "DATASETS.ROOT" in msg


def test_root_without_market(tmp_path):
    (tmp_path / "something").mkdir()
    with pytest.raises(DataError, match="no Market1501 found") as err:
        Market1501(tmp_path)
    assert "Market-1501-v15.09.15" in one_line(err.value)


def test_missing_and_empty_splits(tmp_path):
    root = market_tree(tmp_path)
    for f in (root / "query").iterdir():
        f.unlink()
    with pytest.raises(DataError) as err:
        Market1501(root)
    assert f"{root / 'query'}: no images in the query split" in one_line(err.value)
    (root / "query").rmdir()
    with pytest.raises(DataError, match="no such folder") as err:
        Market1501(root)
    assert str(root / "query") in one_line(err.value)


def test_split_holding_only_junk_is_empty(tmp_path):
    write(tmp_path / "bounding_box_train", ["-1_c1s1_000001_01.jpg", "0000_c1s1_000002_01.jpg"])
    write(tmp_path / "query", ["0001_c1s1_000001_01.jpg"])
    write(tmp_path / "bounding_box_test", ["0001_c2s1_000001_01.jpg"])
    with pytest.raises(DataError, match="train split of Market1501 holds no usable image"):
        Market1501(tmp_path)


@pytest.mark.parametrize("content", [b"", b"not an image at all", jpeg()[:60]], ids=["empty", "garbage", "truncated"])
def test_corrupt_image_found_by_verify_and_at_load_time(tmp_path, content):
    root = market_tree(tmp_path)
    bad = root / "bounding_box_test" / "0003_c2s1_000011_01.jpg"
    bad.write_bytes(content)
    d = Market1501(root)  # parsing does not open images
    with pytest.raises(DataError) as err:
        d.verify()
    assert str(bad) in one_line(err.value)
    data = ImageDataset(d.gallery)
    index = [p for p, _, _ in d.gallery].index(str(bad))
    with pytest.raises(DataError, match="cannot read image") as err:
        data[index]
    assert str(bad) in one_line(err.value)


def test_verify_counts_every_image(tmp_path):
    d = Market1501(market_tree(tmp_path))
    assert d.verify() == len(d.train) + len(d.query) + len(d.gallery)


# ---------------------------------------------------------------- MSMT17


def msmt_tree(root: Path, version="MSMT17_V1") -> Path:
    train_dir, test_dir = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}[version]
    folder = root / version
    lists = {
        "train": ["0000/0000_000_01_0303morning_0015_0.jpg 0", "0001/0001_000_05_0303morning_0020_1.jpg 1"],
        "val": ["0001/0001_001_15_0303noon_0030_0.jpg 1"],
        "query": ["0000/0000_000_03_0303afternoon_0010_0.jpg 0"],
        "gallery": ["0000/0000_001_07_0303afternoon_0011_0.jpg 0", "0002/0002_000_02_0303noon_0012_0.jpg 2"],
    }
    for split, lines in lists.items():
        images = folder / (train_dir if split in ("train", "val") else test_dir)
        for line in lines:
            write(images / Path(line.split()[0]).parent, [Path(line.split()[0]).name])
        (folder / f"list_{split}.txt").write_text("\n".join(lines) + "\n\n")
    return folder


@pytest.mark.parametrize("version", ["MSMT17_V1", "MSMT17_V2"])
def test_msmt17_lists(tmp_path, version):
    folder = msmt_tree(tmp_path, version)
    d = MSMT17(tmp_path, combineall=True)
    assert d.root == str(folder)
    assert [(pid, cam) for _, pid, cam in d.train] == [(0, 0), (1, 4), (1, 14)], "train and val merged"
    assert [(pid, cam) for _, pid, cam in MSMT17(tmp_path).train] == [(0, 0), (1, 4)], "val only with combineall"
    assert [(pid, cam) for _, pid, cam in d.query] == [(2, 2)], "query pids offset by the 2 train pids"
    assert [(pid, cam) for _, pid, cam in d.gallery] == [(2, 6), (4, 1)]
    assert d.verify() == 6


def test_msmt17_errors(tmp_path):
    folder = msmt_tree(tmp_path)
    (folder / "list_query.txt").write_text("0000/0000_000_03_x.jpg\n")
    with pytest.raises(DataError) as err:
        MSMT17(tmp_path)
    assert f"{folder / 'list_query.txt'}:1: expected 'relpath pid'" in one_line(err.value)
    (folder / "list_query.txt").write_text("0000/0000_000_16_x.jpg 0\n")
    with pytest.raises(DataError, match="camera 16 is outside 1..15"):
        MSMT17(tmp_path)
    (folder / "list_query.txt").unlink()
    with pytest.raises(DataError, match="list file not found") as err:
        MSMT17(tmp_path)
    assert str(folder / "list_query.txt") in one_line(err.value)
    with pytest.raises(DataError, match="no MSMT17 found"):
        MSMT17(tmp_path / "MSMT17_V1" / "train")


# ---------------------------------------------------------------- plain folders


def plain_tree(root: Path) -> Path:
    write(root / "train" / "alice", ["cam1_0001.jpg", "cam2_0002.jpg"])
    write(root / "train" / "bob", ["cam2_0001.png"])
    write(root / "query" / "10", ["cam10_a.jpg"])
    write(root / "query" / "2", ["cam1_b.jpg"])
    write(root / "gallery" / "2", ["cam2_c.jpg"])
    write(root / "gallery" / "10", ["cam1_d.jpg", "cam2_e.jpg"])
    write(root / "gallery" / "stranger", ["cam1_f.jpg"])
    (root / "train" / "notes.txt").write_text("ignored")
    return root


def test_plain_folder(tmp_path):
    d = PlainFolder(plain_tree(tmp_path))
    assert sorted((Path(p).parent.name, pid) for p, pid, _ in d.train) == [("alice", 0), ("alice", 0), ("bob", 1)]
    # "2" < "10" < "stranger" in natural order, shared by query and gallery
    assert sorted({(Path(p).parent.name, pid) for p, pid, _ in d.query + d.gallery}) == [("10", 1), ("2", 0), ("stranger", 2)]
    cams = {Path(p).name.split("_")[0]: cam for p, _, cam in d.train + d.query + d.gallery}
    assert cams == {"cam1": 0, "cam2": 1, "cam10": 2}


def test_plain_folder_errors(tmp_path):
    root = plain_tree(tmp_path)
    write(root / "query" / "2", ["nocamera.jpg"])
    with pytest.raises(DataError, match="must be <camera>_<anything>") as err:
        PlainFolder(root)
    assert str(root / "query" / "2" / "nocamera.jpg") in one_line(err.value)
    (root / "query" / "2" / "nocamera.jpg").unlink()
    write(root / "gallery", ["cam1_loose.jpg"])
    with pytest.raises(DataError, match="one folder per identity"):
        PlainFolder(root)
    with pytest.raises(DataError, match="no such folder"):
        PlainFolder(tmp_path / "missing")


# ---------------------------------------------------------------- from a config


def config(root, *overrides):
    return load_config(None, [
        f"DATASETS.ROOT={root}", "INPUT.SIZE_TRAIN=[16,8]", "INPUT.SIZE_TEST=[16,8]", "DATALOADER.NUM_WORKERS=0",
        "SOLVER.IMS_PER_BATCH=4", "DATALOADER.NUM_INSTANCE=2", "TEST.IMS_PER_BATCH=3", *overrides,
    ])


def test_dataset_root_precedence(monkeypatch):
    monkeypatch.delenv("REIDPLUG_DATASETS", raising=False)
    assert dataset_root(load_config()) == "datasets"
    monkeypatch.setenv("REIDPLUG_DATASETS", "/data/reid")
    assert dataset_root(load_config()) == "/data/reid"
    assert dataset_root(load_config(None, ["DATASETS.ROOT=/elsewhere"])) == "/elsewhere"


def test_train_set_relabels_and_offsets_across_datasets(tmp_path):
    market_tree(tmp_path / "Market-1501-v15.09.15")
    market_tree(tmp_path / "DukeMTMC-reID", cams=8)
    single = build_train_set(config(tmp_path, "DATASETS.NAMES=[Market1501]"))
    assert single.num_classes == 2 and sorted({pid for _, pid, _ in single.records}) == [0, 1]
    both = build_train_set(config(tmp_path, "DATASETS.NAMES=[Market1501, DukeMTMC]"))
    assert both.num_classes == 4 and both.num_cameras == 4 + 4
    market = [r for r in both.records if "Market" in r[0]]
    duke = [r for r in both.records if "Duke" in r[0]]
    assert {pid for _, pid, _ in market} == {0, 1} and {pid for _, pid, _ in duke} == {2, 3}
    assert {cam for _, _, cam in market} == {0, 1, 2, 3} and {cam for _, _, cam in duke} == {4, 5, 6, 7}
    # the same identity keeps one label
    labels = {Path(p).name[:4] + ("M" if "Market" in p else "D"): pid for p, pid, _ in both.records}
    assert labels == {"0002M": 0, "0007M": 1, "0002D": 2, "0007D": 3}


def test_combineall_adds_test_identities_without_distractors(tmp_path):
    market_tree(tmp_path)
    s = build_train_set(config(tmp_path, "DATASETS.COMBINEALL=true"))
    assert s.num_classes == 4  # 2 train + 2 test identities; pid 0 stays out
    assert len(s.records) == 4 + 2 + 2


def test_unknown_dataset_name_names_the_key(tmp_path):
    with pytest.raises(UnknownComponentError, match="DATASETS.NAMES: unknown dataset 'Marketplace'"):
        build_train_set(config(tmp_path, "DATASETS.NAMES=[Marketplace]"))
    with pytest.raises(UnknownComponentError, match="DATASETS.TESTS"):
        build_test_loader(config(tmp_path), "nope")


def test_third_party_dataset_through_the_registry(tmp_path, monkeypatch):
    market_tree(tmp_path)
    seen = {}

    class Mine(ReIDDataset):
        name = "Mine"

        @classmethod
        def from_config(cls, cfg, root):
            seen["root"], seen["ids"] = root, cfg.DATASETS.SYNTH.IDS
            m = Market1501(root)
            return cls(m.train, m.query, m.gallery, root=root)

    class Plugin:
        @hookimpl
        def register_datasets(self, register):
            register("Mine", Mine)

    pm = manager.get_plugin_manager(entry_points=False)
    pm.register(Plugin(), name="mine")
    monkeypatch.setattr(manager, "_default", pm)
    s = build_train_set(config(tmp_path, "DATASETS.NAMES=[mine]", "DATASETS.SYNTH.IDS=7"))
    assert s.num_classes == 2 and seen == {"root": str(tmp_path), "ids": 7}


def test_test_loader_yields_query_then_gallery(tmp_path):
    market_tree(tmp_path)
    loader, num_query = build_test_loader(config(tmp_path), "Market1501")
    assert num_query == 2
    batches = list(loader)
    images = torch.cat([b["images"] for b in batches])
    pids = torch.cat([b["targets"] for b in batches]).tolist()
    camids = torch.cat([b["camids"] for b in batches]).tolist()
    assert images.shape == (5, 3, 16, 8) and images.dtype == torch.float32 and images.max() > 1
    d = Market1501(tmp_path)
    assert pids == [pid for _, pid, _ in d.query + d.gallery] and camids == [c for _, _, c in d.query + d.gallery]


def test_train_loader_batches_and_epochs(tmp_path):
    market_tree(tmp_path)
    cfg = config(tmp_path, "DATALOADER.CACHE_IMAGES=true")
    loader = build_train_loader(cfg, seed=0)
    assert loader.num_classes == 2 and loader.epoch == 0
    first = list(loader)
    assert loader.epoch == 1 and len(first) == 1
    batch = first[0]
    assert batch["images"].shape == (4, 3, 16, 8) and batch["images"].dtype == torch.float32
    assert 0 <= batch["images"].min() and batch["images"].max() <= 255
    assert sorted(batch["targets"].tolist()) == [0, 0, 1, 1] and batch["camids"].dtype == torch.int64
    second = list(loader)
    loader.set_epoch(0)
    again = list(loader)
    assert torch.equal(again[0]["images"], first[0]["images"]), "set_epoch replays an epoch exactly"
    assert not torch.equal(second[0]["images"], first[0]["images"])
    fresh = build_train_loader(cfg, seed=0)
    fresh.set_epoch(1)
    assert torch.equal(next(iter(fresh))["images"], second[0]["images"]), "a new loader resumes at any epoch"
    assert len(build_train_loader(cfg, seed=0, epoch_length=5)) == 5


def test_train_loader_rejects_a_batch_larger_than_the_set(tmp_path):
    market_tree(tmp_path)
    from reidplug.core.errors import ConfigError

    with pytest.raises(ConfigError, match="SOLVER.IMS_PER_BATCH"):
        build_train_loader(config(tmp_path, "DATALOADER.SAMPLER_TRAIN=TrainingSampler", "SOLVER.IMS_PER_BATCH=64"), seed=0)


def test_worker_processes_change_nothing_and_keep_errors_one_line(tmp_path):
    market_tree(tmp_path)
    runs = []
    for workers in (0, 2):
        loader = build_train_loader(config(tmp_path, f"DATALOADER.NUM_WORKERS={workers}", "SOLVER.IMS_PER_BATCH=2", "DATALOADER.NUM_INSTANCE=1"), seed=4)
        runs.append([b["images"] for _ in range(2) for b in loader])
    assert len(runs[0]) == len(runs[1]) > 2
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    (tmp_path / "bounding_box_train" / "0007_c3s1_000101_01.jpg").write_bytes(b"broken")
    loader = build_train_loader(config(tmp_path, "DATALOADER.NUM_WORKERS=1"), seed=0)
    with pytest.raises(DataError) as err:
        for _ in range(3):
            list(loader)
    assert one_line(err.value) == f"{tmp_path / 'bounding_box_train' / '0007_c3s1_000101_01.jpg'}: cannot read image (cannot identify image file {str(tmp_path / 'bounding_box_train' / '0007_c3s1_000101_01.jpg')!r})"
