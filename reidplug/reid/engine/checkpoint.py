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


# ---------------------------------------------------------------- model weights from a file

# Parameter names of reidplug's models before they took FastReID's layout, and FastReID's
# names for them: checkpoints written then still load.
LEGACY_NAMES = (
    ("heads.pool.", "heads.pool_layer."),
    ("heads.bnneck.", "heads.bottleneck.0."),
    ("heads.classifier.weight", "heads.weight"),
    ("backbone.nl_layer2.", "backbone.NL_2."),
    ("backbone.nl_layer3.", "backbone.NL_3."),
)


def model_weights(state, source: str) -> dict[str, torch.Tensor]:
    """The model tensors of a loaded file: FastReID's and reidplug's {"model": state_dict}, or a bare state dict."""
    weights = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not weights or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{source} holds no model weights")
    # Saved from a (Distributed)DataParallel wrapper, as FastReID's multi-GPU runs may be.
    if all(k.startswith("module.") for k in weights):
        weights = {k.removeprefix("module."): v for k, v in weights.items()}
    return weights


def classes_in(weights: dict[str, torch.Tensor]) -> int:
    """The number of classes of the classifier in `weights` (FastReID's heads.weight, MGN's b1_head.weight,
    reidplug's former heads.classifier.weight); 0 when there is none."""
    for name, tensor in weights.items():
        if tensor.dim() == 2 and (name.endswith(("heads.weight", "_head.weight")) or name.endswith("classifier.weight")):
            return int(tensor.shape[0])
    return 0


def classifier_keys(model: torch.nn.Module) -> list[str]:
    """State-dict keys of the class centres of `model`'s heads."""
    return [k for k in model.state_dict() if k.endswith(("heads.weight", "_head.weight"))]


def _rename_legacy(weights: dict[str, torch.Tensor], own: dict) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, value in weights.items():
        if key not in own:
            for old, new in LEGACY_NAMES:
                if key.startswith(old) and key.replace(old, new, 1) in own:
                    key = key.replace(old, new, 1)
                    break
        renamed[key] = value
    return renamed


def _first(keys: list[str], limit: int = 3) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _shape(t) -> str:
    return "x".join(str(d) for d in t.shape) or "scalar"


def fit_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], *, source: str,
                may_miss: tuple[str, ...] = ()) -> None:
    """Load `weights` into `model` with every key accounted for, or raise one CheckpointError line that
    names the first missing, unexpected and mis-shaped keys. Keys in `may_miss` may be absent."""
    own = model.state_dict()
    weights = _rename_legacy(weights, own)
    missing = [k for k in own if k not in weights and k not in may_miss]
    unexpected = [k for k in weights if k not in own]
    misshaped = [f"{k} (file {_shape(v)}, model {_shape(own[k])})"
                 for k, v in weights.items() if k in own and own[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected {_first(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped {_first(misshaped)}")
        if any(".NL_" in k for k in misshaped):
            problems.append("non-local blocks of another width: see MODEL.BACKBONE.NL_REDUCTION (2 for C/2)")
    if problems:
        raise CheckpointError(f"{source} does not fit the model of MODEL.*: {'; '.join(problems)}")
    model.load_state_dict(weights, strict=not may_miss)


def initial_model(cfg, num_classes: int) -> torch.nn.Module:
    """The model a training run starts from: build_model(cfg), with MODEL.WEIGHTS's weights when set.

    As FastReID's train_net, MODEL.WEIGHTS gives the model weights only (not the optimizer
    or the schedule); a classifier for another number of classes is left at its initial
    values. The weights replace ImageNet's, so MODEL.BACKBONE.PRETRAIN is not read then.
    """
    from reidplug.core.config import with_params
    from reidplug.reid.evaluate_checkpoint import find_weights
    from reidplug.reid.modeling.build import build_model

    if not cfg.MODEL.WEIGHTS:
        return build_model(cfg, num_classes)
    path = find_weights(cfg.MODEL.WEIGHTS)
    source = f"MODEL.WEIGHTS: {path}"
    weights = model_weights(load_file(path, key="MODEL.WEIGHTS"), source)
    if cfg.MODEL.BACKBONE.PRETRAIN:
        cfg = with_params(cfg, {"MODEL.BACKBONE.PRETRAIN": False}, source="<MODEL.WEIGHTS>")
    model = build_model(cfg, num_classes)
    weights = _rename_legacy(weights, model.state_dict())
    own = model.state_dict()
    dropped = tuple(k for k in classifier_keys(model) if k in weights and weights[k].shape != own[k].shape)
    fit_weights(model, {k: v for k, v in weights.items() if k not in dropped}, source=source, may_miss=dropped)
    return model
