"""PK identity samplers, the plain training sampler and epoch batching."""

from __future__ import annotations

from collections import Counter

import pytest

from reidplug.core.errors import ConfigError
from reidplug.reid.data.build import EpochBatchSampler
from reidplug.reid.data.samplers import (
    BalancedIdentitySampler,
    NaiveIdentitySampler,
    TrainingSampler,
    build_sampler,
)

# 12 identities with 1..9 images each: some below K=4 (upsampled), most above
PIDS = [pid for pid in range(12) for _ in range(1 + (pid * 5) % 9)]
CAMS = [i % 3 for i in range(len(PIDS))]


def chunks(seq, n):
    return [seq[i : i + n] for i in range(0, len(seq), n)]


def test_batches_are_p_identities_times_k_instances():
    s = NaiveIdentitySampler(PIDS, batch_size=12, num_instances=4, seed=0)
    idx = list(s)
    assert idx and len(idx) % 12 == 0
    for batch in chunks(idx, 12):
        groups = chunks(batch, 4)
        group_pids = [{PIDS[i] for i in g} for g in groups]
        assert all(len(p) == 1 for p in group_pids), "each K-group is one identity"
        assert len({next(iter(p)) for p in group_pids}) == 3, "P distinct identities per batch"


def test_images_used_at_most_once_per_pass_except_upsampling():
    k = 4
    s = NaiveIdentitySampler(PIDS, batch_size=8, num_instances=k, seed=3)
    for epoch in range(5):
        idx = s.pass_indices(epoch)
        per_pid = Counter(PIDS[i] for i in idx)
        uses = Counter(idx)
        sizes = Counter(PIDS)
        for pid, count in per_pid.items():
            assert count % k == 0
            if sizes[pid] >= k:
                assert count <= sizes[pid]
                assert all(uses[i] == 1 for i in idx if PIDS[i] == pid)
            else:
                assert count == k, "a small identity is upsampled once, then leaves the pool"
        # the pass ended because fewer than P identities could still give K images
        still = [pid for pid, n in sizes.items() if (n - per_pid[pid] >= k if n >= k else per_pid[pid] == 0)]
        assert len(still) < 2


def test_order_depends_on_seed_and_epoch_only():
    a = NaiveIdentitySampler(PIDS, 8, 4, seed=7)
    b = NaiveIdentitySampler(PIDS, 8, 4, seed=7)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    fresh = NaiveIdentitySampler(PIDS, 8, 4, seed=7)
    fresh.set_epoch(1)
    assert list(fresh) == list(a), "a resumed run replays an epoch from (seed, epoch) alone"
    assert list(NaiveIdentitySampler(PIDS, 8, 4, seed=8)) != list(b)


def test_len_is_the_current_pass():
    s = NaiveIdentitySampler(PIDS, 8, 4, seed=1)
    for epoch in range(4):
        s.set_epoch(epoch)
        assert len(s) == len(list(s))


def test_batch_size_must_be_a_multiple_of_instances():
    with pytest.raises(ConfigError) as err:
        NaiveIdentitySampler(PIDS, batch_size=10, num_instances=4)
    assert err.value.key == "SOLVER.IMS_PER_BATCH"
    with pytest.raises(ConfigError, match="needs 16 identities"):
        NaiveIdentitySampler(PIDS, batch_size=64, num_instances=4)


def test_balanced_sampler_pairs_anchor_with_other_cameras():
    # every identity: 4 images in camera 0, 4 in camera 1
    pids = [pid for pid in range(6) for _ in range(8)]
    cams = [0, 1] * 24
    balanced = BalancedIdentitySampler(pids, cams, batch_size=4, num_instances=2, seed=0)
    naive = NaiveIdentitySampler(pids, batch_size=4, num_instances=2, seed=0)
    for epoch in range(3):
        pairs = chunks(balanced.pass_indices(epoch), 2)
        assert pairs and all(cams[a] != cams[b] for a, b in pairs)
        assert all(pids[a] == pids[b] for a, b in pairs)
        idx = balanced.pass_indices(epoch)
        assert len(idx) == len(set(idx)), "each image at most once per pass"
    same_cam = [cams[a] == cams[b] for e in range(3) for a, b in chunks(naive.pass_indices(e), 2)]
    assert any(same_cam), "the naive sampler does not pair across cameras by design"


def test_balanced_sampler_keeps_pk_structure_and_determinism():
    s = BalancedIdentitySampler(PIDS, CAMS, batch_size=12, num_instances=4, seed=5)
    idx = list(s)
    for group in chunks(idx, 4):
        assert len({PIDS[i] for i in group}) == 1
        anchor_cam = CAMS[group[0]]
        others = [i for i in range(len(PIDS)) if PIDS[i] == PIDS[group[0]] and CAMS[i] != anchor_cam]
        if others:
            assert any(CAMS[i] != anchor_cam for i in group[1:])
    assert idx == list(BalancedIdentitySampler(PIDS, CAMS, batch_size=12, num_instances=4, seed=5))


def test_training_sampler_is_a_permutation_per_epoch():
    s = TrainingSampler(10, seed=2)
    first = list(s)
    assert sorted(first) == list(range(10)) and len(s) == 10
    s.set_epoch(1)
    assert sorted(s) == list(range(10)) and list(s) != first


def test_build_sampler_by_name():
    assert isinstance(build_sampler("NaiveIdentitySampler", PIDS, CAMS, batch_size=8, num_instances=4, seed=0), NaiveIdentitySampler)
    assert isinstance(build_sampler("BalancedIdentitySampler", PIDS, CAMS, batch_size=8, num_instances=4, seed=0), BalancedIdentitySampler)
    assert isinstance(build_sampler("TrainingSampler", PIDS, CAMS, batch_size=8, num_instances=4, seed=0), TrainingSampler)
    with pytest.raises(ConfigError) as err:
        build_sampler("PKSampler", PIDS, CAMS, batch_size=8, num_instances=4, seed=0)
    assert err.value.key == "DATALOADER.SAMPLER_TRAIN"


def test_epochs_have_a_fixed_length_streamed_from_the_epochs_passes():
    sampler = NaiveIdentitySampler(PIDS, 8, 4, seed=0)
    batches = EpochBatchSampler(sampler, 8, seed=0)
    assert len(batches) == len(PIDS) // 8, "FastReID's iterations per epoch: images // batch size"
    epochs = []
    for epoch in range(3):
        batches.set_epoch(epoch)
        got = list(batches)
        assert len(got) == len(batches) and all(len(b) == 8 for b in got)
        flat = [i for b in got for i, _ in b]
        first, second = sampler.pass_indices(epoch, 0), sampler.pass_indices(epoch, 1)
        assert flat == (first + second)[: len(flat)], "pass after pass of this epoch's order"
        seeds = [s for b in got for _, s in b]
        assert len(set(seeds)) == len(seeds), "every position of an epoch gets its own augmentation seed"
        epochs.append(got)
    assert epochs[0] != epochs[1]
    batches.set_epoch(1)
    assert list(batches) == epochs[1]

    long = EpochBatchSampler(sampler, 8, seed=0, epoch_length=3 * len(sampler) // 8 + 1)
    flat = [i for b in long for i, _ in b]
    assert len(flat) == 8 * len(long)
    assert flat[: len(sampler)] == sampler.pass_indices(0, 0)
    with pytest.raises(ConfigError, match="more than the") as err:
        EpochBatchSampler(TrainingSampler(5), 8, seed=0)
    assert err.value.key == "SOLVER.IMS_PER_BATCH"
