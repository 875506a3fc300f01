"""Feature extraction, AQE and the evaluation pipeline driven by TEST."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from reidplug.core import schema
from reidplug.reid.evaluation import (
    ReidEvaluator,
    average_query_expansion,
    compute_distance,
    evaluate,
    evaluate_rank,
    extract_features,
    format_table,
    re_ranking,
)


class HalvesModel(nn.Module):
    """Feature = (mean pixel of the left half, mean pixel of the right half); notes how it was called."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls = []

    def forward(self, images):
        self.calls.append((self.training, torch.is_grad_enabled()))
        w = images.shape[3] // 2
        left = images[:, :, :, :w].mean(dim=(1, 2, 3))
        right = images[:, :, :, w:].mean(dim=(1, 2, 3))
        return torch.stack([left, right], dim=1) * self.scale


def _loader(batches=2, per_batch=3):
    out = []
    for b in range(batches):
        images = torch.zeros(per_batch, 3, 4, 6)
        for i in range(per_batch):
            images[i, :, :, :3] = 10.0 * (b * per_batch + i)  # left half
            images[i, :, :, 3:] = 255.0  # right half
        out.append({"images": images, "targets": torch.arange(per_batch) + b, "camids": torch.full((per_batch,), b)})
    return out


def test_extract_features_in_eval_mode_without_grad_and_restores_mode():
    model = HalvesModel().train()
    feats, pids, camids = extract_features(model, _loader(), "cpu")
    assert feats.shape == (6, 2) and feats.dtype == torch.float32 and not feats.requires_grad
    np.testing.assert_allclose(feats[:, 0].numpy(), 10.0 * np.arange(6))
    np.testing.assert_allclose(feats[:, 1].numpy(), 255.0)
    np.testing.assert_array_equal(pids, [0, 1, 2, 1, 2, 3])
    np.testing.assert_array_equal(camids, [0, 0, 0, 1, 1, 1])
    assert all(call == (False, False) for call in model.calls)
    assert model.training


def test_flip_test_averages_the_image_and_its_mirror():
    model = HalvesModel().eval()
    feats, _, _ = extract_features(model, _loader(), "cpu", flip=True)
    # Mirroring swaps the halves, so both coordinates become (left + right) / 2.
    expected = (10.0 * np.arange(6) + 255.0) / 2
    np.testing.assert_allclose(feats[:, 0].numpy(), expected)
    np.testing.assert_allclose(feats[:, 1].numpy(), expected)
    assert len(model.calls) == 4 and not model.training


def test_progress_is_reported_per_batch():
    seen = []
    extract_features(HalvesModel(), _loader(batches=3), "cpu", progress=lambda *a: seen.append(a))
    assert seen == [("extracting features", i, 3) for i in (1, 2, 3)]


# ------------------------------------------------------------------ AQE


def test_aqe_by_hand():
    qf = torch.tensor([[1.0, 0.0]])
    gf = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    q2, g2 = average_query_expansion(qf, gf, qe_times=1, qe_k=2, alpha=3.0)
    # q: nearest are itself and [2, 0] (both cos 1) -> mean([1, 0], [2, 0]).
    torch.testing.assert_close(q2, torch.tensor([[1.5, 0.0]]))
    # [0.6, 0.8]: itself (cos 1) and [0, 1] (cos 0.8, weight 0.8^3 = 0.512).
    torch.testing.assert_close(g2[2], torch.tensor([0.3, (0.8 + 0.512) / 2]))
    # [0, 1]: itself and [0.6, 0.8] (cos 0.8).
    torch.testing.assert_close(g2[1], torch.tensor([0.6 * 0.512 / 2, (1.0 + 0.8 * 0.512) / 2]))


def test_aqe_identities_and_repetition():
    rng = np.random.default_rng(0)
    qf = torch.from_numpy(rng.standard_normal((7, 5)).astype(np.float32))
    gf = torch.from_numpy(rng.standard_normal((20, 5)).astype(np.float32))
    # One neighbour is the item itself with weight 1^alpha: nothing changes; nor with zero rounds.
    for kwargs in ({"qe_k": 1}, {"qe_times": 0}):
        q2, g2 = average_query_expansion(qf, gf, **kwargs)
        torch.testing.assert_close(q2, qf)
        torch.testing.assert_close(g2, gf)
    # Two rounds are one round applied twice; chunking changes nothing.
    once = average_query_expansion(*average_query_expansion(qf, gf, qe_k=3), qe_k=3)
    twice = average_query_expansion(qf, gf, qe_times=2, qe_k=3, chunk_size=4)
    torch.testing.assert_close(twice[0], once[0])
    torch.testing.assert_close(twice[1], once[1])


