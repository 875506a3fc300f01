"""Training samplers: P identities x K instances per batch (FastReID semantics), or plain shuffling.

Every sampler's order is a function of (seed, epoch) only: `set_epoch(e)` on a
fresh sampler replays epoch e exactly, which is what makes a resumed or
exploited training run see the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np

from reidplug.core.errors import ConfigError, DataError


def pass_rng(seed: int, epoch: int, part: int = 0) -> np.random.Generator:
    """The random stream of one pass; `part` numbers the extra passes of a long epoch."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(part)])


class EpochSampler:
    """Base: an index order per (seed, epoch, part); `__iter__` yields the current epoch's first pass."""

    num_samples: int  # the size of the dataset sampled from

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.epoch = 0
        self._lengths: dict[tuple[int, int], int] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def pass_indices(self, epoch: int, part: int = 0) -> list[int]:
        raise NotImplementedError

    def pass_length(self, epoch: int, part: int = 0) -> int:
        key = (epoch, part)
        if key not in self._lengths:
            self._lengths[key] = len(self.pass_indices(epoch, part))
        return self._lengths[key]

    def __iter__(self) -> Iterator[int]:
        return iter(self.pass_indices(self.epoch))

    def __len__(self) -> int:
        """The number of indices in one pass of the current epoch."""
        return self.pass_length(self.epoch)


class TrainingSampler(EpochSampler):
    """Every index once per pass, in a shuffled order."""

    def __init__(self, size: int, seed: int = 0):
        super().__init__(seed)
        if size <= 0:
            raise DataError("the training set is empty")
        self.size = self.num_samples = int(size)

    def pass_indices(self, epoch: int, part: int = 0) -> list[int]:
        return pass_rng(self.seed, epoch, part).permutation(self.size).tolist()

    def pass_length(self, epoch: int, part: int = 0) -> int:
        return self.size


class NaiveIdentitySampler(EpochSampler):
    """P identities x K instances per batch.

    Per pass: while at least P identities remain, draw P of them without
    replacement and take the next K of each one's shuffled indices (an
    identity with fewer than K images is upsampled with replacement). An
    identity leaves the pool once fewer than K of its indices remain, so an
    image is used at most once per pass apart from that upsampling.
    """

    def __init__(self, pids: Sequence[int], batch_size: int, num_instances: int, seed: int = 0):
        super().__init__(seed)
        if num_instances <= 0:
            raise ConfigError(f"must be positive, got {num_instances}", key="DATALOADER.NUM_INSTANCE")
        if batch_size <= 0 or batch_size % num_instances:
            raise ConfigError(
                f"{batch_size} is not a positive multiple of DATALOADER.NUM_INSTANCE={num_instances}",
                key="SOLVER.IMS_PER_BATCH",
            )
        self.batch_size = int(batch_size)
        self.num_instances = int(num_instances)
        self.num_pids_per_batch = self.batch_size // self.num_instances
        index = defaultdict(list)
        for i, pid in enumerate(pids):
            index[int(pid)].append(i)
        self.pid_index = dict(index)
        self.num_samples = len(pids)
        self.pids = sorted(self.pid_index)
        if len(self.pids) < self.num_pids_per_batch:
            raise ConfigError(
                f"a batch of {self.batch_size} with {self.num_instances} instances needs "
                f"{self.num_pids_per_batch} identities, the training set has {len(self.pids)}",
                key="SOLVER.IMS_PER_BATCH",
            )

    def start(self, rng: np.random.Generator) -> dict[int, list[int]]:
        """Each identity's indices for one pass, shuffled; upsampled to K where fewer."""
        pool = {}
        for pid in self.pids:
            idxs = self.pid_index[pid]
            if len(idxs) < self.num_instances:
                pool[pid] = rng.choice(idxs, size=self.num_instances, replace=True).tolist()
            else:
                pool[pid] = rng.permutation(idxs).tolist()
        return pool

    def take(self, pid: int, remaining: list[int], rng: np.random.Generator) -> list[int]:
        """The next K indices of `pid`, removed from `remaining`."""
        taken = remaining[: self.num_instances]
        del remaining[: self.num_instances]
        return taken

    def pass_indices(self, epoch: int, part: int = 0) -> list[int]:
        rng = pass_rng(self.seed, epoch, part)
        pool = self.start(rng)
        available = list(self.pids)
        out: list[int] = []
        while len(available) >= self.num_pids_per_batch:
            chosen = rng.choice(len(available), size=self.num_pids_per_batch, replace=False)
            chosen_pids = [available[i] for i in chosen]
            for pid in chosen_pids:
                out.extend(self.take(pid, pool[pid], rng))
            exhausted = {pid for pid in chosen_pids if len(pool[pid]) < self.num_instances}
            if exhausted:
                available = [pid for pid in available if pid not in exhausted]
        return out


