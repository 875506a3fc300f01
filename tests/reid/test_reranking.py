"""k-reciprocal re-ranking: the bounded-memory version against the plain dense one, and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reidplug.reid.evaluation.distance import compute_distance
from reidplug.reid.evaluation.rank import evaluate_rank
from reidplug.reid.evaluation.reranking import re_ranking, re_ranking_reference


def _clustered(seed, nq, ng, dim=16, ids=10, noise=0.7):
    """Features around one centre per pid, so that neighbourhoods mean something."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, dim))
    q_pids, g_pids = rng.integers(0, ids, nq), rng.integers(0, ids, ng)
    qf = centres[q_pids] + noise * rng.standard_normal((nq, dim))
    gf = centres[g_pids] + noise * rng.standard_normal((ng, dim))
    as_t = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    return as_t(qf), as_t(gf), q_pids, g_pids


@pytest.mark.parametrize(
    "nq, ng, k1, k2, lam, metric, chunk",
    [
        (20, 100, 20, 6, 0.3, "cosine", None),
        (25, 140, 20, 6, 0.3, "euclidean", 9),
        (12, 70, 5, 1, 0.5, "cosine", 4),  # no query expansion
        (15, 40, 7, 3, 0.0, "euclidean", 1),
        (5, 12, 20, 6, 0.3, "cosine", None),  # fewer items than k1 + 1
    ],
)
def test_matches_the_dense_reference(nq, ng, k1, k2, lam, metric, chunk):
    qf, gf, _, _ = _clustered(nq * 7 + ng, nq, ng)
    fast = re_ranking(qf, gf, k1, k2, lam, metric, chunk_size=chunk)
    ref = re_ranking_reference(qf, gf, k1, k2, lam, metric)
    assert fast.shape == (nq, ng) and fast.dtype == torch.float32
    scale = float(ref.abs().max())
    torch.testing.assert_close(fast, ref, rtol=0, atol=2e-6 * max(1.0, scale))


def test_expansions_past_the_stored_neighbours_match_the_reference(monkeypatch):
    import reidplug.reid.evaluation.reranking as module

    computed = []
    pair_distances = module._pair_distances

    def counting(feats, rows, cols, metric):
        computed.append(len(rows))
        return pair_distances(feats, rows, cols, metric)

    monkeypatch.setattr(module, "_pair_distances", counting)
    # Noisy features with a small k1: some expansions reach past the 2(k1+1) stored neighbours.
    qf, gf, _, _ = _clustered(5, 12, 70, noise=3.0)
    fast = re_ranking(qf, gf, k1=6, k2=1, lambda_value=0.5, chunk_size=4)
    assert sum(computed) > 0
    torch.testing.assert_close(fast, re_ranking_reference(qf, gf, k1=6, k2=1, lambda_value=0.5), rtol=0, atol=2e-6)


def test_hand_computed_three_points():
    # 1-D features, squared Euclidean: q=0, g1=1, g2=10. d(q,g1)=1, d(q,g2)=100, d(g1,g2)=81.
    qf = torch.tensor([[0.0]])
    gf = torch.tensor([[1.0], [10.0]])
    # k1=1: R(q)={q,g1}, R(g1)={g1,q}, R(g2)={g2,g1}; reciprocal sets {q,g1}, {g1,q}, {g2}.
    # round(1/2)=0: each candidate's half set is itself, inside R*, so expansions add nothing.
    # Row-normalised distances: row q divides by 100, row g1 by 81.
    a = 1 / (1 + math.exp(-0.01))  # V(q, q); V(q, g1) = 1 - a
    b = math.exp(-1 / 81) / (1 + math.exp(-1 / 81))  # V(g1, q); V(g1, g1) = 1 - b
    shared = min(a, b) + min(1 - a, 1 - b)
    jac_g1 = 1 - shared / (2 - shared)
    lam = 0.3
    expected = [jac_g1 * (1 - lam) + 1.0 * lam, 1.0 * (1 - lam) + 100.0 * lam]  # g2 shares nothing
    for fn in (re_ranking, re_ranking_reference):
        out = fn(qf, gf, k1=1, k2=1, lambda_value=lam, metric="euclidean")
        np.testing.assert_allclose(out.numpy()[0], expected, rtol=1e-6)


def test_lambda_one_is_the_plain_distance_and_lambda_zero_a_jaccard_distance():
    qf, gf, _, _ = _clustered(1, 10, 50)
    torch.testing.assert_close(re_ranking(qf, gf, lambda_value=1.0), compute_distance(qf, gf), rtol=0, atol=1e-6)
    jac = re_ranking(qf, gf, lambda_value=0.0)
    assert float(jac.min()) >= 0.0 and float(jac.max()) <= 1.0 + 1e-6


def test_re_ranking_helps_on_clustered_data():
    qf, gf, qp, gp = _clustered(2, 40, 300, dim=32, ids=15, noise=1.2)
    qc, gc = np.zeros(40, int), np.ones(300, int)
    plain = evaluate_rank(compute_distance(qf, gf), qp, gp, qc, gc)
    rr = evaluate_rank(re_ranking(qf, gf), qp, gp, qc, gc)
    assert rr["mAP"] > plain["mAP"]


def test_accepts_numpy_and_rejects_bad_parameters():
    qf, gf, _, _ = _clustered(3, 6, 30)
    out = re_ranking(qf.numpy(), gf.numpy(), k1=4, k2=2)
    torch.testing.assert_close(out, re_ranking(qf, gf, k1=4, k2=2))
    with pytest.raises(ValueError, match="k1 and k2"):
        re_ranking(qf, gf, k1=0)
    with pytest.raises(ValueError, match="lambda_value"):
        re_ranking(qf, gf, lambda_value=1.5)
    with pytest.raises(ValueError, match="unknown metric"):
        re_ranking(qf, gf, metric="jaccard")
