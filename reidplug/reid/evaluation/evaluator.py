"""Test-time feature extraction and FastReID's evaluation: AQE, distance or re-ranking, then CMC/mAP/mINP."""

from __future__ import annotations

import contextlib
from typing import Iterable, Mapping

import numpy as np
import torch

from reidplug.core.errors import UserError
from reidplug.core.schema import TestCfg
from reidplug.reid.evaluation.distance import as_features, compute_distance
from reidplug.reid.evaluation.progress import Progress
from reidplug.reid.evaluation.query_expansion import average_query_expansion
from reidplug.reid.evaluation.rank import evaluate_rank
from reidplug.reid.evaluation.reranking import re_ranking

RESULT_KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP", "score")


class NonFiniteFeatures(UserError):
    """The model's features hold NaN or infinities: there is nothing to rank (a diverged model)."""


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    # fp16 where a GradScaler-style recipe is the norm, bf16 elsewhere (the CPU has no fast fp16).
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _ids(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.int64).reshape(-1)


def extract_features(
    model: torch.nn.Module,
    loader: Iterable[Mapping],
    device,
    flip: bool = False,
    amp: bool = False,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(features [N, D] float32 on the CPU, pids [N], camids [N]) of every batch of `loader`.

    Batches are dicts with "images" (float [B, 3, H, W] in 0..255), "targets" (pids)
    and "camids". The model runs in eval mode without gradients and is put back in
    its previous mode. With `flip`, a feature is the mean of the image's and its
    horizontal mirror's.
    """
    device = torch.device(device)
    total = len(loader) if hasattr(loader, "__len__") else 0
    feats, pids, camids = [], [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _autocast(device, amp):
            for i, batch in enumerate(loader):
                images = batch["images"].to(device, non_blocking=True)
                out = model(images).float()
                if flip:
                    out = (out + model(torch.flip(images, dims=[3])).float()) / 2
                feats.append(out.cpu())
                pids.append(_ids(batch["targets"]))
                camids.append(_ids(batch["camids"]))
                if progress is not None:
                    progress("extracting features", i + 1, max(total, i + 1))
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("the test loader yielded no batch")
    return torch.cat(feats), np.concatenate(pids), np.concatenate(camids)


def _test_cfg(cfg) -> TestCfg:
    if cfg is None:
        return TestCfg()
    return cfg.TEST if hasattr(cfg, "TEST") else cfg


def evaluate(
    features,
    pids,
    camids,
    num_query: int,
    cfg=None,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Rank-1/5/10, mAP, mINP (percent) and score = (mAP + Rank-1) / 2 for features laid out queries first.

    `cfg` is the whole config or its TEST section (defaults when None): AQE, then the
    metric's distance or, with RERANK, the re-ranked one.
    """
    test = _test_cfg(cfg)
    feats = as_features(features)
    pids, camids = _ids(pids), _ids(camids)
    n = feats.shape[0]
    bad = int((~torch.isfinite(feats).all(dim=1)).sum()) if n else 0
    if bad:
        raise NonFiniteFeatures(
            f"evaluation: {bad} of {n} features are not finite (NaN or inf), so the model cannot be "
            "ranked; its weights or batch-norm statistics diverged (lower SOLVER.BASE_LR, or see SOLVER.NAN_POLICY)"
        )
    if pids.shape[0] != n or camids.shape[0] != n:
        raise ValueError(f"{n} features but {pids.shape[0]} pids and {camids.shape[0]} camids")
    if not 0 < num_query < n:
        raise ValueError(f"num_query must be in 1..{n - 1}, got {num_query}")
    qf, gf = feats[:num_query], feats[num_query:]
    if test.AQE.ENABLED:
        qf, gf = average_query_expansion(qf, gf, test.AQE.QE_TIME, test.AQE.QE_K, test.AQE.ALPHA)
    if test.RERANK.ENABLED:
        rr = test.RERANK
        dist = re_ranking(qf, gf, rr.K1, rr.K2, rr.LAMBDA, metric=test.METRIC, progress=progress)
    else:
        dist = compute_distance(qf, gf, test.METRIC)
    r = evaluate_rank(dist, pids[:num_query], pids[num_query:], camids[:num_query], camids[num_query:])
    out = {key: float(r[key]) for key in ("rank1", "rank5", "rank10", "mAP", "mINP")}
    out["score"] = (out["mAP"] + out["rank1"]) / 2.0
    return out


class ReidEvaluator:
    """Evaluation of one test set (queries first, then gallery) under a config's TEST section."""

    def __init__(self, cfg, num_query: int):
        self.test = _test_cfg(cfg)
        self.num_query = num_query

    def evaluate(self, features, pids, camids, progress: Progress | None = None) -> dict[str, float]:
        """The metrics of already extracted features."""
        return evaluate(features, pids, camids, self.num_query, self.test, progress)

    def __call__(self, model, loader, device, amp: bool = False, progress: Progress | None = None) -> dict[str, float]:
        """Extract features (flipped too with TEST.FLIP.ENABLED) and evaluate them.

        In a data-parallel run each rank's loader holds its contiguous share of the test
        images: the shares are gathered in rank order, rank 0 ranks the whole set, and
        every rank gets its metrics (or its error), the same as one process would.
        """
        from reidplug.reid.engine import distributed as D

        feats, pids, camids = extract_features(model, loader, device, self.test.FLIP.ENABLED, amp, progress)
        if D.world_size() == 1:
            return self.evaluate(feats, pids, camids, progress)
        shares = D.gather_objects((feats.numpy(), pids, camids))
        outcome = None
        if D.is_main():
            try:
                feats, pids, camids = (np.concatenate(parts) for parts in zip(*shares))
                outcome = ("ok", self.evaluate(torch.from_numpy(feats), pids, camids, progress))
            except UserError as exc:
                outcome = ("error", exc)
        outcome = D.broadcast_object(outcome)
        if outcome[0] == "error":
            raise outcome[1]
        return outcome[1]


_COLUMNS = (
    ("Rank-1", "rank1"),
    ("Rank-5", "rank5"),
    ("Rank-10", "rank10"),
    ("mAP", "mAP"),
    ("mINP", "mINP"),
    ("metric", "score"),
)


def format_table(results: Mapping[str, float], dataset_name: str) -> str:
    """A markdown table of one dataset's results, in the columns FastReID prints."""
    header = ["Dataset", *(title for title, _ in _COLUMNS)]
    row = [dataset_name, *(f"{results[key]:.2f}" for _, key in _COLUMNS)]
    widths = [max(len(h), len(v)) for h, v in zip(header, row)]
    rule = [":" + "-" * (widths[0] - 1)] + ["-" * (w - 1) + ":" for w in widths[1:]]

    def line(cells):
        padded = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "| " + " | ".join(padded) + " |"

    return "\n".join([line(header), line(rule), line(row)])
