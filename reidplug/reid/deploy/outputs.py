"""Output paths of the deploy commands: checked before any work is done, written atomically."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from reidplug.core.errors import UserError


def check_writable(path: str | os.PathLike, *, option: str, folder: bool = False) -> Path:
    """`path` if it can be created (with its missing parent folders) or overwritten; else a one-line UserError.

    Nothing is created here, so that a later error (missing weights, no images)
    leaves no trace on disk.
    """
    path = Path(os.path.expanduser(str(path)))
    if path.exists() and path.is_dir() != folder:
        what = "a folder" if path.is_dir() else "a file"
        raise UserError(f"{path}: cannot write here: it is {what} ({option})")
    probe = path if path.exists() else path.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{path}: cannot write here: {probe} is a file, not a folder ({option})")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{path}: cannot write here: permission denied on {probe} ({option})")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, option: str) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` when the block succeeds, removed otherwise."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path}: cannot write here: {exc.strerror or exc} ({option})") from None
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
