"""Train and test transforms: shapes, the 0..255 range, each augmentation, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reidplug.core.config import load_config
from reidplug.reid.data.transforms import build_transforms

SIZE = ["INPUT.SIZE_TRAIN=[32,16]", "INPUT.SIZE_TEST=[32,16]"]
PLAIN = ["INPUT.FLIP.ENABLED=false", "INPUT.PADDING.ENABLED=false", "INPUT.REA.ENABLED=false"]


def cfg(*overrides):
    return load_config(None, [*SIZE, *overrides])


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    # left half dark, right half bright: flips and crops are visible
    a = rng.integers(0, 60, size=(48, 24, 3), dtype=np.uint8)
    a[:, 12:] += 180
    return Image.fromarray(a)


def test_test_transform_is_a_resized_float_tensor_in_0_255(image):
    t = build_transforms(cfg(), is_train=False)
    out = t(image)
    assert out.shape == (3, 32, 16) and out.dtype == torch.float32
    assert out.max() > 150 and out.min() >= 0 and out.max() <= 255, "not divided by 255"
    expected = torch.from_numpy(np.array(image.resize((16, 32), Image.BICUBIC))).permute(2, 0, 1).float()
    assert torch.equal(out, expected)
    assert torch.equal(t(image), out)


def test_train_size_differs_from_test_size(image):
    c = cfg("INPUT.SIZE_TRAIN=[40,20]")
    assert build_transforms(c, is_train=True)(image).shape == (3, 40, 20)
    assert build_transforms(c, is_train=False)(image).shape == (3, 32, 16)


def test_without_augmentation_train_equals_test(image):
    c = cfg(*PLAIN)
    assert torch.equal(build_transforms(c, is_train=True)(image), build_transforms(c, is_train=False)(image))


def test_flip(image):
    c = cfg(*PLAIN, "INPUT.FLIP.ENABLED=true", "INPUT.FLIP.PROB=1.0")
    flipped = build_transforms(c, is_train=True)(image)
    assert torch.equal(flipped, build_transforms(c, is_train=False)(image).flip(-1))


def test_pad_and_random_crop_shift_the_image(image):
    c = cfg(*PLAIN, "INPUT.PADDING.ENABLED=true", "INPUT.PADDING.SIZE=4")
    t = build_transforms(c, is_train=True)
    plain = build_transforms(c, is_train=False)(image)
    outs = [t(image) for _ in range(20)]
    assert all(o.shape == (3, 32, 16) for o in outs)
    assert any(not torch.equal(o, plain) for o in outs)
    assert any((o[:, 0, :] == 0).all() or (o[:, :, 0] == 0).all() for o in outs), "constant padding shows at a border"


def test_random_erasing_fills_with_the_configured_value(image):
    c = cfg(*PLAIN, "INPUT.REA.ENABLED=true", "INPUT.REA.PROB=1.0", "INPUT.REA.VALUE=[7.0,8.0,9.0]")
    torch.manual_seed(0)
    out = build_transforms(c, is_train=True)(image)
    erased = (out[0] == 7) & (out[1] == 8) & (out[2] == 9)
    assert erased.sum() > 0, "the erased box holds REA.VALUE, on the 0..255 scale"


def test_colour_jitter_and_autoaugment(image):
    plain = build_transforms(cfg(*PLAIN), is_train=False)(image)
    c = cfg(*PLAIN, "INPUT.CJ.ENABLED=true", "INPUT.CJ.PROB=1.0", "INPUT.CJ.BRIGHTNESS=0.5")
    torch.manual_seed(0)
    jittered = build_transforms(c, is_train=True)(image)
    assert jittered.shape == plain.shape and not torch.equal(jittered, plain)
    c = cfg(*PLAIN, "INPUT.AUTOAUG.ENABLED=true", "INPUT.AUTOAUG.PROB=1.0")
    t = build_transforms(c, is_train=True)
    torch.manual_seed(0)
    outs = [t(image) for _ in range(8)]
    assert all(o.shape == (3, 32, 16) and 0 <= o.min() and o.max() <= 255 for o in outs)
    assert any(not torch.equal(o, plain) for o in outs)


def test_default_train_pipeline_is_deterministic_given_torch_seed(image):
    t = build_transforms(cfg("INPUT.CJ.ENABLED=true", "INPUT.AUTOAUG.ENABLED=true", "INPUT.AUTOAUG.PROB=0.5"), is_train=True)

    def run(seed):
        torch.manual_seed(seed)
        return torch.stack([t(image) for _ in range(6)])

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.dtype == torch.float32 and a.min() >= 0 and a.max() <= 255
