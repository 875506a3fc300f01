"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) in bounded memory.

Over all N = query + gallery items, with d the chosen metric's distance and
d_i = d(i, .) / max d(i, .) its row-normalised form:

- R(i, k): the k + 1 nearest items of i (i itself included);
- R*(i): the k1-reciprocal set, {j in R(i, k1) : i in R(j, k1)};
- the expansion of i: R*(i) plus the k1/2-reciprocal set of every c in R*(i)
  that shares more than 2/3 of its own members with R*(i);
- V(i, j) = exp(-d_i(j)) over the expansion, normalised to sum 1;
- with k2 > 1, V(i) is replaced by the mean of V over R(i, k2 - 1);
- jaccard(q, g) = 1 - sum_k min(V(q,k), V(g,k)) / (2 - sum_k min(V(q,k), V(g,k)));
- final(q, g) = jaccard(q, g) * (1 - lambda) + d(q, g) * lambda, with d the plain
  (not normalised) distance, as FastReID mixes them.

The classic implementation holds several dense N x N matrices and a full
argsort of them (about 12 GB at Market-1501 scale). Here only the k nearest
neighbours of each item are kept (found a block of rows at a time), V is sparse,
and the Jaccard sums visit only the items two sparse rows share.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from reidplug.reid.evaluation.distance import (
    as_features,
    check_metric,
    distance_block,
    prepare,
    rows_per_block,
)
from reidplug.reid.evaluation.progress import Progress

# Bounds on the temporaries: feature pairs gathered at once, and (query, shared item,
# gallery) triples visited at once by the Jaccard sums (about 50 bytes each).
PAIR_BLOCK = 1 << 13
TRIPLE_BLOCK = 1 << 22


def _check_params(k1: int, k2: int, lambda_value: float) -> None:
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be at least 1, got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")


def _features(qf, gf, metric: str) -> tuple[torch.Tensor, int]:
    q, g = as_features(qf), as_features(gf)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query and gallery dims differ: {q.shape[1]} vs {g.shape[1]}")
    if q.shape[0] == 0 or g.shape[0] == 0:
        raise ValueError("re-ranking needs at least one query and one gallery item")
    return prepare(torch.cat([q.cpu(), g.cpu()]), metric).contiguous(), q.shape[0]


def _half(k1: int) -> int:
    # Python's round is half-to-even, as the published code's np.around.
    return int(round(k1 / 2))


def _membership(idx: np.ndarray, n: int) -> sp.csr_matrix:
    """0/1 matrix with row i set at the columns idx[i]."""
    rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
    data = np.ones(idx.size, dtype=np.int32)
    return sp.csr_matrix((data, (rows, idx.reshape(-1))), shape=(n, n))


def _reciprocal(nbrs: np.ndarray, n: int) -> sp.csr_matrix:
    """0/1 matrix of pairs (i, j) with j among i's neighbours and i among j's."""
    a = _membership(nbrs, n)
    return a.multiply(a.T).tocsr()


def _expansion(nbrs: np.ndarray, k1: int, n: int) -> sp.csr_matrix:
    """0/1 matrix of the expanded k-reciprocal set of each item (sorted column indices)."""
    recip = _reciprocal(nbrs[:, : k1 + 1], n)
    recip_half = _reciprocal(nbrs[:, : _half(k1) + 1], n)
    # overlap[i, c] = |R*(i) & R*_half(c)|, needed only where c is in R*(i).
    overlap = (recip @ recip_half.T).multiply(recip).tocoo()
    half_size = np.diff(recip_half.indptr)
    keep = overlap.data > (2.0 / 3.0) * half_size[overlap.col]
    chosen = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.int32), (overlap.row[keep], overlap.col[keep])),
        shape=(n, n),
    )
    expanded = (recip + chosen @ recip_half).tocsr()
    expanded.sum_duplicates()
    expanded.sort_indices()
    expanded.data[:] = 1
    return expanded


