"""Re-ID datasets."""

from reidplug.core.hookspecs import hookimpl


@hookimpl
def register_datasets(register):
    register("Market1501", "reidplug.reid.data.datasets.market1501:Market1501", aliases=("market1501", "market"))
    register("DukeMTMC", "reidplug.reid.data.datasets.dukemtmc:DukeMTMC", aliases=("dukemtmc", "duke", "DukeMTMC-reID"))
    register("MSMT17", "reidplug.reid.data.datasets.msmt17:MSMT17", aliases=("msmt17",))
    register("PlainFolder", "reidplug.reid.data.datasets.plain:PlainFolder", aliases=("plain", "folder"))
    register(
        "SyntheticMarket",
        "reidplug.reid.data.datasets.synthetic:SyntheticMarket",
        aliases=("synthetic",),
        description="generated offline on first use, in Market-1501 layout",
    )
