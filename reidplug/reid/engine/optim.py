"""The optimizer, with FastReID's per-parameter learning-rate and weight-decay factors."""

from __future__ import annotations

import torch
from torch import nn

from reidplug.core.errors import ConfigError

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def _kind(module: nn.Module, param_name: str) -> str:
    if isinstance(module, _NORMS):
        return "norm"
    return "bias" if param_name == "bias" else "weight"


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """SOLVER.OPT over parameter groups keyed by (lr factor, weight-decay kind)."""
    s = cfg.SOLVER
    heads_prefix = "heads."
    groups: dict[tuple[float, str], list] = {}
    for mod_name, module in model.named_modules():
        # Every parameter goes in, frozen ones too: layers frozen for the first
        # FREEZE_ITERS iterations train later, and a parameter without gradient is skipped.
        for p_name, param in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            kind = _kind(module, p_name)
            mult = s.HEADS_LR_FACTOR if full.startswith(heads_prefix) else 1.0
            if kind == "bias":
                mult *= s.BIAS_LR_FACTOR
            groups.setdefault((mult, kind), []).append(param)
    params = [
        {"params": ps, "lr": s.BASE_LR * mult, "lr_mult": mult, "wd_kind": kind, "weight_decay": weight_decay(s, kind)}
        for (mult, kind), ps in groups.items()
    ]
    name = s.OPT.lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=s.BASE_LR)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=s.BASE_LR)
    if name == "sgd":
        return torch.optim.SGD(params, lr=s.BASE_LR, momentum=s.MOMENTUM, nesterov=s.NESTEROV)
    raise ConfigError(f"unknown optimizer {s.OPT!r}; known: Adam, AdamW, SGD", key="SOLVER.OPT")


def weight_decay(solver, kind: str) -> float:
    return {"norm": solver.WEIGHT_DECAY_NORM, "bias": solver.WEIGHT_DECAY_BIAS}.get(kind, solver.WEIGHT_DECAY)


def apply_hyperparameters(cfg, optimizer: torch.optim.Optimizer) -> None:
    """Make the optimizer follow the config's weight decay and momentum (after loading a checkpoint
    taken under other values, e.g. a PBT exploit with mutated hyperparameters)."""
    s = cfg.SOLVER
    for group in optimizer.param_groups:
        group["weight_decay"] = weight_decay(s, group.get("wd_kind", "weight"))
        if "momentum" in group and s.OPT.lower() == "sgd":
            group["momentum"] = s.MOMENTUM
