"""Features of person images from a trained model: `FeatureExtractor` and `reidplug extract`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from reidplug.core.errors import UserError
from reidplug.reid.data.images import read_image
from reidplug.reid.deploy.inputs import collect_images, ids_from_names
from reidplug.reid.deploy.model import deploy_config, load_trained_model, weights_file
from reidplug.reid.deploy.outputs import atomic_path, check_writable


def to_pil(item: Any) -> Image.Image:
    """An RGB PIL image from a path, a PIL image or a uint8 array (H x W, or H x W x 1, 3 or 4, RGB order)."""
    if isinstance(item, (str, os.PathLike)):
        return read_image(os.fspath(item))
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8:
            raise TypeError(f"image arrays must be uint8 (0..255), got {item.dtype}")
        if item.ndim == 3 and item.shape[2] == 1:
            item = item[:, :, 0]
        if item.ndim == 2 or (item.ndim == 3 and item.shape[2] in (3, 4)):
            return Image.fromarray(item).convert("RGB")
        raise TypeError(f"an image array must be H x W or H x W x 1/3/4, got shape {item.shape}")
    raise TypeError(f"expected an image path, a PIL image or a uint8 array, got {type(item).__name__}")


class ImageItems:
    """Images in any form `to_pil` reads, as a map-style dataset yielding the evaluation loader's items."""

    def __init__(self, items: Sequence, transform):
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        # ids are not needed to compute features; the evaluation loader's batch layout is kept.
        return {"images": self.transform(to_pil(self.items[index])), "targets": -1, "camids": -1}


def _as_items(images) -> list:
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, np.ndarray) and images.ndim in (2, 3):
        return [images]
    return list(images)


class FeatureExtractor:
    """A trained model that turns person images into Re-ID features.

        extractor = FeatureExtractor("configs/synthetic/quick.yml", "logs/synthetic/quick/model_best.pth")
        feats = extractor(["a.jpg", "b.jpg"])      # torch.float32 [2, D], on the CPU

    Inputs: an image path, a PIL image or a uint8 array (H x W x 3, RGB), or a
    sequence (or N x H x W x 3 array) of them. Each goes through the config's
    test-time preprocessing (resize to INPUT.SIZE_TEST); the features are the
    model's test features (after the BNNeck), averaged with those of the mirrored
    image when TEST.FLIP.ENABLED (or `flip`) is on: what `reidplug eval` computes.
    `weights` is a checkpoint file or a training folder (MODEL.WEIGHTS otherwise);
    `device` defaults to MODEL.DEVICE.
    """

    def __init__(self, config, weights: str | os.PathLike | None = None, device=None,
                 *, overrides: Sequence = (), batch_size: int | None = None, flip: bool | None = None,
                 num_workers: int | None = None, progress: bool = False):
        self.cfg = deploy_config(config, overrides, weights=weights)
        weights_file(self.cfg)  # before torch is imported, so that a wrong path is reported at once
        from reidplug.reid.data.transforms import build_transforms
        from reidplug.reid.engine.training import resolve_device

        self.device = resolve_device(str(device) if device is not None else self.cfg.MODEL.DEVICE)
        self.model, self.weights = load_trained_model(self.cfg, self.device)
        self.transform = build_transforms(self.cfg, is_train=False)
        self.batch_size = int(batch_size if batch_size is not None else self.cfg.TEST.IMS_PER_BATCH)
        if self.batch_size < 1:
            raise UserError(f"--batch-size: must be at least 1, got {self.batch_size}")
        self.flip = self.cfg.TEST.FLIP.ENABLED if flip is None else bool(flip)
        self.num_workers = self.cfg.DATALOADER.NUM_WORKERS if num_workers is None else int(num_workers)
        self.progress = progress

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) that images are resized to."""
        return tuple(self.cfg.INPUT.SIZE_TEST)

    def __call__(self, images):
        """Features [N, D] (a float32 torch tensor on the CPU) of one image or a sequence of images, in their order."""
        import torch

        from reidplug.core import progress
        from reidplug.reid.evaluation.evaluator import extract_features

        items = _as_items(images)
        if not items:
            raise ValueError("no images to extract features from")
        # Worker processes pay off for files to decode, not for images already in memory.
        on_disk = all(isinstance(i, (str, os.PathLike)) for i in items)
        workers = self.num_workers if on_disk and len(items) > self.batch_size else 0
        loader = torch.utils.data.DataLoader(ImageItems(items, self.transform), batch_size=self.batch_size,
                                             shuffle=False, num_workers=workers)
        if not self.progress:
            return extract_features(self.model, loader, self.device, self.flip)[0]
        with progress.stages() as report:
            return extract_features(self.model, loader, self.device, self.flip, progress=report)[0]


def write_npz(path: Path, arrays: dict[str, np.ndarray], *, option: str = "--output") -> None:
    """Write `arrays` to the .npz file `path` (exactly that name) atomically."""
    with atomic_path(path, option=option) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())


def extract_to_file(config, overrides: Sequence, source, output, *, batch_size: int | None = None,
                    flip: bool | None = None, progress: bool = True) -> dict:
    """`reidplug extract`: features of the images `source` names, written to the .npz file `output`.

    The file holds `features` (N x D float32) and `paths` (N), plus `pids` and
    `camids` (0-based) when every file name follows Market-1501's pattern.
    Inputs, output and weights are all checked before any image is read.
    """
    cfg = deploy_config(config, overrides)
    paths = collect_images(source, option="--input")
    out = check_writable(output, option="--output")
    extractor = FeatureExtractor(cfg, batch_size=batch_size, flip=flip, progress=progress)
    feats = extractor(paths).numpy().astype(np.float32, copy=False)
    arrays = {"features": feats, "paths": np.asarray(paths, dtype=str)}
    ids = ids_from_names(paths)
    if ids is not None:
        arrays["pids"], arrays["camids"] = ids
    write_npz(out, arrays)
    return {"output": str(out), "images": len(paths), "dim": int(feats.shape[1]), "ids": ids is not None,
            "weights": extractor.weights, "flip": extractor.flip, "device": str(extractor.device)}
