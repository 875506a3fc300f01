"""Checks a search runs before it writes anything: TUNE values and the folders it will write to."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from reidplug.core.errors import ConfigError
from reidplug.core.retention import is_plain_name

# More trials than a journal can sensibly hold; beyond it a search would just run until killed.
MAX_TRIALS = 10_000_000


def check_tune(tune, origin: Callable[[str], str | None]) -> None:
    """Bounds that the schema's types cannot say."""
    if tune.SEED < 0:
        raise ConfigError(f"must not be negative, got {tune.SEED}", file=origin("TUNE.SEED"), key="TUNE.SEED")
    if tune.NUM_TRIALS > MAX_TRIALS:
        raise ConfigError(
            f"at most {MAX_TRIALS:,} trials, got {tune.NUM_TRIALS:,}; bound a long search by time with "
            "TUNE.TIME_BUDGET_S instead", file=origin("TUNE.NUM_TRIALS"), key="TUNE.NUM_TRIALS",
        )


def check_name(name: str, origin: str | None) -> None:
    """TUNE.NAME is one folder inside OUTPUT_DIR, never a path that leads elsewhere."""
    if not is_plain_name(name):
        raise ConfigError(
            f"{name!r} is not a plain folder name (no '/', no '..', not absolute); "
            "the experiment folder is always OUTPUT_DIR/<TUNE.NAME>", file=origin, key="TUNE.NAME",
        )


def check_writable_folder(path: Path, key: str, origin: str | None) -> None:
    """`path` is a folder, or can be made one: its nearest existing ancestor is a writable folder."""
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{str(path)!r} is a file, not a folder", file=origin, key=key)
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot write into {str(path)!r} (permission denied)", file=origin, key=key)
        return
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot create {str(path)!r}: {str(parent)!r} is a file", file=origin, key=key)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create {str(path)!r}: {str(parent)!r} is not writable", file=origin, key=key)