# ------------------------------------------------------------------ evaluate


def _angles(degrees):
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


def _small_set():
    """One query at 0 degrees, then a gallery whose cosine ranking is known by its angles."""
    feats = torch.from_numpy(_angles([0, 1, 5, 10, 20]))
    pids = [1, 1, 2, 1, 1]
    camids = [0, 0, 1, 1, 2]  # the item at 1 degree shares pid and camera: dropped
    return feats, pids, camids


def test_evaluate_by_hand():
    feats, pids, camids = _small_set()
    r = evaluate(feats, pids, camids, num_query=1)
    # Ranking after the drop: pid 2 (5 deg), pid 1 (10 deg), pid 1 (20 deg).
    assert set(r) == {"rank1", "rank5", "rank10", "mAP", "mINP", "score"}
    assert r["rank1"] == 0.0 and r["rank5"] == 100.0
    assert r["mAP"] == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    assert r["mINP"] == pytest.approx(100 * 2 / 3)
    assert r["score"] == pytest.approx((r["mAP"] + r["rank1"]) / 2)
    assert all(isinstance(v, float) for v in r.values())


def test_euclidean_metric_sees_feature_norms():
    feats, pids, camids = _small_set()
    feats = feats.clone()
    feats[2] *= 3.0  # the pid-2 item is now far in Euclidean terms, still nearest in angle
    cfg = schema.TestCfg()
    assert evaluate(feats, pids, camids, 1, cfg)["rank1"] == 0.0
    cfg.METRIC = "euclidean"
    assert evaluate(feats, pids, camids, 1, cfg)["rank1"] == 100.0


def _clustered_set(seed=0, nq=20, ng=120, ids=8):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, 16))
    pids = np.concatenate([rng.integers(0, ids, nq), rng.integers(0, ids, ng)])
    camids = np.concatenate([np.zeros(nq, int), rng.integers(1, 4, ng)])
    feats = torch.tensor(centres[pids] + 0.9 * rng.standard_normal((nq + ng, 16)), dtype=torch.float32)
    return feats, pids, camids, nq


def test_cfg_switches_aqe_and_reranking():
    feats, pids, camids, nq = _clustered_set()
    cfg = schema.Config()
    cfg.TEST.AQE.ENABLED = True
    cfg.TEST.AQE.QE_K = 3
    qf, gf = average_query_expansion(feats[:nq], feats[nq:], 1, 3, 3.0)
    expected = evaluate_rank(compute_distance(qf, gf), pids[:nq], pids[nq:], camids[:nq], camids[nq:])
    r = evaluate(feats, pids, camids, nq, cfg)
    assert r["mAP"] == pytest.approx(expected["mAP"])

    cfg.TEST.AQE.ENABLED = False
    cfg.TEST.RERANK.ENABLED = True
    cfg.TEST.RERANK.K1 = 10
    dist = re_ranking(feats[:nq], feats[nq:], 10, 6, 0.3)
    expected = evaluate_rank(dist, pids[:nq], pids[nq:], camids[:nq], camids[nq:])
    r = ReidEvaluator(cfg, nq).evaluate(feats, pids, camids)
    assert r["mAP"] == pytest.approx(expected["mAP"])
    assert r["mAP"] != pytest.approx(evaluate(feats, pids, camids, nq)["mAP"])


def test_evaluator_runs_model_and_loader_with_flip_from_cfg():
    model = HalvesModel()
    loader = _loader()
    cfg = schema.TestCfg()
    cfg.FLIP.ENABLED = True
    r = ReidEvaluator(cfg, num_query=2)(model, loader, "cpu")
    assert len(model.calls) == 4  # flipped too
    feats, pids, camids = extract_features(model, loader, "cpu", flip=True)
    assert r == evaluate(feats, pids, camids, 2, cfg)


def test_evaluate_rejects_bad_layouts():
    feats, pids, camids = _small_set()
    with pytest.raises(ValueError, match="num_query"):
        evaluate(feats, pids, camids, num_query=5)
    with pytest.raises(ValueError, match="pids"):
        evaluate(feats, pids[:3], camids, num_query=1)


def test_format_table():
    r = {"rank1": 94.4242, "rank5": 98.2, "rank10": 98.96, "mAP": 86.1, "mINP": 60.346, "score": 90.26}
    lines = format_table(r, "Market1501").splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0] == ["Dataset", "Rank-1", "Rank-5", "Rank-10", "mAP", "mINP", "metric"]
    assert cells[2] == ["Market1501", "94.42", "98.20", "98.96", "86.10", "60.35", "90.26"]
    assert len({len(line) for line in lines}) == 1
