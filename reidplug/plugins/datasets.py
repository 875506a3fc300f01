"""Re-ID datasets."""

from reidplug.core.hookspecs import hookimpl


@hookimpl
def register_datasets(register):
    register("Market1501", "reidplug.reid.data.datasets.market1501:Market1501", aliases=("market1501", "market"))
    register("DukeMTMC", "reidplug.reid.data.datasets.dukemtmc:DukeMTMC", aliases=("dukemtmc", "duke", "DukeMTMC-reID"))
    register("MSMT17", "reidplug.reid.data.datasets.msmt17:MSMT17", aliases=("msmt17",))
    register("VeRi", "reidplug.reid.data.datasets.veri:VeRi", aliases=("VeRi-776",))
    vehicleid = "reidplug.reid.data.datasets.vehicleid"
    register("VehicleID", f"{vehicleid}:VehicleID",
             description="tests on test_list_13164.txt; Small/Medium/LargeVehicleID on the 800/1600/2400 lists")
    register("SmallVehicleID", f"{vehicleid}:SmallVehicleID", description="VehicleID, test_list_800.txt")
    register("MediumVehicleID", f"{vehicleid}:MediumVehicleID", description="VehicleID, test_list_1600.txt")
    register("LargeVehicleID", f"{vehicleid}:LargeVehicleID", description="VehicleID, test_list_2400.txt")
    veriwild = "reidplug.reid.data.datasets.veriwild"
    register("VeRiWild", f"{veriwild}:VeRiWild", aliases=("VERI-Wild", "VeRi-Wild"),
             description="tests on the 10000-vehicle lists; Small/Medium/LargeVeRiWild on 3000/5000/10000")
    register("SmallVeRiWild", f"{veriwild}:SmallVeRiWild", description="VeRi-Wild, test_3000 lists")
    register("MediumVeRiWild", f"{veriwild}:MediumVeRiWild", description="VeRi-Wild, test_5000 lists")
    register("LargeVeRiWild", f"{veriwild}:LargeVeRiWild", description="VeRi-Wild, test_10000 lists")
    register("PlainFolder", "reidplug.reid.data.datasets.plain:PlainFolder", aliases=("plain", "folder"))
    register(
        "SyntheticMarket",
        "reidplug.reid.data.datasets.synthetic:SyntheticMarket",
        aliases=("synthetic",),
        description="generated offline on first use, in Market-1501 layout",
    )
