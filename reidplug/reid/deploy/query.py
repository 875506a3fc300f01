"""`reidplug query`: the gallery images nearest to each query image, as PNG rows and JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from reidplug.core.errors import UserError
from reidplug.reid.deploy.inputs import collect_images, ids_from_names, is_junk
from reidplug.reid.deploy.model import deploy_config
from reidplug.reid.deploy.outputs import atomic_path, check_writable

JSON_NAME = "rank_lists.json"


def query_distances(qf, gf, test_cfg, *, rerank: bool):
    """(num_query, num_gallery) distances as `reidplug eval` ranks: AQE if on, then the metric or re-ranking."""
    from reidplug.reid.evaluation.distance import compute_distance
    from reidplug.reid.evaluation.query_expansion import average_query_expansion
    from reidplug.reid.evaluation.reranking import re_ranking

    if test_cfg.AQE.ENABLED:
        aqe = test_cfg.AQE
        qf, gf = average_query_expansion(qf, gf, aqe.QE_TIME, aqe.QE_K, aqe.ALPHA)
    if rerank:
        rr = test_cfg.RERANK
        return re_ranking(qf, gf, rr.K1, rr.K2, rr.LAMBDA, metric=test_cfg.METRIC).numpy()
    return compute_distance(qf, gf, test_cfg.METRIC).numpy()


def rank_lists(dist: np.ndarray, topk: int, q_ids=None, g_ids=None) -> list[dict]:
    """Each query's top-k gallery indices with distances; with ids, whether each is right and the query's AP.

    With ids the Market-1501 protocol applies, as in `reidplug eval`: gallery
    images of the query's identity from the query's camera are left out.
    """
    from reidplug.report.reid_vis import average_precision, rank_list

    out = []
    for qi in range(dist.shape[0]):
        row = dist[qi]
        if q_ids is None or g_ids is None:
            order, matches, ap = np.argsort(row, kind="stable")[:topk], None, None
        else:
            q_pid, q_cam = q_ids[0][qi], q_ids[1][qi]
            order, matches = rank_list(row, q_pid, q_cam, g_ids[0], g_ids[1], topk)
            ap = average_precision(row, q_pid, q_cam, g_ids[0], g_ids[1])
        out.append({"order": [int(i) for i in order], "distances": [float(row[i]) for i in order],
                    "correct": None if matches is None else [bool(m) for m in matches], "ap": ap})
    return out


def run_query(config, overrides: Sequence, query, gallery, output=None, *, topk: int = 10, rerank: bool | None = None,
              flip: bool | None = None, batch_size: int | None = None, progress: bool = True) -> dict:
    """Rank `gallery` for every image of `query`; write one PNG per query and rank_lists.json into `output`.

    `output` defaults to OUTPUT_DIR/query. Inputs, output and weights are all
    checked before any image is read. Returns a summary (paths, counts, rank-1 hits).
    """
    from reidplug.core import progress as progress_bars
    from reidplug.reid.deploy.extract import FeatureExtractor
    from reidplug.report.reid_vis import GREEN, RED, UNKNOWN, draw_row

    if topk < 1:
        raise UserError(f"--topk: must be at least 1, got {topk}")
    cfg = deploy_config(config, overrides)
    q_paths = collect_images(query, option="--query")
    g_paths = collect_images(gallery, option="--gallery")
    out = check_writable(output if output is not None else Path(cfg.OUTPUT_DIR) / "query", option="--output",
                         folder=True)
    q_ids, g_ids = ids_from_names(q_paths), ids_from_names(g_paths)
    if q_ids is not None and g_ids is not None:
        keep = ~np.vectorize(is_junk)(g_ids[0])
        g_paths = [p for p, k in zip(g_paths, keep) if k]
        g_ids = (g_ids[0][keep], g_ids[1][keep])
        if not g_paths:
            raise UserError(f"{gallery}: every gallery image is junk (id -1) (--gallery)")
    else:
        q_ids = g_ids = None
    rerank = cfg.TEST.RERANK.ENABLED if rerank is None else bool(rerank)

    extractor = FeatureExtractor(cfg, batch_size=batch_size, flip=flip, progress=progress)
    dist = query_distances(extractor(q_paths), extractor(g_paths), cfg.TEST, rerank=rerank)
    ranked = rank_lists(dist, min(topk, len(g_paths)), q_ids, g_ids)

    queries = []
    out.mkdir(parents=True, exist_ok=True)
    steps = progress_bars.track(list(enumerate(ranked)), "drawing rank lists") if progress else enumerate(ranked)
    for qi, r in steps:
        png = f"rank_{qi:05d}_{Path(q_paths[qi]).stem}.png"
        entry = {"path": q_paths[qi], "pid": None, "camid": None, "image": png}
        title = Path(q_paths[qi]).name
        if q_ids is not None:
            entry.update(pid=int(q_ids[0][qi]), camid=int(q_ids[1][qi]), ap=r["ap"],
                         rank1_correct=bool(r["correct"][0]) if r["correct"] else False)
            ap = f"AP {r['ap']:.2f}" if r["ap"] is not None else "no true match in the gallery"
            title += (f" | id {entry['pid']}, cam {entry['camid']} | rank-1 "
                      f"{'correct' if entry['rank1_correct'] else 'wrong'} | {ap}")
        title += f" | {cfg.TEST.METRIC}{', re-ranked' if rerank else ''} distance"
        items, matches = [], []
        for rank, (gi, d) in enumerate(zip(r["order"], r["distances"]), start=1):
            match = {"rank": rank, "path": g_paths[gi], "distance": round(d, 6), "pid": None, "camid": None,
                     "correct": None}
            label = f"#{rank} d={d:.3f}"
            color = UNKNOWN
            if g_ids is not None:
                ok = r["correct"][rank - 1]
                match.update(pid=int(g_ids[0][gi]), camid=int(g_ids[1][gi]), correct=ok)
                label += f"\nid {match['pid']} cam {match['camid']}"
                color = GREEN if ok else RED
            matches.append(match)
            items.append((g_paths[gi], color, label))
        entry["matches"] = matches
        draw_row(q_paths[qi], items, out / png, title=title, cells=1 + topk)
        queries.append(entry)

    doc = {
        "weights": extractor.weights,
        "metric": cfg.TEST.METRIC,
        "rerank": rerank,
        "aqe": cfg.TEST.AQE.ENABLED,
        "flip": extractor.flip,
        "topk": topk,
        "ids_known": q_ids is not None,
        "protocol": ("Market-1501: junk (id -1) and same-identity same-camera gallery images left out"
                     if q_ids is not None else "every gallery image ranked"),
        "gallery": {"source": os.fspath(gallery), "images": len(g_paths)},
        "queries": queries,
    }
    json_path = out / JSON_NAME
    with atomic_path(json_path, option="--output") as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
    hits = sum(q.get("rank1_correct", False) for q in queries) if q_ids is not None else None
    return {"output": str(out), "json": str(json_path), "queries": len(queries), "gallery": len(g_paths),
            "images": [str(out / q["image"]) for q in queries], "rank1_hits": hits, "rerank": rerank}
