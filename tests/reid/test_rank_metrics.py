"""CMC / mAP / mINP under the Market protocol, and the distance matrices they rank."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidplug.reid.evaluation.distance import compute_distance
from reidplug.reid.evaluation.rank import evaluate_rank, evaluate_rank_loop

BOTH = pytest.mark.parametrize("evaluate", [evaluate_rank, evaluate_rank_loop], ids=["vectorised", "loop"])


def _one_query():
    """Query pid 1, camera 0, against six gallery items listed nearest first."""
    # gallery:  junk    neg     pos     distr.  pos     neg
    g_pids = [1, 2, 1, 0, 1, 3]
    g_cams = [0, 1, 1, 0, 2, 0]
    dist = [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]]
    return dist, [1], g_pids, [0], g_cams


@BOTH
def test_hand_computed_single_query(evaluate):
    dist, qp, gp, qc, gc = _one_query()
    r = evaluate(np.array(dist, np.float32), qp, gp, qc, gc)
    # Same pid and camera (index 0) is dropped, so the ranking is: neg, pos, distractor, pos, neg.
    # AP = (1/2 + 2/4) / 2; INP = 2 positives / last one at rank 4.
    assert r["num_valid_queries"] == 1
    assert r["rank1"] == 0.0
    assert r["rank5"] == 100.0
    assert r["mAP"] == pytest.approx(50.0)
    assert r["mINP"] == pytest.approx(50.0)
    # 6 gallery items < max_rank: the CMC has one entry per gallery item.
    np.testing.assert_allclose(r["cmc"], [0, 1, 1, 1, 1, 1])
    np.testing.assert_allclose(r["all_AP"], [0.5])
    np.testing.assert_allclose(r["all_INP"], [0.5])


@BOTH
def test_junk_removal_is_per_camera_and_distractors_count(evaluate):
    _, qp, gp, qc, gc = _one_query()
    # The junk item alone at rank 1 would give Rank-1 100 if it were kept.
    dist = np.array([[0.0, 0.9, 0.1, 0.2, 0.3, 0.8]], np.float32)
    r = evaluate(dist, qp, gp, qc, gc)
    # Kept ranking: pos (0.1), distractor pid 0 (0.2), pos (0.3), neg, neg.
    assert r["rank1"] == 100.0
    assert r["mAP"] == pytest.approx(100 * (1 / 1 + 2 / 3) / 2)
    assert r["mINP"] == pytest.approx(100 * 2 / 3)


@BOTH
def test_queries_without_positives_are_skipped_and_averaged_over_valid(evaluate):
    g_pids = [1, 2, 1, 5, 2]
    g_cams = [1, 0, 2, 0, 1]
    q_pids = [1, 5, 2]
    q_cams = [0, 0, 0]  # pid 5 is only in camera 0 of the gallery: no valid positive
    dist = np.array(
        [
            [0.5, 0.1, 0.2, 0.3, 0.4],  # q pid 1: neg, pos(0.2), neg, neg, pos(0.5)
            [0.1, 0.2, 0.3, 0.4, 0.5],
            [0.3, 0.2, 0.1, 0.4, 0.5],  # q pid 2 cam 0: g1 (pid 2 cam 0) is junk; pos g4 at 0.5 last
        ],
        np.float32,
    )
    r = evaluate(dist, q_pids, g_pids, q_cams, g_cams)
    assert r["num_valid_queries"] == 2
    # q0: ranking g1(neg) g2(pos) g3(neg) g4(neg) g0(pos): AP (1/2 + 2/5)/2 = 0.45, INP 2/5.
    # q2: ranking g2 g0 g3 g4(pos) after dropping g1: AP 1/4, INP 1/4, first hit at rank 4.
    assert r["mAP"] == pytest.approx(100 * (0.45 + 0.25) / 2)
    assert r["mINP"] == pytest.approx(100 * (0.4 + 0.25) / 2)
    np.testing.assert_allclose(r["cmc"], [0, 0.5, 0.5, 1.0, 1.0])
    assert r["rank1"] == 0.0 and r["rank5"] == 100.0 and r["rank10"] == 100.0


@BOTH
def test_no_valid_query_is_an_error(evaluate):
    with pytest.raises(ValueError, match="no valid query"):
        evaluate(np.zeros((2, 3), np.float32), [1, 2], [1, 2, 3], [0, 0], [0, 0, 1])


@BOTH
def test_ties_rank_the_negative_first(evaluate):
    # A positive and a negative at the same distance: the negative takes rank 1.
    dist = np.array([[0.5, 0.5, 0.9]], np.float32)
    r = evaluate(dist, [1], [1, 2, 1], [0], [1, 1, 2])
    assert r["rank1"] == 0.0
    assert r["mAP"] == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    # All distances equal (a collapsed model): every negative comes before every positive.
    r = evaluate(np.zeros((1, 4), np.float32), [1], [2, 1, 3, 1], [0], [1, 1, 1, 2])
    assert r["mAP"] == pytest.approx(100 * (1 / 3 + 2 / 4) / 2)
    assert r["mINP"] == pytest.approx(100 * 2 / 4)


@BOTH
def test_nan_distances_are_rejected(evaluate):
    with pytest.raises(ValueError, match="NaN"):
        evaluate(np.array([[0.1, np.nan]], np.float32), [1], [1, 2], [0], [1, 1])


def _random_problem(rng, nq, ng, ids=40, cams=6):
    q_pids = rng.integers(1, ids, nq)
    g_pids = rng.integers(0, ids, ng)
    q_cams = rng.integers(0, cams, nq)
    g_cams = rng.integers(0, cams, ng)
    # Distances that favour the same pid a little, so that rankings are neither perfect nor random.
    dist = rng.random((nq, ng)) - 0.3 * (q_pids[:, None] == g_pids[None, :])
    return dist.astype(np.float32), q_pids, g_pids, q_cams, g_cams


def _assert_same(a, b):
    assert a["num_valid_queries"] == b["num_valid_queries"]
    np.testing.assert_array_equal(a["cmc"], b["cmc"])
    np.testing.assert_allclose(a["all_AP"], b["all_AP"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(a["all_INP"], b["all_INP"], rtol=0, atol=1e-12)
    for key in ("rank1", "rank5", "rank10", "mAP", "mINP"):
        assert a[key] == pytest.approx(b[key], rel=0, abs=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_equals_loop_on_random_data(seed):
    rng = np.random.default_rng(seed)
    problem = _random_problem(rng, 150, 900)
    _assert_same(evaluate_rank(*problem, chunk_size=23), evaluate_rank_loop(*problem))


def test_vectorised_equals_loop_with_many_ties():
    rng = np.random.default_rng(7)
    dist, *ids = _random_problem(rng, 80, 300, ids=10)
    dist = np.round(dist * 8) / 8
    _assert_same(evaluate_rank(dist, *ids), evaluate_rank_loop(dist, *ids))


def test_chunking_gives_identical_results():
    rng = np.random.default_rng(3)
    problem = _random_problem(rng, 97, 400)
    whole = evaluate_rank(*problem)
    for chunk in (1, 5, 96, 1000):
        part = evaluate_rank(*problem, chunk_size=chunk)
        np.testing.assert_array_equal(part["cmc"], whole["cmc"])
        np.testing.assert_array_equal(part["all_AP"], whole["all_AP"])
        np.testing.assert_array_equal(part["all_INP"], whole["all_INP"])


def test_accepts_torch_tensors_and_float64():
    rng = np.random.default_rng(4)
    dist, qp, gp, qc, gc = _random_problem(rng, 30, 120)
    ref = evaluate_rank(dist, qp, gp, qc, gc)
    r = evaluate_rank(torch.from_numpy(dist), *(torch.from_numpy(x) for x in (qp, gp, qc, gc)))
    assert r["mAP"] == ref["mAP"]
    assert evaluate_rank(dist.astype(np.float64), qp, gp, qc, gc)["mAP"] == ref["mAP"]


def test_max_rank_truncates_the_cmc():
    rng = np.random.default_rng(5)
    problem = _random_problem(rng, 20, 100)
    r = evaluate_rank(*problem, max_rank=10)
    assert r["cmc"].shape == (10,)
    assert r["rank10"] == pytest.approx(100 * r["cmc"][9])


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="g_pids"):
        evaluate_rank(np.zeros((1, 3), np.float32), [1], [1, 2], [0], [1, 1, 1])


# ------------------------------------------------------------------ distances


def test_cosine_and_squared_euclidean_by_hand():
    q = torch.tensor([[3.0, 4.0]])
    g = torch.tensor([[4.0, 3.0], [0.0, 1.0], [-3.0, -4.0]])
    # cos = 24/25, 4/5, -1
    np.testing.assert_allclose(compute_distance(q, g, "cosine").numpy(), [[0.04, 0.2, 2.0]], atol=1e-6)
    # (1 + 1), (9 + 9), (36 + 64): squared, not rooted
    np.testing.assert_allclose(compute_distance(q, g, "euclidean").numpy(), [[2.0, 18.0, 100.0]], atol=1e-4)


def test_cosine_ignores_scale_and_euclidean_does_not():
    rng = np.random.default_rng(0)
    q = torch.from_numpy(rng.standard_normal((5, 8)).astype(np.float32))
    g = torch.from_numpy(rng.standard_normal((7, 8)).astype(np.float32))
    torch.testing.assert_close(compute_distance(q, g), compute_distance(3 * q, 0.5 * g))
    expected = torch.cdist(3 * q, g).pow(2)
    torch.testing.assert_close(compute_distance(3 * q, g, "euclidean"), expected, atol=1e-4, rtol=1e-5)


def test_distance_chunking_agrees_to_float32_rounding():
    rng = np.random.default_rng(1)
    q = torch.from_numpy(rng.standard_normal((37, 64)).astype(np.float32))
    g = torch.from_numpy(rng.standard_normal((101, 64)).astype(np.float32))
    for metric in ("cosine", "euclidean"):
        whole = compute_distance(q, g, metric)
        assert whole.dtype == torch.float32 and whole.shape == (37, 101)
        for chunk in (1, 4, 36):
            # BLAS sums in a block-shape-dependent order, so only the last bits may differ.
            torch.testing.assert_close(compute_distance(q, g, metric, chunk_size=chunk), whole, rtol=1e-6, atol=1e-5)


def test_unknown_metric_is_rejected():
    with pytest.raises(ValueError, match="unknown metric"):
        compute_distance(torch.ones(1, 2), torch.ones(1, 2), "manhattan")