class BalancedIdentitySampler(NaiveIdentitySampler):
    """Like NaiveIdentitySampler, but each group of K pairs an anchor with images from its other cameras where it can."""

    def __init__(self, pids: Sequence[int], camids: Sequence[int], batch_size: int, num_instances: int, seed: int = 0):
        super().__init__(pids, batch_size, num_instances, seed)
        if len(camids) != len(pids):
            raise ValueError("pids and camids must have the same length")
        self.camids = [int(c) for c in camids]

    def take(self, pid: int, remaining: list[int], rng: np.random.Generator) -> list[int]:
        cam = self.camids[remaining[0]]
        # After the anchor: its other cameras first, then its own, each in the shuffled order.
        others = [j for j in range(1, len(remaining)) if self.camids[remaining[j]] != cam]
        same = [j for j in range(1, len(remaining)) if self.camids[remaining[j]] == cam]
        positions = [0, *(others + same)[: self.num_instances - 1]]
        taken = [remaining[j] for j in positions]
        for j in sorted(positions, reverse=True):
            del remaining[j]
        return taken


def check_rank_split(sampler: EpochSampler, batch_size: int, world_size: int) -> int:
    """The per-rank batch of a global `batch_size` split over `world_size` processes.

    As in FastReID, SOLVER.IMS_PER_BATCH is the global batch and each rank takes a
    contiguous share of it. An identity sampler lays a batch out as P groups of K
    images of one identity each, so a share of whole groups gives every rank its
    own identities, none of them on another rank in the same iteration.
    """
    if world_size <= 1:
        return batch_size
    if batch_size % world_size:
        raise ConfigError(f"{batch_size} does not split evenly over {world_size} processes", key="SOLVER.IMS_PER_BATCH")
    local = batch_size // world_size
    k = getattr(sampler, "num_instances", 0)
    if k and local % k:
        raise ConfigError(
            f"{batch_size} over {world_size} processes leaves {local} images per process, not a multiple of "
            f"DATALOADER.NUM_INSTANCE={k}: an identity would be split across processes",
            key="SOLVER.IMS_PER_BATCH",
        )
    return local


SAMPLERS = ("NaiveIdentitySampler", "BalancedIdentitySampler", "TrainingSampler")


def build_sampler(name: str, pids: Sequence[int], camids: Sequence[int], *, batch_size: int, num_instances: int, seed: int) -> EpochSampler:
    """The training sampler named by DATALOADER.SAMPLER_TRAIN."""
    key = name.lower()
    if key == "naiveidentitysampler":
        return NaiveIdentitySampler(pids, batch_size, num_instances, seed)
    if key == "balancedidentitysampler":
        return BalancedIdentitySampler(pids, camids, batch_size, num_instances, seed)
    if key == "trainingsampler":
        return TrainingSampler(len(pids), seed)
    raise ConfigError(f"unknown sampler {name!r}; known samplers: {', '.join(SAMPLERS)}", key="DATALOADER.SAMPLER_TRAIN")
