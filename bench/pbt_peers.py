"""PBT and PB2 on two problems, beside Ray Tune's PBT and PB2 on the same problems, seeds and populations.

    python bench/pbt_peers.py                          # 20 seeds for reidplug, 5 for Ray Tune
    python bench/pbt_peers.py --seeds 5 --skip-ray     # quick, reidplug only
    python bench/pbt_peers.py --variants               # PBT's options measured one at a time

Problems:
- moving: the best learning rate moves during training. A member's state is its
  accumulated reward; a step at learning rate lr after t steps adds
  10 * exp(-(log10(lr) - m(t))**2 / (2 * 0.1**2)) with m(t) = -1 - 3 t / 100, so the
  optimum slides from 1e-1 to 1e-4 over the 100 steps. The reported score is the
  accumulated reward plus N(0, 5**2) measurement noise (what a validation set gives);
  the final score is the best member's accumulated reward, noise-free. The ideal schedule
  (lr = 10**m(t) at every step) reaches 1,000; the best fixed learning rate reaches about
  84 (printed). lr is log-uniform in [1e-5, 1]. Population 4, all at once, interval 10.
- quadratic: bench/pbt_toy.py's noisy quadratic (SGD whose best learning rate falls),
  40 steps, population 4, two at a time, interval 2; final = best score at step 40.

reidplug's schedulers run in this process through the ask/tell API with real checkpoint
folders. Ray Tune's PBT gets the same interval and a log-uniform mutation of lr, Ray's
PB2 the same interval with bounds on log10(lr) (its bounds are linear: on lr itself it
would hardly ever try the small rates). Ray is slow to start trials (about 1.6 s each
here), so it runs fewer seeds; the count is printed.
"""

from __future__ import annotations

import os

# One BLAS thread per process, set before numpy loads: the GP's matrices are small, and
# threads competing for the cores made them 50x slower here.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pbt_toy import H, toy_score, toy_step  # noqa: E402
from schedulers_multifidelity import drive, scratch_dir  # noqa: E402

IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


class Moving:
    name = "moving"
    steps, population, concurrency, interval = 100, 4, 4, 10
    space = {"lr": {"loguniform": [1e-5, 1.0]}}
    noise = 5.0

    @staticmethod
    def gain(lr: float, t: int) -> float:
        m = -1.0 - 3.0 * t / 100
        return 10.0 * math.exp(-((math.log10(lr) - m) ** 2) / (2 * 0.1**2))

    def init(self, params):
        return {"acc": 0.0, "t": 0}

    def step(self, params, state, rng):
        acc = state["acc"] + self.gain(params["lr"], state["t"])
        self.last_true = acc
        return acc + self.noise * float(rng.normal()), {"acc": acc, "t": state["t"] + 1}

    @classmethod
    def best_fixed(cls) -> tuple[float, float]:
        grid = np.linspace(-5, 0, 2001)
        totals = [sum(cls.gain(10**g, t) for t in range(cls.steps)) for g in grid]
        i = int(np.argmax(totals))
        return float(10 ** grid[i]), float(totals[i])


class Quadratic:
    name = "quadratic"
    steps, population, concurrency, interval = 40, 4, 2, 2
    space = {"lr": {"loguniform": [1e-3, 1.0]}}

    def init(self, params):
        return {"theta": [10.0] * H.size}

    def step(self, params, state, rng):
        theta = toy_step(np.array(state["theta"]), params["lr"], rng)
        self.last_true = toy_score(theta)
        return self.last_true, {"theta": theta.tolist()}


PROBLEMS = {"moving": Moving(), "quadratic": Quadratic()}

