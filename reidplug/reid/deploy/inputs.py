"""The images a deploy command reads (a folder, a glob pattern, a list file, one image) and the ids in their names."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

from reidplug.core.errors import DataError
from reidplug.reid.data.datasets.base import IMAGE_SUFFIXES
from reidplug.reid.data.datasets.market1501 import JUNK_PID, Market1501

GLOB_CHARS = "*?["


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def collect_images(source: str | os.PathLike, *, option: str = "--input") -> list[str]:
    """The image paths `source` names, in a stable order; nothing to read is a one-line DataError.

    - a folder: its image files (not its subfolders), sorted by name;
    - a pattern with * ? or [ ] (`**` reaches into subfolders): the matching image files, sorted;
    - an image file: itself;
    - any other file: a list, one path per line (relative to the list's folder;
      blank lines and lines starting with # skipped, anything after the path ignored).
    """
    text = os.path.expanduser(str(source))
    path = Path(text)
    kinds = ", ".join(IMAGE_SUFFIXES)
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.is_file() and is_image(p))
        if not files:
            raise DataError(f"{path}: no images ({kinds}) in this folder ({option})")
        return files
    if path.is_file():
        return [str(path)] if is_image(path) else _read_list(path, option)
    if any(c in text for c in GLOB_CHARS):
        files = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p) and is_image(p))
        if not files:
            raise DataError(f"{text}: no image file matches this pattern ({option})")
        return files
    raise DataError(f"{text}: no such file or folder ({option})")


def _read_list(path: Path, option: str) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read this list of images ({type(exc).__name__}) ({option})") from None
    files = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        item = Path(os.path.expanduser(fields[0]))
        item = item if item.is_absolute() else path.parent / item
        if not item.is_file():
            raise DataError(f"{path}: line {number}: no image at {item} ({option})")
        files.append(str(item))
    if not files:
        raise DataError(f"{path}: this list names no image ({option})")
    return files


def ids_from_names(paths) -> tuple[np.ndarray, np.ndarray] | None:
    """(pids, 0-based camids) when every file name follows Market-1501's `<pid>_c<cam>...`; else None."""
    pids, camids = [], []
    for p in paths:
        found = Market1501.pattern.match(Path(p).name)
        if found is None or int(found.group(2)) < 1:
            return None
        pids.append(int(found.group(1)))
        camids.append(int(found.group(2)) - 1)
    if not pids:
        return None
    return np.asarray(pids, dtype=np.int64), np.asarray(camids, dtype=np.int64)


def is_junk(pid: int) -> bool:
    """Market-1501's junk id: a false detection, left out of every ranking."""
    return pid == JUNK_PID
