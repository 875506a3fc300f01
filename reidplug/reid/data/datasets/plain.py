"""Your own data: one folder per identity, the camera at the start of each file name."""

from __future__ import annotations

import os
import re
from pathlib import Path

from reidplug.core.errors import DataError
from reidplug.reid.data.datasets.base import (
    IMAGE_SUFFIXES,
    Record,
    ReIDDataset,
    require_nonempty,
)

SPLIT_GROUPS = {"train": "train", "query": "test", "gallery": "test"}


def natural_key(text: str):
    """Sort "2" before "10" and numbers before words."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]


class PlainFolder(ReIDDataset):
    """`root/{train,query,gallery}/<identity>/<camera>_<anything>.{jpg,jpeg,png,bmp}`.

    Identity folder names and camera names are free text. Identities are
    numbered in natural order, separately for train and for query+gallery (the
    same folder name in query and gallery is the same person; in train it is a
    different one). Cameras are numbered in natural order over all splits.
    """

    name = "PlainFolder"

    def __init__(self, root: str | os.PathLike = "datasets"):
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataError(f"{root}: no such folder (set DATASETS.ROOT to the folder holding train/, query/, gallery/)")
        found = {split: self.scan(root / split, split) for split in SPLIT_GROUPS}
        cameras = sorted({cam for items in found.values() for _, _, cam in items}, key=natural_key)
        cam_ids = {c: i for i, c in enumerate(cameras)}
        splits: dict[str, list[Record]] = {}
        for group in ("train", "test"):
            names = sorted({n for s, g in SPLIT_GROUPS.items() if g == group for _, n, _ in found[s]}, key=natural_key)
            pid_of = {n: i for i, n in enumerate(names)}
            for split, g in SPLIT_GROUPS.items():
                if g == group:
                    splits[split] = [(str(p), pid_of[n], cam_ids[c]) for p, n, c in found[split]]
        super().__init__(splits["train"], splits["query"], splits["gallery"], root=root)

    def scan(self, folder: Path, split: str) -> list[tuple[Path, str, str]]:
        """(path, identity name, camera name) of every image under `folder`."""
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder ({self.name} needs train/, query/ and gallery/)")
        items = []
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_file():
                if entry.suffix.lower() in IMAGE_SUFFIXES:
                    raise DataError(f"{entry}: images belong in one folder per identity ({folder}/<identity>/<camera>_*.jpg)")
                continue
            for path in sorted(entry.iterdir()):
                if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
                    continue
                camera, sep, rest = path.stem.partition("_")
                if not sep or not camera or not rest:
                    raise DataError(f"{path}: file name must be <camera>_<anything>{path.suffix} ({self.name})")
                items.append((path, entry.name, camera))
        require_nonempty(items, folder, split=split, dataset=self.name)
        return items