def _pair_distances(feats: torch.Tensor, rows: np.ndarray, cols: np.ndarray, metric: str) -> np.ndarray:
    """d(rows[p], cols[p]) for each pair p, with the same formula as the distance matrix."""
    out = np.empty(rows.shape[0], dtype=np.float32)
    sq = feats.pow(2).sum(1) if metric == "euclidean" else None
    for s in range(0, rows.shape[0], PAIR_BLOCK):
        r = torch.from_numpy(rows[s : s + PAIR_BLOCK])
        c = torch.from_numpy(cols[s : s + PAIR_BLOCK])
        dot = (feats[r] * feats[c]).sum(1)
        if metric == "cosine":
            d = 1.0 - dot
        else:
            d = (sq[r] + sq[c] - 2.0 * dot).clamp_(min=0.0)
        out[s : s + PAIR_BLOCK] = d.numpy()
    return out


def _lookup(nbrs: np.ndarray, nbr_dist: np.ndarray, rows: np.ndarray, cols: np.ndarray):
    """Distances of pairs (rows, cols) found among the stored nearest neighbours; found mask."""
    n = nbrs.shape[0]
    stored = (np.arange(n)[:, None] * n + nbrs).reshape(-1)
    order = np.argsort(stored)
    stored = stored[order]
    wanted = rows * n + cols
    pos = np.minimum(np.searchsorted(stored, wanted), stored.shape[0] - 1)
    found = stored[pos] == wanted
    return nbr_dist.reshape(-1)[order[pos]], found


def _weights(expanded: sp.csr_matrix, feats, row_max, metric: str, nbrs, nbr_dist) -> sp.csr_matrix:
    """V: exp(-row-normalised distance) over each expansion, each row summing to 1."""
    rows = np.repeat(np.arange(expanded.shape[0]), np.diff(expanded.indptr))
    cols = expanded.indices.astype(np.int64)
    dist, found = _lookup(nbrs, nbr_dist, rows, cols)
    dist = dist.astype(np.float64)
    # Expansions reach a little past the k1 + 1 nearest; the stored neighbours cover
    # almost all of them, and the few others are computed from the features.
    missing = np.flatnonzero(~found)
    if missing.size:
        dist[missing] = _pair_distances(feats, rows[missing], cols[missing], metric)
    w = np.exp(-dist / row_max[rows])
    w /= np.bincount(rows, weights=w, minlength=expanded.shape[0])[rows]
    return sp.csr_matrix((w, expanded.indices.copy(), expanded.indptr.copy()), shape=expanded.shape)


