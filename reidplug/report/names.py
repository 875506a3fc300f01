"""What the report calls things: short parameter names, scheduler names, the Re-ID metrics' definitions."""

from __future__ import annotations

SCHEDULERS = {"asha": "ASHA", "hyperband": "Hyperband", "bohb": "BOHB", "bohb_async": "BOHB", "pbt": "PBT",
              "fifo": "FIFO"}

# What ReIDTrainable reports: percentages under the Market-1501 protocol, where the gallery images of
# the query's person taken by the query's camera are left out of its ranking.
REID_METRICS = {
    "score": "(mAP + Rank-1) / 2",
    "rank1": "Rank-1, the share of queries whose nearest gallery image shows the same person (%)",
    "rank5": "Rank-5, the share of queries with the same person among the 5 nearest gallery images (%)",
    "rank10": "Rank-10, the share of queries with the same person among the 10 nearest gallery images (%)",
    "mAP": "the mean over queries of the average precision of the ranked gallery (%)",
    "mINP": "the mean over queries of the number of matches over the rank of the last match (%)",
}


def short_names(keys) -> dict[str, str]:
    """Each dotted key by its shortest tail of components that no other key ends with.

    SOLVER.BASE_LR becomes BASE_LR; MODEL.LOSSES.TRI.MARGIN and MODEL.HEADS.MARGIN
    become TRI.MARGIN and HEADS.MARGIN.
    """
    keys = list(dict.fromkeys(str(k) for k in keys))
    parts = {k: k.split(".") for k in keys}
    out = {}
    for key in keys:
        mine = parts[key]
        for n in range(1, len(mine) + 1):
            tail = mine[-n:]
            if not any(other != key and parts[other][-n:] == tail for other in keys):
                break
        out[key] = ".".join(tail)
    return out


def wrap(name: str, width: int = 14) -> str:
    """A name broken into lines of about `width` characters after its dots and underscores."""
    if len(name) <= width:
        return name
    pieces, word = [], ""
    for ch in name:
        word += ch
        if ch in "._":
            pieces.append(word)
            word = ""
    if word:
        pieces.append(word)
    lines, line = [], ""
    for piece in pieces:
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
    lines.append(line)
    return "\n".join(lines)


def scheduler(name: str | None) -> str:
    return SCHEDULERS.get(str(name or ""), str(name or "the scheduler"))
