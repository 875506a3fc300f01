"""FastReID's vehicle datasets (VeRi, VehicleID, VeRi-Wild) in their published layouts, and MSMT17's COMBINEALL."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from reidplug.core.config import load_config
from reidplug.core.errors import DataError
from reidplug.core.manager import registry
from reidplug.reid.data.build import build_dataset, build_train_set
from reidplug.reid.data.datasets.msmt17 import MSMT17
from reidplug.reid.data.datasets.vehicleid import LargeVehicleID, MediumVehicleID, SmallVehicleID, VehicleID
from reidplug.reid.data.datasets.veri import VeRi
from reidplug.reid.data.datasets.veriwild import MediumVeRiWild, SmallVeRiWild, VeRiWild


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 30, 200)).save(buf, format="JPEG")
    return buf.getvalue()


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg())


def one_line(exc) -> str:
    assert "\n" not in str(exc.value)
    return str(exc.value)


# ---------------------------------------------------------------- VeRi


def veri_tree(root: Path) -> Path:
    folder = root / "veri"
    for split, names in {
        "image_train": ["0001_c001_00016450_0.jpg", "0001_c002_00016460_0.jpg", "0002_c020_00016470_1.jpg"],
        "image_query": ["0003_c003_00016480_0.jpg"],
        "image_test": ["0003_c004_00016490_0.jpg", "0004_c003_00016500_0.jpg"],
    }.items():
        for name in names:
            touch(folder / split / name)
    (folder / "name_train.xml").write_text("<xml/>")  # the release's other files are ignored
    return folder


def test_veri_layout(tmp_path):
    folder = veri_tree(tmp_path)
    d = VeRi(tmp_path)
    assert d.root == str(folder)
    assert sorted((pid, cam) for _, pid, cam in d.train) == [(1, 0), (1, 1), (2, 19)], "c001..c020 -> 0..19"
    assert [(pid, cam) for _, pid, cam in d.query] == [(3, 2)]
    assert sorted((pid, cam) for _, pid, cam in d.gallery) == [(3, 3), (4, 2)]
    assert registry("dataset").get("VeRi") is VeRi


def test_veri_errors(tmp_path):
    folder = veri_tree(tmp_path)
    touch(folder / "image_test" / "0005_c021_00000001_0.jpg")
    with pytest.raises(DataError, match="camera 21 is outside 1..20"):
        VeRi(tmp_path)
    (folder / "image_test" / "0005_c021_00000001_0.jpg").unlink()
    touch(folder / "image_query" / "0000_c001_00000001_0.jpg")
    with pytest.raises(DataError, match="vehicle id 0 is below 1"):
        VeRi(tmp_path)
    for p in (folder / "image_query").iterdir():
        p.unlink()
    (folder / "image_query").rmdir()
    with pytest.raises(DataError) as err:
        VeRi(tmp_path)
    assert one_line(err).startswith(f"{folder / 'image_query'}: no such folder")


# ---------------------------------------------------------------- VehicleID


def vehicleid_tree(root: Path) -> Path:
    folder = root / "vehicleid"
    lists = {
        "train_list.txt": ["0000001 1", "0000002 1", "0000003 2"],
        # vehicles 10 (3 images) and 11 (2 images) in every test list, 12 (1 image) in the larger ones
        "test_list_800.txt": ["0000010 10", "0000011 10", "0000012 10", "0000013 11", "0000014 11"],
        "test_list_1600.txt": ["0000010 10", "0000011 10", "0000012 10", "0000013 11", "0000014 11", "0000015 12"],
    }
    lists["test_list_2400.txt"] = lists["test_list_13164.txt"] = lists["test_list_1600.txt"]
    for name, lines in lists.items():
        (folder / "train_test_split").mkdir(parents=True, exist_ok=True)
        (folder / "train_test_split" / name).write_text("\n".join(lines) + "\n")
        for line in lines:
            touch(folder / "image" / f"{line.split()[0]}.jpg")
    return folder


def test_vehicleid_query_gallery_rule(tmp_path):
    folder = vehicleid_tree(tmp_path)
    d = SmallVehicleID(tmp_path)
    assert d.root == str(folder) and d.name == "SmallVehicleID"
    assert [(Path(p).name, pid, cam) for p, pid, cam in d.train] == [
        ("0000001.jpg", 1, 1), ("0000002.jpg", 1, 2), ("0000003.jpg", 2, 3)], "camera = image id"
    # one image of each vehicle is the gallery, the others its queries
    assert sorted(pid for _, pid, _ in d.gallery) == [10, 11]
    assert sorted(pid for _, pid, _ in d.query) == [10, 10, 11]
    assert {p for p, _, _ in d.query}.isdisjoint(p for p, _, _ in d.gallery)
    again = SmallVehicleID(tmp_path)
    assert (again.query, again.gallery) == (d.query, d.gallery), "the draw is the same on every run"
    medium = MediumVehicleID(tmp_path)
    assert sorted(pid for _, pid, _ in medium.gallery) == [10, 11, 12], "a vehicle with one image is gallery only"
    assert len(LargeVehicleID(tmp_path).gallery) == len(VehicleID(tmp_path).gallery) == 3
    assert d.verify() == 3 + 5


def test_vehicleid_errors(tmp_path):
    folder = vehicleid_tree(tmp_path)
    (folder / "train_test_split" / "test_list_800.txt").unlink()
    with pytest.raises(DataError) as err:
        SmallVehicleID(tmp_path)
    assert one_line(err) == f"{folder}: not a complete SmallVehicleID folder: train_test_split/test_list_800.txt is missing"
    MediumVehicleID(tmp_path)  # the other test sets still read
    (folder / "train_test_split" / "train_list.txt").write_text("0000001 1\n0000002\n")
    with pytest.raises(DataError) as err:
        VehicleID(tmp_path)
    assert one_line(err).startswith(f"{folder / 'train_test_split' / 'train_list.txt'}:2: expected 'imageid vehicleid'")
    with pytest.raises(DataError, match="no VehicleID found"):
        VehicleID(tmp_path / "vehicleid" / "image")


# ---------------------------------------------------------------- VeRi-Wild


def veriwild_tree(root: Path) -> Path:
    folder = root / "VERI-Wild"
    images = {"00001/000001": 5, "00001/000002": 7, "00002/000003": 5, "00003/000004": 1, "00003/000005": 2,
              "00004/000006": 3, "00004/000007": 4}
    for name in images:
        touch(folder / "images" / f"{name}.jpg")
    split = folder / "train_test_split"
    split.mkdir(parents=True)
    (split / "vehicle_info.txt").write_text("id/image;Camera ID;Time;Model;Type;Color\n" + "".join(
        f"{name};{cam};2018-03-11 11:40:13;Audi;SUV;white\n" for name, cam in images.items()))
    (split / "train_list.txt").write_text("00001/000001\n00001/000002\n00002/000003\n")
    for size, query, gallery in ((3000, ["00003/000004"], ["00003/000005"]),
                                 (5000, ["00003/000004", "00004/000006"], ["00003/000005", "00004/000007"])):
        (split / f"test_{size}_query.txt").write_text("\n".join(query) + "\n")
        (split / f"test_{size}.txt").write_text("\n".join(gallery) + "\n")
    return folder


def test_veriwild_cameras_from_vehicle_info(tmp_path):
    folder = veriwild_tree(tmp_path)
    d = SmallVeRiWild(tmp_path)
    assert d.root == str(folder)
    assert [(pid, cam) for _, pid, cam in d.train] == [(1, 5), (1, 7), (2, 5)]
    assert [(Path(p).relative_to(folder).as_posix(), pid, cam) for p, pid, cam in d.query] == [
        ("images/00003/000004.jpg", 3, 1)]
    assert [(pid, cam) for _, pid, cam in MediumVeRiWild(tmp_path).gallery] == [(3, 2), (4, 4)]
    assert d.verify() == 5


def test_veriwild_errors(tmp_path):
    folder = veriwild_tree(tmp_path)
    split = folder / "train_test_split"
    with pytest.raises(DataError) as err:
        VeRiWild(tmp_path)  # the full test set (10000) is not in this tree
    assert one_line(err) == f"{folder}: not a complete VeRiWild folder: train_test_split/test_10000_query.txt is missing"
    (split / "test_3000_query.txt").write_text("00003/000099\n")
    with pytest.raises(DataError) as err:
        SmallVeRiWild(tmp_path)
    assert one_line(err) == (f"{split / 'test_3000_query.txt'}:1: image 000099 has no line in vehicle_info.txt "
                             "(its camera is unknown)")
    (split / "vehicle_info.txt").write_text("id/image;Camera ID\n00001/000001 5\n")
    with pytest.raises(DataError, match=r"vehicle_info.txt:2: expected 'vid/imgid;camera;...'"):
        SmallVeRiWild(tmp_path)


# ---------------------------------------------------------------- MSMT17 and DATASETS.COMBINEALL


def msmt_tree(root: Path) -> Path:
    folder = root / "MSMT17_V1"
    lists = {
        "train": ["0000/0000_000_01_0303morning_0015_0.jpg 0", "0001/0001_000_05_0303morning_0020_1.jpg 1"],
        "val": ["0001/0001_001_15_0303noon_0030_0.jpg 1", "0000/0000_002_02_0303noon_0031_0.jpg 0"],
        "query": ["0000/0000_000_03_0303afternoon_0010_0.jpg 0"],
        "gallery": ["0000/0000_001_07_0303afternoon_0011_0.jpg 0"],
    }
    for split, lines in lists.items():
        for line in lines:
            touch(folder / ("train" if split in ("train", "val") else "test") / line.split()[0])
        (folder / f"list_{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_msmt17_val_joins_training_only_with_combineall(tmp_path):
    """FastReID's rule: list_val.txt is training data only under DATASETS.COMBINEALL."""
    msmt_tree(tmp_path)
    base = [f"DATASETS.ROOT={tmp_path}", "DATASETS.NAMES=[MSMT17]", "DATASETS.TESTS=[MSMT17]"]
    plain = build_dataset(load_config(None, base), "MSMT17")
    combined = build_dataset(load_config(None, [*base, "DATASETS.COMBINEALL=True"]), "MSMT17")
    assert len(plain.train) == 2 and len(combined.train) == 4
    assert [pid for _, pid, _ in plain.query] == [2], "query ids offset by the 2 training ids either way"
    assert [pid for _, pid, _ in combined.query] == [2]
    # COMBINEALL also moves query and gallery into training (as new identities), as in FastReID
    assert len(build_train_set(load_config(None, base)).records) == 2
    combined_set = build_train_set(load_config(None, [*base, "DATASETS.COMBINEALL=True"]))
    assert len(combined_set.records) == 4 + 2 and combined_set.num_classes == 3


def test_msmt17_combineall_needs_the_val_list(tmp_path):
    folder = msmt_tree(tmp_path)
    (folder / "list_val.txt").unlink()
    assert len(MSMT17(tmp_path).train) == 2
    with pytest.raises(DataError, match="list file not found"):
        MSMT17(tmp_path, combineall=True)


@pytest.mark.parametrize("name", ["VeRi", "VehicleID", "SmallVehicleID", "MediumVehicleID", "LargeVehicleID",
                                  "VeRiWild", "SmallVeRiWild", "MediumVeRiWild", "LargeVeRiWild"])
def test_fastreid_names_are_registered(name):
    assert registry("dataset").get(name).name == name
