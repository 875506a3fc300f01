"""MSMT17 (V1 or V2), read through its list files."""

from __future__ import annotations

import os
from pathlib import Path

from reidplug.core.errors import DataError
from reidplug.reid.data.datasets.base import Record, ReIDDataset, require_nonempty

# version folder -> (train images, test images)
VERSIONS = {"MSMT17_V2": ("mask_train_v2", "mask_test_v2"), "MSMT17_V1": ("train", "test")}


class MSMT17(ReIDDataset):
    """MSMT17: `MSMT17_V1/` (`train/`, `test/`) or `MSMT17_V2/` (`mask_train_v2/`, `mask_test_v2/`).

    Each `list_{train,val,query,gallery}.txt` line is `relpath pid`; the camera
    is the third `_`-separated field of relpath, from 1. Query and gallery
    pids are offset by the number of train pids so that they never collide
    with training ids. `list_val.txt` (a held-out part of the training images)
    joins training only with `combineall` (DATASETS.COMBINEALL), as in
    FastReID: the published protocol trains on `list_train.txt` alone.
    """

    name = "MSMT17"
    num_cameras = 15

    def __init__(self, root: str | os.PathLike = "datasets", *, combineall: bool = False):
        folder, train_dir, test_dir = self.locate(Path(root).expanduser())
        train = self.read_list(folder / "list_train.txt", train_dir, "train")
        offset = len({pid for _, pid, _ in train})
        if combineall:
            train += self.read_list(folder / "list_val.txt", train_dir, "val")
        query = self.read_list(folder / "list_query.txt", test_dir, "query")
        gallery = self.read_list(folder / "list_gallery.txt", test_dir, "gallery")
        query = [(p, pid + offset, c) for p, pid, c in query]
        gallery = [(p, pid + offset, c) for p, pid, c in gallery]
        super().__init__(train, query, gallery, root=folder)

    @classmethod
    def from_config(cls, cfg, root: str) -> MSMT17:
        return cls(root, combineall=cfg.DATASETS.COMBINEALL)

    @classmethod
    def locate(cls, root: Path) -> tuple[Path, Path, Path]:
        """(version folder, train image folder, test image folder)."""
        tried = []
        for parent in (root, root / "MSMT17", root / "msmt17"):
            for folder in (*(parent / v for v in VERSIONS), parent):
                tried.append(str(folder))
                for train, test in VERSIONS.values():
                    if (folder / train).is_dir() and (folder / "list_train.txt").is_file():
                        return folder, folder / train, folder / test
        if not root.is_dir():
            raise DataError(f"{root}: no such folder (set DATASETS.ROOT or $REIDPLUG_DATASETS)")
        raise DataError(
            f"{root}: no MSMT17 found: none of {', '.join(dict.fromkeys(tried))} holds train/ or mask_train_v2/ "
            "with list_train.txt (DATASETS.ROOT)"
        )

    def read_list(self, path: Path, images: Path, split: str) -> list[Record]:
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            raise DataError(f"{path}: list file not found (MSMT17 {split} split)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read list file ({type(exc).__name__})") from None
        records = []
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rel, pid_text = line.split()
                pid = int(pid_text)
                cam = int(rel.split("_")[2]) - 1
            except (ValueError, IndexError):
                raise DataError(f"{path}:{lineno}: expected 'relpath pid' with a camera field in relpath, got {line.strip()!r}") from None
            if not 0 <= cam < self.num_cameras:
                raise DataError(f"{path}:{lineno}: camera {cam + 1} is outside 1..{self.num_cameras}")
            if pid < 0:
                raise DataError(f"{path}:{lineno}: person id {pid} is negative")
            records.append((str(images / rel), pid, cam))
        require_nonempty(records, path, split=split, dataset=self.name)
        return records
