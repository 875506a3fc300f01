"""Searcher quality (simple regret) on standard test functions, and suggest latency.

    python bench/searchers.py                    # 60 evaluations x 10 seeds, latency at 200 and 1,000
    python bench/searchers.py --quick            # smoke run: 20 evaluations x 2 seeds, latency at 50
    python bench/searchers.py --part quality --functions branin --searchers hyperopt,random

Quality: each searcher runs sequential ask/tell against the Searcher API directly (no
trainer, no experiment loop): suggest, evaluate, on_complete. The simple regret of a run
is its best value minus the function's minimum; the table gives the median (and the
quartiles) over seeds. Functions: Branin on [-5,10]x[0,15] (min 0.397887), Hartmann-6 on
[0,1]^6 (min -3.32237), and `mixed` below (min 0). optuna's TPE runs as a reference.

Latency: the time of one `suggest` after N completed trials (the median of a few, each
followed by its completion), reached by real ask/tell. skopt reaches N by warm-start
points (registered as its own suggestions, told in one batch), because asking its GP
N times costs O(N^4); its timed suggestion still refits the GP on all N points.
The size of the pickled `state_dict` is given too: the experiment journals it after
every result.
"""

from __future__ import annotations

import os

# One BLAS thread per process, set before numpy loads: the GP's matrices are small, the
# quality runs already use one process per core, and threads competing for 2 cores made
# skopt's suggestions 6x slower here.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import math
import pickle
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONTRIB = ROOT / "plugins_contrib" / "reidplug-skopt"

# ---------------------------------------------------------------- functions


def branin(p):
    x1, x2 = p["x1"], p["x2"]
    b, c, r, s, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 6, 10, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                 [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])


def hartmann6(p):
    x = np.array([p[f"x{i}"] for i in range(1, 7)])
    return float(-np.sum(_H_ALPHA * np.exp(-np.sum(_H_A * (x - _H_P) ** 2, axis=1))))


_OPT_OFFSET = {"sgd": 0.4, "adam": 0.0, "rmsprop": 0.2}
_BEST_LOG_LR = {"sgd": -1.5, "adam": -3.0, "rmsprop": -2.5}
_ACT_OFFSET = {"relu": 0.1, "gelu": 0.0, "tanh": 0.3, "sigmoid": 0.6}


def mixed(p):
    """Categorical and numeric, with an interaction: the best learning rate depends on the optimizer.

    Every term is >= 0 and zero only at opt=adam, act=gelu, lr=1e-3, x=0.7, y=0.2, depth=4,
    width=96, so the minimum is 0 there and nowhere else.
    """
    return (_OPT_OFFSET[p["opt"]] + _ACT_OFFSET[p["act"]]
            + ((math.log10(p["lr"]) - _BEST_LOG_LR[p["opt"]]) / 2) ** 2
            + 1 - math.exp(-((p["x"] - 0.7) ** 2 + (p["y"] - 0.2) ** 2) / 0.05)
            + 0.05 * (p["depth"] - 4) ** 2
            + ((p["width"] - 96) / 160) ** 2)


FUNCTIONS = {
    "branin": (branin, 0.397887, {"x1": {"uniform": [-5.0, 10.0]}, "x2": {"uniform": [0.0, 15.0]}}),
    "hartmann6": (hartmann6, -3.32237, {f"x{i}": {"uniform": [0.0, 1.0]} for i in range(1, 7)}),
    "mixed": (mixed, 0.0, {
        "opt": {"choice": ["sgd", "adam", "rmsprop"]}, "act": {"choice": ["relu", "gelu", "tanh", "sigmoid"]},
        "lr": {"loguniform": [1e-5, 1.0]}, "x": {"uniform": [0.0, 1.0]}, "y": {"uniform": [0.0, 1.0]},
        "depth": {"randint": [1, 9]}, "width": {"quniform": [16, 256, 16]},
    }),
}

# Grid only where a grid of about the budget exists: 7 x 7 = 49 points on Branin. On
# Hartmann-6 two points per axis are only the corners, and the mixed space's categories
# alone take 12 points times every depth.
GRID_POINTS = {"branin": 7}

# ---------------------------------------------------------------- searchers


