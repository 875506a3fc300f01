"""VeRi-776: vehicles from 20 cameras, in Market-1501's three-folder layout with its own file naming."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from reidplug.core.errors import DataError
from reidplug.reid.data.datasets.base import Record, list_images, require_nonempty
from reidplug.reid.data.datasets.market1501 import Market1501


class VeRi(Market1501):
    """VeRi: `image_train/`, `image_query/`, `image_test/` with names like `0001_c001_00016450_0.jpg`.

    The folder is `root/veri/` (FastReID's name; `VeRi/` and `VeRi_with_plate/`
    are found too), or `root` itself. Vehicle ids start at 1: VeRi has neither
    junk nor distractors, so an id below 1 is an error rather than silently
    dropped. Cameras `c001..c020` become 0..19.
    """

    name = "VeRi"
    folders = ("veri", "VeRi", "VeRi_with_plate")
    num_cameras = 20
    split_dirs: ClassVar[dict[str, str]] = {"train": "image_train", "query": "image_query", "gallery": "image_test"}
    pattern = re.compile(r"(\d+)_c(\d{3})")

    def parse_split(self, folder: Path, split: str) -> list[Record]:
        records = []
        for path in list_images(folder, split=split, dataset=self.name):
            pid, camid = self.parse_name(path)
            if pid < 1:
                raise DataError(f"{path}: vehicle id {pid} is below 1 ({self.name} ids start at 0001)")
            records.append((str(path), pid, camid))
        require_nonempty(records, folder, split=split, dataset=self.name)
        return records
