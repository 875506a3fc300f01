"""CMC, mAP and mINP under the Market-1501 protocol.

For each query the gallery is ranked by ascending distance; gallery items with
the query's pid and camera are dropped; a query with no positive left is not
valid. CMC is the share of valid queries whose first positive sits within rank
k; AP averages precision@k over the positives of the full ranking; INP is the
number of positives over the 1-based rank of the last one.

Distances are compared in float32. Where a positive and a negative are at
exactly the same distance, the negative ranks first: a degenerate model (all
features equal) then scores what it deserves rather than what the gallery
order happens to give it.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

# 4M distances per chunk keep the per-chunk temporaries near 50 MB.
CHUNK_ELEMENTS = 1 << 22
MAX_THREADS = 4


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _prepare(distmat, q_pids, g_pids, q_camids, g_camids):
    d = _as_numpy(distmat)
    if d.ndim != 2:
        raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got shape {d.shape}")
    ids = [np.asarray(_as_numpy(v)).reshape(-1).astype(np.int64) for v in (q_pids, g_pids, q_camids, g_camids)]
    nq, ng = d.shape
    for name, arr, n in zip(("q_pids", "g_pids", "q_camids", "g_camids"), ids, (nq, ng, nq, ng)):
        if arr.shape[0] != n:
            raise ValueError(f"{name} has {arr.shape[0]} entries, distmat has {n} along that axis")
    return (d, *ids)


def _sort_keys(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """int64 keys ordering (row, float32 value) pairs exactly: the row in the high 32 bits."""
    # Adding 0 turns -0.0 into +0.0, which compare equal as floats but not as bits.
    bits = (values.astype(np.float32) + np.float32(0)).view(np.uint32)
    # Flipping all bits of negatives and the sign bit of the rest makes the unsigned
    # integer order the float order.
    ordered = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))
    return (rows.astype(np.int64) << 32) | ordered.astype(np.int64)


class _GalleryIndex:
    """Gallery indices grouped by pid, so that a query's matches are found without a dense scan."""

    def __init__(self, g_pids: np.ndarray, g_camids: np.ndarray):
        self.order = np.argsort(g_pids, kind="stable")
        self.sorted_pids = g_pids[self.order]
        self.camids = g_camids

    def matches(self, q_pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, gallery index) of every gallery item sharing the pid of query row `row`."""
        lo = np.searchsorted(self.sorted_pids, q_pids, side="left")
        n = np.searchsorted(self.sorted_pids, q_pids, side="right") - lo
        rows = np.repeat(np.arange(q_pids.shape[0]), n)
        offset = np.arange(rows.shape[0]) - np.repeat(np.cumsum(n) - n, n)
        return rows, self.order[np.repeat(lo, n) + offset]


def _rank_chunk(d: np.ndarray, qp: np.ndarray, qc: np.ndarray, gallery: _GalleryIndex, scratch: np.ndarray):
    """First-positive rank (0-based), AP and INP of each query row of `d`; valid mask.

    `scratch` is a float32 buffer of at least d's shape, reused between chunks.
    """
    b, ng = d.shape
    if np.isnan(d).any():
        raise ValueError("distmat contains NaN")
    first = np.zeros(b, np.int64)
    ap = np.zeros(b, np.float64)
    inp = np.zeros(b, np.float64)
    mr, mc = gallery.matches(qp)
    positive = qc[mr] != gallery.camids[mc]
    npos = np.bincount(mr[positive], minlength=b)
    valid = npos > 0
    if not valid.any():
        return first, ap, inp, valid

    # Every item of the query's pid (positives and same-camera junk), sorted by (row, distance).
    mkeys = np.sort(_sort_keys(d[mr, mc], mr))
    # The positives alone, likewise: slot m of row r is its m-th nearest positive.
    pr = mr[positive]
    pdist = d[pr, mc[positive]]
    order = np.lexsort((pdist, pr))
    pr, pdist = pr[order], pdist[order]
    pkeys = _sort_keys(pdist, pr)
    starts = np.cumsum(npos) - npos
    last = starts + npos - 1
    within = np.arange(pr.shape[0]) - starts[pr]

    # Items no farther than each positive, counted in the sorted rows (a vectorised sort
    # of a chunk is far cheaper than an argsort, and nothing else needs the order).
    width = int(npos.max())
    thresholds = np.full((b, width), -np.inf, dtype=np.float32)
    thresholds[pr, within] = pdist
    ranked = scratch[:b]
    np.copyto(ranked, d)
    ranked.sort(axis=1)
    upto = torch.searchsorted(torch.from_numpy(ranked), torch.from_numpy(thresholds), right=True).numpy()
    upto = upto[pr, within]
    # Minus the items of the query's own pid among them: what is left are the negatives,
    # and a negative at the same distance as a positive counts as ranked before it.
    m_start = np.searchsorted(mkeys, pr.astype(np.int64) << 32, side="left")
    own = np.searchsorted(mkeys, pkeys, side="right") - m_start
    rank = within + upto - own

    ap_sum = np.bincount(pr, weights=(within + 1.0) / (rank + 1.0), minlength=b)
    ap[valid] = ap_sum[valid] / npos[valid]
    first[valid] = rank[starts[valid]]
    inp[valid] = npos[valid] / (rank[last[valid]] + 1.0)
    return first, ap, inp, valid


def _summarise(first, ap, inp, max_rank: int) -> dict:
    n = first.shape[0]
    if n == 0:
        raise ValueError(
            "no valid query: no query has a gallery item with its pid from another camera"
        )
    counts = np.bincount(np.minimum(first, max_rank), minlength=max_rank + 1)[:max_rank]
    cmc = np.cumsum(counts) / n

    def at(k: int) -> float:
        return float(cmc[min(k, max_rank) - 1] * 100.0)

    return {
        "cmc": cmc,
        "all_AP": ap,
        "all_INP": inp,
        "rank1": at(1),
        "rank5": at(5),
        "rank10": at(10),
        "mAP": float(ap.mean() * 100.0),
        "mINP": float(inp.mean() * 100.0),
        "num_valid_queries": int(n),
    }


def evaluate_rank(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    chunk_size: int | None = None,
) -> dict:
    """Market-protocol CMC, mAP and mINP, vectorised over chunks of query rows.

    Returns `cmc` (fractions, length min(max_rank, num_gallery)), `all_AP` and
    `all_INP` (fractions, one per valid query), `rank1`, `rank5`, `rank10`, `mAP`,
    `mINP` in percent, and `num_valid_queries`. No ranking is materialised: the rank
    of a positive is the number of gallery items no farther than it (counted in the
    chunk's rows sorted by value) less the items of the query's own pid among them.
    """
    d, qp, gp, qc, gc = _prepare(distmat, q_pids, g_pids, q_camids, g_camids)
    nq, ng = d.shape
    if ng == 0:
        raise ValueError("empty gallery")
    max_rank = max(1, min(int(max_rank), ng))
    step = chunk_size if chunk_size is not None else max(1, CHUNK_ELEMENTS // ng)
    if step < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    first = np.zeros(nq, np.int64)
    ap = np.zeros(nq, np.float64)
    inp = np.zeros(nq, np.float64)
    valid = np.zeros(nq, bool)
    gallery = _GalleryIndex(gp, gc)
    local = threading.local()

    def run(s: int) -> None:
        e = min(nq, s + step)
        if getattr(local, "scratch", None) is None:
            local.scratch = np.empty((min(step, nq), ng), dtype=np.float32)
        block = np.ascontiguousarray(d[s:e], dtype=np.float32)
        first[s:e], ap[s:e], inp[s:e], valid[s:e] = _rank_chunk(block, qp[s:e], qc[s:e], gallery, local.scratch)

    starts = range(0, nq, step)
    # numpy's sort releases the GIL, so chunks on several threads use several cores.
    workers = min(len(starts), os.cpu_count() or 1, MAX_THREADS)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, starts))
    else:
        for s in starts:
            run(s)
    return _summarise(first[valid], ap[valid], inp[valid], max_rank)


def evaluate_rank_loop(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
) -> dict:
    """The same metrics one query at a time with a full sort: the readable reference."""
    d, qp, gp, qc, gc = _prepare(distmat, q_pids, g_pids, q_camids, g_camids)
    nq, ng = d.shape
    if ng == 0:
        raise ValueError("empty gallery")
    max_rank = max(1, min(int(max_rank), ng))
    firsts, aps, inps = [], [], []
    for q in range(nq):
        row = np.asarray(d[q], dtype=np.float32)
        if np.isnan(row).any():
            raise ValueError("distmat contains NaN")
        keep = ~((gp == qp[q]) & (gc == qc[q]))
        dist, matches = row[keep], gp[keep] == qp[q]
        if not matches.any():
            continue
        # Ascending distance; at equal distance a negative comes first.
        order = np.lexsort((matches, dist))
        hits = matches[order].astype(np.float64)
        found = np.cumsum(hits)
        precision = found / np.arange(1, hits.shape[0] + 1)
        positions = np.flatnonzero(hits)
        firsts.append(positions[0])
        aps.append(float((precision * hits).sum() / hits.sum()))
        inps.append(float(hits.sum() / (positions[-1] + 1)))
    return _summarise(
        np.asarray(firsts, np.int64), np.asarray(aps, np.float64), np.asarray(inps, np.float64), max_rank
    )