def searcher_class(name):
    if name == "skopt":
        try:
            from reidplug_skopt import SkoptSearcher
        except ImportError:
            sys.path.insert(0, str(CONTRIB))
            from reidplug_skopt import SkoptSearcher
        return SkoptSearcher
    from reidplug.core.manager import get_plugin_manager

    return get_plugin_manager(entry_points=False).registry("searcher").get(name)


def make(name, space, seed, budget, options=None):
    from reidplug.core.space import SearchSpace

    kwargs = dict(options or {})
    if name == "nevergrad":
        kwargs.setdefault("budget", budget)  # what the experiment's number of trials would be
    return searcher_class(name)(SearchSpace.parse(space, schema=False), metric="loss", mode="min", seed=seed,
                                **kwargs)


def optuna_run(space, fn, seed, evals):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    values = []
    for _ in range(evals):
        trial = study.ask()
        p = {}
        for key, spec in space.items():
            (kind, args), = spec.items()
            if kind == "choice":
                p[key] = trial.suggest_categorical(key, args)
            elif kind == "randint":
                p[key] = trial.suggest_int(key, args[0], args[1] - 1)
            elif kind == "quniform":
                p[key] = trial.suggest_int(key, args[0], args[1], step=args[2])
            else:
                p[key] = trial.suggest_float(key, args[0], args[1], log=kind == "loguniform")
        values.append(fn(p))
        study.tell(trial, values[-1])
    return values


def quality_run(task):
    """One run: (function, searcher, seed, evaluations, options) -> the values in order, and seconds."""
    import warnings

    # nevergrad's Cobyla passes scipy a tolerance it corrects with a warning on every run.
    warnings.filterwarnings("ignore", message="COBYLA")
    fname, name, seed, evals, options = task
    fn, _, space = FUNCTIONS[fname]
    t0 = time.perf_counter()
    if name == "optuna-tpe":
        values = optuna_run(space, fn, seed, evals)
    else:
        opts = dict(options or {})
        if name == "grid":
            opts.setdefault("points_per_dim", GRID_POINTS[fname])
        s = make(name, space, seed, evals, opts)
        values = []
        for tid in range(evals):
            p = s.suggest(tid)
            if p is None:
                break  # a grid that is exhausted
            values.append(fn(p))
            s.on_complete(tid, {"loss": values[-1]})
    return values, time.perf_counter() - t0


def quality(args):
    tasks = []
    for fname in args.functions:
        for name in args.searchers + (["optuna-tpe"] if args.optuna else []):
            if name == "grid" and fname not in GRID_POINTS:
                continue
            seeds = [0] if name == "grid" else range(args.seeds)  # an unshuffled grid has no randomness
            tasks += [(fname, name, seed, args.evals, args.options.get(name)) for seed in seeds]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(quality_run, tasks))
    print(f"\n## Simple regret after {args.evals} evaluations, {args.seeds} seeds (median [25%, 75%])\n")
    marks = [m for m in (10, 20, 40) if m < args.evals]
    print("| function | searcher | evals | " + " | ".join(f"median @{m}" for m in marks)
          + " | median final | quartiles final | s per run |")
    print("|---|---|---|" + "---|" * len(marks) + "---|---|---|")
    by_key: dict = {}
    for (fname, name, *_), (values, secs) in zip(tasks, results):
        by_key.setdefault((fname, name), []).append((values, secs))
    for (fname, name), runs in by_key.items():
        fmin = FUNCTIONS[fname][1]
        finals = [min(v) - fmin for v, _ in runs]
        at = [statistics.median(min(v[:m]) - fmin for v, _ in runs) for m in marks]
        q1, q3 = np.percentile(finals, [25, 75])
        evals = len(runs[0][0])
        print(f"| {fname} | {name} | {evals} | " + " | ".join(f"{a:.4g}" for a in at)
              + f" | **{statistics.median(finals):.4g}** | [{q1:.4g}, {q3:.4g}] "
              f"| {statistics.median(s for _, s in runs):.2f} |")


# ---------------------------------------------------------------- latency


