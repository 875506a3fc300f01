"""Re-ID models: backbones, pooling, heads, losses and the meta-architectures (Baseline, MGN)."""

from __future__ import annotations

from reidplug.reid.modeling.build import build_model
from reidplug.reid.modeling.meta_arch import MGN, Baseline

__all__ = ["MGN", "Baseline", "build_model"]
