"""PKU VehicleID and its small, medium and large test sets."""

from __future__ import annotations

import os
import random
from pathlib import Path

from reidplug.core.errors import DataError
from reidplug.reid.data.datasets.base import Record, ReIDDataset, require_nonempty
from reidplug.reid.data.datasets.split_lists import find_list_folder, read_lines

# The query/gallery draw must not change between runs, or two evaluations of one model differ.
GALLERY_SEED = 0


class VehicleID(ReIDDataset):
    """VehicleID: `image/<imgid>.jpg` and `train_test_split/` lists of `imgid vid` lines.

    The folder is `root/vehicleid/` (FastReID's name; `VehicleID/`,
    `VehicleID_V1.0/` and `PKU-VehicleID/` are found too), or `root` itself.
    Training reads `train_list.txt`; the test set is one list file, split as
    the VehicleID protocol (and FastReID) does: one image of each vehicle, drawn
    at random, is the gallery, every other image of it is a query. The draw uses
    a fixed seed, so it is the same on every run. There are no camera labels:
    each image is its own camera (its image id), so no gallery image is ever
    discarded as "same camera".
    """

    name = "VehicleID"
    folders: tuple[str, ...] = ("vehicleid", "VehicleID", "VehicleID_V1.0", "PKU-VehicleID")
    test_list = "test_list_13164.txt"

    def __init__(self, root: str | os.PathLike = "datasets"):
        lists = Path("train_test_split")
        folder = find_list_folder(root, self.folders, ["image", str(lists / "train_list.txt"), str(lists / self.test_list)],
                                  dataset=self.name)
        images = folder / "image"
        train = self.read_list(folder / lists / "train_list.txt", images, "train")
        query, gallery = self.split_test(self.read_list(folder / lists / self.test_list, images, "test"))
        require_nonempty(query, folder / lists / self.test_list, split="query (vehicles with 2+ images)", dataset=self.name)
        super().__init__(train, query, gallery, root=folder)

    def read_list(self, path: Path, images: Path, split: str) -> list[Record]:
        records = []
        for lineno, line in read_lines(path, dataset=self.name, what=f"{split} list"):
            fields = line.split()
            try:
                imgid, vid = fields
                records.append((str(images / f"{imgid}.jpg"), int(vid), int(imgid)))
            except ValueError:
                raise DataError(f"{path}:{lineno}: expected 'imageid vehicleid' (two numbers), got {line!r}") from None
        require_nonempty(records, path, split=split, dataset=self.name)
        return records

    @staticmethod
    def split_test(records: list[Record]) -> tuple[list[Record], list[Record]]:
        """(query, gallery): one randomly drawn image per vehicle is the gallery, the others the queries."""
        order = list(range(len(records)))
        random.Random(GALLERY_SEED).shuffle(order)
        chosen: dict[int, int] = {}
        for i in order:
            chosen.setdefault(records[i][1], i)
        picked = set(chosen.values())
        gallery = [r for i, r in enumerate(records) if i in picked]
        query = [r for i, r in enumerate(records) if i not in picked]
        return query, gallery


class SmallVehicleID(VehicleID):
    """VehicleID with the small test set (`test_list_800.txt`: 800 vehicles)."""

    name = "SmallVehicleID"
    test_list = "test_list_800.txt"


class MediumVehicleID(VehicleID):
    """VehicleID with the medium test set (`test_list_1600.txt`: 1,600 vehicles)."""

    name = "MediumVehicleID"
    test_list = "test_list_1600.txt"


class LargeVehicleID(VehicleID):
    """VehicleID with the large test set (`test_list_2400.txt`: 2,400 vehicles)."""

    name = "LargeVehicleID"
    test_list = "test_list_2400.txt"
