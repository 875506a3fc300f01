"""Query-by-gallery distance matrices: cosine (1 - cos) and squared Euclidean."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

Metric = Literal["cosine", "euclidean"]
METRICS = ("cosine", "euclidean")

# A block of about 16M floats (64 MB) bounds the temporaries of every chunked pass.
BLOCK_ELEMENTS = 1 << 24


def as_features(x) -> torch.Tensor:
    """A 2-D float32 tensor from a tensor or array of features."""
    t = torch.as_tensor(x).detach()
    if t.dim() != 2:
        raise ValueError(f"features must be 2-D (num, dim), got shape {tuple(t.shape)}")
    return t.float().contiguous()


def check_metric(metric: str) -> None:
    """Raise ValueError for a metric other than cosine or euclidean."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")


def rows_per_block(width: int, chunk_size: int | None = None) -> int:
    """How many rows of `width` columns make one bounded block (or `chunk_size` if given)."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        return int(chunk_size)
    return max(1, BLOCK_ELEMENTS // max(1, width))


def prepare(x: torch.Tensor, metric: str) -> torch.Tensor:
    """Features as the distance kernel wants them: L2-normalised for cosine, as they are otherwise."""
    return F.normalize(x, p=2, dim=1) if metric == "cosine" else x


def matmul_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = a @ b.T for 2-D float32 tensors, `out` contiguous."""
    if a.device.type == "cpu":
        # torch's CPU sgemm (MKL) ran at about half the speed of numpy's OpenBLAS on the
        # AMD machines this was measured on; both are plain float32 products.
        np.matmul(a.numpy(), b.numpy().T, out=out.numpy())
    else:
        torch.mm(a, b.t(), out=out)
    return out


def distance_block(
    a: torch.Tensor,
    b: torch.Tensor,
    metric: str,
    out: torch.Tensor,
    b_sqnorm: torch.Tensor | None = None,
) -> torch.Tensor:
    """Write the distances between rows of prepared `a` and `b` into contiguous `out`."""
    if b_sqnorm is None and metric == "euclidean":
        b_sqnorm = b.pow(2).sum(1)
    matmul_into(a, b, out)
    if a.device.type != "cpu":
        if metric == "cosine":
            out.neg_().add_(1.0)
        else:
            out.mul_(-2.0).add_(a.pow(2).sum(1, keepdim=True)).add_(b_sqnorm.unsqueeze(0))
            out.clamp_(min=0.0)
        return out
    # On the CPU the element-wise passes stay in numpy: torch's worker threads spinning
    # between calls would compete with OpenBLAS's for the cores.
    o = out.numpy()
    if metric == "cosine":
        np.subtract(np.float32(1.0), o, out=o)
    else:
        o *= np.float32(-2.0)
        o += a.pow(2).sum(1).numpy()[:, None]
        o += b_sqnorm.numpy()[None, :]
        np.maximum(o, np.float32(0.0), out=o)
    return out


def compute_distance(
    qf,
    gf,
    metric: Metric = "cosine",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """The (num_query, num_gallery) float32 distance matrix, computed a block of query rows at a time.

    cosine: 1 - cos on L2-normalised features. euclidean: the squared Euclidean
    distance, as FastReID reports it. The result lives on the features' device.
    """
    check_metric(metric)
    q, g = as_features(qf), as_features(gf)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query and gallery dims differ: {q.shape[1]} vs {g.shape[1]}")
    g = g.to(q.device)
    q, g = prepare(q, metric), prepare(g, metric)
    g_sq = g.pow(2).sum(1) if metric == "euclidean" else None
    out = torch.empty(q.shape[0], g.shape[0], dtype=torch.float32, device=q.device)
    step = rows_per_block(g.shape[0], chunk_size)
    for s in range(0, q.shape[0], step):
        distance_block(q[s : s + step], g, metric, out[s : s + step], g_sq)
    return out
