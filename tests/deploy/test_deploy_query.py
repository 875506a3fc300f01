"""`reidplug query`: rank lists as PNG rows and JSON, with and without identities in the file names."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from deploy_helpers import cli, trained_model
from PIL import Image

import reidplug
from reidplug.report.reid_vis import BORDER, GREEN, RED, UNKNOWN, cell_box

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_model(tmp_path_factory)


def frame(png, k):
    x0, y0, _, _ = cell_box(k)
    return Image.open(png).convert("RGB").getpixel((x0 + BORDER // 2, y0 + BORDER // 2))


def name_ids(path):
    pid, cam = path.split("/")[-1].split("_")[:2]
    return int(pid), int(cam[1]) - 1


def test_query_folder_against_gallery_follows_the_market_protocol(trained, capsys, tmp_path):
    out = tmp_path / "ranks"
    code, stdout, err = cli(capsys, *trained.args("query", "--query", trained.query, "--gallery", trained.gallery,
                                                  "--topk", 5, "--output", out, "-q"))
    assert code == 0, err
    doc = json.loads((out / "rank_lists.json").read_text())
    queries = sorted(trained.query.iterdir())
    assert doc["ids_known"] and not doc["rerank"] and doc["topk"] == 5 and len(doc["queries"]) == len(queries)

    # The distances are those of the extracted features, nearest first.
    extractor = reidplug.FeatureExtractor(trained.config, trained.dir)
    gallery = [str(p) for p in sorted(trained.gallery.iterdir()) if not p.name.startswith("-1_")]
    qf, gf = extractor([str(p) for p in queries]), extractor(gallery)
    dist = 1 - torch.nn.functional.normalize(qf) @ torch.nn.functional.normalize(gf).T
    for q in doc["queries"]:
        qi = [str(p) for p in queries].index(q["path"])
        assert (q["pid"], q["camid"]) == name_ids(q["path"])
        matches = q["matches"]
        assert len(matches) == 5 and [m["rank"] for m in matches] == [1, 2, 3, 4, 5]
        assert [m["distance"] for m in matches] == sorted(m["distance"] for m in matches)
        for m in matches:
            assert m["distance"] == pytest.approx(float(dist[qi, gallery.index(m["path"])]), abs=1e-4)
            assert (m["pid"], m["camid"]) == name_ids(m["path"])
            assert m["correct"] == (m["pid"] == q["pid"])
            assert not (m["pid"] == q["pid"] and m["camid"] == q["camid"])  # same id, same camera: left out
        # Nothing nearer was skipped, apart from what the protocol leaves out.
        kept = [g for g in range(len(gallery)) if name_ids(gallery[g]) != (q["pid"], q["camid"])]
        assert matches[-1]["distance"] <= float(dist[qi, kept].sort().values[4]) + 1e-4
        png = out / q["image"]
        assert Image.open(png).size[0] == cell_box(6)[0]  # room for the query and 5 matches, no more
        for k, m in enumerate(matches, start=1):
            assert frame(png, k) == (GREEN if m["correct"] else RED)
    assert f"{len(queries)} queries" in stdout and "rank-1 correct for" in stdout


def test_rerank_uses_the_k_reciprocal_distances(trained, capsys, tmp_path):
    from reidplug.reid.evaluation.reranking import re_ranking

    query = sorted(trained.query.iterdir())[0]
    out = tmp_path / "rr"
    code, _, err = cli(capsys, *trained.args("query", "--query", query, "--gallery", trained.gallery, "--rerank",
                                             "-o", out, "-q"))
    assert code == 0, err
    doc = json.loads((out / "rank_lists.json").read_text())
    assert doc["rerank"] and len(doc["queries"]) == 1 and len(doc["queries"][0]["matches"]) == 10
    extractor = reidplug.FeatureExtractor(trained.config, trained.dir)
    gallery = [str(p) for p in sorted(trained.gallery.iterdir()) if not p.name.startswith("-1_")]
    dist = re_ranking(extractor(str(query)), extractor(gallery), 20, 6, 0.3)
    for m in doc["queries"][0]["matches"]:
        assert m["distance"] == pytest.approx(float(dist[0, gallery.index(m["path"])]), abs=1e-4)


def test_names_without_ids_rank_the_whole_gallery_unmarked(trained, capsys, tmp_path):
    (tmp_path / "gallery").mkdir()
    for i, p in enumerate(sorted(trained.gallery.iterdir())[:12]):
        shutil.copy(p, tmp_path / "gallery" / f"cam_frame{i:03d}.jpg")
    query = tmp_path / "someone.png"
    Image.open(sorted(trained.query.iterdir())[0]).save(query)
    out = tmp_path / "ranks"
    code, stdout, err = cli(capsys, *trained.args("query", "--query", query, "--gallery", tmp_path / "gallery",
                                                  "--topk", 3, "-o", out, "-q"))
    assert code == 0, err
    doc = json.loads((out / "rank_lists.json").read_text())
    q = doc["queries"][0]
    assert not doc["ids_known"] and q["pid"] is None and "ap" not in q
    assert all(m["correct"] is None and m["pid"] is None for m in q["matches"])
    png = out / q["image"]
    assert [frame(png, k) for k in (1, 2, 3)] == [UNKNOWN] * 3
    assert "1 query against 12 gallery images" in stdout and "rank-1" not in stdout
    dists = [m["distance"] for m in q["matches"]]
    assert dists == sorted(dists) and np.isfinite(dists).all()
