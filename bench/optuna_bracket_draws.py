"""Optuna TPE + HyperbandPruner under several bracket draws: the same seeds, other study names.

    python bench/optuna_bracket_draws.py            # 5 draws x 20 seeds x 4 problems, 50 max budgets

HyperbandPruner puts a trial in a bracket by a hash of the study's name and the trial's
number, so the study's name is a second seed. Prints each draw's median final regret and the
pooled median [IQR] over all runs. Needs Optuna (`make bench-deps`).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import schedulers_multifidelity as mf  # noqa: E402


def _one(args):
    tag, problem, seed, units = args
    mf.STUDY_TAG = tag
    run = mf.run_optuna("Optuna TPE+Hyperband", mf.PROBLEMS[problem], seed, units)
    return tag, problem, run["curve"][-1][1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", default=",-b,-c,-d,-e", help="study-name suffixes, comma-separated ('' first: the benchmark's own names)")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=float, default=50)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    tags = args.tags.split(",")
    tasks = [(t, p, s, args.budget) for p in mf.PROBLEMS for t in tags for s in range(args.seeds)]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        runs = pool.map(_one, tasks, chunksize=4)
    for p in mf.PROBLEMS:
        per = [f"{t or '(named)'} {np.median([r for tt, pp, r in runs if pp == p and tt == t]):.4g}" for t in tags]
        q1, med, q3 = np.percentile([r for _, pp, r in runs if pp == p], [25, 50, 75])
        print(f"{p}: " + ", ".join(per) + f"; pooled {len(tags) * args.seeds} runs: {med:.4g} [{q1:.4g}, {q3:.4g}]")


if __name__ == "__main__":
    main()
