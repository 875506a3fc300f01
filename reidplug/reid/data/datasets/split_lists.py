"""Helpers for datasets whose splits are given by list files (VehicleID, VeRi-Wild) rather than by folders."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from reidplug.core.errors import DataError


def find_list_folder(root: str | os.PathLike, candidates: Iterable[str], required: Iterable[str], *,
                     dataset: str) -> Path:
    """The first of `root/<candidate>` (or `root`) holding every `required` path.

    A folder that holds some of them is taken to be the dataset, and the error
    names it with the first thing it lacks: that is the message a user with a
    half-copied download needs, rather than a list of every folder tried.
    """
    root = Path(root).expanduser()
    required = list(required)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (set DATASETS.ROOT or $REIDPLUG_DATASETS)")
    folders = [root / sub for sub in candidates] + [root]
    for folder in folders:
        if all((folder / rel).exists() for rel in required):
            return folder
    for folder in folders:
        present = [rel for rel in required if (folder / rel).exists()]
        if present:
            missing = next(rel for rel in required if rel not in present)
            raise DataError(f"{folder}: not a complete {dataset} folder: {missing} is missing")
    tried = ", ".join(str(f) for f in folders)
    raise DataError(f"{root}: no {dataset} found: none of {tried} holds {' and '.join(required[:2])} (DATASETS.ROOT)")


def read_lines(path: Path, *, dataset: str, what: str) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) of the non-blank lines of a list file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(f"{path}: list file not found ({dataset} {what})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read list file ({type(exc).__name__})") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield lineno, line.strip()
