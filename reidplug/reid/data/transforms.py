"""Image transforms from the INPUT section: PIL image in, float32 CHW tensor in 0..255 out.

The model normalises with MODEL.PIXEL_MEAN/STD itself (FastReID's convention),
so tensors are not divided by 255 here and the random-erasing fill value is on
the 0..255 scale. All randomness comes from torch's generator, so a seeded
torch RNG gives the same output.
"""

from __future__ import annotations

import torch
import torchvision.transforms as T
from PIL import Image


class ToFloatTensor:
    """PIL image -> float32 [3, H, W] tensor with values in 0..255."""

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return T.functional.pil_to_tensor(img).float()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def build_transforms(cfg, is_train: bool) -> T.Compose:
    """The train or test pipeline for `cfg.INPUT`."""
    inp = cfg.INPUT
    if not is_train:
        return T.Compose([T.Resize(tuple(inp.SIZE_TEST), interpolation=T.InterpolationMode.BICUBIC), ToFloatTensor()])
    size = tuple(inp.SIZE_TRAIN)
    steps: list = [T.Resize(size, interpolation=T.InterpolationMode.BICUBIC)]
    if inp.AUTOAUG.ENABLED and inp.AUTOAUG.PROB > 0:
        # torchvision's ImageNet policy: no download, and it acts on PIL images
        steps.append(T.RandomApply([T.AutoAugment(T.AutoAugmentPolicy.IMAGENET)], p=inp.AUTOAUG.PROB))
    if inp.FLIP.ENABLED and inp.FLIP.PROB > 0:
        steps.append(T.RandomHorizontalFlip(p=inp.FLIP.PROB))
    if inp.PADDING.ENABLED and inp.PADDING.SIZE > 0:
        steps += [T.Pad(inp.PADDING.SIZE, padding_mode=inp.PADDING.MODE), T.RandomCrop(size)]
    if inp.CJ.ENABLED and inp.CJ.PROB > 0:
        jitter = T.ColorJitter(inp.CJ.BRIGHTNESS, inp.CJ.CONTRAST, inp.CJ.SATURATION, inp.CJ.HUE)
        steps.append(T.RandomApply([jitter], p=inp.CJ.PROB))
    steps.append(ToFloatTensor())
    if inp.REA.ENABLED and inp.REA.PROB > 0:
        steps.append(T.RandomErasing(p=inp.REA.PROB, value=tuple(float(v) for v in inp.REA.VALUE)))
    return T.Compose(steps)
