"""VeRi-Wild and its small, medium and large test sets."""

from __future__ import annotations

import os
from pathlib import Path

from reidplug.core.errors import DataError
from reidplug.reid.data.datasets.base import Record, ReIDDataset, require_nonempty
from reidplug.reid.data.datasets.split_lists import find_list_folder, read_lines

LISTS = Path("train_test_split")


class VeRiWild(ReIDDataset):
    """VeRi-Wild: `images/<vid>/<imgid>.jpg` and `train_test_split/` lists of `vid/imgid` lines.

    The folder is `root/VERI-Wild/` (FastReID's name; `VeRi-Wild/` and
    `veriwild/` are found too), or `root` itself. The cameras come from
    `train_test_split/vehicle_info.txt`, whose first line is a header and whose
    other lines are `vid/imgid;camera;time;model;type;color`. The query and
    gallery are `test_<N>_query.txt` and `test_<N>.txt`; plain `VeRiWild` tests
    on the largest (N = 10000), as FastReID does.
    """

    name = "VeRiWild"
    folders: tuple[str, ...] = ("VERI-Wild", "VeRi-Wild", "veriwild")
    test_size = 10000

    def __init__(self, root: str | os.PathLike = "datasets"):
        query_list, gallery_list = LISTS / f"test_{self.test_size}_query.txt", LISTS / f"test_{self.test_size}.txt"
        required = ["images", LISTS / "train_list.txt", LISTS / "vehicle_info.txt", query_list, gallery_list]
        folder = find_list_folder(root, self.folders, [str(p) for p in required], dataset=self.name)
        cameras = self.read_cameras(folder / LISTS / "vehicle_info.txt")
        images = folder / "images"
        train = self.read_list(folder / LISTS / "train_list.txt", images, cameras, "train")
        query = self.read_list(folder / query_list, images, cameras, "query")
        gallery = self.read_list(folder / gallery_list, images, cameras, "gallery")
        super().__init__(train, query, gallery, root=folder)

    def read_cameras(self, path: Path) -> dict[str, int]:
        """Image id -> camera id (as written: VeRi-Wild numbers its cameras from 1, evaluation only compares them)."""
        cameras = {}
        for lineno, line in read_lines(path, dataset=self.name, what="vehicle info"):
            if lineno == 1:
                continue  # the header
            try:
                name, camera = line.split(";")[:2]
                imgid = name.split("/")[1]
                cameras[imgid] = int(camera)
            except (ValueError, IndexError):
                raise DataError(f"{path}:{lineno}: expected 'vid/imgid;camera;...', got {line!r}") from None
        if not cameras:
            raise DataError(f"{path}: no image listed (a header line, then one 'vid/imgid;camera;...' line per image)")
        return cameras

    def read_list(self, path: Path, images: Path, cameras: dict[str, int], split: str) -> list[Record]:
        records = []
        for lineno, line in read_lines(path, dataset=self.name, what=f"{split} list"):
            try:
                vid, imgid = line.split("/")
                pid = int(vid)
            except ValueError:
                raise DataError(f"{path}:{lineno}: expected 'vehicleid/imageid', got {line!r}") from None
            if imgid not in cameras:
                raise DataError(f"{path}:{lineno}: image {imgid} has no line in vehicle_info.txt (its camera is unknown)")
            records.append((str(images / vid / f"{imgid}.jpg"), pid, cameras[imgid]))
        require_nonempty(records, path, split=split, dataset=self.name)
        return records


class SmallVeRiWild(VeRiWild):
    """VeRi-Wild with the small test set (`test_3000_query.txt`, `test_3000.txt`: 3,000 vehicles)."""

    name = "SmallVeRiWild"
    test_size = 3000


class MediumVeRiWild(VeRiWild):
    """VeRi-Wild with the medium test set (`test_5000_query.txt`, `test_5000.txt`: 5,000 vehicles)."""

    name = "MediumVeRiWild"
    test_size = 5000


class LargeVeRiWild(VeRiWild):
    """VeRi-Wild with the large test set (`test_10000_query.txt`, `test_10000.txt`: 10,000 vehicles)."""

    name = "LargeVeRiWild"
    test_size = 10000
