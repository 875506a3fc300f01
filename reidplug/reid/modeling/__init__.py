"""Re-ID models: backbones, pooling, heads, losses and the Baseline meta-architecture."""

from __future__ import annotations

from reidplug.reid.modeling.baseline import Baseline
from reidplug.reid.modeling.build import build_model

__all__ = ["Baseline", "build_model"]
