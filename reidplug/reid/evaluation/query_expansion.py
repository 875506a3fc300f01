"""Average query expansion (AQE), as FastReID's TEST.AQE applies it to queries and gallery alike."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reidplug.reid.evaluation.distance import BLOCK_ELEMENTS, as_features, matmul_into, rows_per_block


def average_query_expansion(
    qf,
    gf,
    qe_times: int = 1,
    qe_k: int = 5,
    alpha: float = 3.0,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each query and gallery feature by the weighted mean of its `qe_k` nearest features.

    One round: new(i) = mean over the qe_k items j most cosine-similar to i (i itself
    included) of sim(i, j)^alpha * f(j); `qe_times` rounds, each on the previous
    round's features. A negative similarity weighs zero (rather than flipping its
    feature, or giving NaN for a fractional alpha).
    """
    if qe_times < 0 or qe_k < 1:
        raise ValueError(f"need qe_times >= 0 and qe_k >= 1, got qe_times={qe_times}, qe_k={qe_k}")
    q, g = as_features(qf), as_features(gf)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query and gallery dims differ: {q.shape[1]} vs {g.shape[1]}")
    feats = torch.cat([q, g.to(q.device)])
    n, dim = feats.shape
    k = min(qe_k, n)
    # The gathered neighbour features (rows x k x dim) stay within one block too.
    step = min(rows_per_block(n, chunk_size), max(1, BLOCK_ELEMENTS // (k * dim)))
    buf = torch.empty(min(step, n), n, dtype=torch.float32, device=feats.device)
    for _ in range(qe_times):
        normed = F.normalize(feats, p=2, dim=1)
        expanded = torch.empty_like(feats)
        for s in range(0, n, step):
            e = min(n, s + step)
            sims = matmul_into(normed[s:e], normed, buf[: e - s])
            top, idx = torch.topk(sims, k, dim=1)
            weights = top.clamp(min=0.0).pow(alpha)
            expanded[s:e] = (weights.unsqueeze(2) * feats[idx]).mean(dim=1)
        feats = expanded
    return feats[: q.shape[0]], feats[q.shape[0] :]
