"""Running a block in fp32 even inside an autocast region."""

from __future__ import annotations

import contextlib

import torch


def full_precision(like: torch.Tensor) -> contextlib.AbstractContextManager:
    """A context that switches autocast off for the device type of `like`."""
    device_type = like.device.type
    if device_type not in ("cpu", "cuda", "xpu", "mps", "hpu", "xla"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)
