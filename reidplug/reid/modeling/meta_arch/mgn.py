"""MGN, the Multiple Granularity Network (Wang et al. 2018), laid out as FastReID's meta_arch/mgn.py.

A ResNet trunk up to the first block of layer3, then three branches, each with its
own copy of the rest of layer3 and of layer4:

- b1: layer4 as built (LAST_STRIDE applies): one global feature;
- b2, b3: layer4 with stride 1, the map split into 2 and 3 horizontal stripes:
  a global feature and one per stripe.

Eight embedding heads (b1, b2, b21, b22, b3, b31, b32, b33) pool and classify them;
at test time the eight features are concatenated in FastReID's order.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from reidplug.core.errors import ConfigError
from reidplug.reid.modeling.backbones import build_backbone
from reidplug.reid.modeling.backbones.resnet import ResNet, set_stride
from reidplug.reid.modeling.heads import build_heads
from reidplug.reid.modeling.losses import check_loss_names, cross_entropy_loss, triplet_loss
from reidplug.reid.modeling.meta_arch.base import ReidModel

# Head names in the order of the test feature.
FEATURE_ORDER = ("b1_head", "b2_head", "b3_head", "b21_head", "b22_head", "b31_head", "b32_head", "b33_head")
# FastReID's weights of the part losses: each cross-entropy 1/8, each triplet 1/5.
CE_WEIGHT = 0.125
TRI_WEIGHT = 0.2
LOSSES = ("CrossEntropyLoss", "TripletLoss")


def split_resnet(backbone: nn.Module) -> tuple[nn.Sequential, nn.Sequential, nn.Sequential, nn.Sequential]:
    """(trunk, rest of layer3, layer4, layer4 at stride 1) of a ResNet."""
    if not isinstance(backbone, ResNet):
        raise ConfigError(f"MGN branches a ResNet; {type(backbone).__name__} is not one", key="MODEL.BACKBONE.NAME")
    if backbone.nl_after:
        # FastReID's MGN takes the stages one by one and so leaves its non-local blocks out.
        raise ConfigError("MGN's branches hold no non-local blocks (as FastReID's); set it false",
                          key="MODEL.BACKBONE.WITH_NL")
    if len(backbone.layer3) < 2:
        raise ConfigError("MGN needs a ResNet whose layer3 has at least 2 blocks", key="MODEL.BACKBONE.NAME")
    trunk = nn.Sequential(
        backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool,
        backbone.layer1, backbone.layer2, backbone.layer3[0],
    )
    rest_of_layer3 = nn.Sequential(*backbone.layer3[1:])
    part_layer4 = copy.deepcopy(backbone.layer4)
    # The part branches keep the full resolution (FastReID's res_p_conv5: the same weights at stride 1).
    set_stride(part_layer4[0], 1)
    return trunk, rest_of_layer3, backbone.layer4, part_layer4


def stripes(x: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    """`n` horizontal stripes of x as FastReID cuts them (torch.chunk: ceil(h/n) rows each, the last shorter)."""
    if x.shape[2] < n:
        raise ConfigError(
            f"MGN splits the feature map into {n} stripes, but it is {x.shape[2]} rows high; use larger images",
            key="INPUT.SIZE_TRAIN",
        )
    parts = torch.chunk(x, n, dim=2)
    if len(parts) != n:
        # torch.chunk gives fewer pieces for some heights (4 rows in 3: 2+2), where FastReID
        # fails; near-equal stripes (2+1+1) keep small inputs usable.
        parts = torch.tensor_split(x, n, dim=2)
    return parts


class MGN(ReidModel):
    """images in 0..255 [B, 3, H, W] -> training: the eight heads' outputs by name; eval: [B, 8 D]."""

    def __init__(self, backbone: nn.Module, make_head, *, pixel_mean, pixel_std, losses_cfg):
        super().__init__(pixel_mean=pixel_mean, pixel_std=pixel_std)
        check_loss_names(losses_cfg.NAME)
        others = [name for name in losses_cfg.NAME if name not in LOSSES]
        if others:
            raise ConfigError(f"MGN computes {' and '.join(LOSSES)} only, not {others[0]!r}", key="MODEL.LOSSES.NAME")
        self.losses_cfg = losses_cfg
        trunk, rest_of_layer3, layer4, part_layer4 = split_resnet(backbone)
        channels = backbone.out_channels
        # FastReID's attribute names (backbone, b1, b1_head, ...), so its state dicts load.
        self.backbone = trunk
        self.b1 = nn.Sequential(copy.deepcopy(rest_of_layer3), copy.deepcopy(layer4))
        self.b1_head = make_head(channels)
        self.b2 = nn.Sequential(copy.deepcopy(rest_of_layer3), copy.deepcopy(part_layer4))
        self.b2_head, self.b21_head, self.b22_head = make_head(channels), make_head(channels), make_head(channels)
        self.b3 = nn.Sequential(copy.deepcopy(rest_of_layer3), copy.deepcopy(part_layer4))
        self.b3_head, self.b31_head = make_head(channels), make_head(channels)
        self.b32_head, self.b33_head = make_head(channels), make_head(channels)

    @classmethod
    def from_config(cls, cfg, num_classes: int) -> "MGN":
        m = cfg.MODEL

        def make_head(channels: int):
            return build_heads(m.HEADS, channels, num_classes)

        return cls(build_backbone(cfg), make_head, pixel_mean=m.PIXEL_MEAN, pixel_std=m.PIXEL_STD,
                   losses_cfg=m.LOSSES)

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None):
        shared = self.backbone(self.normalise(images))
        b1 = self.b1(shared)
        b2 = self.b2(shared)
        b3 = self.b3(shared)
        b21, b22 = stripes(b2, 2)
        b31, b32, b33 = stripes(b3, 3)
        maps = {"b1_head": b1, "b2_head": b2, "b21_head": b21, "b22_head": b22,
                "b3_head": b3, "b31_head": b31, "b32_head": b32, "b33_head": b33}
        if not self.training:
            return torch.cat([getattr(self, name)(maps[name]) for name in FEATURE_ORDER], dim=1)
        return {name: getattr(self, name)(fmap, targets) for name, fmap in maps.items()}

    def losses(self, outputs: dict, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """FastReID's MGN losses: a cross-entropy per head (x 1/8), a triplet on b1, b2, b3 and on
        the concatenated stripes of b2 and of b3 (x 1/5)."""
        lcfg = self.losses_cfg
        losses: dict[str, torch.Tensor] = {}
        if "CrossEntropyLoss" in lcfg.NAME:
            ce = lcfg.CE
            for name in ("b1", "b2", "b21", "b22", "b3", "b31", "b32", "b33"):
                head = getattr(self, f"{name}_head")
                logits = head.classification_outputs(outputs[f"{name}_head"], targets)
                losses[f"loss_cls_{name}"] = cross_entropy_loss(logits, targets, ce.EPSILON, ce.ALPHA) * ce.SCALE * CE_WEIGHT
        if "TripletLoss" in lcfg.NAME:
            tri = lcfg.TRI

            def feats(*names: str) -> torch.Tensor:
                return torch.cat([outputs[f"{n}_head"]["features"] for n in names], dim=1)

            for key, value in (("b1", feats("b1")), ("b2", feats("b2")), ("b3", feats("b3")),
                               ("b22", feats("b21", "b22")), ("b33", feats("b31", "b32", "b33"))):
                loss = triplet_loss(value, targets, tri.MARGIN, tri.NORM_FEAT, tri.HARD_MINING)
                losses[f"loss_triplet_{key}"] = loss * tri.SCALE * TRI_WEIGHT
        return losses
