"""Checkpoint retention: which checkpoint folders an experiment keeps, and removing the others safely.

Paths come from the journal, and a journal may come from someone else: every
path is resolved and used only when it stays inside the experiment's storage
folder, and symbolic links are never followed when folders are removed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from reidplug.core import checkpoints as ckpt

STAGING_MARK = ".tmp-"  # staging folders and temporary files: `<name>.tmp-<pid>`


def is_plain_name(name: str) -> bool:
    """A single path component: no separator, not '.' or '..', not absolute, nothing invisible."""
    if not name or name in (".", "..") or "\x00" in name or name != name.strip():
        return False
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return not any(s in name for s in seps) and not os.path.isabs(name)


def inside(root: Path, path: str | Path) -> Path | None:
    """`path` (relative to `root`, or absolute) resolved, if it lies within `root`; else None."""
    base = Path(os.path.realpath(root))
    target = Path(os.path.realpath(os.path.join(root, path)))
    if target == base or base in target.parents:
        return target
    return None


class Retention:
    """The live checkpoints of each trial (relative paths, oldest first) and what may go."""

    def __init__(self, storage: Path):
        self.storage = storage
        self.live: dict[int, list[str]] = {}
        self.owner: dict[str, int] = {}
        self._last_needed: set[str] | None = None  # None: the next pruning visits every trial

    def path(self, rel: str) -> Path | None:
        """The checkpoint folder `rel` names, or None when it would leave the storage folder."""
        return inside(self.storage, rel)

    def track(self, tid: int, rel: str) -> None:
        self.live.setdefault(tid, []).append(rel)
        self.owner[rel] = tid

    def forget(self, tid: int, rel: str) -> None:
        paths = self.live.get(tid)
        if paths and rel in paths:
            paths.remove(rel)
            if not paths:
                del self.live[tid]
        self.owner.pop(rel, None)

    def doomed(self, tid: int, trials: dict, needed: set[str], keep_last: int, active: tuple) -> list[tuple[int, str]]:
        """Checkpoints that nothing needs any more, after an event of trial `tid`.

        What an event can make deletable: the checkpoints of its own trial, and those that
        were needed before it and are not now (a former best's, an unpinned donor's).
        Visiting every trial instead made each result cost as much as the paused trials.
        """
        if not self.live:
            return []
        if self._last_needed is None:
            visit = set(self.live)
        else:
            visit = {tid} | {self.owner[rel] for rel in self._last_needed - needed if rel in self.owner}
        self._last_needed = needed
        out = []
        for other_id in sorted(visit):
            paths = self.live.get(other_id)
            other = trials.get(other_id)
            if not paths or other is None:
                continue
            is_active = other.status in active
            keep = set(paths[-keep_last:]) if is_active else set()
            if is_active and other.checkpoint:
                keep.add(other.checkpoint)
            out += [(other_id, rel) for rel in paths if rel not in keep and rel not in needed]
        return out

    def remove(self, rel: str) -> None:
        """Delete a checkpoint folder; a path outside the storage folder is left alone."""
        target = self.path(rel)
        if target is not None and target != Path(os.path.realpath(self.storage)):
            ckpt.remove(target)

    def leftovers(self, trial_names: Iterable[str], keep: set[Path]) -> list[Path]:
        """Folders under `<trial>/checkpoints/` that the journal does not list as kept.

        They are what a killed process left: a staging folder of an interrupted save,
        a checkpoint saved for a result that never committed, one whose deletion was
        committed but not carried out. `keep` holds resolved paths.
        """
        out = []
        for name in trial_names:
            folder = self.storage / name / "checkpoints"
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
                    continue
                target = self.path(os.path.join(name, "checkpoints", entry.name))
                if target is not None and target not in keep:
                    out.append(target)
        return out


def staging_leftovers(folder: Path) -> list[Path]:
    """Staging folders (`*.tmp-<pid>`) directly in `folder`, symbolic links excepted."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return [Path(e.path) for e in entries if STAGING_MARK in e.name and not e.is_symlink()
            and e.is_dir(follow_symlinks=False)]


def temporary_files(folder: Path) -> list[Path]:
    """Files a killed atomic write left in `folder` (`.<name>.tmp-<pid>`)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return [Path(e.path) for e in entries if e.name.startswith(".") and STAGING_MARK in e.name
            and e.is_file(follow_symlinks=False)]
