"""Loading backbone weights from a local file (reidplug never downloads weights)."""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from reidplug.core.errors import CheckpointError, ConfigError
from reidplug.reid.modeling.backbones.non_local import NonLocal

log = logging.getLogger(__name__)

KEY = "MODEL.BACKBONE.PRETRAIN_PATH"


def weights_file(path: str) -> Path:
    """The local weights file MODEL.BACKBONE.PRETRAIN_PATH names; a ConfigError when there is none."""
    if not path:
        raise ConfigError("empty while MODEL.BACKBONE.PRETRAIN is true; name a local weights file", key=KEY)
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"no such file: {path} (MODEL.BACKBONE.PRETRAIN=False starts from random weights)", key=KEY)
    return file


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a plain state dict, or one under "model" or "state_dict"."""
    file = weights_file(path)
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{KEY}: cannot load {path}: {reason}") from None
    for wrapper in ("model", "state_dict"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
            break
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{KEY}: {path} holds a {type(loaded).__name__}, not a state dict")
    return {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}


# Classifiers of the published ImageNet layouts: torchvision and ResNeSt `fc`, torchreid `fc`
# (its embedding) and `classifier`, timm `head` (and DeiT's `head_dist`, `pre_logits`, `fc_norm`).
CLASSIFIER_PREFIXES = ("fc.", "classifier.", "head.", "head_dist.", "pre_logits.", "fc_norm.")


def backbone_keys(state: dict[str, torch.Tensor], own: Mapping[str, torch.Tensor] = ()) -> dict[str, torch.Tensor]:
    """Strip data-parallel and whole-model prefixes, keep backbone keys, drop the ImageNet classifier
    (a prefix the backbone itself uses is kept)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):
        # A checkpoint of a whole Re-ID model: its heads belong to other classes.
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    dropped = tuple(p for p in CLASSIFIER_PREFIXES if not any(k.startswith(p) for k in own))
    return {k: v for k, v in state.items() if not k.startswith(dropped)}


def added_modules(model: nn.Module) -> tuple[str, ...]:
    """Prefixes of modules that Re-ID adds to an ImageNet network (non-local blocks): ImageNet files lack them."""
    return tuple(f"{name}." for name, m in model.named_modules() if isinstance(m, NonLocal))


def load_pretrained(model: nn.Module, path: str) -> None:
    """Copy the weights of `path` into `model`, or refuse a file of another architecture in one line.

    A backbone may define `adapt_pretrained(state) -> state` to turn its original
    repository's layout into its own (e.g. resize a position grid). Missing keys of
    added modules are expected; other missing or unexpected keys are logged, as long
    as most of the backbone loads. A tensor of the wrong shape, or a file that leaves
    most of the backbone unset, is refused.
    """
    own = model.state_dict()
    state = backbone_keys(read_state_dict(path), own)
    adapt = getattr(model, "adapt_pretrained", None)
    if callable(adapt):
        state = adapt(state)
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    usable = {k: v for k, v in state.items() if k in own and k not in mismatched}
    optional = added_modules(model)
    unexpected = sorted(k for k in state if k not in own)
    expected = [k for k in own if not k.endswith("num_batches_tracked") and not k.startswith(optional)]
    missing = [k for k in expected if k not in usable and k not in mismatched]
    if not usable:
        detail = misfit(state, own, mismatched, missing, unexpected)
        raise CheckpointError(f"{KEY}: no weight of {path} fits the backbone (wrong architecture?): {detail}")
    if mismatched or len(missing) * 2 > len(expected):
        detail = misfit(state, own, mismatched, missing, unexpected)
        raise CheckpointError(f"{KEY}: {path} does not fit the backbone: {detail}")
    model.load_state_dict(usable, strict=False)
    log.info(
        "loaded %d of %d backbone tensors from %s; missing: %s; unexpected: %s",
        len(usable), len(own), path, summary(missing), summary(unexpected),
    )


def misfit(state, own, mismatched: list[str], missing: list[str], unexpected: list[str], limit: int = 3) -> str:
    """The first wrong-shaped, missing and unexpected keys, in one line."""
    parts = []
    if mismatched:
        shapes = [f"{k} (file {list(state[k].shape)}, model {list(own[k].shape)})" for k in mismatched[:limit]]
        more = ", ..." if len(mismatched) > limit else ""
        parts.append(f"{len(mismatched)} of the wrong shape: " + ", ".join(shapes) + more)
    if missing:
        parts.append(f"{len(missing)} missing: {summary(missing, limit)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: {summary(unexpected, limit)}")
    return "; ".join(parts)


def summary(keys: list[str], limit: int = 8) -> str:
    if not keys:
        return "none"
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more
