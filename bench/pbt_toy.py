"""PBT on a toy whose best learning rate falls during training, against random search, ASHA and Ray Tune's PBT.

    python bench/pbt_toy.py             # 20 seeds
    python bench/pbt_toy.py --quick     # 3 seeds (smoke run)
    python bench/pbt_toy.py --skip-ray  # without Ray Tune

The toy: SGD on a noisy quadratic, loss = 0.5 * sum_i h_i * theta_i**2 with curvatures h_i
log-spaced in [10**-2.5, 1], theta starting at 10, gradient noise N(0, 1) on every
coordinate. One step is 25 SGD updates; a trial runs 40 steps; the score is
-log10(loss). Early on a large learning rate wins (the slow directions need it); later
the noise floor, which grows with the learning rate, calls for a small one, so a
constant rate is a compromise and a falling one does better. The only hyperparameter is
the learning rate, log-uniform in [0.001, 1].

Methods, at equal total steps (PBT runs to the end, about 4 x 40 steps give or take the
steps recipients redo or skip when they jump to their donor's step; random search and
ASHA then get exactly the steps PBT spent with the same seed):
- PBT: population 4, two at a time, perturbation interval 2 steps, Ray's defaults
  otherwise (quantile 0.25, resample 0.25, factors 1.2 / 0.8);
- random search: trials of 40 steps (4, plus a partial one when PBT spent more than 160);
- ASHA: Ray's stopping rule, grace 2, rf 3, as many trials as the steps allow;
- Ray Tune's PopulationBasedTraining on the same toy (a function trainable with
  checkpoints), the same population, interval and mutations, 2 trials at a time.
reidplug's methods run in this process through the ask/tell API (two slots, round
robin); "PBT (Tuner)" runs reidplug's PBT through its real Tuner with two worker
processes, to compare wall-time overheads with Ray's. The final score of a run is the
best score among its trials that reached step 40. Overhead = wall time minus the time
spent in the toy's own steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from schedulers_multifidelity import drive, scratch_dir  # noqa: E402

from reidplug.core.trainable import Trainable  # noqa: E402

STEPS, UPDATES, POPULATION, INTERVAL = 40, 25, 4, 2
H = np.logspace(-2.5, 0, 8)
SPACE = {"lr": {"loguniform": [1e-3, 1.0]}}


def toy_step(theta: np.ndarray, lr: float, rng: np.random.Generator) -> np.ndarray:
    for _ in range(UPDATES):
        theta = theta - lr * (H * theta + rng.normal(size=H.size))
    return theta


def toy_score(theta: np.ndarray) -> float:
    return float(-np.log10(0.5 * np.sum(H * theta**2)))


class Toy:
    """The toy as a problem for the in-process driver; the state (theta) travels in checkpoints."""

    compute_s = 0.0

    def init(self, params):
        return {"theta": [10.0] * H.size}

    def step(self, params, state, rng):
        t0 = time.perf_counter()
        theta = toy_step(np.array(state["theta"]), params["lr"], rng)
        Toy.compute_s += time.perf_counter() - t0
        return toy_score(theta), {"theta": theta.tolist()}


class NoisyQuadratic(Trainable):
    """The toy as a Trainable for the real Tuner."""

    def setup(self, params, context):
        super().setup(params, context)
        self.theta = np.full(H.size, 10.0)
        self.steps = 0

    def step(self):
        rng = np.random.default_rng([self.context.seed, self.steps])
        t0 = time.perf_counter()
        self.theta = toy_step(self.theta, self.params["lr"], rng)
        self.steps += 1
        return {"score": toy_score(self.theta), "compute_s": time.perf_counter() - t0}

    def save(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as f:
            json.dump({"theta": self.theta.tolist(), "steps": self.steps}, f)

    def load(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json")) as f:
            state = json.load(f)
        self.theta, self.steps = np.array(state["theta"]), state["steps"]


def final_score(exp) -> float:
    return max((t.last_result["score"] for t in exp.trials.values()
                if t.last_result and t.step >= STEPS), default=float("nan"))


def run_reidplug(method: str, seed: int, budget: int) -> dict:
    from reidplug.core.experiment import Experiment

    tune = {"NAME": "toy", "TRAINABLE": "noop", "MAX_STEPS": STEPS, "SEED": seed, "REPORTERS": [],
            "CHECKPOINT_FREQ": 0, "SPACE": SPACE}
    if method == "PBT":
        tune.update(SCHEDULER="pbt", NUM_TRIALS=POPULATION, PBT={"PERTURBATION_INTERVAL": INTERVAL})
    elif method == "Random":
        tune.update(SCHEDULER="fifo", NUM_TRIALS=-(-budget // STEPS))
    else:
        tune.update(SCHEDULER="asha", NUM_TRIALS=1000, ASHA={"GRACE_PERIOD": 2, "REDUCTION_FACTOR": 3})
    out = scratch_dir()
    Toy.compute_s = 0.0
    t0 = time.perf_counter()
    exp = Experiment({"OUTPUT_DIR": out, "TUNE": tune})
    try:
        spent = drive(exp, Toy(), seed, budget, concurrency=2)
        wall = time.perf_counter() - t0
        score = final_score(exp)
        trials = len(exp.trials)
    finally:
        exp.close()
        shutil.rmtree(out, ignore_errors=True)
    return {"score": score, "wall_s": wall, "overhead_s": wall - Toy.compute_s, "steps": spent, "trials": trials}


def run_tuner(seed: int) -> dict:
    from reidplug.core.tuner import Tuner

    out = scratch_dir()
    cfg = {"OUTPUT_DIR": out, "TUNE": {
        "NAME": "toy", "TRAINABLE": "pbt_toy:NoisyQuadratic", "MAX_STEPS": STEPS, "SEED": seed, "REPORTERS": [],
        "CHECKPOINT_FREQ": 0, "MAX_CONCURRENT": 2, "NUM_TRIALS": POPULATION, "SPACE": SPACE, "SCHEDULER": "pbt",
        "PBT": {"PERTURBATION_INTERVAL": INTERVAL}}}
    t0 = time.perf_counter()
    try:
        tuner = Tuner(cfg)
        tuner.run()
        wall = time.perf_counter() - t0
        exp = tuner.experiment
        compute = sum(r["metrics"].get("compute_s", 0.0) for r in _results(exp.dir))
        steps = len(_results(exp.dir))
        score = final_score(exp)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"score": score, "wall_s": wall, "overhead_s": wall - compute, "steps": steps, "trials": POPULATION}


def _results(exp_dir) -> list[dict]:
    import sqlite3

    with sqlite3.connect(Path(exp_dir) / "experiment.db") as conn:
        return [{"metrics": json.loads(m)} for (m,) in conn.execute("SELECT metrics FROM results")]


def ray_toy(config):
    from ray import tune

    theta, steps = np.full(H.size, 10.0), 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                state = json.load(f)
        theta, steps = np.array(state["theta"]), state["steps"]
    while steps < STEPS:
        rng = np.random.default_rng([config["seed"], config["__trial_index__"], steps])
        t0 = time.perf_counter()
        theta = toy_step(theta, config["lr"], rng)
        steps += 1
        compute = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"theta": theta.tolist(), "steps": steps}, f)
            tune.report({"score": toy_score(theta), "steps": steps, "compute_s": compute},
                        checkpoint=tune.Checkpoint.from_directory(d))


def run_ray(seed: int, storage: str) -> dict:
    import random

    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    random.seed(seed)  # Ray's PBT draws its perturbations from the `random` module
    np.random.seed(seed)
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=INTERVAL,
                                  hyperparam_mutations={"lr": tune.loguniform(1e-3, 1.0)})
    space = {"lr": tune.loguniform(1e-3, 1.0), "seed": seed, "__trial_index__": tune.grid_search(list(range(POPULATION)))}
    t0 = time.perf_counter()
    tuner = tune.Tuner(
        tune.with_resources(ray_toy, {"cpu": 1}), param_space=space,
        tune_config=tune.TuneConfig(scheduler=pbt, metric="score", mode="max", num_samples=1, max_concurrent_trials=2,
                                    reuse_actors=True),
        # Every checkpoint is kept: with num_to_keep, Ray's PBT can point a recipient at a donor
        # checkpoint that was already deleted (its issue #9036) and the trials fail.
        run_config=tune.RunConfig(name=f"toy{seed}", storage_path=storage, stop={"training_iteration": STEPS},
                                  verbose=0),
    )
    grid = tuner.fit()
    wall = time.perf_counter() - t0
    finals = [r.metrics["score"] for r in grid if r.metrics and r.metrics.get("steps", 0) >= STEPS]
    compute, steps = 0.0, 0
    for r in grid:
        hist = r.metrics_dataframe
        if hist is not None:
            compute += float(hist["compute_s"].sum())
            steps += len(hist)
    return {"score": max(finals) if finals else float("nan"), "wall_s": wall, "overhead_s": wall - compute,
            "steps": steps, "trials": POPULATION}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--skip-tuner", action="store_true")
    args = parser.parse_args(argv)
    seeds = args.seeds or (3 if args.quick else 20)
    print(f"noisy quadratic, {STEPS} steps of {UPDATES} SGD updates, {seeds} seeds", flush=True)
    rows = {"PBT": [], "Random": [], "ASHA": []}
    for s in range(seeds):
        # PBT runs to the end; random search and ASHA then get the steps it spent.
        rows["PBT"].append(run_reidplug("PBT", s, 3 * POPULATION * STEPS))
        for method in ("Random", "ASHA"):
            rows[method].append(run_reidplug(method, s, rows["PBT"][-1]["steps"]))
    print("  PBT, Random, ASHA done", flush=True)
    if not args.skip_tuner:
        rows["PBT (Tuner)"] = [run_tuner(s) for s in range(seeds)]
        print("  PBT (Tuner) done", flush=True)
    if not args.skip_ray:
        import logging
        import warnings

        import ray

        warnings.filterwarnings("ignore")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        storage = tempfile.mkdtemp(prefix="ray-toy-")
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        start = time.perf_counter() - t0
        try:
            rows["Ray Tune PBT"] = [run_ray(s, storage) for s in range(seeds)]
        finally:
            ray.shutdown()
            shutil.rmtree(storage, ignore_errors=True)
        print(f"  Ray Tune PBT done (ray.init took {start:.1f} s, not counted)", flush=True)
    print(f"\n{'method':14s}{'median final score':>20s}{'IQR':>18s}{'steps':>8s}{'trials':>8s}"
          f"{'wall s':>9s}{'overhead s':>12s}{'overhead ms/step':>18s}")
    for method, rs in rows.items():
        sc = np.array([r["score"] for r in rs])
        q1, med, q3 = np.nanpercentile(sc, [25, 50, 75])
        steps = np.median([r["steps"] for r in rs])
        wall = np.median([r["wall_s"] for r in rs])
        over = np.median([r["overhead_s"] for r in rs])
        per = np.median([1000 * r["overhead_s"] / r["steps"] for r in rs])
        print(f"{method:14s}{med:20.3f}{f'[{q1:.3f}, {q3:.3f}]':>18s}{steps:8.0f}"
              f"{np.median([r['trials'] for r in rs]):8.0f}{wall:9.2f}{over:12.2f}{per:18.2f}")
    best = max(rows, key=lambda m: np.nanmedian([r["score"] for r in rows[m]]))
    print(f"\nbest median final score: {best}")


if __name__ == "__main__":
    main()
