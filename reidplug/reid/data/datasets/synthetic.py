"""The synthetic dataset, generated on first use into a cache folder and read as Market-1501."""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from reidplug.reid.data import synthetic
from reidplug.reid.data.datasets.market1501 import Market1501

CACHE_ENV = "REIDPLUG_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """DATASETS.SYNTH.CACHE_DIR, else $REIDPLUG_CACHE, else ~/.cache/reidplug."""
    chosen = cache_dir or os.environ.get(CACHE_ENV) or "~/.cache/reidplug"
    return Path(chosen).expanduser()


class SyntheticMarket(Market1501):
    """Procedurally drawn pedestrians in Market-1501 layout, generated once per parameter set.

    `root` is not used: the images live in `<cache>/synthetic/<params>/`, where
    the folder name holds the generator parameters and version.
    """

    name = "SyntheticMarket"
    folders = ()
    needs_root = False  # lives in the cache folder

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        ids: int = 120,
        cams: int = 6,
        seed: int = 0,
        height: int = 128,
        width: int = 64,
        cache_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ):
        synthetic.check_params(ids=ids, cams=cams, height=height, width=width)
        base = cache_root(cache_dir) / "synthetic"
        folder = base / synthetic.params_key(ids=ids, cams=cams, seed=seed, height=height, width=width)
        if synthetic.read_meta(folder) is None:
            base.mkdir(parents=True, exist_ok=True)
            # Concurrent trials wait for one generator rather than all drawing the same images.
            with open(base / f".{folder.name}.lock", "w") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if progress:
                        print(f"waiting for another process to finish generating {folder}", file=sys.stderr, flush=True)
                    fcntl.flock(lock, fcntl.LOCK_EX)
                synthetic.generate(folder, ids=ids, cams=cams, seed=seed, height=height, width=width, progress=progress)
        super().__init__(folder, num_cameras=cams)

    @classmethod
    def from_config(cls, cfg, root: str) -> SyntheticMarket:
        s = cfg.DATASETS.SYNTH
        return cls(root, ids=s.IDS, cams=s.CAMS, seed=s.SEED, height=s.HEIGHT, width=s.WIDTH, cache_dir=s.CACHE_DIR or None)
