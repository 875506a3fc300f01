"""The torch Dataset over `(img_path, pid, camid)` records."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from reidplug.reid.data.images import read_image

Record = tuple[str, int, int]


def item_seed(seed: int, epoch: int, position: int) -> int:
    """The augmentation seed of the image at `position` of an epoch's stream."""
    return ((int(seed) * 1_000_003 + int(epoch)) * 10_000_019 + int(position)) & 0x7FFF_FFFF_FFFF_FFFF


class ImageDataset(torch.utils.data.Dataset):
    """Records -> `{"images": float [3, H, W] in 0..255, "targets": pid, "camids": camid}`.

    An index may come with its own augmentation seed, `(index, seed)`: the
    transform then draws from a torch generator seeded with it, so an image's
    augmentation depends on where it sits in the epoch and not on the worker
    count or on whatever else used torch's RNG.
    With `cache`, decoded images are kept as uint8 arrays (worth it on CPU,
    where JPEG decoding is a good part of the input cost).
    """

    def __init__(self, records: Sequence[Record], transform: Callable | None = None, *, cache: bool = False):
        self.records = list(records)
        self.transform = transform
        self.cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.records)

    def image(self, index: int) -> Image.Image:
        if self.cache is None:
            return read_image(self.records[index][0])
        array = self.cache.get(index)
        if array is None:
            array = self.cache[index] = np.asarray(read_image(self.records[index][0]))
        return Image.fromarray(array)

    def preload(self) -> None:
        """Decode every image into the cache now (before workers fork, so that they share it)."""
        if self.cache is not None:
            for i in range(len(self.records)):
                self.image(i)

    def __getitem__(self, key) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, None)
        _, pid, camid = self.records[index]
        img = self.image(index)
        if self.transform is not None:
            if seed is None:
                img = self.transform(img)
            else:
                # Only the CPU generator is forked and reseeded; the training RNG is left as it was.
                with torch.random.fork_rng(devices=[]):
                    torch.default_generator.manual_seed(seed)
                    img = self.transform(img)
        return {"images": img, "targets": pid, "camids": camid}