METHODS = {
    "PBT": ("pbt", {}),
    "PB2": ("pb2", {}),
    "PBT, Ray's rules": ("pbt", {"EXPLORE": "factors"}),
}
# PBT's options, each measured against Ray's behaviour (the first row) on its own.
VARIANTS = {
    "PBT (Ray's rules)": ("pbt", {"SMOOTHING": 1, "EXPLOIT": "truncation", "EXPLORE": "factors"}),
    "PBT SMOOTHING=interval": ("pbt", {"SMOOTHING": "interval", "EXPLOIT": "truncation", "EXPLORE": "factors"}),
    "PBT EXPLOIT=ttest": ("pbt", {"SMOOTHING": 1, "EXPLOIT": "ttest", "EXPLORE": "factors"}),
    "PBT EXPLORE=unit": ("pbt", {"SMOOTHING": 1, "EXPLOIT": "truncation", "EXPLORE": "unit"}),
    "PB2 (SMOOTHING 1)": ("pb2", {"SMOOTHING": 1}),
    "PB2 KAPPA=0.5": ("pb2", {"KAPPA": 0.5}),
    "PB2 KAPPA=0.2": ("pb2", {"KAPPA": 0.2}),
    "PBT EXPLORE=unit EXPLOIT=ttest": ("pbt", {"EXPLOIT": "ttest", "EXPLORE": "unit"}),
}


def run_reidplug(task) -> dict:
    from reidplug.core.experiment import Experiment

    label, scheduler, options, pname, seed = task
    problem = PROBLEMS[pname]
    options = {k: (problem.interval if v == "interval" else v) for k, v in options.items()}
    section = {"PERTURBATION_INTERVAL": problem.interval, **options}
    tune = {"NAME": "pbt", "TRAINABLE": "noop", "MAX_STEPS": problem.steps, "SEED": seed, "REPORTERS": [],
            "CHECKPOINT_FREQ": 0, "SPACE": problem.space, "SCHEDULER": scheduler, "NUM_TRIALS": problem.population,
            scheduler.upper(): section}
    out = scratch_dir()
    t0 = time.perf_counter()
    exp = Experiment({"OUTPUT_DIR": out, "TUNE": tune})
    finals = []

    def on_result(trial, step, score, spent):
        if step >= problem.steps:  # the noise-free value of the step just taken
            finals.append(problem.last_true)

    try:
        drive(exp, problem, seed, 3 * problem.population * problem.steps, concurrency=problem.concurrency,
              on_result=on_result)
        score = max(finals, default=float("nan"))
    finally:
        exp.close()
        shutil.rmtree(out, ignore_errors=True)
    return {"label": label, "problem": pname, "seed": seed, "score": score, "s": time.perf_counter() - t0}


# ---------------------------------------------------------------------- Ray Tune


def ray_trainable(config):
    from ray import tune

    name = config["problem"]
    problem = PROBLEMS[name]
    lr = config["lr"] if "lr" in config else 10 ** config["log_lr"]
    state, step = problem.init({"lr": lr}), 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                saved = json.load(f)
        state, step = saved["state"], saved["step"]
    while step < problem.steps:
        step += 1
        rng = np.random.default_rng([config["seed"], config["__index__"], step])
        score, state = problem.step({"lr": lr}, state, rng)
        true = state["acc"] if name == "moving" else score
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"state": state, "step": step}, f)
            tune.report({"score": score, "true": true, "steps": step}, checkpoint=tune.Checkpoint.from_directory(d))