def latency_run(task):
    """(searcher, n observations, repeats) -> median seconds of one suggest, and the state's pickled size."""
    import warnings

    warnings.filterwarnings("ignore", message="COBYLA")
    name, n, repeats = task
    fn, _, space = FUNCTIONS["hartmann6"]
    rng = np.random.default_rng(0)
    opts = {"points_per_dim": 4} if name == "grid" else {}  # 4^6 = 4,096 points
    if name == "optuna-tpe":
        return optuna_latency(space, fn, n, repeats)
    if name == "skopt":
        points = [{k: float(rng.random()) for k in space} for _ in range(n)]
        s = make(name, space, 0, n + repeats, {"points_to_evaluate": points})
    else:
        s = make(name, space, 0, n + repeats, opts)
    for tid in range(n):
        p = s.suggest(tid)
        s.on_complete(tid, {"loss": fn(p)})
    times = []
    for tid in range(n, n + repeats):
        t0 = time.perf_counter()
        p = s.suggest(tid)
        times.append(time.perf_counter() - t0)
        s.on_complete(tid, {"loss": fn(p)})
    t0 = time.perf_counter()
    blob = pickle.dumps(s.state_dict())
    state_s = time.perf_counter() - t0
    fresh = make(name, space, 0, n + repeats, opts if name != "skopt" else {})
    t0 = time.perf_counter()
    fresh.load_state_dict(pickle.loads(blob))  # what a resumed experiment pays once
    load_s = time.perf_counter() - t0
    return statistics.median(times), len(blob), state_s, load_s


def optuna_latency(space, fn, n, repeats):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    dists = {k: optuna.distributions.FloatDistribution(0.0, 1.0) for k in space}
    times = []
    for i in range(n + repeats):
        t0 = time.perf_counter()
        trial = study.ask(dists)
        if i >= n:
            times.append(time.perf_counter() - t0)
        study.tell(trial, fn(trial.params))
    return statistics.median(times), 0, 0.0, 0.0


def latency(args):
    tasks = []
    for n in args.latency_at:
        for name in args.searchers + (["optuna-tpe"] if args.optuna else []):
            repeats = 1 if (name == "skopt" and n >= 1000) else args.repeats
            tasks.append((name, n, repeats))
    # One at a time: concurrent runs would slow each other down.
    results = [latency_run(t) for t in tasks]
    print("\n## Suggest latency on Hartmann-6 (6 continuous dimensions)\n")
    print("| searcher | completed trials | ms per suggest | state_dict pickled | pickling ms | loading ms |")
    print("|---|---|---|---|---|---|")
    for (name, n, repeats), (secs, size, state_s, load_s) in zip(tasks, results):
        size_txt, state_txt, load_txt = "n/a", "n/a", "n/a"
        if name != "optuna-tpe":
            size_txt, state_txt, load_txt = f"{size / 1024:.0f} KiB", f"{1000 * state_s:.1f}", f"{1000 * load_s:.0f}"
        note = " (1 suggest)" if repeats == 1 else ""
        print(f"| {name} | {n} | {1000 * secs:.3g}{note} | {size_txt} | {state_txt} | {load_txt} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20 evaluations x 2 seeds; latency at 50 only")
    ap.add_argument("--part", choices=["quality", "latency", "both"], default="both")
    ap.add_argument("--functions", default="branin,hartmann6,mixed")
    ap.add_argument("--searchers", default="random,grid,hyperopt,nevergrad,skopt")
    ap.add_argument("--evals", type=int, default=60)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--latency-at", default="200,1000")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-optuna", dest="optuna", action="store_false", help="skip optuna's TPE reference")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for the quality runs")
    ap.add_argument("--hyperopt-startup", type=int, default=None, help="N_STARTUP_JOBS for hyperopt")
    args = ap.parse_args()
    if args.quick:
        args.evals, args.seeds, args.latency_at, args.repeats = 20, 2, "50", 2
    args.functions = args.functions.split(",")
    args.searchers = args.searchers.split(",")
    args.latency_at = [int(n) for n in args.latency_at.split(",")]
    args.options = {}
    if args.hyperopt_startup is not None:
        args.options["hyperopt"] = {"n_startup_jobs": args.hyperopt_startup}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if args.part in ("quality", "both"):
        quality(args)
    if args.part in ("latency", "both"):
        latency(args)


if __name__ == "__main__":
    main()
