"""Backbones."""

from reidplug.core.hookspecs import hookimpl

_RESNET = "reidplug.reid.modeling.backbones.resnet"


@hookimpl
def register_backbones(register):
    for depth in (18, 34, 50, 101):
        register(f"resnet{depth}", f"{_RESNET}:build_resnet{depth}", description=f"torchvision ResNet-{depth}")
    register("resnet_tiny", f"{_RESNET}:build_resnet_tiny", description="narrow ResNet for CPU runs and tests")
