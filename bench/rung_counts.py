"""How far the trials of one multi-fidelity benchmark run get: trials per last step, and each rung's arrivals and promotions.

    python bench/rung_counts.py "BOHB (ASHA)" learning_curves --seed 0

Methods and problems are bench/schedulers_multifidelity.py's; one run, 50 maximum budgets.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import schedulers_multifidelity as mf  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", choices=[m for m in mf.METHODS if not m.startswith("Optuna")])
    parser.add_argument("problem", choices=list(mf.PROBLEMS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=50, help="max budgets in the run")
    args = parser.parse_args(argv)
    from reidplug.core.experiment import Experiment

    problem = mf.PROBLEMS[args.problem]
    out = mf.scratch_dir()
    tune = {"NAME": "run", "TRAINABLE": "noop", "NUM_TRIALS": 100000, "MAX_STEPS": mf.T, "SEED": args.seed,
            "REPORTERS": [], "CHECKPOINT_FREQ": 0, "SPACE": problem.space, **mf.METHODS[args.method]}
    exp = Experiment({"OUTPUT_DIR": out, "TUNE": tune})
    try:
        spent = mf.drive(exp, problem, args.seed, int(args.budget * mf.T))
        last = collections.Counter(max((r.get("step", 0) for r in t.results), default=0) for t in exp.trials.values())
        print(f"{args.method} on {args.problem}, seed {args.seed}: {len(exp.trials)} trials, {spent} steps")
        print("trials by the last step they ran: " + ", ".join(f"{s}: {n}" for s, n in sorted(last.items())))
        for b, rungs in enumerate(getattr(exp.scheduler, "rungs", [])):
            print(f"bracket {b}: " + ", ".join(f"rung {r.level}: {len(r.promoted)} of {len(r)} promoted"
                                               for r in rungs))
    finally:
        exp.close()
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
