"""Backbones."""

from reidplug.core.hookspecs import hookimpl

_BACKBONES = "reidplug.reid.modeling.backbones"
_RESNET = f"{_BACKBONES}.resnet"


@hookimpl
def register_backbones(register):
    register(
        "build_resnet_backbone",
        f"{_RESNET}:build_resnet_backbone",
        description="FastReID's ResNet (MODEL.BACKBONE.DEPTH 18x/34x/50x/101x, WITH_IBN, WITH_NL)",
    )
    for depth in (18, 34, 50, 101):
        register(f"resnet{depth}", f"{_RESNET}:build_resnet{depth}", description=f"torchvision ResNet-{depth}")
    register("resnet_tiny", f"{_RESNET}:build_resnet_tiny", description="narrow ResNet for CPU runs and tests")
    register(
        "build_resnest_backbone",
        f"{_BACKBONES}.resnest:build_resnest_backbone",
        description="ResNeSt, split attention (MODEL.BACKBONE.DEPTH 50x/101x/200x/269x, WITH_IBN, WITH_NL)",
    )
    register(
        "build_vit_backbone",
        f"{_BACKBONES}.vit:build_vit_backbone",
        description="FastReID's ViT (DEPTH base/small, STRIDE_SIZE, DROP_PATH_RATIO, DROP_RATIO, ATT_DROP_RATE)",
    )
    register(
        "build_osnet_backbone",
        f"{_BACKBONES}.osnet:build_osnet_backbone",
        description="OSNet, omni-scale (MODEL.BACKBONE.DEPTH x1_0/x0_75/x0_5/x0_25, WITH_IBN)",
    )