def run_ray(kind: str, pname: str, seed: int, storage: str) -> dict:
    import random

    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.schedulers.pb2 import PB2

    problem = PROBLEMS[pname]
    lo, hi = problem.space["lr"]["loguniform"]
    random.seed(seed)
    np.random.seed(seed)
    if kind == "pbt":
        sched = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=problem.interval,
                                        hyperparam_mutations={"lr": tune.loguniform(lo, hi)})
        space = {"lr": tune.loguniform(lo, hi)}
    else:
        sched = PB2(time_attr="training_iteration", perturbation_interval=problem.interval,
                    hyperparam_bounds={"log_lr": [math.log10(lo), math.log10(hi)]})
        space = {"log_lr": tune.uniform(math.log10(lo), math.log10(hi))}
    space.update(problem=pname, seed=seed, __index__=tune.grid_search(list(range(problem.population))))
    t0 = time.perf_counter()
    tuner = tune.Tuner(
        tune.with_resources(ray_trainable, {"cpu": 1}), param_space=space,
        tune_config=tune.TuneConfig(scheduler=sched, metric="score", mode="max", num_samples=1,
                                    max_concurrent_trials=problem.concurrency, reuse_actors=True),
        run_config=tune.RunConfig(name=f"{kind}{pname}{seed}", storage_path=storage,
                                  stop={"training_iteration": problem.steps}, verbose=0),
    )
    grid = tuner.fit()
    finals = [r.metrics["true"] for r in grid if r.metrics and r.metrics.get("steps", 0) >= problem.steps]
    return {"label": f"Ray Tune {kind.upper()}", "problem": pname, "seed": seed,
            "score": max(finals) if finals else float("nan"), "s": time.perf_counter() - t0}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--ray-seeds", type=int, default=5)
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--variants", action="store_true", help="PBT's options one at a time instead of the defaults")
    ap.add_argument("--problems", default="moving,quadratic")
    ap.add_argument("--only", default=None, help="comma-separated method labels")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--plot", default=str(IMG / "pbt_peers.png"))
    args = ap.parse_args(argv)
    problems = args.problems.split(",")
    methods = VARIANTS if args.variants else METHODS
    if args.only:
        methods = {k: v for k, v in methods.items() if k in args.only.split(",")}
    lr, fixed = Moving.best_fixed()
    print(f"moving: ideal schedule 1000, best fixed lr {lr:.3g} reaches {fixed:.1f}", flush=True)
    tasks = [(label, s, o, p, seed) for p in problems for label, (s, o) in methods.items()
             for seed in range(args.seeds)]
    t0 = time.perf_counter()
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(args.workers) as pool:
        rows = pool.map(run_reidplug, tasks, chunksize=1)
    print(f"reidplug: {len(rows)} runs in {time.perf_counter() - t0:.0f} s", flush=True)
    if not args.skip_ray and not args.variants:
        import logging
        import warnings

        import ray

        warnings.filterwarnings("ignore")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        storage = tempfile.mkdtemp(prefix="ray-pbt-")
        ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        t0 = time.perf_counter()
        try:
            for p in problems:
                for kind in ("pbt", "pb2"):
                    rows += [run_ray(kind, p, s, storage) for s in range(args.ray_seeds)]
        finally:
            ray.shutdown()
            shutil.rmtree(storage, ignore_errors=True)
        print(f"Ray Tune: {args.ray_seeds} seeds per problem and method in {time.perf_counter() - t0:.0f} s",
              flush=True)
    labels = list(dict.fromkeys(r["label"] for r in rows))
    summary = {}
    for p in problems:
        print(f"\n{p}: final score (higher is better)")
        print(f"  {'method':26s}{'seeds':>6s}{'median':>10s}{'IQR':>22s}{'s/run':>7s}")
        for label in labels:
            sc = np.array([r["score"] for r in rows if r["problem"] == p and r["label"] == label])
            if not len(sc):
                continue
            secs = np.mean([r["s"] for r in rows if r["problem"] == p and r["label"] == label])
            q1, med, q3 = np.nanpercentile(sc, [25, 50, 75])
            summary[(p, label)] = sc
            print(f"  {label:26s}{len(sc):6d}{med:10.3f}{f'[{q1:.3f}, {q3:.3f}]':>22s}{secs:7.1f}")
        if p == "moving":
            print(f"  {'best fixed lr':26s}{'':6s}{fixed:10.3f}")
    if args.plot:
        plot(summary, problems, labels, fixed, args.plot)
        print(f"\nplot: {args.plot}")


def plot(summary, problems, labels, fixed, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(problems), figsize=(6 * len(problems), 4.5), squeeze=False)
    for ax, p in zip(axes[0], problems):
        names = [lab for lab in labels if (p, lab) in summary]
        ax.boxplot([summary[(p, lab)] for lab in names], showfliers=True)
        ax.set_xticks(range(1, len(names) + 1), [f"{n}\n({len(summary[(p, n)])} seeds)" for n in names],
                      fontsize=8)
        if p == "moving":
            ax.axhline(fixed, ls="--", color="grey", label="best fixed lr")
            ax.axhline(2 * fixed, ls=":", color="grey", label="2 x best fixed lr")
            ax.legend(fontsize=8)
        ax.set_ylabel("final score (higher is better)")
        ax.set_title(p)
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
