"""DukeMTMC-reID: Market-1501's layout and naming with 8 cameras."""

from __future__ import annotations

from reidplug.reid.data.datasets.market1501 import Market1501


class DukeMTMC(Market1501):
    """DukeMTMC-reID in `root/DukeMTMC-reID/` (or `root` itself); names like `0001_c2_f0046182.jpg`."""

    name = "DukeMTMC"
    folders = ("DukeMTMC-reID",)
    num_cameras = 8