def _jaccard_into(v: sp.csr_matrix, nq: int, out: torch.Tensor, lambda_value: float, progress) -> None:
    """Overwrite `out` (plain query-gallery distances) with the final re-ranked distances."""
    ng = v.shape[0] - nq
    vq = v[:nq].tocsr()
    vg = v[nq:].tocsc()
    col_start = vg.indptr[:-1]
    col_len = np.diff(vg.indptr)
    # How many (shared item, gallery item) pairs each query row will visit.
    q_rows = np.repeat(np.arange(nq), np.diff(vq.indptr))
    work = np.bincount(q_rows, weights=col_len[vq.indices], minlength=nq)
    # Each block also holds dense (rows x gallery) float64 sums: about 32 MB per 4M.
    max_rows = max(1, (1 << 22) // max(1, ng))
    o = out.numpy()
    s = 0
    while s < nq:
        # Grow the block while it stays within both bounds (always at least one row).
        csum = np.cumsum(work[s : s + max_rows])
        e = s + max(1, int(np.searchsorted(csum, TRIPLE_BLOCK, side="right")))
        lo, hi = vq.indptr[s], vq.indptr[e]
        k = vq.indices[lo:hi]
        a = vq.data[lo:hi]
        a_row = q_rows[lo:hi] - s
        n = col_len[k]
        entry = np.repeat(np.arange(k.shape[0]), n)
        pos = np.repeat(col_start[k] - (np.cumsum(n) - n), n) + np.arange(entry.shape[0])
        mins = np.minimum(a[entry], vg.data[pos])
        flat = a_row[entry] * ng + vg.indices[pos]
        shared = np.bincount(flat, weights=mins, minlength=(e - s) * ng).reshape(e - s, ng)
        jaccard = 1.0 - shared / (2.0 - shared)
        block = o[s:e]
        block *= np.float32(lambda_value)
        block += (jaccard * (1.0 - lambda_value)).astype(np.float32)
        if progress is not None:
            progress("re-ranking: jaccard", e, nq)
        s = e


def _neighbours(feats: torch.Tensor, nq: int, metric: str, kk: int, chunk_size, progress):
    """(distances, indices) of each item's kk nearest, each row's largest distance, plain q x g distances.

    One block of rows against all items at a time: no N x N matrix is ever held.
    """
    n = feats.shape[0]
    nbr_dist = np.empty((n, kk), dtype=np.float32)
    nbrs = np.empty((n, kk), dtype=np.int64)
    row_max = np.empty(n, dtype=np.float64)
    plain = torch.empty(nq, n - nq, dtype=torch.float32)
    sq = feats.pow(2).sum(1) if metric == "euclidean" else None
    step = rows_per_block(n, chunk_size)
    buf = torch.empty(min(step, n), n, dtype=torch.float32)
    for s in range(0, n, step):
        e = min(n, s + step)
        block = distance_block(feats[s:e], feats, metric, buf[: e - s], sq)
        row_max[s:e] = block.max(dim=1).values.numpy()
        top = torch.topk(block, kk, dim=1, largest=False, sorted=True)
        nbr_dist[s:e] = top.values.numpy()
        nbrs[s:e] = top.indices.numpy()
        if s < nq:
            plain[s : min(e, nq)] = block[: min(e, nq) - s, nq:]
        if progress is not None:
            progress("re-ranking: neighbours", e, n)
    return nbr_dist, nbrs, row_max, plain


def re_ranking(
    qf,
    gf,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    metric: str = "cosine",
    chunk_size: int | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Re-ranked (num_query, num_gallery) float32 distances; see the module docstring."""
    check_metric(metric)
    _check_params(k1, k2, lambda_value)
    feats, nq = _features(qf, gf, metric)
    n = feats.shape[0]
    # Twice the k1 + 1 nearest are kept, so that the expansions find their distances here.
    kk = min(n, max(2 * (k1 + 1), k2))
    nbr_dist, nbrs, row_max, plain = _neighbours(feats, nq, metric, kk, chunk_size, progress)
    # All distances equal (a collapsed model) would divide by zero.
    row_max = np.maximum(row_max, np.finfo(np.float32).tiny)

    v = _weights(_expansion(nbrs, k1, n), feats, row_max, metric, nbrs, nbr_dist)
    if k2 > 1:
        v = (_membership(nbrs[:, :k2], n).astype(np.float64) @ v) / k2
        v = v.tocsr()
    _jaccard_into(v, nq, plain, lambda_value, progress)
    return plain


def re_ranking_reference(
    qf,
    gf,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    metric: str = "cosine",
) -> torch.Tensor:
    """The same re-ranking written plainly with dense N x N matrices: for tests and comparison."""
    check_metric(metric)
    _check_params(k1, k2, lambda_value)
    feats, nq = _features(qf, gf, metric)
    n = feats.shape[0]
    dist = distance_block(feats, feats, metric, torch.empty(n, n)).numpy().astype(np.float64)
    plain = dist[:nq, nq:].copy()
    normed = dist / np.maximum(dist.max(axis=1, keepdims=True), np.finfo(np.float32).tiny)
    rank = np.argsort(dist, axis=1, kind="stable")

    def reciprocal(i: int, k: int) -> np.ndarray:
        forward = rank[i, : k + 1]
        return np.array([j for j in forward if i in rank[j, : k + 1]], dtype=np.int64)

    v = np.zeros((n, n))
    for i in range(n):
        own = reciprocal(i, k1)
        expansion = set(own.tolist())
        for c in own:
            theirs = reciprocal(int(c), _half(k1))
            if len(np.intersect1d(theirs, own)) > 2.0 / 3.0 * len(theirs):
                expansion.update(theirs.tolist())
        idx = np.array(sorted(expansion), dtype=np.int64)
        w = np.exp(-normed[i, idx])
        v[i, idx] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])

    # The inverted index: which items have weight on column k.
    holders = [np.flatnonzero(v[:, k]) for k in range(n)]
    jaccard = np.empty((nq, n - nq))
    for q in range(nq):
        shared = np.zeros(n)
        for k in np.flatnonzero(v[q]):
            shared[holders[k]] += np.minimum(v[q, k], v[holders[k], k])
        jaccard[q] = (1.0 - shared / (2.0 - shared))[nq:]
    final = jaccard * (1.0 - lambda_value) + plain * lambda_value
    return torch.from_numpy(final.astype(np.float32))
