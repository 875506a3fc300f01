"""Market-1501 (and every dataset that shares its file naming)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar

from reidplug.core.errors import DataError
from reidplug.reid.data.datasets.base import (
    Record,
    ReIDDataset,
    find_folder,
    list_images,
    require_nonempty,
)

JUNK_PID = -1
DISTRACTOR_PID = 0


class Market1501(ReIDDataset):
    """Market-1501: `bounding_box_train/`, `query/`, `bounding_box_test/` with names like `0002_c1s1_000451_03.jpg`.

    The folder is `root/Market-1501-v15.09.15/` (or `root/Market-1501/`), or
    `root` itself. Junk (pid -1) is dropped everywhere; distractors (pid 0) stay
    in the gallery only. Cameras 1..N become 0..N-1 (N = `num_cameras`, 6 by default).
    """

    name = "Market1501"
    folders: tuple[str, ...] = ("Market-1501-v15.09.15", "Market-1501")
    num_cameras = 6
    split_dirs: ClassVar[dict[str, str]] = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    pattern = re.compile(r"([-\d]+)_c(\d)")

    def __init__(self, root: str | os.PathLike = "datasets", *, num_cameras: int | None = None):
        if num_cameras is not None:
            self.num_cameras = num_cameras
        folder = find_folder(root, self.folders, self.split_dirs["train"], dataset=self.name)
        splits = {split: self.parse_split(folder / sub, split) for split, sub in self.split_dirs.items()}
        super().__init__(splits["train"], splits["query"], splits["gallery"], root=folder)

    def parse_name(self, path: Path) -> tuple[int, int]:
        """(pid, camid) from a file name; camid is 0-based."""
        found = self.pattern.match(path.name)
        try:
            pid, cam = int(found.group(1)), int(found.group(2))
        except (AttributeError, ValueError):
            raise DataError(f"{path}: file name does not match the {self.name} pattern {self.pattern.pattern!r}") from None
        if not 1 <= cam <= self.num_cameras:
            raise DataError(f"{path}: camera {cam} is outside 1..{self.num_cameras} of {self.name}")
        if pid < JUNK_PID:
            raise DataError(f"{path}: person id {pid} is negative (only -1, junk, is allowed)")
        return pid, cam - 1

    def parse_split(self, folder: Path, split: str) -> list[Record]:
        records = []
        for path in list_images(folder, split=split, dataset=self.name):
            pid, camid = self.parse_name(path)
            if pid == JUNK_PID or (pid == DISTRACTOR_PID and split != "gallery"):
                continue
            records.append((str(path), pid, camid))
        require_nonempty(records, folder, split=split, dataset=self.name)
        return records
