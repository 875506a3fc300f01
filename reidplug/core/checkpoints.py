"""Checkpoint folders: written atomically with a manifest, verified before use.

A save goes into `<final>.tmp-<pid>` and is renamed into place once its manifest
is written; a process killed before that leaves only the staging folder, which
the experiment removes (on a worker's retry, and on resume).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from reidplug.core import faults

MANIFEST = "MANIFEST.json"


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def staging_dir(final: str | Path) -> Path:
    return Path(f"{final}.tmp-{os.getpid()}")


def finalize(staging: str | Path, final: str | Path) -> None:
    """Write the manifest (sizes and hashes), then move the folder into place."""
    staging, final = Path(staging), Path(final)
    files = {}
    for p in sorted(staging.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            files[str(p.relative_to(staging))] = {"size": p.stat().st_size, "blake2b": _digest(p)}
    with open(staging / MANIFEST, "w") as f:
        json.dump({"files": files}, f)
        f.flush()
        os.fsync(f.fileno())
    faults.point("checkpoint.staged")
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)


def verify(folder: str | Path) -> str | None:
    """None when the checkpoint is complete and intact, else what is wrong with it."""
    folder = Path(folder)
    if not folder.is_dir():
        return "missing"
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return "no readable manifest"
    for name, meta in manifest.get("files", {}).items():
        p = folder / name
        if not p.is_file():
            return f"{name} is missing"
        if p.stat().st_size != meta["size"]:
            return f"{name} is truncated ({p.stat().st_size} of {meta['size']} bytes)"
        if _digest(p) != meta["blake2b"]:
            return f"{name} is corrupt (hash mismatch)"
    return None


def link_copy(src: str | Path, dst: str | Path) -> None:
    """Copy a checkpoint folder, hard-linking files (they are never modified in place)."""
    src, dst = Path(src), Path(dst)
    staging = Path(f"{dst}.tmp-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)

    def _link(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, staging, copy_function=_link)
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(staging, dst)


def remove(folder: str | Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def disk_usage(folder: str | Path) -> int:
    """Bytes used under `folder`, counting hard-linked files once."""
    total, seen = 0, set()
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
