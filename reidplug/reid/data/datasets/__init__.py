"""Re-ID datasets, registered by name in `reidplug.plugins.datasets`."""

from reidplug.reid.data.datasets.base import Record, ReIDDataset
from reidplug.reid.data.datasets.dukemtmc import DukeMTMC
from reidplug.reid.data.datasets.market1501 import Market1501
from reidplug.reid.data.datasets.msmt17 import MSMT17
from reidplug.reid.data.datasets.plain import PlainFolder
from reidplug.reid.data.datasets.synthetic import SyntheticMarket

__all__ = ["MSMT17", "DukeMTMC", "Market1501", "PlainFolder", "ReIDDataset", "Record", "SyntheticMarket"]
