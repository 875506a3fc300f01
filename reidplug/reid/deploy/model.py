"""The trained model behind the deploy commands: the config, then MODEL.WEIGHTS loaded as `reidplug eval` loads it."""

from __future__ import annotations

import os

from reidplug.core.config import load_config, with_params


def deploy_config(config, overrides=(), *, weights: str | os.PathLike | None = None):
    """The config (file, mapping or Config) with `overrides` applied and MODEL.WEIGHTS set to `weights` if given."""
    overrides = list(overrides)
    if weights is not None:
        # A (key, value) pair, not "KEY=VALUE": a path is not parsed as YAML.
        overrides.append(("MODEL.WEIGHTS", os.fspath(weights)))
    return load_config(config, overrides)


def weights_file(cfg) -> str:
    """The checkpoint file MODEL.WEIGHTS names (a file or a training folder); needs no torch, so errors come at once."""
    from reidplug.reid.evaluate_checkpoint import find_weights

    return str(find_weights(cfg.MODEL.WEIGHTS))


def load_trained_model(cfg, device="cpu"):
    """(the model of cfg with the weights of MODEL.WEIGHTS in eval mode on `device`, the checkpoint file)."""
    weights_file(cfg)
    import torch

    from reidplug.reid.evaluate_checkpoint import load_model

    if cfg.MODEL.BACKBONE.PRETRAIN:
        # Every weight comes from the checkpoint: the ImageNet file need not be on this machine.
        cfg = with_params(cfg, {"MODEL.BACKBONE.PRETRAIN": False}, source="<deploy>")
    model, path = load_model(cfg, torch.device(device))
    return model, str(path)
