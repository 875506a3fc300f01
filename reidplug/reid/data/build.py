"""Datasets and data loaders from a config."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from reidplug.core.errors import ConfigError, DataError
from reidplug.core.manager import registry
from reidplug.core.processes import die_with_parent
from reidplug.reid.data.datasets.base import Record, ReIDDataset
from reidplug.reid.data.image_dataset import ImageDataset, item_seed
from reidplug.reid.data.samplers import EpochSampler, build_sampler, check_rank_split
from reidplug.reid.data.transforms import build_transforms

DATASETS_ENV = "REIDPLUG_DATASETS"


def dataset_root(cfg) -> str:
    """DATASETS.ROOT, else $REIDPLUG_DATASETS, else ./datasets."""
    return os.path.expanduser(cfg.DATASETS.ROOT or os.environ.get(DATASETS_ENV) or "datasets")


def build_dataset(cfg, name: str, *, config_key: str = "DATASETS.NAMES") -> ReIDDataset:
    """The dataset registered as `name`, read from the dataset root."""
    factory = registry("dataset").get(name, config_key=config_key)
    root = dataset_root(cfg)
    if getattr(factory, "needs_root", True) and not os.path.isdir(root):
        origins = getattr(cfg, "origins", None)
        where = origins.of("DATASETS.ROOT") if origins is not None and cfg.DATASETS.ROOT else None
        how = "DATASETS.ROOT" if cfg.DATASETS.ROOT else f"${DATASETS_ENV} or DATASETS.ROOT"
        raise ConfigError(f"no such folder: {root} (set {how} to the folder holding {name})", file=where,
                          key="DATASETS.ROOT")
    from_config = getattr(factory, "from_config", None)
    return from_config(cfg, root) if from_config is not None else factory(root)


@dataclass
class TrainSet:
    """Training records with contiguous labels over all DATASETS.NAMES."""

    records: list[Record]
    num_classes: int
    num_cameras: int
    datasets: list[ReIDDataset] = field(default_factory=list)


def build_train_set(cfg) -> TrainSet:
    """Every training dataset's records, ids relabelled to 0..C-1 and offset across datasets (cameras too).

    With DATASETS.COMBINEALL, query and gallery identities (distractors aside)
    join the training set as identities of their own.
    """
    records: list[Record] = []
    datasets = []
    pid_offset = cam_offset = 0
    for name in cfg.DATASETS.NAMES:
        dataset = build_dataset(cfg, name)
        datasets.append(dataset)
        items = [(path, "train", pid, cam) for path, pid, cam in dataset.train]
        if cfg.DATASETS.COMBINEALL:
            items += [(path, "test", pid, cam) for path, pid, cam in dataset.query + dataset.gallery if pid > 0]
        labels = {key: i for i, key in enumerate(sorted({(group, pid) for _, group, pid, _ in items}))}
        cameras = {cam: i for i, cam in enumerate(sorted({cam for *_, cam in items}))}
        records += [(path, pid_offset + labels[group, pid], cam_offset + cameras[cam]) for path, group, pid, cam in items]
        pid_offset += len(labels)
        cam_offset += len(cameras)
    return TrainSet(records, pid_offset, cam_offset, datasets)


class EpochBatchSampler:
    """Batches of `(index, augmentation seed)` for the epoch set by `set_epoch`.

    An epoch is `epoch_length` batches, by default `images // batch_size` as in
    FastReID, drawn from the sampler's passes for that epoch one after another.
    The length is the same for every epoch (a PK pass is not: it depends on the
    draw), so schedules and progress bars can count on it.
    """

    def __init__(self, sampler: EpochSampler, batch_size: int, *, seed: int, epoch_length: int | None = None,
                 rank: int = 0, world_size: int = 1):
        if epoch_length is not None and epoch_length <= 0:
            raise ValueError(f"epoch_length must be positive, got {epoch_length}")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        # Data parallel: every rank draws the same global batch and keeps its share, so the
        # processes together see (and augment) exactly what one process with the global batch would.
        self.rank, self.world_size = int(rank), int(world_size)
        self.local_batch_size = check_rank_split(sampler, self.batch_size, self.world_size)
        self.epoch_length = epoch_length if epoch_length is not None else sampler.num_samples // self.batch_size
        if self.epoch_length <= 0:
            raise ConfigError(f"{batch_size} is more than the {sampler.num_samples} training images", key="SOLVER.IMS_PER_BATCH")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.sampler.set_epoch(self.epoch)

    def __len__(self) -> int:
        return self.epoch_length

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return self._batches(self.epoch)

    def _batches(self, epoch: int) -> Iterator[list[tuple[int, int]]]:
        stream = self._stream(epoch)
        lo = self.rank * self.local_batch_size
        hi = lo + self.local_batch_size
        for b in range(self.epoch_length):
            start = b * self.batch_size
            batch = [next(stream) for _ in range(self.batch_size)]
            yield [(batch[j], item_seed(self.seed, epoch, start + j)) for j in range(lo, hi)]

    def _stream(self, epoch: int) -> Iterator[int]:
        part = 0
        while True:
            indices = self.sampler.pass_indices(epoch, part)
            if not indices:
                raise DataError("the training sampler produced no index (training set too small for one batch)")
            yield from indices
            part += 1


def _clean_worker_error(exc: DataError) -> DataError:
    """A DataError raised in a loader worker, back to its one line (torch wraps it in a traceback)."""
    text = str(exc)
    if "Original Traceback" not in text:
        return exc
    last = text.rstrip().splitlines()[-1]
    _, sep, message = last.partition(": ")
    return type(exc)(message if sep else last)


class ReIDLoader(DataLoader):
    """A DataLoader whose data errors stay one line, whichever process raised them."""

    def __iter__(self):
        return self._one_line_errors(super().__iter__())

    @staticmethod
    def _one_line_errors(batches):
        try:
            yield from batches
        except DataError as exc:
            raise _clean_worker_error(exc) from None


class TrainLoader(ReIDLoader):
    """The training loader: each iteration yields one epoch (a fixed number of batches) and moves on to the next.

    `set_epoch(e)` chooses the epoch of the next iteration; a resumed run calls
    it with the epoch it resumes at and then sees exactly the batches (and
    augmentations) of an uninterrupted run.
    """

    def __iter__(self):
        batches = super().__iter__()
        # The DataLoader has drawn this epoch's batch order by now (a worker pool
        # draws it twice on its first epoch), so the next one may be set.
        self.batch_sampler.set_epoch(self.batch_sampler.epoch + 1)
        return batches

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        """The epoch the next iteration yields."""
        return self.batch_sampler.epoch


def _loader_worker_init(worker_id: int) -> None:
    # A loader worker must not outlive the process it feeds (a trial killed with its experiment).
    die_with_parent()


def _loader_options(cfg, dataset: ImageDataset) -> dict:
    workers = cfg.DATALOADER.NUM_WORKERS
    if dataset.cache is not None and workers > 0:
        dataset.preload()  # decoded once here; forked workers share the pages
    return {
        "num_workers": workers,
        "pin_memory": torch.cuda.is_available() and cfg.MODEL.DEVICE != "cpu",
        "worker_init_fn": _loader_worker_init if workers > 0 else None,
        # Fork, torch's default on Linux, named here because a spawned trial worker inherits
        # "spawn" as its default, and each spawned loader worker imports torch anew (~2 s apiece).
        "multiprocessing_context": "fork" if workers > 0 and sys.platform.startswith("linux") else None,
    }


def build_train_loader(cfg, *, seed: int, epoch_length: int | None = None, rank: int = 0,
                       world_size: int = 1) -> TrainLoader:
    """PK-sampled (DATALOADER.SAMPLER_TRAIN), augmented training batches of `{"images", "targets", "camids"}`.

    An epoch is `epoch_length` batches, by default training images // SOLVER.IMS_PER_BATCH.
    With `world_size` > 1, each batch is rank `rank`'s share of the global SOLVER.IMS_PER_BATCH.

    The loader also carries `num_classes`, `num_cameras` and `train_set`.
    """
    train_set = build_train_set(cfg)
    dataset = ImageDataset(train_set.records, build_transforms(cfg, is_train=True), cache=cfg.DATALOADER.CACHE_IMAGES)
    pids = [pid for _, pid, _ in train_set.records]
    camids = [cam for _, _, cam in train_set.records]
    batch_size = cfg.SOLVER.IMS_PER_BATCH
    sampler = build_sampler(
        cfg.DATALOADER.SAMPLER_TRAIN, pids, camids, batch_size=batch_size, num_instances=cfg.DATALOADER.NUM_INSTANCE, seed=seed
    )
    batches = EpochBatchSampler(sampler, batch_size, seed=seed, epoch_length=epoch_length, rank=rank,
                                world_size=world_size)
    options = _loader_options(cfg, dataset)
    loader = TrainLoader(dataset, batch_sampler=batches, persistent_workers=options["num_workers"] > 0, **options)
    loader.num_classes = train_set.num_classes
    loader.num_cameras = train_set.num_cameras
    loader.train_set = train_set
    return loader


def build_test_loader(cfg, dataset_name: str, *, rank: int = 0, world_size: int = 1) -> tuple[ReIDLoader, int]:
    """(loader over query then gallery, number of query images); pids and cameras as the dataset has them.

    With `world_size` > 1 the loader holds rank `rank`'s contiguous share of the images;
    the shares in rank order are the whole list.
    """
    dataset = build_dataset(cfg, dataset_name, config_key="DATASETS.TESTS")
    items = dataset.query + dataset.gallery
    if world_size > 1:
        items = items[len(items) * rank // world_size:len(items) * (rank + 1) // world_size]
    data = ImageDataset(items, build_transforms(cfg, is_train=False), cache=cfg.DATALOADER.CACHE_IMAGES)
    loader = ReIDLoader(data, batch_size=cfg.TEST.IMS_PER_BATCH, shuffle=False, drop_last=False, **_loader_options(cfg, data))
    loader.reid_dataset = dataset
    return loader, len(dataset.query)
