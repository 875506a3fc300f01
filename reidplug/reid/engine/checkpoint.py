"""Training checkpoints: written atomically, loaded with weights_only=True."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from reidplug.core.errors import CheckpointError

LAST = "last_checkpoint"
FINAL = "model_final.pth"  # FastReID's name for the weights a finished training leaves


def rng_state() -> dict:
    """Every RNG a training run draws from, in a form torch.load(weights_only=True) accepts."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_file(obj: dict, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_file(path: str | Path, *, key: str | None = None) -> dict:
    """Load a checkpoint file; a missing, truncated or foreign file is a one-line error naming it."""
    path = Path(path)
    where = f"{key}: " if key else ""
    if not path.is_file():
        raise CheckpointError(f"{where}no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, wrong format, unsafe pickle: all mean "not usable"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first.split(". ")[0]  # torch appends paragraphs of advice
        raise CheckpointError(f"{where}{path} is not a readable checkpoint (truncated or corrupt?): {first}") from None


class Checkpointer:
    """model_XXXX.pth files in a folder: the last `keep` of them, model_best.pth and, once the
    training has finished, model_final.pth."""

    def __init__(self, folder: str | Path, keep: int = 2, metric: str = "score"):
        self.folder = Path(folder)
        self.keep = max(keep, 1)
        self.metric = metric
        self.best: float | None = None

    def save(self, training, name: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{name}.pth"
        save_file(training.state_dict(), path)
        (self.folder / f".{LAST}.tmp").write_text(path.name)
        os.replace(self.folder / f".{LAST}.tmp", self.folder / LAST)
        score = (training.last_eval or {}).get(self.metric)
        if score is not None and (self.best is None or score > self.best):
            self.best = score
            save_file(training.state_dict(), self.folder / "model_best.pth")
        saved = sorted(self.folder.glob("model_[0-9]*.pth"))
        for old in saved[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def last(self) -> Path | None:
        marker = self.folder / LAST
        if marker.is_file():
            path = self.folder / marker.read_text().strip()
            if path.is_file():
                return path
        saved = sorted(self.folder.glob("model_[0-9]*.pth"))
        return saved[-1] if saved else None

    def finalize(self) -> Path | None:
        """Make model_final.pth the last checkpoint; returns it (None when nothing was saved)."""
        last = self.last()
        if last is None:
            return None
        final = self.folder / FINAL
        if final.exists() and os.path.samefile(final, last):
            return final  # rename() onto the same file would do nothing and leave the temporary name
        tmp = self.folder / f".{FINAL}.tmp-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        try:
            # A second name for the same file: no second copy of the weights on disk, and it
            # stays whole when the keep-last policy later removes model_XXXX.pth.
            os.link(last, tmp)
        except OSError:
            shutil.copyfile(last, tmp)
        os.replace(tmp, final)
        return final
