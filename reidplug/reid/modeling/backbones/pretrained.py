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

log = logging.getLogger(__name__)

KEY = "MODEL.BACKBONE.PRETRAIN_PATH"


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a plain state dict, or one under "model" or "state_dict"."""
    if not path:
        raise ConfigError("empty while MODEL.BACKBONE.PRETRAIN is true; name a local weights file", key=KEY)
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"no such file: {path}", key=KEY)
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


def backbone_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip data-parallel and whole-model prefixes, keep backbone keys, drop the ImageNet classifier."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):
        # A checkpoint of a whole Re-ID model: its heads belong to other classes.
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def load_pretrained(model: nn.Module, path: str) -> None:
    """Copy matching weights of `path` into `model`, logging what did not match."""
    state = backbone_keys(read_state_dict(path))
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    usable = {k: v for k, v in state.items() if k in own and k not in mismatched}
    if not usable:
        raise CheckpointError(f"{KEY}: no weight of {path} fits the backbone (wrong architecture?)")
    result = model.load_state_dict(usable, strict=False)
    unexpected = sorted(k for k in state if k not in own)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    log.info(
        "loaded %d of %d backbone tensors from %s; missing: %s; unexpected: %s; shape mismatch: %s",
        len(usable), len(own), path, summary(missing), summary(unexpected), summary(mismatched),
    )


def summary(keys: list[str], limit: int = 8) -> str:
    if not keys:
        return "none"
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more
