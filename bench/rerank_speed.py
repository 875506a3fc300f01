"""k-reciprocal re-ranking at Market-1501 size: time and peak memory, against the dense reference.

    python bench/rerank_speed.py                          # Market size + reference at 5/10/15 %
    python bench/rerank_speed.py --scales 0.05 0.1 --level early

Each measurement runs in a fresh process, so that its peak RSS (ru_maxrss) is its
own; "before" is the process's RSS once the features exist, "peak" its maximum.
The dense reference holds several N x N matrices (N = queries + gallery), too big
for this machine at Market size; it runs on scaled-down splits and is
extrapolated from there (time by the power of N fitted to its runs, memory by the
bytes per N^2 its largest run added).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_speed import NUM_GALLERY, NUM_QUERY, machine, market_like  # noqa: E402

# The dense reference's N x N arrays: the distances, their row-normalised copy (float64
# each), the full argsort (int64), V and V after query expansion (float64 each).
REFERENCE_NN_BYTES = 5 * 8


def _rss_gb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def child(impl: str, scale: float, level: str, compare: bool) -> dict:
    """One measurement (run in its own process); returns what the parent prints."""
    from reidplug.reid.evaluation import compute_distance, evaluate_rank, re_ranking, re_ranking_reference

    qf, gf, qp, gp, qc, gc = market_like(level, scale=scale)
    before = _rss_gb()
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    c0 = time.process_time()

    def progress(stage: str, done: int, total: int) -> None:
        if done == total:
            stages[stage] = time.perf_counter() - t0

    fn = re_ranking if impl == "fast" else re_ranking_reference
    kwargs = {"progress": progress} if impl == "fast" else {}
    dist = fn(qf, gf, **kwargs)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    peak = _rss_gb()
    out = {
        "impl": impl,
        "scale": scale,
        "nq": qf.shape[0],
        "ng": gf.shape[0],
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "before_gb": before,
        "peak_gb": peak,
        "stages": stages,
        "mAP_plain": evaluate_rank(compute_distance(qf, gf), qp, gp, qc, gc)["mAP"],
        "mAP_rerank": evaluate_rank(dist, qp, gp, qc, gc)["mAP"],
    }
    if compare:
        other = re_ranking_reference(qf, gf) if impl == "fast" else re_ranking(qf, gf)
        out["max_abs_diff"] = float((dist - other).abs().max())
    return out


def run_child(impl: str, scale: float, level: str, compare: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", impl, "--scales", str(scale), "--level", level]
    if compare:
        cmd.append("--compare")
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", nargs="+", type=float, default=[0.05, 0.1, 0.15], help="reference split sizes")
    ap.add_argument("--level", default="trained", choices=["trained", "early", "random"])
    ap.add_argument("--no-full", action="store_true", help="skip the Market-size run")
    ap.add_argument("--child", choices=["fast", "reference"], help=argparse.SUPPRESS)
    ap.add_argument("--compare", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.scales[0], args.level, args.compare)))
        return

    print(f"machine: {machine()}")
    rows = []
    for scale in args.scales:
        ref = run_child("reference", scale, args.level, compare=True)
        fast = run_child("fast", scale, args.level, compare=False)
        rows += [ref, fast]
        print(f"  scale {scale}: reference {ref['seconds']:.1f} s, fast {fast['seconds']:.2f} s", flush=True)
    full = None if args.no_full else run_child("fast", 1.0, args.level, compare=False)

    header = (
        "impl",
        "N",
        "queries x gallery",
        "seconds",
        "CPU s",
        "RSS before GB",
        "peak GB",
        "mAP plain",
        "mAP re-ranked",
        "max |fast-ref|",
    )
    table = []
    for r in rows + ([full] if full else []):
        table.append(
            (
                r["impl"],
                str(r["nq"] + r["ng"]),
                f"{r['nq']} x {r['ng']}",
                f"{r['seconds']:.2f}",
                f"{r['cpu_seconds']:.1f}",
                f"{r['before_gb']:.2f}",
                f"{r['peak_gb']:.2f}",
                f"{r['mAP_plain']:.2f}",
                f"{r['mAP_rerank']:.2f}",
                f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else "-",
            )
        )

    # Reference at Market size: time by the power of N fitted (least squares, log-log) to
    # all its runs; memory by the bytes per N^2 its largest run added, and by its arrays.
    refs = [r for r in rows if r["impl"] == "reference"]
    n_full = NUM_QUERY + NUM_GALLERY
    if len(refs) >= 2:
        sizes = np.array([r["nq"] + r["ng"] for r in refs], dtype=float)
        secs = np.array([r["seconds"] for r in refs])
        power, _ = np.polyfit(np.log(sizes), np.log(secs), 1)
        t_full = secs[-1] * (n_full / sizes[-1]) ** power
        t_quad = secs[-1] * (n_full / sizes[-1]) ** 2
        grown = (refs[-1]["peak_gb"] - refs[-1]["before_gb"]) / sizes[-1] ** 2 * n_full**2
        arrays = REFERENCE_NN_BYTES * n_full**2 / 2**30
        table.append(
            (
                "reference (extrapolated)",
                str(n_full),
                f"{NUM_QUERY} x {NUM_GALLERY}",
                f"~{t_full:.0f} (N^{power:.2f}); ~{t_quad:.0f} (N^2)",
                "-",
                "-",
                f"~{grown:.1f} (N x N arrays {arrays:.1f})",
                "-",
                "-",
                "-",
            )
        )
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in table:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))
    if full:
        stages = ", ".join(f"{k} done at {v:.1f} s" for k, v in full["stages"].items())
        print(f"Market-size stages: {stages}")
    print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()
