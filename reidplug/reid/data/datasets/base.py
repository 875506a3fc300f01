"""The dataset base class: train, query and gallery records, and their summary."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from reidplug.core.errors import DataError
from reidplug.reid.data.images import read_image

Record = tuple[str, int, int]  # (image path, person id, camera id)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SPLITS = ("train", "query", "gallery")


class ReIDDataset:
    """Train, query and gallery lists of `(img_path, pid, camid)`.

    Subclasses parse a folder in `__init__` and hand the three lists to
    `ReIDDataset.__init__`. A dataset that needs settings from the config
    (beyond its root folder) defines a classmethod `from_config(cfg, root)`.
    """

    name = "dataset"

    def __init__(self, train: list[Record], query: list[Record], gallery: list[Record], *, root: str | os.PathLike = ""):
        self.train = list(train)
        self.query = list(query)
        self.gallery = list(gallery)
        self.root = str(root)

    @classmethod
    def from_config(cls, cfg, root: str) -> ReIDDataset:
        return cls(root)

    def split(self, name: str) -> list[Record]:
        return {"train": self.train, "query": self.query, "gallery": self.gallery}[name]

    def stats(self, name: str) -> tuple[int, int, int]:
        """(identities, images, cameras) of one split."""
        records = self.split(name)
        return len({r[1] for r in records}), len(records), len({r[2] for r in records})

    def summary(self) -> str:
        """A plain-text table per split: identities, images, cameras (reads well in logs too)."""
        head = ("split", "identities", "images", "cameras")
        rows = [(s, *map(str, self.stats(s))) for s in SPLITS]
        widths = [max(len(r[i]) for r in (head, *rows)) for i in range(4)]

        def line(cells):
            return "  " + " | ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells))

        rule = "  " + "-+-".join("-" * w for w in widths)
        title = f"{self.name}" + (f" ({self.root})" if self.root else "")
        return "\n".join([title, line(head), rule, *map(line, rows)])

    def show_summary(self, write: Callable[[str], None] = print) -> None:
        write(self.summary())

    def verify(self) -> int:
        """Open and decode every image of every split; a broken one is a DataError. Returns the count."""
        seen = set()
        for name in SPLITS:
            for path, _, _ in self.split(name):
                if path not in seen:
                    read_image(path)
                    seen.add(path)
        return len(seen)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={self.root!r}, train={len(self.train)}, query={len(self.query)}, gallery={len(self.gallery)})"


def find_folder(root: str | os.PathLike, candidates: Iterable[str], marker: str, *, dataset: str) -> Path:
    """The first of `root/<candidate>` (or `root` itself) that holds `marker`; else a DataError naming them."""
    root = Path(root).expanduser()
    tried = []
    for sub in (*candidates, ""):
        folder = root / sub if sub else root
        tried.append(str(folder))
        if (folder / marker).is_dir():
            return folder
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (set DATASETS.ROOT or $REIDPLUG_DATASETS)")
    raise DataError(f"{root}: no {dataset} found: none of {', '.join(tried)} holds a {marker}/ folder (DATASETS.ROOT)")


def list_images(folder: Path, *, split: str, dataset: str) -> list[Path]:
    """The image files of one split folder, sorted; a missing or empty folder is a DataError."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder ({dataset} {split} split)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{folder}: no images in the {split} split of {dataset}")
    return files


def require_nonempty(records: list[Record], where: str | os.PathLike, *, split: str, dataset: str) -> None:
    if not records:
        raise DataError(f"{where}: the {split} split of {dataset} holds no usable image (all junk?)")
