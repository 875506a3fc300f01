"""Re-ID visuals: rank lists (a query and its top-k gallery matches) and CMC curves.

The rank lists follow the Market-1501 protocol: gallery images of the query's
identity taken by the query's camera are left out of its ranking.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

CELL_W, CELL_H = 64, 128  # the size of each image in a rank list
BORDER = 4
GAP = 6
LABEL_H = 28
TITLE_H = 22
GREEN = (0, 170, 0)
RED = (220, 20, 20)
QUERY = (40, 90, 200)
UNKNOWN = (150, 150, 150)  # a match whose identity is not known
BACKGROUND = (255, 255, 255)


def rank_list(dist_row, q_pid, q_camid, g_pids, g_camids, topk: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The gallery indices ranked for one query (nearest first) and whether each is a true match."""
    dist_row = np.asarray(dist_row, dtype=float)
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    order = np.argsort(dist_row, kind="stable")
    keep = ~((g_pids[order] == q_pid) & (g_camids[order] == q_camid))
    order = order[keep]
    matches = g_pids[order] == q_pid
    return order[:topk], matches[:topk]


def average_precision(dist_row, q_pid, q_camid, g_pids, g_camids) -> float | None:
    """AP of one query over its whole valid ranking; None when the gallery holds no true match."""
    order, matches = rank_list(dist_row, q_pid, q_camid, g_pids, g_camids, topk=len(g_pids))
    if not matches.any():
        return None
    hits = np.cumsum(matches)
    precision = hits / np.arange(1, len(matches) + 1)
    return float((precision * matches).sum() / matches.sum())


def _load(path, size=(CELL_W, CELL_H)):
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB").resize(size)
    except (OSError, ValueError):
        # A missing or unreadable image is drawn as a grey tile rather than stopping the whole set.
        return Image.new("RGB", size, (160, 160, 160))


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def draw_rank_list(distmat, qi: int, q_paths, g_paths, q_pids, g_pids, q_camids, g_camids, out_path,
                   topk: int = 10) -> Path:
    """One query's rank list as a PNG: the query (blue), then its top-k (green correct, red wrong)."""
    distmat = np.asarray(distmat)
    q_pid, q_camid = q_pids[qi], q_camids[qi]
    order, matches = rank_list(distmat[qi], q_pid, q_camid, g_pids, g_camids, topk)
    ap = average_precision(distmat[qi], q_pid, q_camid, g_pids, g_camids)
    ap_text = f"AP {ap:.2f}" if ap is not None else "no true match in the gallery"
    first = "correct" if len(matches) and matches[0] else "wrong"
    title = f"query {qi}: id {q_pid}, cam {q_camid} | rank-1 {first} | {ap_text}"
    items = [(g_paths[gi], GREEN if ok else RED, f"#{rank} id {g_pids[gi]}\ncam {g_camids[gi]}")
             for rank, (gi, ok) in enumerate(zip(order, matches), start=1)]
    return draw_row(q_paths[qi], items, out_path, title=title, cells=1 + topk)


def draw_row(query_path, items: Sequence[tuple], out_path, *, title: str, cells: int | None = None) -> Path:
    """A PNG row: the query image framed in blue, then `items` of (image path, frame colour, label) in order.

    `cells` (the query included) sets the width; by default it fits the items.
    """
    from PIL import Image, ImageDraw

    cells = cells if cells is not None else 1 + len(items)
    width = GAP + cells * (CELL_W + 2 * BORDER + GAP) + GAP  # an extra gap after the query
    height = TITLE_H + CELL_H + 2 * BORDER + LABEL_H
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    small, big = _font(10), _font(12)
    draw.text((GAP, 4), title, fill=(0, 0, 0), font=big)

    def cell(k: int, image, color, label: str) -> None:
        x0, y0, x1, y1 = cell_box(k)
        draw.rectangle([x0, y0, x1, y1], fill=color)
        canvas.paste(image, (x0 + BORDER, y0 + BORDER))
        draw.text((x0, y1 + 2), label, fill=(0, 0, 0), font=small)

    cell(0, _load(query_path), QUERY, "query")
    for k, (path, color, label) in enumerate(items, start=1):
        cell(k, _load(path), color, label)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path)
    return out_path


def cell_box(k: int) -> tuple[int, int, int, int]:
    """The border box (x0, y0, x1, y1) of cell k of a rank list (0 is the query)."""
    x = GAP + k * (CELL_W + 2 * BORDER + GAP) + (GAP if k else 0)
    return x, TITLE_H, x + CELL_W + 2 * BORDER - 1, TITLE_H + CELL_H + 2 * BORDER - 1


def draw_rank_lists(distmat, q_paths: Sequence, g_paths: Sequence, q_pids, g_pids, q_camids, g_camids, out_dir,
                    num_queries: int = 10, topk: int = 10) -> list[Path]:
    """Rank lists of `num_queries` queries spread evenly over the query set, one PNG each."""
    distmat = np.asarray(distmat)
    nq = distmat.shape[0]
    if nq == 0 or num_queries <= 0:
        return []
    picks = sorted(set(np.linspace(0, nq - 1, min(num_queries, nq)).round().astype(int).tolist()))
    out_dir = Path(out_dir)
    paths = []
    for qi in picks:
        name = f"rank_{qi:05d}_{Path(str(q_paths[qi])).stem}.png"
        paths.append(draw_rank_list(distmat, qi, q_paths, g_paths, q_pids, g_pids, q_camids, g_camids,
                                    out_dir / name, topk=min(topk, distmat.shape[1])))
    return paths


def cmc_points(cmc, max_rank: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """The ranks (from 1) and matching rates in % that plot_cmc draws."""
    cmc = np.asarray(cmc, dtype=float).ravel()
    if cmc.size == 0:
        raise ValueError("an empty CMC curve")
    values = cmc * 100.0 if cmc.max() <= 1.0 else cmc
    values = values[:max_rank]
    return np.arange(1, len(values) + 1), values


def plot_cmc(cmc, out_path, label: str = "", max_rank: int = 50, title: str = "CMC curve") -> Path:
    """The CMC curve (rank-k accuracy, in % when given as fractions) with rank 1, 5 and 10 marked."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    ranks, values = cmc_points(cmc, max_rank)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot(ranks, values, marker="o" if len(values) <= 20 else None, ms=3, lw=1.8, label=label or None)
    for r in (1, 5, 10):
        if r <= len(values):
            ax.plot(r, values[r - 1], "o", color="black", ms=5)
            ax.annotate(f"rank-{r}: {values[r - 1]:.1f}%", (r, values[r - 1]), xytext=(6, -12),
                        textcoords="offset points", fontsize=8)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_xlim(0.5, len(values) + 0.5)
    ax.set_ylim(max(0.0, min(values) - 5.0), 100.5)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if label:
        ax.legend(loc="lower right")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out_path
