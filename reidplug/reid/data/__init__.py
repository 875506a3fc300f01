"""Re-ID data: datasets, the synthetic generator, samplers, transforms and loaders.

The names below are imported on first use, so that reading a dataset folder
or generating the synthetic set does not pay for importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "build_dataset": "build",
    "build_train_set": "build",
    "build_train_loader": "build",
    "build_test_loader": "build",
    "dataset_root": "build",
    "TrainSet": "build",
    "ImageDataset": "image_dataset",
    "read_image": "images",
    "build_transforms": "transforms",
    "NaiveIdentitySampler": "samplers",
    "BalancedIdentitySampler": "samplers",
    "TrainingSampler": "samplers",
    "generate": "synthetic",
}

__all__ = [
    "BalancedIdentitySampler",
    "ImageDataset",
    "NaiveIdentitySampler",
    "TrainSet",
    "TrainingSampler",
    "build_dataset",
    "build_test_loader",
    "build_train_loader",
    "build_train_set",
    "build_transforms",
    "dataset_root",
    "generate",
    "read_image",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
