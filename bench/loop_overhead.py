"""Per-trial overhead of the experiment loop on a no-op trainable, next to Optuna and Ray Tune.

    python bench/loop_overhead.py                 # 1,000 trials, 2 at a time, all three
    python bench/loop_overhead.py --skip-ray      # without Ray Tune (slow: ~1-2 s per trial)

Each trial reports one result and does no work, so the time per trial is what the
framework itself costs: suggesting, launching, journaling, reporting, deciding.
reidplug runs with its default journal, trial folders and the jsonl/csv reporters
(console quiet). Optuna and Ray Tune come from `make bench-deps`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time


def noop_ray(config):
    from ray import tune

    tune.report({"score": config["x"]})


def run_reidplug(trials: int, concurrency: int, out: str) -> dict:
    from reidplug.core.tuner import Tuner

    cfg = {
        "OUTPUT_DIR": out,
        "TUNE": {
            "NAME": "overhead", "TRAINABLE": "noop", "NUM_TRIALS": trials, "MAX_CONCURRENT": concurrency,
            "MAX_STEPS": 1, "SEARCHER": "random", "REPORTERS": ["jsonl", "csv"],
            "SPACE": {"x": {"uniform": [0.0, 1.0]}, "y": {"choice": [1, 2, 3]}},
        },
    }
    t0 = time.perf_counter()
    tuner = Tuner(cfg, fresh=True)
    summary = tuner.run()
    total = time.perf_counter() - t0
    assert summary["num_trials"] == trials and summary["status"] == {"TERMINATED": trials}, summary["status"]
    return {"total_s": total, "per_trial_ms": 1000 * total / trials}


def run_optuna(trials: int, concurrency: int) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    t0 = time.perf_counter()
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_categorical("y", [1, 2, 3]),
                   n_trials=trials, n_jobs=concurrency)
    total = time.perf_counter() - t0
    return {"total_s": total, "per_trial_ms": 1000 * total / trials}


def run_ray(trials: int, concurrency: int, out: str) -> dict:
    import ray
    from ray import tune

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    t0 = time.perf_counter()
    ray.init(num_cpus=concurrency, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    tuner = tune.Tuner(
        noop_ray,
        param_space={"x": tune.uniform(0, 1), "y": tune.choice([1, 2, 3])},
        tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=concurrency, metric="score",
                                    mode="max"),
        run_config=tune.RunConfig(storage_path=out, name="overhead", verbose=0),
    )
    results = tuner.fit()
    total = time.perf_counter() - t0
    ray.shutdown()
    assert len(results) == trials
    return {"total_s": total, "per_trial_ms": 1000 * total / trials}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--ray-trials", type=int, default=100, help="Ray Tune is slow per trial; fewer keep it short")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-optuna", action="store_true")
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                    help="where the experiments are written (default: /dev/shm, a RAM disk, so that "
                         "the disk's write-back does not decide the figure; pass a disk folder to include it)")
    args = ap.parse_args()

    out = tempfile.mkdtemp(prefix="reidplug-overhead-", dir=args.dir)
    rows = []
    try:
        rows.append(("reidplug (local executor)", args.trials, run_reidplug(args.trials, args.concurrency, out)))
        if not args.skip_optuna:
            rows.append(("Optuna in-memory, random", args.trials, run_optuna(args.trials, args.concurrency)))
        if not args.skip_ray:
            rows.append(("Ray Tune, function trainable", args.ray_trials,
                         run_ray(args.ray_trials, args.concurrency, os.path.join(out, "ray"))))
    finally:
        shutil.rmtree(out, ignore_errors=True)

    print(f"\nNo-op trials, {args.concurrency} at a time, one result each (python {sys.version.split()[0]})")
    print(f"{'framework':32s} {'trials':>7s} {'total s':>9s} {'ms/trial':>9s}")
    for name, n, r in rows:
        print(f"{name:32s} {n:7d} {r['total_s']:9.2f} {r['per_trial_ms']:9.2f}")
    ours = rows[0][2]["per_trial_ms"]
    for name, _, r in rows[1:]:
        print(f"reidplug vs {name}: {r['per_trial_ms'] / ours:.1f}x")


if __name__ == "__main__":
    main()
