"""Market-sized evaluation speed: distance + CMC/mAP/mINP, vectorised against the per-query loop.

    python bench/eval_speed.py                      # all levels, 3 repeats, loop reference once
    python bench/eval_speed.py --levels trained --repeats 5 --no-loop

Features are random but laid out like Market-1501's test split (3,368 queries,
15,913 gallery images, 750 ids, 6 cameras, 2,793 distractors with pid 0), 2048-d.
Times are the best of the repeats; the loop reference runs once. "GEMM" is a bare float32
product of the same shape (numpy), the floor for any exact distance matrix.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from reidplug.reid.evaluation import compute_distance, evaluate_rank, evaluate_rank_loop

NUM_QUERY = 3368
NUM_GALLERY = 15913
NUM_IDS = 750
NUM_CAMS = 6
NUM_DISTRACTORS = 2793

# Per-image noise against unit-variance identity centres. "trained" gives mAP ~84
# (BoT R50 on Market: 86.1) with a lower mINP (~35) than a real model, i.e. more
# negatives before the last positive, the costlier side for the ranking; "early" is
# a model a few epochs in (mAP ~24); "random" has no identity signal (the worst case).
LEVELS = {"trained": 2.8, "early": 3.8, "random": None}


def layout(seed: int = 0, scale: float = 1.0):
    """(q_pids, q_camids, g_pids, g_camids) shaped like Market's test split, sizes times `scale`.

    Each id is seen by 3..6 cameras, has queries from them and at least one gallery
    image in each; pid 0 marks distractors, which only the gallery holds.
    """
    rng = np.random.default_rng(seed)
    n_ids = max(2, round(NUM_IDS * scale))
    n_query = max(2, round(NUM_QUERY * scale))
    n_distr = round(NUM_DISTRACTORS * scale)
    cams = [rng.choice(NUM_CAMS, size=rng.integers(3, NUM_CAMS + 1), replace=False) for _ in range(n_ids)]
    seen_pids = np.concatenate([np.full(len(c), pid + 1) for pid, c in enumerate(cams)])
    seen_cams = np.concatenate(cams)
    n_gallery = max(round(NUM_GALLERY * scale), n_distr + seen_pids.shape[0])

    # One query per (id, camera), trimmed or topped up to the query count.
    picks = rng.permutation(seen_pids.shape[0])
    if picks.shape[0] < n_query:
        picks = np.concatenate([picks, rng.integers(0, seen_pids.shape[0], n_query - picks.shape[0])])
    picks = np.sort(picks[:n_query])
    q_pids, q_cams = seen_pids[picks], seen_cams[picks]

    owners = rng.integers(0, n_ids, n_gallery - n_distr - seen_pids.shape[0])
    g_pids = np.concatenate([np.zeros(n_distr, np.int64), seen_pids, owners + 1])
    g_cams = np.concatenate(
        [rng.integers(0, NUM_CAMS, n_distr), seen_cams, np.array([rng.choice(cams[o]) for o in owners], np.int64)]
    )
    return q_pids.astype(np.int64), q_cams.astype(np.int64), g_pids.astype(np.int64), g_cams.astype(np.int64)


def features(pids: np.ndarray, camids: np.ndarray, level: str, dim: int = 2048, seed: int = 0) -> np.ndarray:
    """float32 features: identity centre + camera shift + noise; each distractor has its own centre."""
    rng = np.random.default_rng(seed + 1)
    noise = LEVELS[level]
    n = pids.shape[0]
    if noise is None:
        return rng.standard_normal((n, dim), dtype=np.float32)
    centres = rng.standard_normal((int(pids.max()) + 1, dim), dtype=np.float32)
    shifts = 0.5 * rng.standard_normal((NUM_CAMS, dim), dtype=np.float32)
    out = centres[pids] + shifts[camids]
    distractor = pids == 0
    out[distractor] = rng.standard_normal((int(distractor.sum()), dim), dtype=np.float32) + shifts[camids[distractor]]
    out += noise * rng.standard_normal((n, dim), dtype=np.float32)
    return out


def market_like(level: str = "trained", dim: int = 2048, seed: int = 0, scale: float = 1.0):
    """(qf, gf, q_pids, g_pids, q_camids, g_camids) as torch features and numpy ids."""
    q_pids, q_cams, g_pids, g_cams = layout(seed, scale)
    feats = features(np.concatenate([q_pids, g_pids]), np.concatenate([q_cams, g_cams]), level, dim, seed)
    nq = q_pids.shape[0]
    return torch.from_numpy(feats[:nq]), torch.from_numpy(feats[nq:]), q_pids, g_pids, q_cams, g_cams


def best_of(repeats: int, fn):
    """(smallest wall time in seconds, last result) over `repeats` calls."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numpy {np.__version__}, 1-min load {load:.2f}"
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", nargs="+", default=list(LEVELS), choices=list(LEVELS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-loop", action="store_true", help="skip the per-query loop reference")
    ap.add_argument("--metric", default="cosine", choices=["cosine", "euclidean"])
    args = ap.parse_args(argv)

    print(f"machine: {machine()}")
    header = ("level", "Rank-1", "mAP", "mINP", "GEMM s", "distance s", "ranking s", "total s", "loop s", "identical")
    rows = []
    for level in args.levels:
        qf, gf, qp, gp, qc, gc = market_like(level)
        # The bare float32 product of the same shape: the floor for any exact distance matrix,
        # measured alongside so that a busy machine shows in both.
        qn, gn = qf.numpy(), gf.numpy()
        t_gemm, _ = best_of(args.repeats, lambda: qn @ gn.T)
        t_dist, dist = best_of(args.repeats, lambda: compute_distance(qf, gf, args.metric))
        t_rank, fast = best_of(args.repeats, lambda: evaluate_rank(dist, qp, gp, qc, gc))
        t_loop, same = float("nan"), "-"
        if not args.no_loop:
            t_loop, slow = best_of(1, lambda: evaluate_rank_loop(dist, qp, gp, qc, gc))
            identical = (
                np.array_equal(fast["cmc"], slow["cmc"])
                and fast["num_valid_queries"] == slow["num_valid_queries"]
                and float(np.abs(fast["all_AP"] - slow["all_AP"]).max()) < 1e-12
                and float(np.abs(fast["all_INP"] - slow["all_INP"]).max()) < 1e-12
            )
            same = "yes" if identical else "NO"
        rows.append(
            (
                level,
                f"{fast['rank1']:.2f}",
                f"{fast['mAP']:.2f}",
                f"{fast['mINP']:.2f}",
                f"{t_gemm:.2f}",
                f"{t_dist:.2f}",
                f"{t_rank:.2f}",
                f"{t_dist + t_rank:.2f}",
                f"{t_loop:.1f}",
                same,
            )
        )
        valid = fast["num_valid_queries"]
        print(f"  {level}: {valid} valid queries of {qf.shape[0]}, gallery {gf.shape[0]}", flush=True)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()
