"""Meta-architectures: how backbone, heads and losses make one Re-ID model (MODEL.META_ARCHITECTURE)."""

from __future__ import annotations

from reidplug.reid.modeling.meta_arch.base import ReidModel
from reidplug.reid.modeling.meta_arch.baseline import Baseline
from reidplug.reid.modeling.meta_arch.mgn import MGN

META_ARCHITECTURES: dict[str, type[ReidModel]] = {"Baseline": Baseline, "MGN": MGN}

__all__ = ["META_ARCHITECTURES", "MGN", "Baseline", "ReidModel"]
